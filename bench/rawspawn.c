/*
 * rawspawn: the ceiling superd is measured against.
 *
 * The smallest accept loop that spawns one process per connection: accept4,
 * vfork, (optionally) the bare sandbox syscalls, execve of the service with
 * the connection on fd 0 and fd 1. No config, no logging, no accounting
 * beyond counters. Whatever superd costs above this is superd's own overhead;
 * with --sandbox and --steps each sandbox step's cost can be read off alone.
 *
 * Usage: rawspawn [options] LISTEN SERVICE [ARG...]
 *   LISTEN is 127.0.0.1:PORT, [::1]:PORT, PORT (means 127.0.0.1), a UNIX
 *   socket path (starting with '/' or '.'), or @name (abstract UNIX socket).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

/* Sandbox steps, in the order the child executes them. The order is not the
 * order of the --steps list: the bounding set can only be dropped while the
 * child still has CAP_SETPCAP, i.e. before the UID change clears the
 * effective set, and the seccomp filter goes last so that it never has to
 * allow the setup syscalls themselves. */
enum step {
  STEP_NS = 1 << 0,      /* unshare(NEWNS|NEWIPC) + make / rprivate */
  STEP_RO = 1 << 1,      /* bind / on / and remount it read-only */
  STEP_TMP = 1 << 2,     /* fresh tmpfs on /tmp */
  STEP_CAPS = 1 << 3,    /* PR_CAPBSET_DROP 0..cap_last_cap */
  STEP_UID = 1 << 4,     /* setgroups(0) + setresgid + setresuid */
  STEP_NNP = 1 << 5,     /* PR_SET_NO_NEW_PRIVS */
  STEP_SECCOMP = 1 << 6, /* precompiled deny-list filter */
  STEP_ALL = (1 << 7) - 1,
};

/* Failure codes the vforked child leaves in shared memory (beyond the steps). */
enum { FAIL_FDS = 1 << 8, FAIL_EXEC = 1 << 9 };

static const struct {
  const char* name;
  int bit;
} step_names[] = {
    {"ns", STEP_NS},   {"ro", STEP_RO},   {"tmp", STEP_TMP},         {"caps", STEP_CAPS},
    {"uid", STEP_UID}, {"nnp", STEP_NNP}, {"seccomp", STEP_SECCOMP},
};

struct options {
  const char* listen;
  char** service_argv;
  int steps; /* 0 = no sandbox */
  unsigned uid_lo, uid_hi;
  int ready_fd; /* -1 = stdout */
  int backlog;
  unsigned max_seconds; /* 0 = run until signalled */
};

/* Everything the child reads is prepared by the parent before the loop:
 * after vfork() the child shares the parent's memory and must not allocate
 * or take locks, so it only reads these and makes raw syscalls. */
static struct sock_fprog seccomp_prog;
static int cap_last_cap;
static sigset_t child_sigmask; /* empty: the child must not inherit our blocks */

/* Written by the vforked child (shared memory) when a step fails, read by
 * the parent once vfork() returns. volatile: the compiler cannot see that
 * another task writes them between the vfork call and its return. */
static volatile int child_fail_step;
static volatile int child_fail_errno;

/* Live children, so that shutdown can kill stragglers by PID (never by
 * process group: the group may contain the harness that started us). */
static pid_t* live_pids;
static size_t live_count, live_cap;

static struct {
  unsigned long accepted, spawned, spawn_failed, reaped, nonzero_exit;
  unsigned long failed_by_step[10];
} stats;

static void die(const char* what) {
  fprintf(stderr, "rawspawn: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: rawspawn [--sandbox] [--steps=ns,ro,tmp,uid,caps,nnp,seccomp|all]\n"
          "                [--uid-range=LO-HI] [--ready-fd N] [--backlog N] [--max-seconds N]\n"
          "                LISTEN SERVICE [ARG...]\n"
          "  LISTEN: 127.0.0.1:PORT | [::1]:PORT | PORT | /path.sock | @abstract\n");
  exit(2);
}

static int parse_steps(const char* list) {
  if (strcmp(list, "all") == 0) return STEP_ALL;
  int steps = 0;
  char* copy = strdup(list);
  for (char* tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
    size_t i;
    for (i = 0; i < sizeof step_names / sizeof step_names[0]; i++)
      if (strcmp(tok, step_names[i].name) == 0) break;
    if (i == sizeof step_names / sizeof step_names[0]) {
      fprintf(stderr, "rawspawn: unknown step '%s'\n", tok);
      usage();
    }
    steps |= step_names[i].bit;
  }
  free(copy);
  return steps;
}

