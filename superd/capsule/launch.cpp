// launch(): the capsule's superd in new user, mount, PID and IPC namespaces (capsule.hpp). The
// parent writes the block's uid_map and gid_map while the child waits on a pipe; the child then
// only makes system calls, each checked: a failed step is written to the log fd and the child
// exits 127, so the capsule never runs with less isolation than described.
#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "capsule/capsule.hpp"

extern char** environ;

namespace superd::capsule {
namespace {

[[noreturn]] void die(int log_fd, const char* step, const std::string& path = {}) {
  int err = errno;
  char line[512];
  int n = std::snprintf(line, sizeof line, "capsule set-up step %s%s%s failed: %s\n", step, path.empty() ? "" : " ",
                        path.c_str(), std::strerror(err));
  if (n > 0 && ::write(log_fd, line, static_cast<size_t>(std::min<int>(n, sizeof line - 1))) < 0) {
  }
  ::_exit(127);
}

int setattr(const char* path, unsigned flags, uint64_t set, uint64_t clr) {
  mount_attr a{};
  a.attr_set = set;
  a.attr_clr = clr;
  return static_cast<int>(::syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &a, sizeof a));
}

// A detached copy of the mount at `path`, to put back after its parent is covered.
int clone_tree(const char* path) {
  return static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
}

int put_tree(int fd, const char* path) {
  return static_cast<int>(::syscall(SYS_move_mount, fd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH));
}

void mkdirs(const std::string& path) {
  for (size_t at = 1; at != std::string::npos; at = path.find('/', at + 1)) ::mkdir(path.substr(0, at).c_str(), 0755);
  ::mkdir(path.c_str(), 0755);
}

[[noreturn]] void child(const LaunchSpec& s, int sync_fd) {
  int log = s.log_fd;
  char go = 0;
  if (::read(sync_fd, &go, 1) != 1) ::_exit(127);  // the parent is gone, or failed to map
  ::close(sync_fd);
  // Root of the new user namespace: host UID `block`.
  if (::setgroups(0, nullptr) != 0) die(log, "setgroups");
  if (::setresgid(0, 0, 0) != 0) die(log, "setresgid");
  if (::setresuid(0, 0, 0) != 0) die(log, "setresuid");
  // After the credentials change (which clears it): the daemon's death kills the capsule, and
  // with it its PID namespace. If the daemon died before this, the pipe it holds says so.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die(log, "pdeathsig");
  pollfd alive{s.alive_fd, POLLIN, 0};
  if (::poll(&alive, 1, 0) != 0) ::_exit(127);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) die(log, "mount --make-rprivate /");
  // The writable places, kept aside before the OS goes read-only.
  if (::mount(s.home.c_str(), s.home.c_str(), nullptr, MS_BIND, nullptr) != 0) die(log, "bind", s.home);
  if (::mount(s.runtime_dir.c_str(), s.runtime_dir.c_str(), nullptr, MS_BIND, nullptr) != 0)
    die(log, "bind", s.runtime_dir);
  int home_fd = clone_tree(s.home.c_str());
  if (home_fd < 0) die(log, "open_tree", s.home);
  int run_fd = clone_tree(s.runtime_dir.c_str());
  if (run_fd < 0) die(log, "open_tree", s.runtime_dir);
  // Private /tmp, /var/tmp, /dev/shm; a /proc of the capsule's PID namespace.
  for (const char* t : {"/tmp", "/var/tmp", "/dev/shm"})
    if (::mount("tmpfs", t, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64M") != 0) die(log, "tmpfs", t);
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) die(log, "mount /proc");
  // Other capsules, the host's boundary directories and superd's own: covered.
  for (const std::string& h : s.hide)
    if (::access(h.c_str(), F_OK) == 0 &&
        ::mount("tmpfs", h.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16k,nr_inodes=64") != 0)
      die(log, "tmpfs over", h);
  mkdirs(s.home);  // mount points in a covering tmpfs
  mkdirs(s.runtime_dir);
  // The whole tree read-only and nosuid, then the two writable places put back.
  if (setattr("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0) != 0) die(log, "mount_setattr / read-only");
  for (auto [fd, path] : {std::pair{home_fd, &s.home}, std::pair{run_fd, &s.runtime_dir}}) {
    if (put_tree(fd, path->c_str()) != 0) die(log, "move_mount", *path);
    if (setattr(path->c_str(), AT_RECURSIVE, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0) != 0)
      die(log, "mount_setattr nosuid", *path);
    ::close(fd);
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(log, "no_new_privs");
  if (::chdir(s.home.c_str()) != 0) die(log, "chdir", s.home);
  if (::dup2(s.ready_fd, 3) != 3) die(log, "dup2 ready");
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || ::dup2(null, 0) != 0 || ::dup2(log, 1) != 1 || ::dup2(log, 2) != 2) die(log, "stdio");
  ::close_range(4, ~0U, 0);
  std::string user = "capsule-" + s.name;
  std::string env_home = "HOME=" + s.home, env_user = "USER=" + user, env_logname = "LOGNAME=" + user;
  const char* envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        env_home.c_str(),
                        env_user.c_str(),
                        env_logname.c_str(),
                        "SUPERD_LOG_STYLE=plain",
                        nullptr};
  const char* argv[] = {s.exe.c_str(),
                        "serve",
                        "--capsule",
                        s.name.c_str(),
                        "--capsule-home",
                        s.home.c_str(),
                        "--capsule-runtime",
                        s.runtime_dir.c_str(),
                        "--ready-fd",
                        "3",
                        nullptr};
  ::execve(s.exe.c_str(), const_cast<char**>(argv), const_cast<char**>(envp));
  die(2, "exec", s.exe);
}

bool write_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

}  // namespace

Launched launch(const LaunchSpec& s, std::string& error) {
  Launched out;
  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) != 0) {
    error = std::string("pipe2: ") + std::strerror(errno);
    return out;
  }
  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  // fork()-like (no new stack): the daemon is single-threaded, and the child only makes calls.
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    ::close(sync[1]);
    child(s, sync[0]);
  }
  ::close(sync[0]);
  if (pid < 0) {
    error = std::string("clone3: ") + std::strerror(errno);
    ::close(sync[1]);
    return out;
  }
  out.pid = static_cast<pid_t>(pid);
  out.pidfd.reset(pidfd);
  std::string map = "0 " + std::to_string(s.block) + " " + std::to_string(kBlockSize) + "\n";
  std::string proc = "/proc/" + std::to_string(pid);
  if (!write_file(proc + "/uid_map", map) || !write_file(proc + "/gid_map", map)) {
    error = "cannot map the capsule's UIDs: " + std::string(std::strerror(errno));
    ::close(sync[1]);  // the child reads EOF and exits
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    ::waitpid(out.pid, nullptr, 0);
    out.pid = -1;
    out.pidfd.reset();
    return out;
  }
  char go = 1;
  if (::write(sync[1], &go, 1) != 1) error = std::string("sync: ") + std::strerror(errno);
  ::close(sync[1]);
  return out;
}

}  // namespace superd::capsule
