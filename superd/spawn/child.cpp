// The child between clone and exec. Runs on a borrowed stack in the parent's memory, with the
// parent suspended: nothing here may allocate, lock, log or throw; each step is one or a few
// syscalls, and a failure is recorded as {step, errno} before _exit. The order is a checklist:
//   signals, a session of its own, stdio, close everything else, mounts (in the new mount
//   namespace), limits, umask/nice, cwd, bounding set, identity, ambient caps, no_new_privs,
//   Landlock scopes, seccomp (last), exec.
// Everything it applies was computed by the parent (spawn/plan.cpp, sandbox/).
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "sandbox/landlock.hpp"
#include "spawn/child.hpp"

namespace superd::spawn::detail {

// Not instrumented by AddressSanitizer (tests/sanitize/run): its runtime is exactly what this
// code must not call. Before each noreturn call (fail, _exit) it runs __asan_handle_no_return,
// which does not know the borrowed stack, warns, and opens its log file: in the instance's
// namespaces it cannot, and it ends the child before the {step, errno} record is written.
#define SUPERD_CHILD_CODE __attribute__((no_sanitize("address")))

namespace {

[[noreturn]] SUPERD_CHILD_CODE void fail(ChildArgs* a, Step step, int detail = -1) noexcept {
  a->err->err = errno;
  a->err->detail = detail;
  a->err->step = step;
  _exit(127);
}

bool move_fd(int from, int to) noexcept {
  if (from == to) return ::fcntl(to, F_SETFD, 0) == 0;  // dup2 would keep FD_CLOEXEC
  return ::dup2(from, to) == to;
}

int capset_all(uint64_t mask) noexcept {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2] = {};
  for (int i = 0; i < 2; ++i) {
    uint32_t part = static_cast<uint32_t>(mask >> (32 * i));
    d[i].effective = d[i].permitted = d[i].inheritable = part;
  }
  return static_cast<int>(::syscall(SYS_capset, &h, d));
}

}  // namespace

