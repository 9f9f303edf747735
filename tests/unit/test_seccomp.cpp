// The syscall filter: settings rejected with the bad entry named, programs compiled, and
// programs loaded into forked children (no_new_privs + the raw seccomp syscall, exactly as
// spawn/child.cpp does) that report what the kernel answered. Each child probes one thing,
// reports through its exit code (an errno, 0 for success) and _exits; the parent reaps it.
// Scratch files live under /dev/shm, never /tmp (the sandbox replaces /tmp in services).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asm/unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "sandbox/landlock.hpp"
#include "sandbox/seccomp.hpp"
#include "spawn/plan.hpp"

// glibc 2.36's <sys/mount.h> clashes with <linux/mount.h> elsewhere; declare what we call.
extern "C" int mount(const char*, const char*, const char*, unsigned long, const void*) noexcept;
extern "C" int umount2(const char*, int) noexcept;

namespace sc = superd::seccomp;

namespace {

constexpr int kKilledBy = 1000;  // in_child(): 1000 + signal number when the child was killed
constexpr int kSetupFailed = 250;

// Runs `probe` in a forked child, after loading `prog` if given; returns the child's exit code
// (probe's result) or kKilledBy + the signal that killed it. Not instrumented by ASan
// (tests/sanitize/run): before _exit its runtime calls sigaltstack(2), which a narrow filter
// refuses, and it ends the child with a failed CHECK instead of the probe's result.
template <class Probe>
__attribute__((no_sanitize("address"))) int in_child(const sc::Program* prog, Probe probe) {
  pid_t pid = ::fork();
  if (pid < 0) FAIL("fork failed");
  if (pid == 0) {
    // Catch2's handlers would report a crash of the probe as a failure of its own.
    for (int sig : {SIGSEGV, SIGILL, SIGFPE, SIGBUS, SIGABRT, SIGTERM, SIGINT}) ::signal(sig, SIG_DFL);
    rlimit no_core{0, 0};  // a SIGSYS death must not leave a core file behind
    ::setrlimit(RLIMIT_CORE, &no_core);
    if (prog) {
      if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(kSetupFailed);
      if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog->fprog()) != 0) ::_exit(kSetupFailed);
    }
    ::_exit(probe());
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) return kKilledBy + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// 0 for success, else the errno of the failed call.
int result(long rc) {
  return rc < 0 ? errno : 0;
}

sc::Program must_compile(const sc::Settings& s) {
  std::string why;
  auto p = sc::compile(s, why);
  INFO("compile: " << why);
  REQUIRE(p);
  return std::move(*p);
}

std::string why_invalid(const sc::Settings& s) {
  std::string why;
  CHECK_FALSE(sc::validate(s, why));
  return why;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// A scratch directory under /dev/shm, removed with its files.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    char tmpl[] = "/dev/shm/superd-test-seccomp-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const char* name) const { return path + "/" + name; }
};

long x32_getpid() {
  return ::syscall(__X32_SYSCALL_BIT | __NR_getpid);
}

// getpid through the i386 ABI (int 0x80, i386 number 20).
long i386_getpid() {
  long ret;
  asm volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
  return ret;
}

}  // namespace

TEST_CASE("seccomp: validation names the bad entry") {
  sc::Settings s;
  std::string why;
  CHECK(sc::validate(s, why));

  s.system_call_filter = {"@system-service", "@nonsense"};
  CHECK(contains(why_invalid(s), "unknown syscall or group \"@nonsense\""));
  s.system_call_filter = {"~@mount", "frobnicate"};
  CHECK(contains(why_invalid(s), "\"frobnicate\""));
  s.system_call_filter = {"read", "~write"};
  CHECK(contains(why_invalid(s), "\"~write\""));
  s.system_call_filter = {"read", ""};
  CHECK(contains(why_invalid(s), "empty entry"));
  s.system_call_filter = {"~"};
  CHECK(contains(why_invalid(s), "empty entry \"~\""));
  // Known to libseccomp on some architecture, though not on x86-64: accepted, skipped.
  s.system_call_filter = {"~stime", "socketcall"};
  CHECK(sc::validate(s, why));
  s.system_call_filter = {};

  for (const char* bad : {"EFOO", "0", "4096", "-1", "perm", "killall"}) {
    s.system_call_error_number = bad;
    CHECK(contains(why_invalid(s), std::string("\"") + bad + "\""));
  }
  for (const char* good : {"EPERM", "EACCES", "ENOSYS", "13", "kill"}) {
    s.system_call_error_number = good;
    CHECK(sc::validate(s, why));
  }
  s.system_call_error_number = "";

  s.system_call_architectures = {"native", "sparc"};
  CHECK(contains(why_invalid(s), "\"sparc\""));
  s.system_call_architectures = {"native", "x86-64", "x32"};
  CHECK(sc::validate(s, why));

  s.restrict_address_families = {"AF_UNIX", "AF_FOO"};
  CHECK(contains(why_invalid(s), "\"AF_FOO\""));
  s.restrict_address_families = {"AF_UNIX", "~AF_INET"};
  CHECK(contains(why_invalid(s), "\"~AF_INET\""));
  // socketcall() hides the family from the filter on i386: refused rather than leaky.
  s.restrict_address_families = {"AF_UNIX"};
  s.system_call_architectures = {"native", "x86"};
  CHECK(contains(why_invalid(s), "\"x86\""));

  // compile() validates too and says the same.
  s.system_call_architectures = {"native"};
  s.system_call_filter = {"@nonsense"};
  CHECK_FALSE(sc::compile(s, why));
  CHECK(contains(why, "\"@nonsense\""));
}

