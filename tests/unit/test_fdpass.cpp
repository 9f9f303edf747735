// util/fdpass: one message per datagram with SCM_RIGHTS fds, received close-on-exec and owned,
// unwanted ones included (none leaks), oversize messages and fd counts refused.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fdpass.hpp"

using namespace superd;

namespace {
size_t open_fds() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}
struct Pair {
  UniqueFd a, b;
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};
}  // namespace

TEST_CASE("a message and its fds arrive whole, close-on-exec, the same files", "[fdpass]") {
  Pair p;
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)), self(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  REQUIRE(fdpass::send_message(p.a.get(), "hello", {null_fd.get(), self.get()}) == std::error_code());
  std::string msg;
  std::vector<UniqueFd> got;
  REQUIRE(fdpass::recv_message(p.b.get(), msg, &got, 3) == std::error_code());
  CHECK(msg == "hello");
  REQUIRE(got.size() == 2);
  struct stat s1 {
  }, s2{};
  ::fstat(got[0].get(), &s1);
  ::fstat(null_fd.get(), &s2);
  CHECK((s1.st_ino == s2.st_ino && s1.st_dev == s2.st_dev));
  CHECK((::fcntl(got[1].get(), F_GETFD) & FD_CLOEXEC));
}

TEST_CASE("more fds than wanted are refused and closed; an oversize message is refused", "[fdpass]") {
  Pair p;
  size_t before = open_fds();
  {
    UniqueFd f(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    REQUIRE(fdpass::send_message(p.a.get(), "x", {f.get(), f.get()}) == std::error_code());
  }
  std::string msg;
  std::vector<UniqueFd> got;
  CHECK(fdpass::recv_message(p.b.get(), msg, &got, 1) == std::make_error_code(std::errc::invalid_argument));
  CHECK(got.empty());
  CHECK(open_fds() == before);  // the two received fds were closed, not leaked
  CHECK(fdpass::send_message(p.a.get(), std::string(fdpass::kMaxMessage + 1, 'x')) ==
        std::make_error_code(std::errc::message_size));
  p.a.reset();  // peer gone: a zero-length read
  CHECK(fdpass::recv_message(p.b.get(), msg) == std::make_error_code(std::errc::connection_reset));
}
