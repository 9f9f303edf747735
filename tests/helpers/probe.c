/* probe: the service the integration tests run under superd. It reports, from inside the
 * instance, what the tests assert on: identity, environment, fd layout, and it misbehaves on
 * request (crash, daemonise, leave IPC objects behind, never read).
 * Usage: probe MODE [ARG]; output on fd 1 (or on the LISTEN_FDS fd 3 in "fds3" mode). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
    if (!strncmp(target, "socket:", 7)) strcpy(kind, "socket");
    else if (!strncmp(target, "pipe:", 5)) strcpy(kind, "pipe");
    else if (!strcmp(target, "/dev/null")) strcpy(kind, "null");
    fprintf(out, "fd %d %s\n", fd, kind);
  }
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
    fprintf(f, "LISTEN_FDS=%s LISTEN_PID=%s LISTEN_FDNAMES=%s getpid=%d\n", getenv("LISTEN_FDS"),
            getenv("LISTEN_PID"), getenv("LISTEN_FDNAMES"), (int)getpid());
    fclose(f);
  } else if (!strcmp(mode, "stderr")) {
    fprintf(stderr, "probe says hello on stderr\n");
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
  } else if (!strcmp(mode, "ipc")) {
    /* Leaves one of each IPC kind behind; prints their handles for the test to look for. */
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
  } else if (!strcmp(mode, "echo")) {
    char buf[4096];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0)
      if (write(1, buf, (size_t)n) != n) return 1;
  } else {
    fprintf(stderr, "probe: unknown mode %s\n", mode);
    return 2;
  }
  fflush(out);
  return 0;
}
