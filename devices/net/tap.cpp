#include "devices/net/tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "vmm/errors.h"

namespace ember {

std::optional<std::string> tap_name_problem(std::string_view name) {
    if (name.empty()) return "the tap name is empty";
    if (name.size() >= IFNAMSIZ)
        return fmt::format("tap name \"{}\" has {} bytes; Linux allows at most {}", name,
                           name.size(), IFNAMSIZ - 1);
    if (name == "." || name == "..") return fmt::format("\"{}\" is not an interface name", name);
    for (char c : name)
        if (c == '/' || c == ':' || c == ',' || static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
            return fmt::format(
                "tap name \"{}\" contains '{}', which Linux does not allow in "
                "interface names",
                name, c <= ' ' ? std::string("a blank or control character") : std::string(1, c));
    return std::nullopt;
}

UniqueFd open_tap(std::string_view name) {
    if (auto why = tap_name_problem(name)) throw Error(*why);
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        const int e = errno;
        if (e == ENOENT || e == ENODEV || e == ENXIO)
            throw Error(fmt::format("tap {}: /dev/net/tun is missing ({}): load the tun module "
                                    "(modprobe tun) or create the device node",
                                    name, std::strerror(e)));
        throw Error(fmt::format("tap {}: cannot open /dev/net/tun: {}", name, std::strerror(e)));
    }
    ifreq req{};
    std::memcpy(req.ifr_name, name.data(), name.size());
    // IFF_NO_PI: no packet-information prefix; no IFF_VNET_HDR (tap.h).
    req.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (::ioctl(fd.get(), TUNSETIFF, &req) != 0) {
        const int e = errno;
        if (e == EPERM)
            throw Error(fmt::format(
                "tap {}: not allowed to attach ({}): create it beforehand for this user (ip "
                "tuntap add {} mode tap user $(id -un)) or run ember with CAP_NET_ADMIN",
                name, std::strerror(e), name));
        if (e == EBUSY)
            throw Error(fmt::format("tap {}: it is in use by another process, or it is a tun "
                                    "(layer 3) interface, not a tap ({})",
                                    name, std::strerror(e)));
        if (e == EINVAL)
            throw Error(fmt::format("tap {}: the kernel refused it ({}): an interface of that "
                                    "name exists and is not a tap, or it was made with other "
                                    "flags (multi-queue, vnet header)",
                                    name, std::strerror(e)));
        throw Error(fmt::format("tap {}: TUNSETIFF failed: {}", name, std::strerror(e)));
    }
    return fd;
}

} // namespace ember