TEST_CASE("seccomp: groups") {
  auto names = sc::group_names();
  for (const char* g : {"@mount",     "@module",         "@reboot",   "@swap",        "@raw-io",     "@clock",
                        "@debug",     "@cpu-emulation",  "@obsolete", "@privileged",  "@setuid",     "@keyring",
                        "@resources", "@system-service", "@basic-io", "@file-system", "@network-io", "@process",
                        "@signal",    "@timer",          "@ipc",      "@io-event",    "@default"})
    CHECK(std::count(names.begin(), names.end(), g) == 1);

  auto svc = sc::group_members("@system-service");
  for (const char* call : {"read", "openat", "socket", "execve", "clone", "rt_sigaction", "epoll_wait", "mmap"})
    CHECK(std::binary_search(svc.begin(), svc.end(), call));
  CHECK_FALSE(std::binary_search(svc.begin(), svc.end(), "mount"));
  auto priv = sc::group_members("@privileged");
  CHECK(std::binary_search(priv.begin(), priv.end(), "setresuid"));
  CHECK(std::binary_search(priv.begin(), priv.end(), "init_module"));  // via @module
  CHECK(sc::group_members("@nonsense").empty());

  // Every member is a name libseccomp knows (on some architecture), or one newer than it:
  // catches typos in the tables.
  const std::vector<std::string> newer = {"futex_requeue", "futex_wait", "futex_wake", "mseal"};
  for (const auto& g : names)
    for (const auto& m : sc::group_members(g)) {
      INFO(g << ": " << m);
      CHECK((seccomp_syscall_resolve_name(m.c_str()) != __NR_SCMP_ERROR ||
             std::count(newer.begin(), newer.end(), m) == 1));
    }
}

TEST_CASE("seccomp: compiles") {
  sc::Settings s;
  auto def = must_compile(s);
  CHECK(def.size() > 10);
  CHECK(def.size() <= BPF_MAXINSNS);
  CHECK(def.fprog()->len == def.size());

  // Moving keeps the program pointing at its own instructions.
  const sock_filter* insns = def.fprog()->filter;
  size_t n = def.size();
  sc::Program moved(std::move(def));
  CHECK(moved.size() == n);
  CHECK(moved.fprog()->filter == insns);
  CHECK(moved.fprog()->len == n);

  s.system_call_filter = {"@system-service"};
  CHECK(must_compile(s).size() > 0);
  s.system_call_filter = {"~@mount", "@module", "ptrace"};
  CHECK(must_compile(s).size() > 0);
  for (const char* e : {"EPERM", "EACCES", "ENOSYS", "13", "kill"}) {
    s.system_call_error_number = e;
    CHECK(must_compile(s).size() > 0);
  }
  s = {};
  s.system_call_architectures = {"native", "x86", "x32"};
  CHECK(must_compile(s).size() > 0);
  s = {};
  s.system_call_filter = {"@system-service"};
  s.restrict_address_families = {"~AF_PACKET"};
  CHECK(must_compile(s).size() > 0);
  s.default_deny_list = false;
  s.restrict_suid_sgid = false;
  s.restrict_address_families = {};
  s.system_call_filter = {};
  CHECK(must_compile(s).size() > 0);  // nothing but the architecture check

  std::string why;
  auto text = sc::pseudo_code(sc::Settings{}, why);
  REQUIRE(text);
  CHECK(contains(*text, "\"mount\""));
}

