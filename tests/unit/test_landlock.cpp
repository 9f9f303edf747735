// Landlock scoping: the ABI decision (pure), and restrict_self() in forked children that report
// what the kernel answered through their exit code (0 for success, else the errno).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "sandbox/landlock.hpp"

namespace ll = superd::sandbox::landlock;

namespace {

template <class Probe>
int in_child(uint64_t scopes, Probe probe) {
  pid_t pid = ::fork();
  if (pid < 0) FAIL("fork failed");
  if (pid == 0) {
    if (scopes && (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ll::restrict_self(scopes) != 0)) ::_exit(250);
    ::_exit(probe());
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

socklen_t abstract_addr(sockaddr_un& sa, const std::string& name) {
  sa = {};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path + 1, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

int connect_abstract(const std::string& name) {
  sockaddr_un sa;
  socklen_t len = abstract_addr(sa, name);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), len);
  int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

}  // namespace

TEST_CASE("landlock: which ABI offers which scope") {
  const uint64_t both = ll::kScopeAbstractUnixSocket | ll::kScopeSignal;
  CHECK(ll::scopes_of_abi(-ENOSYS) == 0);
  CHECK(ll::scopes_of_abi(5) == 0);
  CHECK(ll::scopes_of_abi(6) == both);
  CHECK(ll::scopes_of_abi(7) == both);
  CHECK(ll::describe_missing(both, 4) ==
        "abstract UNIX socket and signal scoping needs Landlock ABI 6; this kernel has Landlock ABI 4: "
        "restrict_abstract_sockets/restrict_signals are not enforced");
  CHECK(ll::describe_missing(ll::kScopeSignal, -ENOSYS)
            .find("signal scoping needs Landlock ABI 6; this kernel has no Landlock") == 0);
  CHECK(ll::describe_missing(both, -EOPNOTSUPP).find("Landlock is disabled") != std::string::npos);
}

TEST_CASE("landlock: scopes, in a child") {
  if (ll::supported_scopes() != (ll::kScopeAbstractUnixSocket | ll::kScopeSignal)) {
    WARN("Landlock ABI " << ll::abi_version() << ": no scoping here; skipped");
    return;
  }
  // The parent, outside any domain, listens on an abstract name.
  const std::string name = "superd-unit-landlock-" + std::to_string(::getpid());
  int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa;
  socklen_t len = abstract_addr(sa, name);
  REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&sa), len) == 0);
  REQUIRE(::listen(l, 8) == 0);

  CHECK(in_child(0, [&] { return connect_abstract(name); }) == 0);
  CHECK(in_child(ll::kScopeAbstractUnixSocket, [&] { return connect_abstract(name); }) == EPERM);
  CHECK(in_child(ll::kScopeSignal, [&] { return connect_abstract(name); }) == 0);  // only what is asked

  // Signals to a process outside the domain (the parent), even signal 0; its own still work.
  CHECK(in_child(ll::kScopeSignal, [] { return ::kill(::getppid(), 0) == 0 ? 0 : errno; }) == EPERM);
  CHECK(in_child(ll::kScopeSignal, [] { return ::kill(::getpid(), 0) == 0 ? 0 : errno; }) == 0);
  CHECK(in_child(ll::kScopeAbstractUnixSocket, [] { return ::kill(::getppid(), 0) == 0 ? 0 : errno; }) == 0);

  // Nesting: a process of the same domain reaches the socket; one that restricted itself again
  // (as each instance does inside its zygote's domain) does not, since the socket lies outside
  // its own domain. The sibling case (two instances of one zygote) is test_confinement.py's.
  CHECK(in_child(ll::kScopeAbstractUnixSocket, [] {
          const std::string inner = "superd-unit-landlock-inner-" + std::to_string(::getpid());
          int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
          sockaddr_un a;
          socklen_t n = abstract_addr(a, inner);
          if (::bind(s, reinterpret_cast<sockaddr*>(&a), n) != 0 || ::listen(s, 8) != 0) return 240;
          // A forked child shares this domain: allowed.
          if (in_child(0, [&] { return connect_abstract(inner); }) != 0) return 241;
          // A child with a domain of its own (nested): refused.
          if (in_child(ll::kScopeAbstractUnixSocket, [&] { return connect_abstract(inner); }) != EPERM) return 242;
          return 0;
        }) == 0);
  ::close(l);
}
