// The host-side durability check: given the run's seed and the number W of writes
// the guest reported as acknowledged and flushed (the last "VERIFY FLUSHED ...
// writes=W" line before a crash), check that the image holds every one of them.
//
// For every block, the last of the first W writes that hit it fixes the minimum
// generation. The block must hold a valid block of this run at that position with
// that generation or a later one (writes after the last flush may or may not have
// landed), and a later generation must be one the sequence really wrote to that
// block. Blocks that none of the first W writes touched may hold anything, except
// a valid block of this run written for another position (a misdirected write).
#pragma once

#include <cstdint>
#include <string>

#include "tools/ember-verify/console.h"

namespace ember::verify {

struct CheckImageOptions {
    std::string image; // a disk image file, or a block device
    uint64_t seed{0};
    uint64_t writes{0};
    // Region size in bytes (multiple of 4096). 0: taken from the block headers of
    // this run found in the image, or else the whole image.
    uint64_t size{0};
};

// Returns 0 (CHECK PASS) or 1 (CHECK FAIL). Throws SetupError when the image cannot
// be read or is smaller than the region.
int run_check_image(const CheckImageOptions& options, Console& console);

} // namespace ember::verify