SUPERD_CHILD_CODE int child_main(void* arg) noexcept {
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

  // 1b. A session of its own, without a controlling terminal: superd started from a shell
  // shares that shell's terminal, and through /dev/tty an instance could TIOCSTI a command into
  // it (or take the terminal's SIGINT meant for superd). A terminal fd passed in (superd run's
  // stdio) is still readable and writable, but no longer its controlling terminal.
  if (::setsid() < 0) fail(a, Step::session);

  // 2. stdio. The parent's 0-2 are always open, so the sources are all >= 3; fd 2 is placed
  // first, so that in listen-fds mode moving the connection onto 3 cannot clobber it.
  if (!move_fd(p.stderr_fd, 2)) fail(a, Step::stdio);
  if (p.passthrough) {
    if (!move_fd(p.stdin_fd, 0) || !move_fd(p.stdout_fd, 1)) fail(a, Step::stdio);
  } else if (s.stdio == config::Stdio::socket) {
    if (!move_fd(p.conn_fd, 0) || !move_fd(p.conn_fd, 1)) fail(a, Step::stdio);
  } else if (p.n_listen_fds) {
    // Wait mode: the listening sockets onto 3, 4, ... A source may sit where another goes, so
    // every one is first duplicated above the target range.
    int high[config::kMaxListenFds];
    for (unsigned i = 0; i < p.n_listen_fds; ++i)
      if ((high[i] = ::fcntl(p.listen_fds[i], F_DUPFD_CLOEXEC, 3 + static_cast<int>(p.n_listen_fds))) < 0)
        fail(a, Step::stdio);
    for (unsigned i = 0; i < p.n_listen_fds; ++i)
      if (::dup2(high[i], 3 + static_cast<int>(i)) < 0) fail(a, Step::stdio);
    if (!move_fd(p.null_fd, 0) || !move_fd(p.null_fd, 1)) fail(a, Step::stdio);
  } else {
    if (!move_fd(p.conn_fd, 3) || !move_fd(p.null_fd, 0) || !move_fd(p.null_fd, 1)) fail(a, Step::stdio);
  }

  // 3. Nothing else crosses exec, whatever the parent forgot to mark close-on-exec. With
  // idmapped trees to attach in step 4 (their fds are in the slots), everything is marked
  // close-on-exec instead of closed now: the same fds go, at exec.
  unsigned first_closed = p.passthrough || s.stdio == config::Stdio::socket ? 3 : 3 + std::max(1u, p.n_listen_fds);
  unsigned close_how = p.n_idmap_fds ? CLOSE_RANGE_CLOEXEC : 0;
  if (::syscall(SYS_close_range, first_closed, ~0U, close_how) != 0) fail(a, Step::close_fds);

  // 4. The filesystem view, inside the mount namespace clone() created.
  if (s.mount_ns) {
    int failed =
        sandbox::apply(s.mounts, a->slots, p.uid, a->from_zygote ? sandbox::Which::per_instance : sandbox::Which::all);
    if (failed >= 0) fail(a, Step::mounts, failed);
  }

  // 5. Resource limits (first the fd limit superd was started with; superd raised its own).
  if (s.reset_nofile && ::setrlimit(RLIMIT_NOFILE, &s.nofile) != 0) fail(a, Step::rlimits);
  for (const config::Rlimit& l : s.limits) {
    rlimit rl{l.value, l.value};
    if (::setrlimit(static_cast<__rlimit_resource>(l.resource), &rl) != 0) fail(a, Step::rlimits);
  }

  // 6. umask and nice.
  ::umask(s.umask);
  if (s.set_nice && ::setpriority(PRIO_PROCESS, 0, s.nice) != 0) fail(a, Step::umask_nice);

  // 7. Working directory (while still root, in the final view).
  if (::chdir(s.cwd.c_str()) != 0) fail(a, Step::chdir);

  // 8. Bounding set: what no later exec can regain. One prctl per capability; still root here.
  if (s.drop_bounding_set && !a->from_zygote && !drop_bounding_set(s)) fail(a, Step::capability_bounding_set);
  if (s.cap_ambient && ::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) fail(a, Step::keep_caps);

  // 9. Identity: supplementary groups, then GID, then UID (after which nothing can be undone).
  if (::setgroups(s.groups.size(), s.groups.data()) != 0) fail(a, Step::setgroups);
  if (::setresgid(p.gid, p.gid, p.gid) != 0) fail(a, Step::setresgid);
  if (::setresuid(p.uid, p.uid, p.uid) != 0) fail(a, Step::setresuid);

  // 10. Ambient capabilities (e.g. CAP_NET_BIND_SERVICE) survive exec as an unprivileged UID.
  if (s.cap_ambient) {
    if (capset_all(s.cap_ambient) != 0) fail(a, Step::ambient_caps);
    for (int c = 0; c <= s.cap_last; ++c)
      if ((s.cap_ambient & (1ULL << c)) && ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0)
        fail(a, Step::ambient_caps);
  }

  // 10b. A static user's instance dies with superd: a restarted superd can find and sweep an
  // orphaned dynamic UID, never a static one. Set after the UID switch, which would clear it.
  if (s.static_identity && ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(a, Step::parent_death);

  // 11. no_new_privs: setuid bits and file capabilities are inert from here on.
  if (s.no_new_privs && !a->from_zygote && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(a, Step::no_new_privs);

  // 11b. Landlock scopes: abstract UNIX sockets and signals stay within this instance's own
  // domain. From a zygote this nests a domain in the zygote's, so that the instances it clones
  // cannot reach each other either.
  if (s.landlock_scopes && sandbox::landlock::restrict_self(s.landlock_scopes) != 0) fail(a, Step::landlock);

  // 12. seccomp, last: the filter compiled at start-up; from here only exec remains.
  // From a zygote the filter's base is already in place (inherited): an instance loads only
  // the tail, if its policy has one (it refuses again what the base let through for the steps
  // above).
  const seccomp::Program* filter = a->from_zygote ? s.tail_filter.get() : s.filter.get();
  if (filter && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter->fprog()) != 0) fail(a, Step::seccomp);

  // 13. Exec.
  ::execve(s.path.c_str(), p.argv.data(), p.envp.data());
  fail(a, Step::exec);
}

}  // namespace superd::spawn::detail