TEST_CASE("seccomp: the built-in deny list, in a child") {
  sc::Settings s;
  s.system_call_error_number = "EACCES";
  auto prog = must_compile(s);
  auto* p = &prog;

  CHECK(in_child(p, [] { return ::getpid() > 0 ? 0 : 1; }) == 0);
  CHECK(in_child(nullptr, [] { return result(::mount("none", "/nonexistent-superd-test", "tmpfs", 0, nullptr)); }) !=
        EACCES);
  CHECK(in_child(p, [] { return result(::mount("none", "/nonexistent-superd-test", "tmpfs", 0, nullptr)); }) == EACCES);
  CHECK(in_child(p, [] { return result(::umount2("/nonexistent-superd-test", 0)); }) == EACCES);
  CHECK(in_child(p, [] {
          user_regs_struct regs{};
          return result(::syscall(SYS_ptrace, PTRACE_GETREGS, ::getppid(), nullptr, &regs));
        }) == EACCES);
  CHECK(in_child(p, [] { return result(::syscall(SYS_init_module, nullptr, 0, "")); }) == EACCES);
  CHECK(in_child(p, [] { return result(::syscall(SYS_bpf, 0, nullptr, 0)); }) == EACCES);
  CHECK(in_child(p, [] { return result(::syscall(SYS_setns, 0, 0)); }) == EACCES);

  SECTION("namespaces: only creating one is refused") {
    CHECK(in_child(p, [] { return result(::unshare(CLONE_NEWNS)); }) == EACCES);
    CHECK(in_child(p, [] { return result(::unshare(CLONE_NEWUSER)); }) == EACCES);
    CHECK(in_child(p, [] { return result(::unshare(CLONE_FILES | CLONE_FS)); }) == 0);
    CHECK(in_child(p, [] {
            long rc = ::syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, nullptr, nullptr, nullptr, 0);
            if (rc == 0) ::_exit(0);  // only if the filter failed: the grandchild leaves at once
            if (rc > 0) ::waitpid(static_cast<pid_t>(rc), nullptr, 0);
            return result(rc);
          }) == EACCES);
    // clone3's flags are out of sight: ENOSYS, so libc falls back to clone.
    CHECK(in_child(p, [] { return result(::syscall(SYS_clone3, nullptr, 0)); }) == ENOSYS);
    CHECK(in_child(p, [] {
            pid_t pid = ::fork();
            if (pid == 0) ::_exit(7);
            int st = 0;
            ::waitpid(pid, &st, 0);
            return WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : 1;
          }) == 0);
    CHECK(in_child(p, [] {
            pthread_t t;
            if (::pthread_create(
                    &t, nullptr, [](void*) -> void* { return nullptr; }, nullptr) != 0)
              return 1;
            return ::pthread_join(t, nullptr) == 0 ? 0 : 2;
          }) == 0);
  }

  SECTION("personality: PER_LINUX only") {
    CHECK(in_child(p, [] { return result(::personality(PER_LINUX)); }) == 0);
    CHECK(in_child(p, [] { return result(::personality(ADDR_NO_RANDOMIZE)); }) == EACCES);
    CHECK(in_child(p, [] { return result(::personality(PER_LINUX32)); }) == EACCES);
    // A deny-list filter cannot tell the query from a change (see check_personality).
    CHECK(in_child(p, [] { return result(::personality(0xffffffff)); }) == EACCES);
  }

  SECTION("identity calls stay open unless asked for") {
    CHECK(in_child(p, [] { return result(::setresuid(-1, -1, -1)); }) == 0);
    CHECK(in_child(p, [] { return result(::setgroups(0, nullptr)); }) == (::getuid() == 0 ? 0 : EPERM));
  }
}