static const char* step_name(int bit) {
  for (size_t i = 0; i < sizeof step_names / sizeof step_names[0]; i++)
    if (step_names[i].bit == bit) return step_names[i].name;
  return bit == FAIL_FDS ? "fds" : bit == FAIL_EXEC ? "exec" : "?";
}

static unsigned long parse_num(const char* s, unsigned long max) {
  char* end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || v > max) {
    fprintf(stderr, "rawspawn: bad number '%s'\n", s);
    usage();
  }
  return v;
}

static void parse_args(int argc, char** argv, struct options* o) {
  bool sandbox = false;
  int steps = 0;
  o->uid_lo = 61184;
  o->uid_hi = 65519;
  o->ready_fd = -1;
  o->backlog = SOMAXCONN;
  o->max_seconds = 0;
  int i = 1;
  for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
    const char* a = argv[i];
    /* Accept both --opt=value and --opt value. */
    const char* eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
#define OPT(name) (nlen == strlen(name) && strncmp(a, name, nlen) == 0)
#define VALUE() (eq ? eq + 1 : (i + 1 < argc ? argv[++i] : (usage(), "")))
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (OPT("--sandbox")) {
      sandbox = true;
    } else if (OPT("--steps")) {
      steps = parse_steps(VALUE());
      sandbox = true;
    } else if (OPT("--uid-range")) {
      const char* v = VALUE();
      if (sscanf(v, "%u-%u", &o->uid_lo, &o->uid_hi) != 2 || o->uid_lo == 0 ||
          o->uid_hi < o->uid_lo) {
        fprintf(stderr, "rawspawn: bad --uid-range '%s'\n", v);
        usage();
      }
    } else if (OPT("--ready-fd")) {
      o->ready_fd = (int)parse_num(VALUE(), INT_MAX);
    } else if (OPT("--backlog")) {
      o->backlog = (int)parse_num(VALUE(), INT_MAX);
    } else if (OPT("--max-seconds")) {
      o->max_seconds = (unsigned)parse_num(VALUE(), 86400);
    } else if (OPT("--help")) {
      usage();
    } else {
      fprintf(stderr, "rawspawn: unknown option %s\n", a);
      usage();
    }
#undef OPT
#undef VALUE
  }
  if (argc - i < 2) usage();
  o->listen = argv[i];
  o->service_argv = &argv[i + 1];
  if (sandbox && steps == 0) steps = STEP_ALL;
  /* ro and tmp outside a private mount namespace would change the host's
   * mounts, so they always bring ns along; attribute their cost as
   * (ns+ro) - ns. */
  if ((steps & (STEP_RO | STEP_TMP)) && !(steps & STEP_NS)) {
    fprintf(stderr, "rawspawn: note: ro/tmp imply ns (never touch the host's mounts)\n");
    steps |= STEP_NS;
  }
  /* Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, which
   * the UID change has already dropped: that combination cannot work. */
  if ((steps & STEP_SECCOMP) && (steps & STEP_UID) && !(steps & STEP_NNP)) {
    fprintf(stderr,
            "rawspawn: steps uid+seccomp need nnp too "
            "(a non-root task may only load a filter under no_new_privs)\n");
    exit(2);
  }
  o->steps = steps;
}

/* Compile the deny-list once with libseccomp, export it as raw BPF through a
 * memfd and keep the instructions, so that each child pays only for the
 * seccomp() syscall itself, as superd does. */
static void compile_seccomp(void) {
  static const char* const deny[] = {
      "acct",
      "add_key",
      "bpf",
      "delete_module",
      "finit_module",
      "init_module",
      "kexec_file_load",
      "kexec_load",
      "keyctl",
      "mount",
      "move_mount",
      "open_by_handle_at",
      "open_tree",
      "perf_event_open",
      "pivot_root",
      "process_vm_readv",
      "process_vm_writev",
      "ptrace",
      "quotactl",
      "reboot",
      "request_key",
      "setns",
      "swapoff",
      "swapon",
      "syslog",
      "umount2",
      "unshare",
      "userfaultfd",
      "fsopen",
      "fsmount",
      "fspick",
  };
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) die("seccomp_init");
  for (size_t i = 0; i < sizeof deny / sizeof deny[0]; i++) {
    int nr = seccomp_syscall_resolve_name(deny[i]);
    if (nr == __NR_SCMP_ERROR) continue; /* unknown on this arch: nothing to deny */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    if (rc < 0) {
      errno = -rc;
      die("seccomp_rule_add");
    }
  }
  int mfd = memfd_create("rawspawn-bpf", MFD_CLOEXEC);
  if (mfd < 0) die("memfd_create");
  int rc = seccomp_export_bpf(ctx, mfd);
  if (rc < 0) {
    errno = -rc;
    die("seccomp_export_bpf");
  }
  seccomp_release(ctx);
  off_t size = lseek(mfd, 0, SEEK_END);
  if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0) {
    errno = EINVAL;
    die("exported BPF size");
  }
  struct sock_filter* insns = malloc((size_t)size);
  if (!insns) die("malloc");
  if (pread(mfd, insns, (size_t)size, 0) != size) die("pread bpf");
  close(mfd);
  seccomp_prog.len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
  seccomp_prog.filter = insns;
}

