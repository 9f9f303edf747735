/* probe's escape verbs (tests/integration/test_escapes.py): each makes one attack from inside an
 * instance and prints what happened, "NAME ERRNO" or "NAME ok", so the test can assert the
 * refusal. Kept apart from probe.c, which reports what an instance sees; these try to leave. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe_escape.h"

static const char* result(long rc) {
  return rc < 0 ? strerrorname_np(errno) : "ok";
}

/* Closes an fd a call returned (so "ok" leaves nothing open) and reports. */
static void report_fd(FILE* out, const char* name, long rc) {
  int err = errno;
  if (rc > 2) close((int)rc);
  errno = err;
  fprintf(out, "%s %s\n", name, result(rc));
}

/* clone3 with namespace flags: the filter cannot see clone3's flags (they are in memory), so it
 * must refuse the call as a whole (ENOSYS, and libc falls back to clone, which it can check). */
static long try_clone3(uint64_t flags) {
  struct {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
  } args = {.flags = flags, .exit_signal = SIGCHLD};
  long rc = syscall(SYS_clone3, &args, sizeof args);
  if (rc == 0) _exit(0);
  if (rc > 0) waitpid((pid_t)rc, NULL, 0);
  return rc;
}

static long try_clone(unsigned long flags) {
  long rc = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
  if (rc == 0) _exit(0);
  if (rc > 0) waitpid((pid_t)rc, NULL, 0);
  return rc;
}

static void namespaces(FILE* out) {
  fprintf(out, "unshare_user %s\n", result(unshare(CLONE_NEWUSER)));
  fprintf(out, "unshare_user_ns %s\n", result(unshare(CLONE_NEWUSER | CLONE_NEWNS)));
  fprintf(out, "clone_user %s\n", result(try_clone(CLONE_NEWUSER)));
  fprintf(out, "clone3_user %s\n", result(try_clone3(CLONE_NEWUSER)));
  fprintf(out, "clone3_pid %s\n", result(try_clone3(CLONE_NEWUSER | CLONE_NEWPID)));
  fprintf(out, "clone3_net %s\n", result(try_clone3(CLONE_NEWUSER | CLONE_NEWNET)));
}

/* Kernel attack surfaces, each called in a form an unprivileged process may use. */
static void kernel_surfaces(FILE* out) {
  unsigned char params[120] = {0}; /* struct io_uring_params */
  report_fd(out, "io_uring_setup", syscall(SYS_io_uring_setup, 1, params));
  /* bpf(BPF_MAP_CREATE, {BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry}) */
  uint32_t attr[16] = {2, 4, 4, 1};
  report_fd(out, "bpf", syscall(SYS_bpf, 0, attr, sizeof attr));
  struct perf_event_attr pe = {.type = PERF_TYPE_SOFTWARE, .size = sizeof pe, .config = PERF_COUNT_SW_TASK_CLOCK};
  pe.exclude_kernel = pe.exclude_hv = 1; /* self-monitoring: allowed at perf_event_paranoid 2 */
  report_fd(out, "perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
  report_fd(out, "userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */));
  fprintf(out, "keyctl %s\n", result(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* SESSION */, 1)));
  fprintf(out, "add_key %s\n", result(syscall(SYS_add_key, "user", "superd-probe", "x", 1, -2 /* PROCESS */)));
  fprintf(out, "request_key %s\n", result(syscall(SYS_request_key, "user", "superd-probe", NULL, 0)));
}

/* Reaches for each PID read from the connection's first line (host PIDs the test knows: another
 * instance, a zygote, superd): trace it, read its memory and environment, open a pidfd, kill it.
 * Then lists the PIDs this instance can see at all. */
static void reach(FILE* out) {
  char line[512];
  if (!fgets(line, sizeof line, stdin)) line[0] = 0;
  for (char *save = NULL, *tok = strtok_r(line, " \r\n", &save); tok; tok = strtok_r(NULL, " \r\n", &save)) {
    pid_t pid = (pid_t)atoi(tok);
    long rc = ptrace(PTRACE_SEIZE, pid, NULL, NULL);
    fprintf(out, "ptrace %d %s\n", pid, result(rc));
    if (rc == 0) ptrace(PTRACE_DETACH, pid, NULL, NULL);
    char buf[64];
    struct iovec local = {buf, sizeof buf}, remote = {(void*)0x400000, sizeof buf};
    fprintf(out, "process_vm_readv %d %s\n", pid, result(syscall(SYS_process_vm_readv, pid, &local, 1, &remote, 1, 0)));
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char env[4096];
    ssize_t n = fd < 0 ? -1 : read(fd, env, sizeof env);
    fprintf(out, "environ %d %s\n", pid, n < 0 ? strerrorname_np(errno) : "ok");
    if (n > 0) fprintf(out, "environ-bytes %d %.*s\n", pid, (int)n, env); /* NULs and all: the test looks */
    if (fd >= 0) close(fd);
    report_fd(out, "pidfd_open", syscall(SYS_pidfd_open, pid, 0));
    fprintf(out, "kill %d %s\n", pid, result(kill(pid, SIGKILL)));
  }
  fprintf(out, "visible");
  DIR* d = opendir("/proc");
  struct dirent* e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') fprintf(out, " %s", e->d_name);
  if (d) closedir(d);
  fprintf(out, "\n");
}

/* TIOCSTI: pushes a line into the input queue of a terminal, as if typed there; on superd's
 * controlling terminal it would run in the operator's shell. Tried on fds 0-2 and /dev/tty. */
static void tiocsti(FILE* out) {
  static const char line[] = "echo SUPERD-INJECTED\n";
  for (int fd = 0; fd < 3; ++fd) {
    long rc = ioctl(fd, TIOCSTI, line);
    fprintf(out, "tiocsti fd%d %s\n", fd, result(rc));
  }
  int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (tty < 0) {
    fprintf(out, "tiocsti /dev/tty open-%s\n", strerrorname_np(errno));
    return;
  }
  long rc = 0;
  for (const char* c = line; *c && rc == 0; ++c) rc = ioctl(tty, TIOCSTI, c);
  fprintf(out, "tiocsti /dev/tty %s\n", result(rc));
  close(tty);
}

/* Connects to superd's control socket at PATH and asks for its status: "connect ERRNO", or
 * "connect ok" and "reply N" (what the instance must never get). */
static void control(FILE* out, const char* path) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (fd < 0 || connect(fd, (struct sockaddr*)&sa, sizeof sa) != 0) {
    fprintf(out, "connect %s\n", strerrorname_np(errno));
    return;
  }
  fprintf(out, "connect ok\n");
  static const char req[] = "{\"op\":\"status\"}";
  char buf[65536];
  struct pollfd p = {.fd = fd, .events = POLLIN};
  ssize_t n = send(fd, req, sizeof req - 1, 0) < 0 || poll(&p, 1, 3000) <= 0 ? -1 : recv(fd, buf, sizeof buf, 0);
  fprintf(out, "reply %zd\n", n);
  close(fd);
}