TEST_CASE("seccomp: deny lists and the error number") {
  sc::Settings s;
  s.system_call_filter = {"~@mount", "@module", "ptrace", "@setuid"};
  auto prog = must_compile(s);
  CHECK(in_child(&prog, [] { return result(::syscall(SYS_chroot, "/")); }) == EPERM);  // @mount
  CHECK(in_child(&prog, [] { return result(::setresuid(-1, -1, -1)); }) == EPERM);
  CHECK(in_child(&prog, [] { return result(::setresgid(-1, -1, -1)); }) == EPERM);
  CHECK(in_child(&prog, [] { return ::getpid() > 0 ? 0 : 1; }) == 0);

  SECTION("allow_identity_change keeps the UID switch working") {
    s.allow_identity_change = true;
    auto zygote = must_compile(s);
    CHECK(in_child(&zygote, [] { return result(::setresuid(-1, -1, -1)); }) == 0);
    CHECK(in_child(&zygote, [] { return result(::setresgid(-1, -1, -1)); }) == 0);
    CHECK(in_child(&zygote, [] { return result(::setuid(::getuid())); }) == EPERM);  // not part of it
  }

  SECTION("kill") {
    s.system_call_error_number = "kill";
    auto killer = must_compile(s);
    CHECK(in_child(&killer, [] { return result(::syscall(SYS_ptrace, PTRACE_PEEKUSER, ::getppid(), 0, 0)); }) ==
          kKilledBy + SIGSYS);
    CHECK(in_child(&killer, [] { return ::getpid() > 0 ? 0 : 1; }) == 0);
  }

  SECTION("a numeric errno") {
    s.system_call_error_number = "95";  // EOPNOTSUPP
    auto prog95 = must_compile(s);
    CHECK(in_child(&prog95, [] { return result(::syscall(SYS_chroot, "/")); }) == 95);
  }

  SECTION("without the built-in list, only what is listed") {
    s.default_deny_list = false;
    s.system_call_error_number = "EHWPOISON";  // an errno the kernel would not give here
    auto bare = must_compile(s);
    CHECK(in_child(&bare, [] { return result(::syscall(SYS_chroot, "/")); }) == EHWPOISON);
    CHECK(in_child(&bare, [] { return result(::unshare(CLONE_FILES)); }) == 0);
    CHECK(in_child(&bare, [] { return result(::syscall(SYS_bpf, -1, nullptr, 0)); }) != EHWPOISON);
    CHECK(in_child(&bare, [] { return result(::syscall(SYS_swapoff, "/nonexistent-superd-test")); }) != EHWPOISON);
  }
}

TEST_CASE("seccomp: other ABIs are refused") {
  sc::Settings s;
  auto prog = must_compile(s);
  // Unfiltered, x32 getpid either works or (x32 compiled out) fails with ENOSYS; filtered, the
  // filter kills before the kernel gets to say so.
  CHECK(in_child(nullptr, [] { return x32_getpid() == ::getpid() || errno == ENOSYS ? 0 : 1; }) == 0);
  CHECK(in_child(&prog, [] { return result(x32_getpid()); }) == kKilledBy + SIGSYS);

  s.system_call_error_number = "EACCES";  // the bad-ABI action is a kill whatever the errno
  auto eacces = must_compile(s);
  CHECK(in_child(&eacces, [] { return result(x32_getpid()); }) == kKilledBy + SIGSYS);

  if (in_child(nullptr, [] { return i386_getpid() == ::getpid() ? 0 : 1; }) != 0) {
    WARN("int 0x80 does not work on this kernel (no IA32 emulation); i386 checks skipped");
    return;
  }
  CHECK(in_child(&prog, [] { return i386_getpid() == ::getpid() ? 0 : 1; }) == kKilledBy + SIGSYS);
  s.system_call_architectures = {"native", "x86"};
  auto with_x86 = must_compile(s);
  CHECK(in_child(&with_x86, [] { return i386_getpid() == ::getpid() ? 0 : 1; }) == 0);
}