static int read_cap_last_cap(void) {
  /* The running kernel may know more capabilities than our headers. */
  FILE* f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  int v = 40;
  if (f) {
    if (fscanf(f, "%d", &v) != 1) v = 40;
    fclose(f);
  }
  return v;
}

static int open_listener(const struct options* o) {
  const char* l = o->listen;
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
  } addr;
  socklen_t alen;
  memset(&addr, 0, sizeof addr);
  int family;

  if (l[0] == '/' || l[0] == '.' || l[0] == '@') {
    family = AF_UNIX;
    addr.un.sun_family = AF_UNIX;
    size_t n = strlen(l);
    if (n >= sizeof addr.un.sun_path) {
      fprintf(stderr, "rawspawn: socket path too long\n");
      exit(2);
    }
    memcpy(addr.un.sun_path, l, n);
    if (l[0] == '@') {
      addr.un.sun_path[0] = '\0'; /* abstract: no file, no unlink */
      alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
      struct stat st;
      /* Only ever remove a stale socket, never another kind of file. */
      if (lstat(l, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(l);
      alen = sizeof addr.un;
    }
  } else {
    char host[64] = "127.0.0.1";
    const char* port = l;
    const char* colon = strrchr(l, ':');
    if (colon) {
      const char* h = l;
      size_t hl = (size_t)(colon - l);
      if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
      }
      if (hl >= sizeof host) {
        fprintf(stderr, "rawspawn: bad address\n");
        exit(2);
      }
      memcpy(host, h, hl);
      host[hl] = '\0';
      port = colon + 1;
    }
    unsigned long p = parse_num(port, 65535);
    if (inet_pton(AF_INET, host, &addr.in4.sin_addr) == 1) {
      family = AF_INET;
      addr.in4.sin_family = AF_INET;
      addr.in4.sin_port = htons((uint16_t)p);
      alen = sizeof addr.in4;
    } else if (inet_pton(AF_INET6, host, &addr.in6.sin6_addr) == 1) {
      family = AF_INET6;
      addr.in6.sin6_family = AF_INET6;
      addr.in6.sin6_port = htons((uint16_t)p);
      alen = sizeof addr.in6;
    } else {
      fprintf(stderr, "rawspawn: bad host '%s' (numeric addresses only)\n", host);
      exit(2);
    }
  }

  /* Non-blocking so that the loop can drain the accept queue until
   * EAGAIN after one poll wake-up. */
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) die("socket");
  if (family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  if (bind(fd, &addr.sa, alen) < 0) die("bind");
  if (listen(fd, o->backlog) < 0) die("listen");

  if (family != AF_UNIX) {
    /* Port 0 is allowed: tell which port the kernel chose. */
    alen = sizeof addr;
    getsockname(fd, &addr.sa, &alen);
    char buf[INET6_ADDRSTRLEN];
    if (family == AF_INET)
      fprintf(stderr, "rawspawn: listening on %s:%u\n",
              inet_ntop(AF_INET, &addr.in4.sin_addr, buf, sizeof buf), ntohs(addr.in4.sin_port));
    else
      fprintf(stderr, "rawspawn: listening on [%s]:%u\n",
              inet_ntop(AF_INET6, &addr.in6.sin6_addr, buf, sizeof buf), ntohs(addr.in6.sin6_port));
  } else {
    fprintf(stderr, "rawspawn: listening on %s\n", l);
  }
  return fd;
}

/* Runs in the vforked child, on the parent's memory and stack: only raw
 * syscalls, no allocation, no stdio, and it never returns. On failure it
 * records which step failed in shared memory and _exit()s. */
