/*
 * svc_hello: the trivial service every benchmark spawns.
 *
 * It writes "hello\n" to fd 1 (the accepted connection) and exits; it never
 * reads, so do not drive it with loadgen --send (closing a TCP socket with
 * unread input makes the kernel send RST, which discards the reply).
 *
 * Two builds of this one file:
 *  - svc_hello: ordinary C, linked statically where the toolchain allows so
 *    that no dynamic loader runs. glibc's start-up still probes the CPU with
 *    cpuid (which traps to the hypervisor on a VM) and takes ~20 page
 *    faults: about 0.8 ms per process on the VM of the first measurements.
 *  - svc_hello_nolibc (-DSVC_HELLO_NOLIBC, -nostdlib): raw syscalls from
 *    _start, so a spawn costs only fork/exec/exit and the spawner's own
 *    overhead is not drowned by libc start-up.
 */
#ifndef SVC_HELLO_NOLIBC
#include <unistd.h>

int main(void) {
  static const char msg[] = "hello\n";
  /* One write is enough: 6 bytes always fit a fresh socket buffer. A
   * short write or an error only means the client went away; there is
   * nobody to report to, so the exit code is always 0. */
  (void)!write(1, msg, sizeof msg - 1);
  _exit(0);
}
#else
#include <sys/syscall.h>

static long raw_syscall3(long nr, long a, long b, long c) {
  long ret;
#if defined(__x86_64__)
  register long r10 __asm__("r10") = 0; /* unused 4th arg, kept defined */
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
#elif defined(__aarch64__)
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
  ret = x0;
#else
#error "svc_hello_nolibc: only x86_64 and aarch64 are supported"
#endif
  return ret;
}

void _start(void) {
  static const char msg[] = "hello\n";
  raw_syscall3(SYS_write, 1, (long)msg, sizeof msg - 1);
  raw_syscall3(SYS_exit_group, 0, 0, 0);
  for (;;) {
  } /* exit_group does not return; keeps the compiler from assuming so */
}
#endif
