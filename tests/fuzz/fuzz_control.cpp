// fuzz_control: a control-socket request as the daemon receives it. The input's first byte
// says how many fds (0..9, /dev/null duplicates) ride along as SCM_RIGHTS; the rest is the
// message, sent as one SOCK_SEQPACKET datagram over a socketpair and read back with
// control::recv_message (at most 3 fds kept, the rest closed), then decoded by
// control::parse_request, all the daemon does before it acts on a request.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "control/control.hpp"
#include "control/request.hpp"

namespace control = superd::control;

namespace {
int sockets[2] = {-1, -1};
int null_fd = -1;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets) != 0) std::abort();
  // A 64 KiB message must fit the send buffer.
  int size = 4 * static_cast<int>(control::kMaxMessage);
  ::setsockopt(sockets[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  ::setsockopt(sockets[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) std::abort();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t nfds = data[0] % 10;
  const std::string msg(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (msg.size() > control::kMaxMessage) return 0;  // a datagram the daemon's peer could not send
  std::vector<int> fds(nfds, null_fd);
  if (control::send_message(sockets[0], msg, fds)) return 0;
  std::string got;
  std::vector<superd::UniqueFd> received;
  if (!control::recv_message(sockets[1], got, &received, 3)) {
    if (got != msg || received.size() != std::min<size_t>(nfds, 3)) std::abort();
    std::string error;
    auto req = control::parse_request(got, error);
    if (!req && error.empty()) std::abort();  // every refusal says why
  }
  return 0;
}
