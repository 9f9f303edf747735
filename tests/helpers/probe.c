/* probe: the service the integration tests run under superd. It reports, from inside the
 * instance, what the tests assert on: identity, environment, fd layout, and it misbehaves on
 * request (crash, daemonise, leave IPC objects behind, never read, log through syslog(3)).
 * Usage: probe MODE [ARG]; output on fd 1 (or on the LISTEN_FDS fd 3 in "fds3" mode). The verbs
 * that try to escape the sandbox are in probe_escape.c. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "probe_escape.h"

extern char** environ;

static void print_id(FILE* out) {
  uid_t r, e, s;
  gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  gid_t groups[64];
  int n = getgroups(64, groups);
  fprintf(out, "uid=%u,%u,%u gid=%u,%u,%u groups=%d pid=%d\n", r, e, s, gr, ge, gs, n, (int)getpid());
}

static void print_fds(FILE* out) {
  for (int fd = 0; fd < 64; ++fd) {
    char path[64], target[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) continue;
    target[n] = 0;
    /* The FILE's own fd for /proc/self/fd listing does not exist here: we use readlink only. */
    char kind[16] = "other";
    if (!strncmp(target, "socket:", 7))
      strcpy(kind, "socket");
    else if (!strncmp(target, "pipe:", 5))
      strcpy(kind, "pipe");
    else if (!strcmp(target, "/dev/null"))
      strcpy(kind, "null");
    fprintf(out, "fd %d %s\n", fd, kind);
  }
}