static __attribute__((noreturn)) void child_exec(int conn, const struct options* o, unsigned uid) {
  int step = 0;

  /* Blocked signals survive execve; the service must start with none. */
  if (sigprocmask(SIG_SETMASK, &child_sigmask, NULL) < 0) {
    step = FAIL_FDS;
    goto fail;
  }
  /* dup2 onto 0/1 yields descriptors without FD_CLOEXEC; if the
   * connection already *is* 0 or 1 (stdin/stdout were closed), clear the
   * flag by hand instead, since dup2(fd, fd) leaves it alone. */
  for (int target = 0; target <= 1; target++) {
    if (conn == target) {
      if (fcntl(conn, F_SETFD, 0) < 0) {
        step = FAIL_FDS;
        goto fail;
      }
    } else if (dup2(conn, target) < 0) {
      step = FAIL_FDS;
      goto fail;
    }
  }

  if (o->steps & STEP_NS) {
    step = STEP_NS;
    /* CLONE_NEWPID would only apply to our children, not to the
     * service we are about to become, so it is not part of this. */
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC) < 0) goto fail;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) goto fail;
  }
  if (o->steps & STEP_RO) {
    step = STEP_RO;
    if (mount("/", "/", NULL, MS_BIND | MS_REC, NULL) < 0) goto fail;
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) goto fail;
  }
  if (o->steps & STEP_TMP) {
    step = STEP_TMP;
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m") < 0) goto fail;
  }
  if (o->steps & STEP_CAPS) {
    step = STEP_CAPS;
    for (int c = 0; c <= cap_last_cap; c++)
      if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) goto fail;
  }
  if (o->steps & STEP_UID) {
    step = STEP_UID;
    /* Raw syscalls: glibc's set*id wrappers broadcast the change to
     * every thread of the process, and in a vfork child "the
     * process" glibc sees is the parent's. */
    if (syscall(SYS_setgroups, 0, NULL) < 0) goto fail;
    if (syscall(SYS_setresgid, uid, uid, uid) < 0) goto fail;
    if (syscall(SYS_setresuid, uid, uid, uid) < 0) goto fail;
  }
  if (o->steps & STEP_NNP) {
    step = STEP_NNP;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) goto fail;
  }
  if (o->steps & STEP_SECCOMP) {
    step = STEP_SECCOMP;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &seccomp_prog) < 0) goto fail;
  }

  step = FAIL_EXEC;
  execve(o->service_argv[0], o->service_argv, environ);
fail:
  child_fail_errno = errno;
  child_fail_step = step;
  _exit(126);
}

static void track_pid(pid_t pid) {
  if (live_count == live_cap) {
    size_t ncap = live_cap ? live_cap * 2 : 256;
    pid_t* n = realloc(live_pids, ncap * sizeof *n);
    if (!n) die("realloc");
    live_pids = n;
    live_cap = ncap;
  }
  live_pids[live_count++] = pid;
}

static void untrack_pid(pid_t pid) {
  /* Linear search is fine: live children are about the client's
   * concurrency, and a bounded scan is cheaper than a fork. */
  for (size_t i = 0; i < live_count; i++)
    if (live_pids[i] == pid) {
      live_pids[i] = live_pids[--live_count];
      return;
    }
}

static void reap_children(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    untrack_pid(pid);
    stats.reaped++;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) stats.nonzero_exit++;
  }
}