TEST_CASE("seccomp: restrict_suid_sgid") {
  ScratchDir dir;
  const std::string f = dir.file("plain");
  int fd = ::open(f.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  sc::Settings s;
  auto prog = must_compile(s);
  s.system_call_filter = {"@system-service"};
  auto allow = must_compile(s);

  for (const sc::Program* p : {&prog, &allow}) {
    INFO((p == &prog ? "deny-list filter" : "allow-list filter"));
    CHECK(in_child(p, [&] { return result(::fchmod(fd, 04755)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::fchmod(fd, 02755)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::fchmod(fd, 0644)); }) == 0);
    CHECK(in_child(p, [&] { return result(::chmod(f.c_str(), 06755)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::chmod(f.c_str(), 0640)); }) == 0);
    CHECK(in_child(p, [&] { return result(::fchmodat(AT_FDCWD, f.c_str(), 04700, 0)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::syscall(452 /* fchmodat2 */, AT_FDCWD, f.c_str(), 04700, 0)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::open(dir.file("suid").c_str(), O_CREAT | O_WRONLY, 04755)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::creat(dir.file("suid").c_str(), 02755)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::open(dir.path.c_str(), O_TMPFILE | O_WRONLY, 04755)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::mkdir(dir.file("sgid-dir").c_str(), 02755)); }) == EPERM);
    CHECK(in_child(p, [&] { return result(::mknod(dir.file("fifo").c_str(), S_IFIFO | 04600, 0)); }) == EPERM);
    CHECK(::access(dir.file("suid").c_str(), F_OK) != 0);
    // Opening an existing file: the mode argument is ignored, so is junk in it.
    CHECK(in_child(p, [&] { return result(::syscall(SYS_openat, AT_FDCWD, f.c_str(), O_RDONLY, 04755)); }) == 0);
    CHECK(in_child(p, [&] { return result(::open(dir.file("new").c_str(), O_CREAT | O_WRONLY, 0644)); }) == 0);
    CHECK(in_child(p, [&] { return result(::mkdir(dir.file("dir").c_str(), 0755)); }) == 0);
    ::unlink(dir.file("new").c_str());
    ::rmdir(dir.file("dir").c_str());
    // openat2 hides flags and mode in a struct: ENOSYS, so callers fall back to openat.
    CHECK(in_child(p, [&] { return result(::syscall(SYS_openat2, AT_FDCWD, f.c_str(), nullptr, 0)); }) == ENOSYS);
    CHECK(in_child(p, [&] { return result(::syscall(SYS_io_uring_setup, 1, nullptr)); }) == ENOSYS);
  }
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  CHECK((st.st_mode & (S_ISUID | S_ISGID)) == 0);

  s = {};
  s.restrict_suid_sgid = false;
  auto off = must_compile(s);
  CHECK(in_child(&off, [&] { return result(::fchmod(fd, 04755)); }) == 0);
  ::close(fd);
}

TEST_CASE("seccomp: restrict_address_families") {
  auto sock = [](long family, int type) {
    return [=] {
      long fd = ::syscall(SYS_socket, family, type | SOCK_CLOEXEC, 0);
      if (fd >= 0) ::close(static_cast<int>(fd));
      return result(fd);
    };
  };
  auto pair = [](int family) {
    return [=] {
      int sv[2];
      int rc = ::socketpair(family, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
      return result(rc);
    };
  };
  const long junk = 1L << 32;  // the kernel reads an int; the high half must not fool the filter

  SECTION("deny list") {
    for (const char* list : {"", "@system-service"}) {
      sc::Settings s;
      if (*list) s.system_call_filter = {list};
      s.restrict_address_families = {"~AF_PACKET", "AF_NETLINK"};
      auto prog = must_compile(s);
      INFO("system_call_filter: " << list);
      CHECK(in_child(&prog, sock(AF_PACKET, SOCK_RAW)) == EAFNOSUPPORT);
      CHECK(in_child(&prog, sock(junk | AF_PACKET, SOCK_RAW)) == EAFNOSUPPORT);
      CHECK(in_child(&prog, sock(AF_NETLINK, SOCK_RAW)) == EAFNOSUPPORT);
      CHECK(in_child(&prog, sock(AF_INET, SOCK_STREAM)) == 0);
      CHECK(in_child(&prog, sock(AF_INET6, SOCK_DGRAM)) == 0);
      CHECK(in_child(&prog, sock(AF_UNIX, SOCK_STREAM)) == 0);
      CHECK(in_child(&prog, pair(AF_UNIX)) == 0);
    }
  }

  SECTION("allow list") {
    for (const char* list : {"", "@system-service"}) {
      sc::Settings s;
      if (*list) s.system_call_filter = {list};
      s.restrict_address_families = {"AF_UNIX", "AF_INET"};
      auto prog = must_compile(s);
      INFO("system_call_filter: " << list);
      CHECK(in_child(&prog, sock(AF_INET, SOCK_STREAM)) == 0);
      CHECK(in_child(&prog, sock(AF_UNIX, SOCK_DGRAM)) == 0);
      CHECK(in_child(&prog, pair(AF_UNIX)) == 0);
      CHECK(in_child(&prog, sock(AF_INET6, SOCK_STREAM)) == EAFNOSUPPORT);
      CHECK(in_child(&prog, sock(AF_PACKET, SOCK_RAW)) == EAFNOSUPPORT);
      CHECK(in_child(&prog, sock(AF_NETLINK, SOCK_RAW)) == EAFNOSUPPORT);
      CHECK(in_child(&prog, sock(AF_UNSPEC, SOCK_STREAM)) == EAFNOSUPPORT);
      CHECK(in_child(&prog, sock(junk | AF_PACKET, SOCK_RAW)) == EAFNOSUPPORT);
      CHECK(in_child(&prog, pair(AF_INET6)) == EAFNOSUPPORT);
    }
  }
}

TEST_CASE("seccomp: @system-service runs ordinary programs") {
  sc::Settings s;
  s.system_call_filter = {"@system-service"};
  s.restrict_address_families = {"AF_UNIX", "AF_INET", "AF_INET6"};
  auto prog = must_compile(s);

  // Still refused under the allow list: the built-in deny list wins.
  CHECK(in_child(&prog, [] { return result(::mount("none", "/nonexistent-superd-test", "tmpfs", 0, nullptr)); }) ==
        EPERM);
  CHECK(in_child(&prog, [] { return result(::unshare(CLONE_NEWNS)); }) == EPERM);
  CHECK(in_child(&prog, [] { return result(::syscall(SYS_clone3, nullptr, 0)); }) == ENOSYS);
  CHECK(in_child(&prog, [] { return result(::syscall(SYS_ptrace, PTRACE_PEEKUSER, ::getppid(), 0, 0)); }) == EPERM);
  CHECK(in_child(&prog, [] { return result(::syscall(SYS_swapon, "/nonexistent-superd-test", 0)); }) == EPERM);
  // Not in the list at all.
  CHECK(in_child(&prog, [] { return result(::syscall(SYS_modify_ldt, 0, nullptr, 0)); }) == EPERM);
  // The allow-list filter can tell the personality query from a change.
  CHECK(in_child(&prog, [] { return result(::personality(0xffffffff)); }) == 0);
  CHECK(in_child(&prog, [] { return result(::personality(READ_IMPLIES_EXEC)); }) == EPERM);

  auto run = [&](std::vector<const char*> argv) {
    argv.push_back(nullptr);
    return in_child(&prog, [&] {
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execv(argv[0], const_cast<char* const*>(argv.data()));
      return 127;
    });
  };
  // The filter is loaded before exec, as in the real child.
  CHECK(run({"/bin/sh", "-c", "ls -la / && cat /etc/passwd | sort | head -n 3 && date && id && sleep 0.01"}) == 0);
  CHECK(run({"/bin/sh", "-c", "exit 3"}) == 3);
  if (::access("/usr/bin/python3", X_OK) == 0) {
    CHECK(run({"/usr/bin/python3", "-c",
               "import json, socket, subprocess, threading, hashlib, os, tempfile\n"
               "a, b = socket.socketpair(); a.send(b'x'); assert b.recv(1) == b'x'\n"
               "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(('127.0.0.1', 0)); s.listen()\n"
               "assert subprocess.run(['/bin/true']).returncode == 0\n"
               "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
               "print(json.dumps({'pid': os.getpid(), 'h': hashlib.sha256(b'x').hexdigest()}))\n"}) == 0);
  } else {
    WARN("no /usr/bin/python3; skipped");
  }
}

TEST_CASE("seccomp: the review's additions to the built-in deny list") {
  // Each call in a form that works unconfined (as root or not), so EPERM can only be the filter.
  auto fanotify = [] { return result(::syscall(SYS_fanotify_init, 0x200 /* FAN_REPORT_FID */, 0)); };
  auto secret = [] { return result(::syscall(447 /* memfd_secret */, 0)); };
  auto ldt = [] {
    char buf[16];
    return result(::syscall(SYS_modify_ldt, 0, buf, sizeof buf));
  };
  auto kcmp = [] { return result(::syscall(SYS_kcmp, ::getpid(), ::getpid(), 0 /* KCMP_FILE */, 1, 1)); };
  CHECK(in_child(nullptr, fanotify) == 0);
  CHECK(in_child(nullptr, ldt) == 0);
  CHECK(in_child(nullptr, kcmp) == 0);
  const int secret_unconfined = in_child(nullptr, secret);  // ENOSYS where secretmem is off
  for (const char* list : {"", "@system-service", "~@mount"}) {
    INFO("system_call_filter: " << list);
    sc::Settings s;
    if (*list) s.system_call_filter = {list};
    auto prog = must_compile(s);
    CHECK(in_child(&prog, fanotify) == EPERM);
    CHECK(in_child(&prog, secret) == EPERM);
    CHECK(in_child(&prog, ldt) == EPERM);
    CHECK(in_child(&prog, kcmp) == EPERM);  // kcmp is in @system-service: the deny list wins
  }
  sc::Settings off;
  off.default_deny_list = false;
  auto bare = must_compile(off);
  CHECK(in_child(&bare, kcmp) == 0);
  CHECK(in_child(&bare, secret) == secret_unconfined);
}

namespace {

// Loads the zygote's base and gate in a child, as spawn/zygote.cpp does, then runs `before`
// (the instance set-up's window), loads the tail if any, and returns `after`'s result; `before`
// failing returns 200 + its result.
template <class Before, class After>
int in_zygote_child(const sc::Settings& whole, Before before, After after) {
  constexpr uint32_t kFlags = CLONE_VM | CLONE_VFORK | CLONE_PARENT | CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID;
  std::string why;
  sc::Settings base = whole, tail = whole;
  base.part = sc::Settings::Part::zygote_base;
  tail.part = sc::Settings::Part::instance_tail;
  auto b = sc::compile(base, why);
  auto g = sc::zygote_gate(whole, kFlags, why);
  INFO(why);
  REQUIRE(b);
  REQUIRE(g);
  std::optional<sc::Program> t;
  if (sc::needs_instance_tail(whole)) t = sc::compile(tail, why);
  const sc::Program* tp = t ? &*t : nullptr;
  return in_child(&*b, [&] {
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, g->fprog()) != 0) return kSetupFailed;
    if (int r = before(); r != 0) return 200 + r;
    if (tp && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, tp->fprog()) != 0) return kSetupFailed;
    return after();
  });
}

}  // namespace

