// The user's description of one network device: `--net tap=NAME
// [,mac=AA:BB:CC:DD:EE:FF][,id=NAME][,rx-bw=BYTES][,rx-ops=N][,tx-bw=BYTES]
// [,tx-ops=N]` (each rate with a -burst); Firecracker's network-interfaces
// body (iface_id, host_dev_name, guest_mac, rx_rate_limiter,
// tx_rate_limiter) carries the same.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "devices/virtio/rate_limiter.h"
#include "vmm/errors.h"
#include "vmm/platform.h"

namespace ember {

using MacAddress = std::array<uint8_t, 6>;

struct NetSpec {
    std::string id;  // empty: "net0", "net1", ... by position (resolve_net_ids)
    std::string tap; // the host's TAP interface
    // The guest's MAC address; none: the guest's driver makes one up (random,
    // locally administered), as with Firecracker without guest_mac.
    std::optional<MacAddress> mac;
    // Firecracker's rx_rate_limiter and tx_rate_limiter: what the guest may
    // receive and send, in bytes (bandwidth) and frames (ops).
    RateLimit rx_limit{};
    RateLimit tx_limit{};
};

// At most this many network devices per VM.
inline constexpr size_t kMaxNets = platform::kMaxNets;

// A --net value (or a MAC) that cannot be used; the message names the part.
class NetSpecError : public Error {
  public:
    using Error::Error;
};

NetSpec parse_net_spec(std::string_view text);
// "AA:BB:CC:DD:EE:FF" (either case). A multicast address (the low bit of the
// first byte) cannot be a NIC's; all zeroes is refused too.
MacAddress parse_mac(std::string_view text);
std::string format_mac(const MacAddress& mac);
// The tap's name, the id (letters, digits, '-', '_', '.'; 1-64 bytes), the
// MAC and the rate limits' buckets, for a spec built without parse_net_spec too (control socket,
// libember, a checkpoint). Throws NetSpecError.
void check_net_spec(const NetSpec& spec);
// Gives devices without an id "netN" (N: position) and refuses two devices
// with one id, two with one tap, or more than kMaxNets. Throws NetSpecError.
void resolve_net_ids(std::vector<NetSpec>& specs);

} // namespace ember
