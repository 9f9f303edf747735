#include "cleanup/proc.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

#include "util/unique_fd.hpp"

namespace superd::cleanup::proc {
namespace {

// Reads the Uid: line and State: of /proc/PID/status; false if gone.
bool read_status(int proc_fd, const char* pid, uint32_t uids[4], bool& zombie) {
  char path[64];
  std::snprintf(path, sizeof path, "%s/status", pid);
  UniqueFd fd(::openat(proc_fd, path, O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  char buf[4096];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* st = std::strstr(buf, "\nState:");
  zombie = st && std::strchr(st + 7, 'Z') && std::strchr(st + 7, 'Z') < std::strchr(st + 7, '\n');
  const char* u = std::strstr(buf, "\nUid:");
  if (!u) return false;
  char* p = const_cast<char*>(u + 5);
  for (int i = 0; i < 4; ++i) uids[i] = static_cast<uint32_t>(std::strtoul(p, &p, 10));
  return true;
}

template <typename Fn>
void each_process(Fn fn) {
  UniqueFd proc_fd(::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!proc_fd) return;
  DIR* d = ::fdopendir(::dup(proc_fd.get()));
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    uint32_t uids[4];
    bool zombie = false;
    if (read_status(proc_fd.get(), e->d_name, uids, zombie) && !zombie) fn(uids);
  }
  ::closedir(d);
}

bool any_process_of(uint32_t uid) {
  bool found = false;
  each_process([&](const uint32_t* u) {
    for (int i = 0; i < 4; ++i) found = found || u[i] == uid;
  });
  return found;
}

}  // namespace

std::vector<uint32_t> uids_in_range(uint32_t lo, uint32_t hi) {
  std::vector<uint32_t> out;
  each_process([&](const uint32_t* u) {
    for (int i = 0; i < 4; ++i)
      if (u[i] >= lo && u[i] <= hi) out.push_back(u[i]);
  });
  return out;
}

std::error_code kill_all_of_uid(uint32_t uid) {
  // Rare (orphans after a crash): a plain fork is acceptable here.
  for (int round = 0; round < 50; ++round) {
    pid_t pid = ::fork();
    if (pid < 0) return {errno, std::generic_category()};
    if (pid == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) _exit(2);
      // kill(-1) skips the caller and init; zombies still "receive" it, so bound the loop.
      for (int i = 0; i < 100 && ::kill(-1, SIGKILL) == 0; ++i) ::usleep(1000);
      _exit(0);
    }
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return std::make_error_code(std::errc::operation_not_permitted);
    if (!any_process_of(uid)) return {};
    ::usleep(10000);
  }
  return std::make_error_code(std::errc::resource_unavailable_try_again);
}

}  // namespace superd::cleanup::proc
