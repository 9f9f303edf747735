#include "cleanup/sweep.hpp"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <unordered_set>

#include "cleanup/proc.hpp"

namespace superd::cleanup::sweep {
namespace {

constexpr size_t kParallel = 128;  // helpers alive at once
// kill(-1) calls per helper. Few: each walks every process of the host, and zombies (killed
// instances not yet reaped by the host's init) still "receive" it, so it cannot tell done; the
// /proc scan between rounds, which skips zombies, decides.
constexpr int kKillRounds = 3;
constexpr int kMaxRounds = 20;  // helper rounds per UID before giving up
constexpr long kDeadlineMs = 4000;

long now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// A helper: becomes `uid` and signals everything it may signal, which is exactly that UID's
// processes (kill(-1) skips the caller and init), until kill finds none.
pid_t fork_helper(uint32_t uid) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) _exit(2);
  for (int i = 0; i < kKillRounds; ++i) {
    if (::kill(-1, SIGKILL) != 0 && errno == ESRCH) _exit(0);
    ::usleep(1000);
  }
  _exit(0);
}

// One round: a helper for each UID, at most kParallel at a time; waits for them all.
void kill_round(const std::vector<uint32_t>& uids) {
  size_t running = 0;
  for (uint32_t uid : uids) {
    if (running == kParallel) {
      while (::waitpid(-1, nullptr, 0) < 0 && errno == EINTR) {
      }
      --running;
    }
    if (fork_helper(uid) > 0) ++running;
  }
  while (running > 0) {
    if (::waitpid(-1, nullptr, 0) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    --running;
  }
}

void report(int fd, uint32_t uid, Step step, int err) {
  Result r{uid, step, err};
  while (::write(fd, &r, sizeof r) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void run(std::vector<uint32_t> pending, const ipc::Roots& roots, int out) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ::prctl(PR_SET_NAME, "superd-sweep");
  // A fork of the daemon: none of its handlers, and none of its fds (a listening socket held
  // here would keep queueing connections after the daemon closed it).
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE}) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (out > 3) ::close_range(3, static_cast<unsigned>(out) - 1, 0);
  ::close_range(static_cast<unsigned>(out) + 1, ~0U, 0);
  uint32_t lo = UINT32_MAX, hi = 0;
  for (uint32_t u : pending) lo = std::min(lo, u), hi = std::max(hi, u);
  long deadline = now_ms() + kDeadlineMs;
  std::unordered_set<uint32_t> clear;
  for (int round = 0; round < kMaxRounds && !pending.empty(); ++round) {
    kill_round(pending);
    std::unordered_set<uint32_t> alive;
    for (uint32_t u : proc::uids_in_range(lo, hi)) alive.insert(u);
    std::vector<uint32_t> still;
    for (uint32_t u : pending) (alive.count(u) ? still.push_back(u) : (void)clear.insert(u));
    pending.swap(still);
    if (now_ms() > deadline) break;
  }
  for (uint32_t u : pending) report(out, u, Step::processes, EBUSY);
  // IPC last: a process still running could create more.
  std::unordered_set<uint32_t> failed;
  for (const auto& f : ipc::remove_owned_by(clear, roots)) {
    if (failed.insert(f.owner).second) report(out, f.owner, Step::ipc, f.err);
  }
  for (uint32_t u : clear)
    if (!failed.count(u)) report(out, u, Step::done, 0);
  _exit(0);
}

}  // namespace

std::optional<Sweeper> start(const std::vector<uint32_t>& uids, const ipc::Roots& roots, std::error_code& ec) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ec = {errno, std::generic_category()};
    return std::nullopt;
  }
  UniqueFd rd(fds[0]), wr(fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) {
    ec = {errno, std::generic_category()};
    return std::nullopt;
  }
  if (pid == 0) {
    rd.reset();
    run(uids, roots, wr.get());
  }
  Sweeper s;
  s.pid = pid;
  s.results = std::move(rd);
  return s;
}

}  // namespace superd::cleanup::sweep
