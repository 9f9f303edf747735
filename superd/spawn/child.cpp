// The child between clone and exec. Runs on a borrowed stack in the parent's memory, with the
// parent suspended: nothing here may allocate, lock, log or throw; each step is one or a few
// syscalls, and a failure is recorded as {step, errno} before _exit. The order is a checklist:
// signals, stdio, close everything else, limits, umask/nice, cwd, identity, exec.
// (Sandbox steps slot in before identity; the seccomp filter will be the last step before exec.)
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "spawn/child.hpp"

namespace superd::spawn::detail {

namespace {

[[noreturn]] void fail(ChildArgs* a, Step step) noexcept {
  a->err->err = errno;
  a->err->step = step;
  _exit(127);
}

bool move_fd(int from, int to) noexcept {
  if (from == to) return ::fcntl(to, F_SETFD, 0) == 0;  // dup2 would keep FD_CLOEXEC
  return ::dup2(from, to) == to;
}

}  // namespace

int child_main(void* arg) noexcept {
  auto* a = static_cast<ChildArgs*>(arg);
  const InstancePlan& p = *a->plan;
  const ServicePlan& s = *p.service;

  // 1. Signals: the daemon's handlers must not run here; SIG_IGN (SIGPIPE) would survive exec.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (size_t i = 0; i < a->n_caught; ++i)
    if (::sigaction(a->caught[i], &dfl, nullptr) != 0) fail(a, Step::signals);
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(a, Step::signals);

  // 2. stdio. The parent's 0-2 are always open, so the sources are all >= 3; fd 2 is placed
  // first, so that in listen-fds mode moving the connection onto 3 cannot clobber it.
  if (!move_fd(p.stderr_fd, 2)) fail(a, Step::stdio);
  if (s.stdio == config::Stdio::socket) {
    if (!move_fd(p.conn_fd, 0) || !move_fd(p.conn_fd, 1)) fail(a, Step::stdio);
  } else {
    if (!move_fd(p.conn_fd, 3) || !move_fd(p.null_fd, 0) || !move_fd(p.null_fd, 1)) fail(a, Step::stdio);
  }

  // 3. Nothing else crosses exec, whatever the parent forgot to mark close-on-exec.
  unsigned first_closed = s.stdio == config::Stdio::socket ? 3 : 4;
  if (::syscall(SYS_close_range, first_closed, ~0U, 0) != 0) fail(a, Step::close_fds);

  // 4. Resource limits.
  for (const config::Rlimit& l : s.limits) {
    rlimit rl{l.value, l.value};
    if (::setrlimit(static_cast<__rlimit_resource>(l.resource), &rl) != 0) fail(a, Step::rlimits);
  }

  // 5. umask and nice.
  ::umask(s.umask);
  if (s.set_nice && ::setpriority(PRIO_PROCESS, 0, s.nice) != 0) fail(a, Step::umask_nice);

  // 6. Working directory (while still root: the target may be readable only to root's lookup).
  if (::chdir(s.cwd.c_str()) != 0) fail(a, Step::chdir);

  // 7. Identity: no supplementary groups, then GID, then UID (after which nothing can be undone).
  if (::setgroups(0, nullptr) != 0) fail(a, Step::setgroups);
  if (::setresgid(p.gid, p.gid, p.gid) != 0) fail(a, Step::setresgid);
  if (::setresuid(p.uid, p.uid, p.uid) != 0) fail(a, Step::setresuid);

  // 8. Exec.
  ::execve(s.path.c_str(), p.argv.data(), p.envp.data());
  fail(a, Step::exec);
}

}  // namespace superd::spawn::detail
