/* nss_stress FIRST LAST SECONDS THREADS: THREADS threads call getpwuid_r and getgrgid_r for every
 * UID of [FIRST, LAST] through glibc (so through libnss_superd.so.2 when nsswitch.conf names it)
 * until SECONDS pass. Every answer must be whole: the name "superd-UID" for the UID asked (or a
 * named lease's name, which holds no "superd-" prefix), the number asked, GECOS and shell as the
 * module writes them. Prints "lookups=N found=N torn=N" and exits 1 on any torn answer. */
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned first, last;
static double seconds;
static long lookups, found, torn;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int whole_name(const char* name, unsigned id) {
  char want[32];
  snprintf(want, sizeof want, "superd-%u", id);
  return strcmp(name, want) == 0 || strncmp(name, "superd-", 7) != 0;
}

static void* run(void* arg) {
  (void)arg;
  long l = 0, f = 0, t = 0;
  char buf[1024];
  double end = now() + seconds;
  while (now() < end) {
    for (unsigned id = first; id <= last; ++id) {
      struct passwd pw, *pr = NULL;
      struct group gr, *gp = NULL;
      ++l;
      if (getpwuid_r(id, &pw, buf, sizeof buf, &pr) == 0 && pr) {
        ++f;
        if (pw.pw_uid != id || pw.pw_gid != id || !whole_name(pw.pw_name, id) ||
            strcmp(pw.pw_gecos, "superd dynamic user") || strcmp(pw.pw_shell, "/usr/sbin/nologin"))
          ++t, fprintf(stderr, "torn passwd for %u: %s %u\n", id, pw.pw_name, (unsigned)pw.pw_uid);
      }
      ++l;
      if (getgrgid_r(id, &gr, buf, sizeof buf, &gp) == 0 && gp) {
        ++f;
        if (gr.gr_gid != id || !whole_name(gr.gr_name, id) || gr.gr_mem[0] != NULL)
          ++t, fprintf(stderr, "torn group for %u: %s\n", id, gr.gr_name);
      }
    }
  }
  pthread_mutex_lock(&mu);
  lookups += l, found += f, torn += t;
  pthread_mutex_unlock(&mu);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: nss_stress FIRST LAST SECONDS THREADS\n");
    return 2;
  }
  first = (unsigned)strtoul(argv[1], NULL, 10);
  last = (unsigned)strtoul(argv[2], NULL, 10);
  seconds = atof(argv[3]);
  int n = atoi(argv[4]);
  pthread_t th[64];
  if (n < 1 || n > 64) return 2;
  for (int i = 0; i < n; ++i) pthread_create(&th[i], NULL, run, NULL);
  for (int i = 0; i < n; ++i) pthread_join(th[i], NULL);
  printf("lookups=%ld found=%ld torn=%ld\n", lookups, found, torn);
  return torn ? 1 : 0;
}