TEST_CASE("seccomp: allow lists through the zygote (base, gate, tail)") {
  auto ok = [] { return 0; };
  auto setresuid_self = [] { return result(::syscall(SYS_setresuid, -1, -1, -1)); };
  auto prctl_get = [] { return result(::syscall(SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0)); };
  auto mincore_self = [] {
    static char page[4096] __attribute__((aligned(4096)));
    unsigned char vec;
    return result(::syscall(SYS_mincore, page, 1, &vec));
  };
  auto mount_any = [] { return result(::mount("none", "/nonexistent-superd-test", "tmpfs", 0, nullptr)); };

  SECTION("@system-service: a zygote, and nothing to load per instance") {
    sc::Settings s;
    s.system_call_filter = {"@system-service"};
    CHECK(sc::zygote_compatible(s));
    CHECK_FALSE(sc::needs_instance_tail(s));
    auto whole = must_compile(s);
    CHECK(in_child(&whole, mincore_self) == EPERM);  // outside the list
    CHECK(in_zygote_child(s, ok, mincore_self) == EPERM);
    CHECK(in_zygote_child(s, ok, mount_any) == EPERM);
    CHECK(in_zygote_child(s, ok, setresuid_self) == 0);  // in @setuid, as for the whole filter
    CHECK(in_zygote_child(s, ok, [] { return result(::unshare(CLONE_NEWNS)); }) == EPERM);
    CHECK(in_zygote_child(s, ok, [] { return result(::syscall(SYS_kcmp, ::getpid(), ::getpid(), 0, 1, 1)); }) == EPERM);
  }

  SECTION("a narrow list: the base opens the set-up's calls, the tail closes them") {
    sc::Settings s;
    s.system_call_filter = {"@basic-io", "@file-system", "mprotect"};
    CHECK(sc::zygote_compatible(s));
    CHECK(sc::needs_instance_tail(s));
    auto whole = must_compile(s);
    CHECK(in_child(&whole, setresuid_self) == EPERM);
    CHECK(in_child(&whole, prctl_get) == EPERM);
    // In the set-up's window the calls work; after the tail they answer as the whole filter.
    CHECK(in_zygote_child(s, setresuid_self, setresuid_self) == EPERM);
    CHECK(in_zygote_child(s, prctl_get, prctl_get) == EPERM);
    CHECK(in_zygote_child(
              s, [] { return result(::syscall(SYS_umask, 022)); }, [] { return result(::syscall(SYS_umask, 022)); }) ==
          EPERM);
    CHECK(in_zygote_child(s, ok, mount_any) == EPERM);
    CHECK(in_zygote_child(s, ok, mincore_self) == EPERM);
    CHECK(in_zygote_child(s, ok, [] { return result(::getpid()); }) == 0);
    CHECK(in_zygote_child(s, ok, [] { return result(::syscall(SYS_clone3, nullptr, 0)); }) == ENOSYS);

    s.system_call_error_number = "EHWPOISON";  // the tail refuses with the configured action
    CHECK(in_zygote_child(s, setresuid_self, setresuid_self) == EHWPOISON);
  }

  SECTION("families without AF_INET: the set-up's loopback socket passes, the service's does not") {
    sc::Settings s;
    s.restrict_address_families = {"AF_UNIX"};
    CHECK(sc::needs_instance_tail(s));
    auto inet = [] {
      long fd = ::syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) ::close(static_cast<int>(fd));
      return result(fd);
    };
    CHECK(in_zygote_child(s, inet, inet) == EAFNOSUPPORT);
    CHECK(in_zygote_child(s, ok, [] {
            long fd = ::syscall(SYS_socket, AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            return result(fd);
          }) == EAFNOSUPPORT);
    s.restrict_address_families = {"AF_UNIX", "AF_INET", "AF_INET6"};  // the default
    CHECK_FALSE(sc::needs_instance_tail(s));
  }

  SECTION("the built-in deny list alone needs no tail") {
    sc::Settings s;
    CHECK_FALSE(sc::needs_instance_tail(s));
    s.system_call_filter = {"~@setuid"};  // was no zygote at all; now a zygote and a tail
    CHECK(sc::zygote_compatible(s));
    CHECK(sc::needs_instance_tail(s));
    CHECK(in_zygote_child(s, setresuid_self, setresuid_self) == EPERM);
  }
}

