// bench/uid_pool: lease + release of the dynamic UID pool, in ns per pair, at 0%, 50% and 99%
// occupancy, for the default range (4336 UIDs) and for a range of one million. It also proves
// the fast path makes no system call: the timed loop runs again under a seccomp filter that
// traps *every* syscall to a SIGSYS handler that counts it (clock_gettime is a vDSO call).
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "uid_pool/pool.hpp"

using superd::uid_pool::Pool;

namespace {

volatile sig_atomic_t g_trapped = 0;

void on_sigsys(int, siginfo_t*, void*) { g_trapped = g_trapped + 1; }

// Every syscall but rt_sigreturn (to leave the handler) and exit_group (to report) traps.
void trap_all_syscalls() {
  sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof f / sizeof f[0]), f};
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSYS, &sa, nullptr);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

// Fills the pool to `occupancy`, then times `ops` release+lease pairs (each release of the
// oldest held UID followed by a lease), so occupancy stays constant.
double measure(uint32_t size, double occupancy, uint32_t ops, bool count_syscalls, long& syscalls) {
  Pool pool(100000, 100000 + size - 1);
  std::vector<uint32_t> held;
  uint32_t target = static_cast<uint32_t>(size * occupancy);
  if (target == 0) target = 1;  // 0%: one UID goes round
  held.reserve(target);
  for (uint32_t i = 0; i < target; ++i) held.push_back(*pool.lease());
  // Warm the ring: release and re-lease everything once so the FIFO path is the one timed.
  for (uint32_t i = 0; i < target; ++i) {
    pool.release(held[i]);
    held[i] = *pool.lease();
  }
  if (count_syscalls) trap_all_syscalls();
  g_trapped = 0;
  auto t0 = std::chrono::steady_clock::now();
  uint32_t idx = 0;
  // Self-test of the counter: UID_POOL_SELFTEST=1 adds one real syscall per pair (expect > 0).
  static const bool self_test = std::getenv("UID_POOL_SELFTEST") != nullptr;
  for (uint32_t i = 0; i < ops; ++i) {
    if (self_test) syscall(SYS_getppid);
    pool.release(held[idx]);
    held[idx] = *pool.lease();
    if (++idx == target) idx = 0;
  }
  auto t1 = std::chrono::steady_clock::now();
  syscalls = g_trapped;
  // In the counting child, leave at once: freeing the pool would call munmap, which traps.
  if (count_syscalls) syscall(SYS_exit_group, syscalls > 250 ? 250 : static_cast<int>(syscalls));
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / ops;
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t ops = argc > 1 ? static_cast<uint32_t>(std::atoi(argv[1])) : 5000000;
  std::printf("| range | occupancy | ns per lease+release | syscalls in the timed loop |\n|---|---|---|---|\n");
  for (uint32_t size : {4336u, 1000000u}) {
    for (double occ : {0.0, 0.5, 0.99}) {
      long sys = 0;
      double ns = measure(size, occ, ops, false, sys);
      // The syscall count runs in a child: the trap filter cannot be removed once installed.
      pid_t pid = fork();
      if (pid == 0) {
        long counted = 0;
        measure(size, occ, ops / 10, true, counted);
        // write() is trapped too, so the count leaves through the exit status (exit_group).
        syscall(SYS_exit_group, counted > 250 ? 250 : static_cast<int>(counted));
      }
      int st = 0;
      waitpid(pid, &st, 0);
      int counted = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      std::printf("| %u | %.0f%% | %.1f | %d |\n", size, occ * 100, ns, counted);
    }
  }
  return 0;
}
