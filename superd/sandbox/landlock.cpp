// Landlock scoping through the raw syscalls (glibc 2.36 has no wrappers). restrict_self() runs
// after clone in the child and the zygote: no allocation, no library call but syscall().
#include "sandbox/landlock.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace superd::sandbox::landlock {
namespace {

constexpr unsigned kCreateRulesetVersion = 1U << 0;  // LANDLOCK_CREATE_RULESET_VERSION

// struct landlock_ruleset_attr as of ABI 6; the kernel accepts the size it is given (an
// older kernel refuses the unknown trailing field with E2BIG, which only a kernel without
// `scoped` does, and supported_scopes() already said so).
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

int probe_abi() noexcept {
  long v = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  return v > 0 ? static_cast<int>(v) : -errno;
}

std::atomic<bool> g_warned{false};

}  // namespace

int abi_version() noexcept {
  static const int abi = probe_abi();
  return abi;
}

uint64_t scopes_of_abi(int abi) noexcept {
  return abi >= kScopeAbi ? kScopeAbstractUnixSocket | kScopeSignal : 0;
}

uint64_t supported_scopes() noexcept {
  return scopes_of_abi(abi_version());
}

std::string describe_missing(uint64_t missing, int abi) {
  std::string what;
  if (missing & kScopeAbstractUnixSocket) what = "abstract UNIX socket";
  if (missing & kScopeSignal) what += what.empty() ? "signal" : " and signal";
  std::string have = abi > 0          ? "this kernel has Landlock ABI " + std::to_string(abi)
                     : abi == -ENOSYS ? "this kernel has no Landlock"
                                      : "Landlock is disabled on this kernel";
  return what + " scoping needs Landlock ABI " + std::to_string(kScopeAbi) + "; " + have +
         ": restrict_abstract_sockets/restrict_signals are not enforced";
}

std::optional<std::string> warning_once(uint64_t missing) {
  if (!missing || g_warned.exchange(true)) return std::nullopt;
  return describe_missing(missing, abi_version());
}

int restrict_self(uint64_t scopes) noexcept {
  RulesetAttr attr{0, 0, scopes};
  long fd = ::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
  if (fd < 0) return -1;
  long rc = ::syscall(SYS_landlock_restrict_self, fd, 0);
  int saved = errno;
  ::close(static_cast<int>(fd));
  errno = saved;
  return rc == 0 ? 0 : -1;
}

}  // namespace superd::sandbox::landlock
