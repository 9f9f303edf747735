// The names the seccomp settings are written in: see seccomp_names.hpp.
#include "sandbox/seccomp_names.hpp"

#include <linux/audit.h>
#include <seccomp.h>
#include <string.h>
#include <sys/socket.h>

#include "sandbox/seccomp.hpp"

namespace superd::sandbox::seccomp {
namespace detail {

using std::string_view;

// ---- Groups, modelled on systemd's (src/shared/seccomp-util.c). Names this libseccomp does
// not know (other architectures' calls, calls newer than the library) are skipped at compile
// time; a unit test checks every name is known to libseccomp or to be newer than it.

constexpr string_view kDefault[] = {
    // What every process needs to start, run and exit, whatever else it is allowed.
    "arch_prctl",
    "brk",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "execve",
    "exit",
    "exit_group",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "get_robust_list",
    "get_thread_area",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getsid",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "map_shadow_stack",
    "membarrier",
    "mmap",
    "mmap2",
    "munmap",
    "nanosleep",
    "pause",
    "prlimit64",
    "restart_syscall",
    "rseq",
    "rt_sigreturn",
    "sched_getaffinity",
    "sched_yield",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "set_tls",
    "sigreturn",
    "time",
    "ugetrlimit"};
constexpr string_view kAio[] = {
    "io_cancel", "io_destroy", "io_getevents",   "io_pgetevents",     "io_pgetevents_time64",
    "io_setup",  "io_submit",  "io_uring_enter", "io_uring_register", "io_uring_setup"};
constexpr string_view kBasicIo[] = {"_llseek",  "close",   "close_range", "dup",     "dup2",     "dup3",
                                    "lseek",    "pread64", "preadv",      "preadv2", "pwrite64", "pwritev",
                                    "pwritev2", "read",    "readv",       "write",   "writev"};
constexpr string_view kChown[] = {"chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32"};
constexpr string_view kClock[] = {
    "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64", "settimeofday", "stime"};
constexpr string_view kCpuEmulation[] = {"modify_ldt", "subpage_prot", "switch_endian", "vm86", "vm86old"};
constexpr string_view kDebug[] = {"lookup_dcookie", "perf_event_open",    "pidfd_getfd",         "ptrace",
                                  "rtas",           "s390_runtime_instr", "sys_debug_setcontext"};
constexpr string_view kFileSystem[] = {"access",
                                       "chdir",
                                       "chmod",
                                       "close",
                                       "creat",
                                       "faccessat",
                                       "faccessat2",
                                       "fallocate",
                                       "fchdir",
                                       "fchmod",
                                       "fchmodat",
                                       "fchmodat2",
                                       "fcntl",
                                       "fcntl64",
                                       "fgetxattr",
                                       "flistxattr",
                                       "fremovexattr",
                                       "fsetxattr",
                                       "fstat",
                                       "fstat64",
                                       "fstatat64",
                                       "fstatfs",
                                       "fstatfs64",
                                       "ftruncate",
                                       "ftruncate64",
                                       "futimesat",
                                       "getcwd",
                                       "getdents",
                                       "getdents64",
                                       "getxattr",
                                       "inotify_add_watch",
                                       "inotify_init",
                                       "inotify_init1",
                                       "inotify_rm_watch",
                                       "lgetxattr",
                                       "link",
                                       "linkat",
                                       "listxattr",
                                       "llistxattr",
                                       "lremovexattr",
                                       "lsetxattr",
                                       "lstat",
                                       "lstat64",
                                       "mkdir",
                                       "mkdirat",
                                       "mknod",
                                       "mknodat",
                                       "mmap",
                                       "mmap2",
                                       "munmap",
                                       "newfstatat",
                                       "oldfstat",
                                       "oldlstat",
                                       "oldstat",
                                       "open",
                                       "openat",
                                       "openat2",
                                       "readlink",
                                       "readlinkat",
                                       "removexattr",
                                       "rename",
                                       "renameat",
                                       "renameat2",
                                       "rmdir",
                                       "setxattr",
                                       "stat",
                                       "stat64",
                                       "statfs",
                                       "statfs64",
                                       "statx",
                                       "symlink",
                                       "symlinkat",
                                       "truncate",
                                       "truncate64",
                                       "unlink",
                                       "unlinkat",
                                       "utime",
                                       "utimensat",
                                       "utimensat_time64",
                                       "utimes"};
constexpr string_view kIoEvent[] = {
    "_newselect",   "epoll_create", "epoll_create1",  "epoll_ctl",       "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait",   "epoll_wait_old", "eventfd",         "eventfd2",      "poll",
    "ppoll",        "ppoll_time64", "pselect6",       "pselect6_time64", "select"};
constexpr string_view kIpc[] = {"ipc",
                                "memfd_create",
                                "mq_getsetattr",
                                "mq_notify",
                                "mq_open",
                                "mq_timedreceive",
                                "mq_timedreceive_time64",
                                "mq_timedsend",
                                "mq_timedsend_time64",
                                "mq_unlink",
                                "msgctl",
                                "msgget",
                                "msgrcv",
                                "msgsnd",
                                "pipe",
                                "pipe2",
                                "process_vm_readv",
                                "process_vm_writev",
                                "semctl",
                                "semget",
                                "semop",
                                "semtimedop",
                                "semtimedop_time64",
                                "shmat",
                                "shmctl",
                                "shmdt",
                                "shmget"};
constexpr string_view kKeyring[] = {"add_key", "keyctl", "request_key"};
constexpr string_view kMemlock[] = {"mlock", "mlock2", "mlockall", "munlock", "munlockall"};
constexpr string_view kModule[] = {"delete_module", "finit_module", "init_module"};
constexpr string_view kMount[] = {"chroot",        "fsconfig",   "fsmount",   "fsopen",     "fspick", "mount",
                                  "mount_setattr", "move_mount", "open_tree", "pivot_root", "umount", "umount2"};
constexpr string_view kNetworkIo[] = {
    "accept", "accept4",    "bind",     "connect",         "getpeername", "getsockname", "getsockopt", "listen",
    "recv",   "recvfrom",   "recvmmsg", "recvmmsg_time64", "recvmsg",     "send",        "sendmmsg",   "sendmsg",
    "sendto", "setsockopt", "shutdown", "socket",          "socketcall",  "socketpair"};
constexpr string_view kObsolete[] = {
    "_sysctl", "afs_syscall",  "bdflush",  "break",    "create_module", "ftime", "get_kernel_syms",
    "getpmsg", "gtty",         "idle",     "lock",     "mpx",           "prof",  "profil",
    "putpmsg", "query_module", "security", "sgetmask", "ssetmask",      "stty",  "sysfs",
    "tuxcall", "ulimit",       "uselib",   "ustat",    "vserver"};
constexpr string_view kPkey[] = {"pkey_alloc", "pkey_free", "pkey_mprotect"};
constexpr string_view kPrivileged[] = {
    "@chown",      "@clock",        "@module",       "@raw-io",       "@reboot",
    "@swap",       "_sysctl",       "acct",          "bpf",           "capset",
    "chroot",      "fanotify_init", "fanotify_mark", "nfsservctl",    "open_by_handle_at",
    "pivot_root",  "quotactl",      "quotactl_fd",   "setdomainname", "setfsuid",
    "setfsuid32",  "setgroups",     "setgroups32",   "sethostname",   "setresuid",
    "setresuid32", "setreuid",      "setreuid32",    "setuid",        "setuid32",
    "vhangup"};
constexpr string_view kProcess[] = {"arch_prctl",
                                    "capget",
                                    "clone",
                                    "clone3",
                                    "execveat",
                                    "fork",
                                    "getrusage",
                                    "kill",
                                    "pidfd_open",
                                    "pidfd_send_signal",
                                    "prctl",
                                    "rt_sigqueueinfo",
                                    "rt_tgsigqueueinfo",
                                    "setns",
                                    "swapcontext",
                                    "tgkill",
                                    "times",
                                    "tkill",
                                    "unshare",
                                    "vfork",
                                    "wait4",
                                    "waitid",
                                    "waitpid"};
constexpr string_view kRawIo[] = {"ioperm",
                                  "iopl",
                                  "pciconfig_iobase",
                                  "pciconfig_read",
                                  "pciconfig_write",
                                  "s390_pci_mmio_read",
                                  "s390_pci_mmio_write"};
constexpr string_view kReboot[] = {"kexec_file_load", "kexec_load", "reboot"};
constexpr string_view kResources[] = {"ioprio_set",
                                      "mbind",
                                      "migrate_pages",
                                      "move_pages",
                                      "nice",
                                      "sched_setaffinity",
                                      "sched_setattr",
                                      "sched_setparam",
                                      "sched_setscheduler",
                                      "set_mempolicy",
                                      "set_mempolicy_home_node",
                                      "setpriority",
                                      "setrlimit"};
constexpr string_view kSandbox[] = {"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
                                    "seccomp"};
constexpr string_view kSetuid[] = {"setgid",     "setgid32",   "setgroups",   "setgroups32", "setregid",
                                   "setregid32", "setresgid",  "setresgid32", "setresuid",   "setresuid32",
                                   "setreuid",   "setreuid32", "setuid",      "setuid32"};
constexpr string_view kSignal[] = {
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "sigaction",    "sigaltstack",   "signal",         "signalfd",      "signalfd4",       "sigpending",
    "sigprocmask",  "sigsuspend"};
constexpr string_view kSwap[] = {"swapoff", "swapon"};
constexpr string_view kSync[] = {"fdatasync",        "fsync", "msync", "sync", "sync_file_range",
                                 "sync_file_range2", "syncfs"};
constexpr string_view kTimer[] = {"alarm",
                                  "getitimer",
                                  "setitimer",
                                  "timer_create",
                                  "timer_delete",
                                  "timer_getoverrun",
                                  "timer_gettime",
                                  "timer_gettime64",
                                  "timer_settime",
                                  "timer_settime64",
                                  "timerfd_create",
                                  "timerfd_gettime",
                                  "timerfd_gettime64",
                                  "timerfd_settime",
                                  "timerfd_settime64",
                                  "times"};
constexpr string_view kSystemService[] = {"@aio",
                                          "@basic-io",
                                          "@chown",
                                          "@default",
                                          "@file-system",
                                          "@io-event",
                                          "@ipc",
                                          "@keyring",
                                          "@memlock",
                                          "@network-io",
                                          "@pkey",
                                          "@process",
                                          "@resources",
                                          "@sandbox",
                                          "@setuid",
                                          "@signal",
                                          "@sync",
                                          "@timer",
                                          "brk",
                                          "cachestat",
                                          "capget",
                                          "capset",
                                          "copy_file_range",
                                          "fadvise64",
                                          "fadvise64_64",
                                          "flock",
                                          "get_mempolicy",
                                          "getcpu",
                                          "getpriority",
                                          "getrandom",
                                          "ioctl",
                                          "ioprio_get",
                                          "kcmp",
                                          "madvise",
                                          "mprotect",
                                          "mremap",
                                          "mseal",
                                          "name_to_handle_at",
                                          "oldolduname",
                                          "olduname",
                                          "personality",
                                          "process_madvise",
                                          "readahead",
                                          "readdir",
                                          "remap_file_pages",
                                          "sched_get_priority_max",
                                          "sched_get_priority_min",
                                          "sched_getaffinity",
                                          "sched_getattr",
                                          "sched_getparam",
                                          "sched_getscheduler",
                                          "sched_rr_get_interval",
                                          "sched_rr_get_interval_time64",
                                          "sched_yield",
                                          "sendfile",
                                          "sendfile64",
                                          "setfsgid",
                                          "setfsgid32",
                                          "setfsuid",
                                          "setfsuid32",
                                          "setpgid",
                                          "setsid",
                                          "splice",
                                          "sysinfo",
                                          "tee",
                                          "umask",
                                          "uname",
                                          "userfaultfd",
                                          "vmsplice"};

constexpr Group kGroups[] = {
    {"@aio", kAio},
    {"@basic-io", kBasicIo},
    {"@chown", kChown},
    {"@clock", kClock},
    {"@cpu-emulation", kCpuEmulation},
    {"@debug", kDebug},
    {"@default", kDefault},
    {"@file-system", kFileSystem},
    {"@io-event", kIoEvent},
    {"@ipc", kIpc},
    {"@keyring", kKeyring},
    {"@memlock", kMemlock},
    {"@module", kModule},
    {"@mount", kMount},
    {"@network-io", kNetworkIo},
    {"@obsolete", kObsolete},
    {"@pkey", kPkey},
    {"@privileged", kPrivileged},
    {"@process", kProcess},
    {"@raw-io", kRawIo},
    {"@reboot", kReboot},
    {"@resources", kResources},
    {"@sandbox", kSandbox},
    {"@setuid", kSetuid},
    {"@signal", kSignal},
    {"@swap", kSwap},
    {"@sync", kSync},
    {"@system-service", kSystemService},
    {"@timer", kTimer},
};

// The built-in deny list: what a dynamic-user service never needs and what is kernel attack
// surface. Namespace creation (clone/unshare flags, clone3) and personality() are argument
// checks, applied separately (see Checks).
std::span<const Group> groups() noexcept {
  return kGroups;
}

const Group* find_group(string_view name) {
  for (const Group& g : groups())
    if (g.name == name) return &g;
  return nullptr;
}

// Adds a group's members (nested groups expanded) or a single name to `out`.
void expand(string_view name, Names& out, int depth) {
  if (name.empty() || name[0] != '@') {
    out.emplace(name);
    return;
  }
  const Group* g = find_group(name);
  if (!g || depth > 4) return;  // the tables nest two deep; validation rejects unknown groups
  for (string_view m : g->members) expand(m, out, depth + 1);
}

bool known_syscall(string_view name) {
  // A negative number other than __NR_SCMP_ERROR is a call of another architecture: known.
  return seccomp_syscall_resolve_name(std::string(name).c_str()) != __NR_SCMP_ERROR;
}

// ---- Names of the other settings.

struct Arch {
  string_view name;
  uint32_t token;
};
constexpr Arch kArchs[] = {
    {"native", SCMP_ARCH_NATIVE},    {"x86", SCMP_ARCH_X86},     {"x86-64", SCMP_ARCH_X86_64},
    {"x32", SCMP_ARCH_X32},          {"arm", SCMP_ARCH_ARM},     {"arm64", SCMP_ARCH_AARCH64},
    {"ppc64-le", SCMP_ARCH_PPC64LE}, {"s390x", SCMP_ARCH_S390X}, {"riscv64", SCMP_ARCH_RISCV64},
};

struct Family {
  string_view name;
  int value;
};
constexpr Family kFamilies[] = {
    {"AF_UNIX", AF_UNIX},
    {"AF_LOCAL", AF_LOCAL},
    {"AF_INET", AF_INET},
    {"AF_AX25", AF_AX25},
    {"AF_IPX", AF_IPX},
    {"AF_APPLETALK", AF_APPLETALK},
    {"AF_NETROM", AF_NETROM},
    {"AF_BRIDGE", AF_BRIDGE},
    {"AF_ATMPVC", AF_ATMPVC},
    {"AF_X25", AF_X25},
    {"AF_INET6", AF_INET6},
    {"AF_ROSE", AF_ROSE},
    {"AF_DECnet", AF_DECnet},
    {"AF_NETBEUI", AF_NETBEUI},
    {"AF_SECURITY", AF_SECURITY},
    {"AF_KEY", AF_KEY},
    {"AF_NETLINK", AF_NETLINK},
    {"AF_ROUTE", AF_ROUTE},
    {"AF_PACKET", AF_PACKET},
    {"AF_ASH", AF_ASH},
    {"AF_ECONET", AF_ECONET},
    {"AF_ATMSVC", AF_ATMSVC},
    {"AF_RDS", AF_RDS},
    {"AF_SNA", AF_SNA},
    {"AF_IRDA", AF_IRDA},
    {"AF_PPPOX", AF_PPPOX},
    {"AF_WANPIPE", AF_WANPIPE},
    {"AF_LLC", AF_LLC},
    {"AF_IB", AF_IB},
    {"AF_MPLS", AF_MPLS},
    {"AF_CAN", AF_CAN},
    {"AF_TIPC", AF_TIPC},
    {"AF_BLUETOOTH", AF_BLUETOOTH},
    {"AF_IUCV", AF_IUCV},
    {"AF_RXRPC", AF_RXRPC},
    {"AF_ISDN", AF_ISDN},
    {"AF_PHONET", AF_PHONET},
    {"AF_IEEE802154", AF_IEEE802154},
    {"AF_CAIF", AF_CAIF},
    {"AF_ALG", AF_ALG},
    {"AF_NFC", AF_NFC},
    {"AF_VSOCK", AF_VSOCK},
    {"AF_KCM", AF_KCM},
    {"AF_QIPCRTR", AF_QIPCRTR},
    {"AF_SMC", AF_SMC},
    {"AF_XDP", AF_XDP},
    {"AF_MCTP", AF_MCTP},
};
// A deny list of families under an allow list of calls enumerates the others up to here.

std::string quoted(string_view s) {
  return "\"" + std::string(s) + "\"";
}

// "EPERM" / "13" / "kill" -> a libseccomp action.
std::optional<uint32_t> parse_action(string_view s, std::string& why) {
  if (s.empty()) return SCMP_ACT_ERRNO(EPERM);
  if (s == "kill") return SCMP_ACT_KILL_PROCESS;
  if (s.find_first_not_of("0123456789") == string_view::npos) {
    long v = s.size() <= 4 ? std::stol(std::string(s)) : 0;
    // errno 0 would make a refused call look like a success; the kernel caps errno at 4095.
    if (v >= 1 && v <= 4095) return SCMP_ACT_ERRNO(static_cast<uint16_t>(v));
  } else {
    for (int e = 1; e < 4096; ++e) {
      const char* n = ::strerrorname_np(e);
      if (n && s == n) return SCMP_ACT_ERRNO(static_cast<uint16_t>(e));
    }
  }
  why = "bad system_call_error_number " + quoted(s) + " (want an errno name such as EPERM, a number 1..4095, or kill)";
  return std::nullopt;
}

std::optional<uint32_t> parse_arch(string_view s, std::string& why) {
  for (const Arch& a : kArchs)
    if (a.name == s) return a.token == SCMP_ARCH_NATIVE ? seccomp_arch_native() : a.token;
  why = "unknown system call architecture " + quoted(s) + " (known: native";
  for (const Arch& a : kArchs)
    if (a.token != SCMP_ARCH_NATIVE) why += ", " + std::string(a.name);
  why += ")";
  return std::nullopt;
}

std::optional<int> parse_family(string_view s, std::string& why) {
  for (const Family& f : kFamilies)
    if (f.name == s) return f.value;
  why = "unknown address family " + quoted(s) + " in restrict_address_families";
  return std::nullopt;
}

std::optional<ParsedList> parse_list(const std::vector<std::string>& list, const char* what, std::string& why) {
  ParsedList p;
  for (size_t i = 0; i < list.size(); ++i) {
    string_view e = list[i];
    if (!e.empty() && e[0] == '~') {
      // Redundant on a later entry of a deny list; meaningless in an allow list.
      if (i == 0) {
        p.deny = true;
      } else if (!p.deny) {
        why = std::string(what) + ": " + quoted(e) +
              " is negated but the list is an allow list (a \"~\" belongs on the first entry)";
        return std::nullopt;
      }
      e.remove_prefix(1);
    }
    if (e.empty()) {
      why = std::string(what) + ": empty entry" + (list[i].empty() ? "" : " " + quoted(list[i]));
      return std::nullopt;
    }
    p.entries.push_back(e);
  }
  return p;
}

}  // namespace detail

using namespace detail;

std::vector<std::string> group_names() {
  std::vector<std::string> out;
  for (const Group& g : kGroups) out.emplace_back(g.name);
  return out;
}

std::vector<std::string> group_members(const std::string& group) {
  Names n;
  if (find_group(group)) expand(group, n);
  return {n.begin(), n.end()};
}

}  // namespace superd::sandbox::seccomp
