// Creating an instance's process. clone(CLONE_VM | CLONE_VFORK) gives vfork's cost (~40 us,
// independent of superd's RSS, where fork() costs 0.6-2.8 ms here); CLONE_PIDFD hands back a
// race-free handle for waiting and signalling; CLONE_NEWPID makes the service PID 1 of its own
// PID namespace, so that when it exits the kernel kills every process it left behind (a
// daemonised child included) and the UID is provably free once the main process is reaped.
//
// While the child runs, the parent is suspended and the two share memory: the child may only
// read the prepared plan and write its {step, errno} record, like glibc's posix_spawn does.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <system_error>

#include "spawn/plan.hpp"
#include "util/unique_fd.hpp"

namespace superd::spawn {

struct Child {
  pid_t pid = -1;
  UniqueFd pidfd;
};

// The signals the daemon catches (its signal_set) or ignores (SIGPIPE). A child resets them to
// SIG_DFL before it unblocks signals (a zygote once, for all its instances): the daemon's
// handlers must not run there, and SIG_IGN would survive exec.
inline constexpr int kCaughtSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGUSR2};

// Starts the instance. On a clone failure returns an error code; on a failure inside the child
// (before or at exec) returns the child (already exited, still to be reaped) and fills `err`.
Child start(const InstancePlan& plan, ChildError& err, std::error_code& ec) noexcept;

// start(), and on a failure the child reaped: either a running child, or why not ("clone: ..."
// or the failed step, as reap_failed_child says). For the daemon, whose failures are values.
struct Launch {
  Child child;
  std::string failure;  // empty: `child` runs
  explicit operator bool() const noexcept { return failure.empty(); }
};
Launch launch(const InstancePlan& plan);

// pidfd_send_signal(2): a signal to a process we hold a pidfd of (never a recycled PID).
int pidfd_signal(int pidfd, int sig) noexcept;

// A child that failed a step of its checklist has exited: reaps it (blocking: it is gone
// already) and says which step failed and why, naming the mount op for Step::mounts.
std::string reap_failed_child(const ServicePlan& plan, const Child& child, const ChildError& err);

}  // namespace superd::spawn
