#include "spawn/spawn.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>
#include <memory>

#include <fmt/format.h>

#include "spawn/child.hpp"
#include "util/log.hpp"

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
  if (!detail::fill_idmap_slots(plan, slots)) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return c;
  }
  detail::ChildArgs args{&plan, &err, kCaughtSignals, std::size(kCaughtSignals), slots};
  // Block every signal across the clone, so no handler of the daemon runs on the child's side
  // before it has reset them; the child unblocks after resetting.
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid =
      ::clone(detail::child_main, g_stack + kStackSize,
              CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWPID | plan.service->clone_flags | SIGCHLD, &args, &pidfd);
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

Launch launch(const InstancePlan& plan) {
  ChildError cerr;
  std::error_code ec;
  Launch out{start(plan, cerr, ec), {}};
  if (ec)
    out.failure = "clone: " + ec.message();
  else if (cerr.step != Step::none)
    out.failure = reap_failed_child(*plan.service, out.child, cerr);
  return out;
}

int pidfd_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::string reap_failed_child(const ServicePlan& plan, const Child& child, const ChildError& err) {
  int st = 0;
  while (::waitpid(child.pid, &st, 0) < 0 && errno == EINTR) {
  }
  std::string what =
      err.step == Step::mounts ? fmt::format(" ({})", plan.mounts.describe(static_cast<size_t>(err.detail))) : "";
  return fmt::format("step {}{} failed: {}", step_name(err.step), what, log::errno_text(err.err));
}

}  // namespace superd::spawn
