// The host side of a virtio-net device: a TAP interface, opened through
// /dev/net/tun. One read() is one Ethernet frame, one write() sends one.
//
// Opened without IFF_VNET_HDR: ember offers the guest no checksum or
// segmentation offloads, so frames cross as plain Ethernet frames and the
// virtio-net header the guest puts before each frame is never handed to the
// host kernel (a guest-written GSO header would otherwise reach its stack).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "vmm/unique_fd.h"

namespace ember {

// Interface names: 1-15 bytes (IFNAMSIZ with its NUL), no '/', no blanks,
// not "." or "..": what the kernel accepts for a new interface. Returns why a
// name is not one, or nullopt.
std::optional<std::string> tap_name_problem(std::string_view name);

// Attaches to the TAP interface `name`, creating it when it does not exist
// (that needs CAP_NET_ADMIN; an interface made beforehand with `ip tuntap add
// NAME mode tap user USER` does not). The fd is non-blocking. Throws
// ember::Error with a message naming the interface and what to do.
UniqueFd open_tap(std::string_view name);

} // namespace ember
