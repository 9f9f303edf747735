#include "spawn/spawn.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <iterator>
#include <memory>

#include "spawn/child.hpp"

namespace superd::spawn {
namespace {

using detail::kMaxSlots;
using detail::kStackSize;

// One stack, reused: the parent is single-threaded and CLONE_VFORK suspends it until the child
// has exec'd or exited, so at most one child runs on it at any time.
alignas(64) char g_stack[kStackSize];

}  // namespace

Child start(const InstancePlan& plan, ChildError& err, std::error_code& ec) noexcept {
  Child c;
  err = {};
  // open_tree() fds of the mount plan; the child fills them, exec closes them (O_CLOEXEC).
  int slots[kMaxSlots];
  int n_slots = plan.service->mounts.slots;
  if (n_slots > kMaxSlots) {
    ec = std::make_error_code(std::errc::argument_list_too_long);
    return c;
  }
  for (int i = 0; i < n_slots; ++i) slots[i] = -1;
  detail::ChildArgs args{&plan, &err, kCaughtSignals, std::size(kCaughtSignals), slots};
  // Block every signal across the clone, so no handler of the daemon runs on the child's side
  // before it has reset them; the child unblocks after resetting.
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid = ::clone(detail::child_main, g_stack + kStackSize,
                      CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWPID | plan.service->clone_flags | SIGCHLD,
                      &args, &pidfd);
  int saved = errno;
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    ec = {saved, std::generic_category()};
    return c;
  }
  c.pid = pid;
  c.pidfd.reset(pidfd);
  return c;
}

}  // namespace superd::spawn