static void spawn_one(int conn, const struct options* o) {
  static unsigned next_uid_offset;
  unsigned uid = o->uid_lo + next_uid_offset;
  next_uid_offset = (next_uid_offset + 1) % (o->uid_hi - o->uid_lo + 1);

  child_fail_step = 0;
  pid_t pid = vfork();
  if (pid == 0) child_exec(conn, o, uid);
  /* Parent: the child has exec'd or died by now; its fd copies are its own. */
  close(conn);
  if (pid < 0) {
    stats.spawn_failed++;
    if (stats.spawn_failed <= 5) fprintf(stderr, "rawspawn: vfork: %s\n", strerror(errno));
    return;
  }
  track_pid(pid);
  if (child_fail_step) {
    int s = child_fail_step;
    stats.spawn_failed++;
    stats.failed_by_step[__builtin_ctz((unsigned)s)]++;
    /* Rate-limited: a broken step fails every connection. */
    if (stats.spawn_failed <= 5)
      fprintf(stderr, "rawspawn: child step %s failed: %s\n", step_name(s),
              strerror(child_fail_errno));
  } else {
    stats.spawned++;
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Stop accepting, give children a bounded grace period, SIGKILL whatever is
 * left (by PID) and reap it, so that nothing we spawned outlives us. */
static void shutdown_children(int sfd) {
  double deadline = now_s() + 5.0;
  reap_children();
  while (live_count > 0 && now_s() < deadline) {
    struct pollfd p = {.fd = sfd, .events = POLLIN};
    poll(&p, 1, 100);
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == sizeof si) {
    }
    reap_children();
  }
  if (live_count > 0) {
    fprintf(stderr, "rawspawn: killing %zu straggler(s)\n", live_count);
    for (size_t i = 0; i < live_count; i++) kill(live_pids[i], SIGKILL);
    while (live_count > 0) {
      int status;
      pid_t pid = waitpid(-1, &status, 0);
      if (pid < 0) break;
      untrack_pid(pid);
      stats.reaped++;
    }
  }
}

int main(int argc, char** argv) {
  struct options o;
  parse_args(argc, argv, &o);

  cap_last_cap = read_cap_last_cap();
  if (o.steps & STEP_SECCOMP) compile_seccomp();
  sigemptyset(&child_sigmask);

  /* All signals we care about arrive through one signalfd, polled
   * together with the listener: no handlers, no races with vfork. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask");
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die("signalfd");

  int lfd = open_listener(&o);

  if (o.ready_fd >= 0) {
    if (write(o.ready_fd, "READY\n", 6) != 6) die("write ready-fd");
    close(o.ready_fd);
  } else {
    fputs("READY\n", stdout);
    fflush(stdout);
  }
  if (o.steps) {
    fprintf(stderr, "rawspawn: sandbox steps:");
    for (size_t i = 0; i < sizeof step_names / sizeof step_names[0]; i++)
      if (o.steps & step_names[i].bit) fprintf(stderr, " %s", step_names[i].name);
    fprintf(stderr, " (uids %u-%u)\n", o.uid_lo, o.uid_hi);
  }

  double stop_at = o.max_seconds ? now_s() + o.max_seconds : 0;
  bool stopping = false;
  while (!stopping) {
    struct pollfd p[2] = {
        {.fd = lfd, .events = POLLIN},
        {.fd = sfd, .events = POLLIN},
    };
    int timeout = -1;
    if (stop_at) {
      double left = stop_at - now_s();
      if (left <= 0) break;
      timeout = (int)(left * 1000) + 1;
    }
    int n = poll(p, 2, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si)
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) stopping = true;
    }
    if (!stopping && (p[0].revents & POLLIN)) {
      /* Drain the accept queue; reap after the batch so that
       * zombies never pile up past one batch. */
      for (;;) {
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          if (errno == EINTR || errno == ECONNABORTED) continue;
          if (errno == EMFILE || errno == ENFILE) {
            /* Back off to poll; reaping frees no fds,
             * but the clients' closes do. */
            fprintf(stderr, "rawspawn: accept4: %s\n", strerror(errno));
            break;
          }
          die("accept4");
        }
        stats.accepted++;
        spawn_one(conn, &o);
      }
    }
    reap_children();
  }

  close(lfd);
  if (o.listen[0] == '/' || o.listen[0] == '.') unlink(o.listen);
  shutdown_children(sfd);

  fprintf(stderr,
          "rawspawn: accepted=%lu spawned=%lu spawn_failed=%lu reaped=%lu nonzero_exit=%lu\n",
          stats.accepted, stats.spawned, stats.spawn_failed, stats.reaped, stats.nonzero_exit);
  /* CPU of the loop itself and of all (reaped) services: lets a harness
   * tell the spawner's cost from the load generator's and from noise. */
  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  fprintf(stderr, "rawspawn: cpu_self_s=%.3f cpu_children_s=%.3f\n",
          (double)self.ru_utime.tv_sec + (double)self.ru_utime.tv_usec / 1e6 +
              (double)self.ru_stime.tv_sec + (double)self.ru_stime.tv_usec / 1e6,
          (double)kids.ru_utime.tv_sec + (double)kids.ru_utime.tv_usec / 1e6 +
              (double)kids.ru_stime.tv_sec + (double)kids.ru_stime.tv_usec / 1e6);
  for (int b = 0; b < 10; b++)
    if (stats.failed_by_step[b])
      fprintf(stderr, "rawspawn:   failed at %s: %lu\n", step_name(1 << b),
              stats.failed_by_step[b]);
  return 0;
}