TEST_CASE("plan: allow-list services spawn through the zygote") {
  auto plan_for = [](const std::string& extra) {
    superd::config::Problems p;
    auto svc = superd::config::parse_service("[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/bin/true\"]\n" + extra,
                                             "s.toml", "s", p);
    REQUIRE(svc);
    superd::sandbox::Roots roots{"/run", "/var/lib", "/var/cache", "/var/log"};
    auto plan = superd::spawn::make_service_plan(*svc, roots, nullptr, {}, std::nullopt, true);
    REQUIRE(plan);
    return std::move(*plan);
  };
  auto ss = plan_for("system_call_filter = [\"@system-service\"]\n");
  CHECK(ss.use_zygote);
  CHECK(ss.filter);
  CHECK(ss.gate_filter);
  CHECK_FALSE(ss.tail_filter);
  auto narrow = plan_for("system_call_filter = [\"@basic-io\", \"@file-system\"]\n");
  CHECK(narrow.use_zygote);
  CHECK(narrow.tail_filter);
  auto deny = plan_for("");
  CHECK(deny.use_zygote);
  CHECK_FALSE(deny.tail_filter);
  // The Landlock scopes of a dynamic-user service: on where the kernel has them, and then
  // nothing is missing; off when asked.
  CHECK((deny.landlock_scopes | deny.landlock_missing) ==
        (superd::sandbox::landlock::kScopeAbstractUnixSocket | superd::sandbox::landlock::kScopeSignal));
  auto off = plan_for("restrict_abstract_sockets = false\nrestrict_signals = false\n");
  CHECK(off.landlock_scopes == 0);
  CHECK(off.landlock_missing == 0);
}