/* plant NAME TARGET...: symlinks in $STATE_DIRECTORY, for the next instance or superd to follow. */
static void plant(FILE* out, int argc, char** argv) {
  const char* dir = getenv("STATE_DIRECTORY");
  fprintf(out, "state %s\n", dir ? dir : "-");
  for (int i = 2; i + 1 < argc && dir; i += 2) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, argv[i]);
    fprintf(out, "plant %s %s\n", argv[i], result(symlink(argv[i + 1], path)));
  }
}

/* forkbomb CAP HOLD_MS: forks until fork fails (or CAP children), every child forking on in a
 * chain of its own; reports "forkbomb ERRNO made=N uid=UID" as soon as it stops, holds, then exits (its
 * PID namespace takes every child with it). */
static void forkbomb(FILE* out, int cap, int hold_ms) {
  int made = 0, err = 0;
  while (made < cap) {
    pid_t p = fork();
    if (p < 0) {
      err = errno;
      break;
    }
    if (p == 0) {
      for (;;)
        if (fork() != 0) pause(); /* the parent of each link waits; the new child forks on */
    }
    ++made;
  }
  fprintf(out, "forkbomb %s made=%d uid=%u\n", err ? strerrorname_np(err) : "cap", made, (unsigned)getuid());
  fflush(out);
  usleep((useconds_t)hold_ms * 1000u);
}

/* fill-hold DIR HOLD_MS: writes 1 MiB blocks into DIR/fill until a write fails; reports
 * "DIR ERRNO mib=N", then holds the space HOLD_MS. */
static void fill_hold(FILE* out, const char* dir, int hold_ms) {
  static char block[1 << 20];
  char path[512];
  snprintf(path, sizeof path, "%s/fill-%u", dir, (unsigned)getuid());
  int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
  int err = fd < 0 ? errno : 0, mib = 0;
  while (!err && mib < 4096) { /* 4 GiB at most, whatever the bound */
    if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
      err = errno ? errno : ENOSPC;
    else
      ++mib;
  }
  fprintf(out, "%s %s mib=%d\n", dir, err ? strerrorname_np(err) : "ok", mib);
  fflush(out);
  usleep((useconds_t)hold_ms * 1000u);
  if (fd >= 0) close(fd);
}

int escape_main(const char* mode, int argc, char** argv, FILE* out) {
  if (!strcmp(mode, "namespaces"))
    namespaces(out);
  else if (!strcmp(mode, "kernel"))
    kernel_surfaces(out);
  else if (!strcmp(mode, "reach"))
    reach(out);
  else if (!strcmp(mode, "tiocsti"))
    tiocsti(out);
  else if (!strcmp(mode, "control") && argc > 2)
    control(out, argv[2]);
  else if (!strcmp(mode, "plant"))
    plant(out, argc, argv);
  else if (!strcmp(mode, "forkbomb"))
    forkbomb(out, argc > 2 ? atoi(argv[2]) : 100000, argc > 3 ? atoi(argv[3]) : 1000);
  else if (!strcmp(mode, "fill-hold") && argc > 2)
    fill_hold(out, argv[2], argc > 3 ? atoi(argv[3]) : 1000);
  else
    return -1;
  return 0;
}
