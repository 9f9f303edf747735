// One message per SOCK_SEQPACKET datagram, with up to kMaxFds fds as SCM_RIGHTS: how the daemon
// talks to its zygotes and to `superd run` clients. In util/ because both spawn/ and control/
// use it and neither may depend on the other. Received fds are close-on-exec and owned at once,
// even unwanted ones, so none leaks.
#pragma once

#include <string>
#include <system_error>
#include <vector>

#include "util/unique_fd.hpp"

namespace superd::util::fdpass {

inline constexpr size_t kMaxMessage = 64 * 1024;
// Stdio (3) and a service's idmapped state directories (config::kMaxIdmapDirs, 16) in one request.
inline constexpr size_t kMaxFds = 24;

// Sends one message with optional fds; receives one message and up to `max_fds` fds.
std::error_code send_message(int sock, const std::string& msg, const std::vector<int>& fds = {});
std::error_code recv_message(int sock, std::string& msg, std::vector<UniqueFd>* fds = nullptr, size_t max_fds = 3);

}  // namespace superd::util::fdpass

// Called by its short name across superd (fdpass::...); it lives in util/.
namespace superd {
namespace fdpass = util::fdpass;
}  // namespace superd