TEST_CASE("config: the default address families and the Landlock keys") {
  auto sandbox_of = [](const std::string& extra) {
    superd::config::Problems p;
    auto svc = superd::config::parse_service("[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/bin/true\"]\n" + extra,
                                             "s.toml", "s", p);
    REQUIRE(svc);
    return svc->service.sandbox;
  };
  using V = std::vector<std::string>;
  auto dflt = sandbox_of("");
  CHECK(dflt.seccomp.restrict_address_families == V{"AF_UNIX", "AF_INET", "AF_INET6"});
  CHECK(dflt.restrict_abstract_sockets);
  CHECK(dflt.restrict_signals);
  CHECK(sandbox_of("restrict_address_families = []\n").seccomp.restrict_address_families.empty());
  CHECK(sandbox_of("restrict_address_families = [\"~AF_PACKET\"]\n").seccomp.restrict_address_families ==
        V{"~AF_PACKET"});
  // socketcall() would hide the family: the default gives way instead of failing the service.
  CHECK(sandbox_of("system_call_architectures = [\"native\", \"x86\"]\n").seccomp.restrict_address_families.empty());
  auto off = sandbox_of("restrict_abstract_sockets = false\nrestrict_signals = false\n");
  CHECK_FALSE(off.restrict_abstract_sockets);
  CHECK_FALSE(off.restrict_signals);
  auto stat = sandbox_of("dynamic_user = false\nuser = \"nobody\"\n");
  CHECK(stat.seccomp.restrict_address_families.empty());
  CHECK_FALSE(stat.restrict_abstract_sockets);
}

TEST_CASE("seccomp: instance_attach lets the instance's move_mount through the zygote's gate, and only that form") {
  auto move = [](unsigned flags) {
    return [flags] { return result(::syscall(SYS_move_mount, -1, "", AT_FDCWD, "/nonexistent-superd-test", flags)); };
  };
  auto ok = [] { return 0; };
  sc::Settings s;  // the built-in deny list refuses move_mount
  CHECK(in_zygote_child(s, ok, move(sc::kInstanceMoveMountFlags)) == EPERM);  // no attach: refused as before
  s.instance_attach = true;
  CHECK_FALSE(sc::needs_instance_tail(s));                                     // the gate's, as mount() is
  CHECK(in_zygote_child(s, ok, move(sc::kInstanceMoveMountFlags)) == ENOENT);  // reaches the kernel: no target
  CHECK(in_zygote_child(s, ok, move(0x04)) == EPERM);                          // MOVE_MOUNT_F_EMPTY_PATH alone: refused
  sc::Settings allow;
  allow.system_call_filter = {"@system-service"};
  allow.instance_attach = true;
  CHECK(in_zygote_child(allow, move(sc::kInstanceMoveMountFlags), ok) == 200 + ENOENT);  // the set-up's window
}