/* The "Seccomp_filters:" line of /proc/self/status: how many filters this process runs under. */
static void print_filters(FILE* out) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "Seccomp_filters:", 16)) fputs(line, out);
  if (f) fclose(f);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "id";
  FILE* out = stdout;
  if (!strcmp(mode, "id")) {
    print_id(out);
  } else if (!strcmp(mode, "env")) {
    for (char** e = environ; *e; ++e) fprintf(out, "%s\n", *e);
  } else if (!strcmp(mode, "fds")) {
    print_fds(out);
  } else if (!strcmp(mode, "fds3")) {
    /* listen-fds mode: the connection is fd 3; report there. */
    FILE* f = fdopen(dup(3), "w");
    if (!f) return 3;
    print_fds(f);
    fprintf(f, "LISTEN_FDS=%s LISTEN_PID=%s LISTEN_FDNAMES=%s getpid=%d\n", getenv("LISTEN_FDS"), getenv("LISTEN_PID"),
            getenv("LISTEN_FDNAMES"), (int)getpid());
    fclose(f);
  } else if (!strcmp(mode, "stderr")) {
    fprintf(stderr, "probe says hello on stderr\n");
    fprintf(out, "ok\n");
  } else if (!strcmp(mode, "forge")) {
    /* Tries to forge a log line through stderr: CR back to the line start, a fake START with
     * uid=0, ESC[2K to erase what a terminal showed before it. superd must log it escaped. */
    static const char forged[] = "ok\rSTART forged serial=1 uid=0\x1b[2K\n";
    if (write(2, forged, sizeof forged - 1) != (ssize_t)(sizeof forged - 1)) return 1;
    fprintf(out, "ok\n");
  } else if (!strcmp(mode, "exit")) {
    return argc > 2 ? atoi(argv[2]) : 0;
  } else if (!strcmp(mode, "segv")) {
    fflush(out);
    raise(SIGSEGV);
    *(volatile int*)0 = 1;
  } else if (!strcmp(mode, "sleep")) {
    print_id(out);
    fflush(out);
    sleep(argc > 2 ? (unsigned)atoi(argv[2]) : 3600);
  } else if (!strcmp(mode, "nap")) {
    /* Holds the connection for ARG milliseconds, then reports its identity. */
    usleep((useconds_t)(argc > 2 ? atoi(argv[2]) : 100) * 1000u);
    print_id(out);
  } else if (!strcmp(mode, "noread")) {
    /* Never reads its input and never exits by itself: only runtime_max ends it. */
    for (;;) pause();
  } else if (!strcmp(mode, "daemon")) {
    /* Classic double fork: the grandchild outlives the main process unless superd kills it. */
    pid_t p = fork();
    if (p == 0) {
      setsid();
      if (fork() == 0) {
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
        for (;;) pause();
      }
      _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    print_id(out);
  } else if (!strcmp(mode, "ipc") || !strcmp(mode, "ipc-hold")) {
    /* Leaves one of each IPC kind behind; prints their handles for the test to look for.
     * ipc-hold SECONDS: then stays that long (the objects live while it does). */
    int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    int sem = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    int msg = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    char name[64];
    snprintf(name, sizeof name, "/probe-%u", (unsigned)getuid());
    int pfd = shm_open(name, O_CREAT | O_RDWR, 0600);
    char qname[64];
    snprintf(qname, sizeof qname, "/probeq-%u", (unsigned)getuid());
    mqd_t q = mq_open(qname, O_CREAT | O_RDWR, 0600, NULL);
    fprintf(out, "shm=%d sem=%d msg=%d posix=%s%s mq=%s%s uid=%u\n", shm, sem, msg, name + 1,
            pfd >= 0 ? "" : "(failed)", qname + 1, q != (mqd_t)-1 ? "" : "(failed)", (unsigned)getuid());
    if (!strcmp(mode, "ipc-hold")) {
      fflush(out);
      sleep(argc > 2 ? (unsigned)atoi(argv[2]) : 10);
    }
  } else if (!strcmp(mode, "write")) {
    /* Tries to create a file in each directory given; reports "PATH ok" or "PATH ERRNO". */
    for (int i = 2; i < argc; ++i) {
      char path[512];
      snprintf(path, sizeof path, "%s/probe-write-%u", argv[i], (unsigned)getuid());
      int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
      if (fd >= 0) {
        close(fd);
        unlink(path);
        fprintf(out, "%s ok\n", argv[i]);
      } else {
        fprintf(out, "%s %s\n", argv[i], strerrorname_np(errno));
      }
    }
  } else if (!strcmp(mode, "status")) {
    FILE* f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
      if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) || !strncmp(line, "Seccomp:", 8))
        fputs(line, out);
    if (f) fclose(f);
  } else if (!strcmp(mode, "syscalls")) {
    /* Each forbidden call, and the errno it got (or "ok" if it went through). */
#define TRY(name, call)                                                      \
  do {                                                                       \
    errno = 0;                                                               \
    long r_ = (long)(call);                                                  \
    fprintf(out, "%s %s\n", name, r_ == -1 ? strerrorname_np(errno) : "ok"); \
  } while (0)
    TRY("mount", mount("none", "/mnt", "tmpfs", 0, NULL));
    TRY("unshare", unshare(CLONE_NEWNS));
    TRY("unshare_user", unshare(CLONE_NEWUSER));
    TRY("setuid0", setuid(0));
    TRY("ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
    /* The one mount() form the zygote's seccomp gate lets through: it must still fail (EPERM, no caps). */
    TRY("mount_magic", mount("none", "/mnt", "tmpfs", 0xC0ED0000UL, NULL));
    TRY("getpid", getpid());
    TRY("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
    TRY("chmod_suid", chmod("/tmp", 04777));
    /* The x32 ABI may be refused by killing the caller: try it in a child and report how. */
    fflush(out);
    pid_t c = fork();
    if (c == 0) {
      long r = syscall(0x40000000 | SYS_getpid);
      _exit(r == -1 ? 100 + (errno & 63) : 0);
    }
    int st = 0;
    waitpid(c, &st, 0);
    if (WIFSIGNALED(st))
      fprintf(out, "x32_getpid killed-%s\n", sigabbrev_np(WTERMSIG(st)));
    else
      fprintf(out, "x32_getpid %s\n", WEXITSTATUS(st) == 0 ? "ok" : strerrorname_np(WEXITSTATUS(st) - 100));
  } else if (!strcmp(mode, "tmp")) {
    /* Marks /tmp and /var/tmp with its UID, holds a while, then lists what it sees there. */
    char path[128];
    snprintf(path, sizeof path, "/tmp/mark-%u", (unsigned)getuid());
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    snprintf(path, sizeof path, "/var/tmp/mark-%u", (unsigned)getuid());
    int fd2 = open(path, O_CREAT | O_WRONLY, 0644);
    fprintf(out, "created %s %s\n", fd >= 0 ? "tmp" : "no-tmp", fd2 >= 0 ? "vartmp" : "no-vartmp");
    usleep((useconds_t)(argc > 2 ? atoi(argv[2]) : 500) * 1000u);
    for (int k = 0; k < 2; ++k) {
      DIR* d = opendir(k ? "/var/tmp" : "/tmp");
      struct dirent* e;
      while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') fprintf(out, "%s %s\n", k ? "vartmp" : "tmp", e->d_name);
      if (d) closedir(d);
    }
  } else if (!strcmp(mode, "append")) {
    /* Appends "uid N" to $STATE_DIRECTORY/shared.log, then prints the whole file. */
    const char* dir = getenv("STATE_DIRECTORY");
    char path[512];
    snprintf(path, sizeof path, "%s/shared.log", dir ? dir : "/nonexistent");
    int fd = open(path, O_CREAT | O_WRONLY | O_APPEND, 0666);
    if (fd < 0) {
      fprintf(out, "open %s %s\n", path, strerrorname_np(errno));
      return 1;
    }
    char line[64];
    int n = snprintf(line, sizeof line, "uid %u\n", (unsigned)getuid());
    if (write(fd, line, (size_t)n) != n) fprintf(out, "write failed\n");
    close(fd);
    usleep((useconds_t)(argc > 2 ? atoi(argv[2]) : 0) * 1000u);
    FILE* f = fopen(path, "r");
    char buf[256];
    while (f && fgets(buf, sizeof buf, f)) fputs(buf, out);
    if (f) fclose(f);
  } else if (!strcmp(mode, "cat")) {
    for (int i = 2; i < argc; ++i) {
      FILE* f = fopen(argv[i], "r");
      if (!f) {
        fprintf(out, "%s %s\n", argv[i], strerrorname_np(errno));
        continue;
      }
      char buf[512];
      while (fgets(buf, sizeof buf, f)) fputs(buf, out);
      fclose(f);
    }
  } else if (!strcmp(mode, "runtime")) {
    const char* dir = getenv("RUNTIME_DIRECTORY");
    char path[512];
    snprintf(path, sizeof path, "%s/instance-file", dir ? dir : "/nonexistent");
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    struct stat st;
    int ok = dir && stat(dir, &st) == 0;
    fprintf(out, "runtime %s %s owner=%u\n", dir ? dir : "-", fd >= 0 ? "ok" : strerrorname_np(errno),
            ok ? (unsigned)st.st_uid : 0u);
  } else if (!strcmp(mode, "netdev")) {
    FILE* f = fopen("/proc/self/net/dev", "r");
    char buf[512];
    int lineno = 0;
    while (f && fgets(buf, sizeof buf, f)) {
      if (++lineno <= 2) continue;
      char* colon = strchr(buf, ':');
      if (!colon) continue;
      *colon = 0;
      char* name = buf;
      while (*name == ' ') ++name;
      fprintf(out, "if %s\n", name);
    }
    if (f) fclose(f);
  } else if (!strcmp(mode, "bind")) {
    /* Binds 127.0.0.1:PORT (a privileged port needs CAP_NET_BIND_SERVICE). */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(argc > 2 ? argv[2] : "80"));
    sa.sin_addr.s_addr = htonl(0x7f000001);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    fprintf(out, "bind %s\n", bind(fd, (struct sockaddr*)&sa, sizeof sa) == 0 ? "ok" : strerrorname_np(errno));
  } else if (!strcmp(mode, "ls")) {
    for (int i = 2; i < argc; ++i) {
      DIR* d = opendir(argv[i]);
      if (!d) {
        fprintf(out, "%s %s\n", argv[i], strerrorname_np(errno));
        continue;
      }
      struct dirent* e;
      while ((e = readdir(d)))
        if (e->d_name[0] != '.') fprintf(out, "%s %s\n", argv[i], e->d_name);
      closedir(d);
    }
  } else if (!strcmp(mode, "give-msg")) {
    /* Creates COUNT SysV message queues and hands queue i to UID FIRST+i (IPC_SET lets the owner
     * set any owner): the pool-lock attack. Prints "given N" and the ids. */
    unsigned first = (unsigned)strtoul(argv[2], NULL, 10), count = (unsigned)atoi(argv[3]), given = 0;
    for (unsigned i = 0; i < count; ++i) {
      int id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
      struct msqid_ds ds;
      if (id < 0 || msgctl(id, IPC_STAT, &ds) != 0) continue;
      ds.msg_perm.uid = first + i;
      if (msgctl(id, IPC_SET, &ds) == 0) ++given;
    }
    fprintf(out, "given %u\n", given);
  } else if (!strcmp(mode, "mq-put")) {
    /* Leaves a message in POSIX queue NAME (created 0600): a later holder of the UID must not read it. */
    mqd_t q = mq_open(argv[2], O_CREAT | O_RDWR, 0600, NULL);
    int sent = q != (mqd_t)-1 && mq_send(q, "secret", 6, 0) == 0;
    fprintf(out, "mq-put %s uid=%u\n",
            q == (mqd_t)-1 ? strerrorname_np(errno)
            : sent         ? "ok"
                           : strerrorname_np(errno),
            (unsigned)getuid());
  } else if (!strcmp(mode, "mq-get")) {
    mqd_t q = mq_open(argv[2], O_RDONLY | O_NONBLOCK);
    char msg[8192];
    ssize_t n = q == (mqd_t)-1 ? -1 : mq_receive(q, msg, sizeof msg, NULL);
    fprintf(out, "mq-get %s uid=%u\n", n >= 0 ? "read" : strerrorname_np(errno), (unsigned)getuid());
  } else if (!strcmp(mode, "fill")) {
    /* Writes SIZE bytes (in KiB) into a new file in each directory given; "DIR ok" or "DIR ERRNO". */
    size_t kib = (size_t)atol(argv[2]);
    static char block[1024];
    for (int i = 3; i < argc; ++i) {
      char path[512];
      snprintf(path, sizeof path, "%s/fill-%u", argv[i], (unsigned)getuid());
      int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
      int err = fd < 0 ? errno : 0;
      for (size_t k = 0; fd >= 0 && !err && k < kib; ++k)
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block) err = errno ? errno : ENOSPC;
      if (fd >= 0) close(fd);
      fprintf(out, "%s %s\n", argv[i], err ? strerrorname_np(err) : "ok");
    }
  } else if (!strcmp(mode, "rlimits")) {
    struct rlimit rl;
    getrlimit(RLIMIT_NPROC, &rl);
    fprintf(out, "nproc %llu %llu\n", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
  } else if (!strcmp(mode, "shut-listener")) {
    /* Wait mode: shuts the shared listening socket down for every holder, then exits 0. */
    shutdown(0, SHUT_RDWR);
    return 0;
  } else if (!strcmp(mode, "env-echo")) {
    /* The environment, a blank line, then stdin echoed: what a service behind a proxy sees. */
    for (char** e = environ; *e; ++e) fprintf(out, "%s\n", *e);
    fprintf(out, "\n");
    fflush(out);
    char buf[4096];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0)
      if (write(1, buf, (size_t)n) != n) return 1;
  } else if (!strcmp(mode, "echo")) {
    char buf[4096];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0)
      if (write(1, buf, (size_t)n) != n) return 1;
  } else if (!strcmp(mode, "accept")) {
    /* Wait mode: accepts on the listening socket FD (default 0) and answers each connection with
     * its identity and a connection count; exits after N connections or IDLE_MS without one.
     * Usage: probe accept N IDLE_MS [FD] */
    int max = argc > 2 ? atoi(argv[2]) : 1, idle = argc > 3 ? atoi(argv[3]) : 1000;
    int lfd = argc > 4 ? atoi(argv[4]) : 0;
    /* An instance id: the pid may be 1 for every instance (a PID namespace). */
    unsigned long long inst = 0;
    if (syscall(SYS_getrandom, &inst, sizeof inst, 0) != (long)sizeof inst) inst = (unsigned long long)getpid();
    for (int served = 0; served < max;) {
      struct pollfd pfd = {.fd = lfd, .events = POLLIN};
      int r = poll(&pfd, 1, idle);
      if (r == 0) return 0;
      if (r < 0) return 4;
      int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
        return 5;
      }
      FILE* f = fdopen(c, "w");
      if (!f) return 6;
      uid_t ru, eu, su;
      gid_t rg, eg, sg;
      getresuid(&ru, &eu, &su);
      getresgid(&rg, &eg, &sg);
      gid_t groups[64];
      int n = getgroups(64, groups);
      fprintf(f, "uid=%u,%u,%u gid=%u,%u,%u groups=", ru, eu, su, rg, eg, sg);
      for (int i = 0; i < n; ++i) fprintf(f, "%s%u", i ? "," : "", (unsigned)groups[i]);
      fprintf(f, " pid=%d inst=%llx conn=%d listen_fds=%s user=%s\n", (int)getpid(), inst, ++served,
              getenv("LISTEN_FDS") ? getenv("LISTEN_FDS") : "-", getenv("USER") ? getenv("USER") : "-");
      fclose(f);
    }
  } else if (!strcmp(mode, "confine")) {
    /* The default deny list's latest additions and the default address families, each called
     * in a form that works unconfined; "NAME ok" or "NAME ERRNO". Then the filter count. */
#define TRY_FD(name, call)                                                 \
  do {                                                                     \
    errno = 0;                                                             \
    long r_ = (long)(call);                                                \
    if (r_ >= 0 && r_ > 2) close((int)r_);                                 \
    fprintf(out, "%s %s\n", name, r_ < 0 ? strerrorname_np(errno) : "ok"); \
  } while (0)
    char ldt[16];
    /* FAN_CLASS_NOTIF | FAN_REPORT_FID: the form an unprivileged process may use (5.13+). */
    TRY_FD("fanotify_init", syscall(SYS_fanotify_init, 0x200, 0));
    TRY_FD("memfd_secret", syscall(447 /* SYS_memfd_secret */, 0));
    TRY_FD("modify_ldt", syscall(SYS_modify_ldt, 0, ldt, sizeof ldt));
    TRY_FD("kcmp", syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 1, 1));
    TRY_FD("af_unix", socket(AF_UNIX, SOCK_STREAM, 0));
    TRY_FD("af_inet", socket(AF_INET, SOCK_STREAM, 0));
    TRY_FD("af_inet6", socket(AF_INET6, SOCK_STREAM, 0));
    TRY_FD("af_netlink", socket(AF_NETLINK, SOCK_RAW, 0 /* NETLINK_ROUTE */));
    TRY_FD("af_vsock", socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
    /* In no group at all: outside an allow list such as @system-service, open under a deny list. */
    unsigned char vec;
    TRY_FD("mincore", syscall(SYS_mincore, ldt - ((unsigned long)ldt % 4096), 1, &vec));
    int sv[2];
    TRY_FD("socketpair_unix", socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 ? (close(sv[0]), close(sv[1]), 0) : -1);
    print_filters(out);
  } else if (!strcmp(mode, "narrow")) {
    /* Under an allow list without @setuid, @process, @resources: the calls the zygote's base lets
     * through for the instance set-up must be refused again once the service runs. */
    TRY_FD("setresuid", syscall(SYS_setresuid, -1, -1, -1));
    TRY_FD("prctl", syscall(SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0));
    TRY_FD("umask", syscall(SYS_umask, 022) < 0 ? -1 : 0);
    TRY_FD("setpriority", syscall(SYS_setpriority, PRIO_PROCESS, 0, 0));
    TRY_FD("socket", socket(AF_UNIX, SOCK_STREAM, 0));
    TRY_FD("getpid", getpid());
    print_filters(out);
  } else if (!strcmp(mode, "abstract")) {
    /* probe abstract NAME [listen|connect]: without the action, it is read from the connection.
     * listen: binds @NAME, prints "listening", then reports "accepted" for each connection until
     * the client sends another line or closes (at most 20 s). connect: "connect ok|ERRNO". */
    char action[32] = "";
    if (argc > 3)
      snprintf(action, sizeof action, "%s", argv[3]);
    else if (!fgets(action, sizeof action, stdin))
      return 3;
    action[strcspn(action, "\r\n")] = 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(argv[2]);
    if (n + 1 > sizeof sa.sun_path) return 3;
    memcpy(sa.sun_path + 1, argv[2], n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      fprintf(out, "socket %s\n", strerrorname_np(errno));
      return 1;
    }
    if (!strcmp(action, "connect")) {
      fprintf(out, "connect %s\n", connect(fd, (struct sockaddr*)&sa, len) == 0 ? "ok" : strerrorname_np(errno));
    } else if (!strcmp(action, "listen")) {
      if (bind(fd, (struct sockaddr*)&sa, len) != 0 || listen(fd, 8) != 0) {
        fprintf(out, "bind %s\n", strerrorname_np(errno));
        return 1;
      }
      fprintf(out, "listening\n");
      fflush(out);
      for (int rounds = 0; rounds < 200; ++rounds) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
        if (poll(p, 2, 100) < 0) break;
        if (p[0].revents & POLLIN) {
          int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
          if (c >= 0) close(c), fprintf(out, "accepted\n"), fflush(out);
        }
        if (p[1].revents) {
          char drain[64]; /* read the client's line: closing with it unread would reset the connection */
          if (read(0, drain, sizeof drain) < 0) break;
          break;
        }
      }
    } else {
      return 3;
    }
  } else if (!strcmp(mode, "pidfd-kill")) {
    /* probe pidfd-kill PATH: receives a pidfd over the UNIX socket at PATH and sends it signal 0
     * with pidfd_send_signal: "signal ok|ERRNO" (a PID namespace hides PIDs, not pidfds). */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[2]);
    if (connect(fd, (struct sockaddr*)&sa, sizeof sa) != 0) {
      fprintf(out, "connect %s\n", strerrorname_np(errno));
      return 1;
    }
    char byte;
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr* c = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC) > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (!c || c->cmsg_type != SCM_RIGHTS) {
      fprintf(out, "no pidfd\n");
      return 1;
    }
    int pidfd;
    memcpy(&pidfd, CMSG_DATA(c), sizeof pidfd);
    fprintf(out, "signal %s\n", syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0 ? "ok" : strerrorname_np(errno));
  } else if (!strcmp(mode, "syslog") || !strcmp(mode, "syslog-big")) {
    /* probe syslog TEXT [COUNT]: COUNT (1) messages "TEXT" ("TEXT #i" when more) through glibc's
     * syslog(3) at auth.err; probe syslog-big SIZE: one of "big:", SIZE x's and ":end". Reports
     * what /dev/log is here ("devlog=socket|other|none"), its identity, and "sent=N". */
    struct stat st;
    fprintf(out, "devlog=%s ", stat("/dev/log", &st) != 0 ? "none" : S_ISSOCK(st.st_mode) ? "socket" : "other");
    print_id(out);
    fflush(out);
    openlog("probe", LOG_PID, LOG_AUTH);
    int count = 1;
    if (!strcmp(mode, "syslog-big")) {
      size_t size = argc > 2 ? (size_t)atol(argv[2]) : 4096;
      char* big = malloc(size + 1);
      memset(big, 'x', size);
      big[size] = 0;
      syslog(LOG_ERR, "big:%s:end", big);
      free(big);
    } else {
      count = argc > 3 ? atoi(argv[3]) : 1;
      for (int i = 0; i < count; ++i)
        if (count == 1)
          syslog(LOG_ERR, "%s", argc > 2 ? argv[2] : "hello");
        else
          syslog(LOG_ERR, "%s #%d", argc > 2 ? argv[2] : "hello", i);
    }
    closelog();
    fprintf(out, "sent=%d\n", count);
  } else if (escape_main(mode, argc, argv, out) != 0) {
    fprintf(stderr, "probe: unknown mode %s\n", mode);
    return 2;
  }
  fflush(out);
  return 0;
}
