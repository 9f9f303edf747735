// Settings -> libseccomp rules -> BPF bytes, in the parent. How the rules are laid out:
//
// The list decides the filter's default: a deny list (or none) gives default-allow with one
// refusing rule per denied syscall; an allow list gives default-refuse with one ALLOW rule per
// allowed syscall (plus @default, which every process needs to start and exit).
//
// Argument checks (namespaces, personality, setuid/setgid modes, address families) apply to
// a syscall the lists leave allowed. libseccomp merges rules by union and lets an
// unconditional rule swallow conditional ones, and allows one comparison per argument per
// rule; so each check is written in both polarities and never relies on rule precedence:
//   default-allow:  refusing rules for the bad values (several rules = "any of");
//   default-refuse: ALLOW rules for the good values, plus refusing rules with a *different*
//                   action (EAFNOSUPPORT, ENOSYS) for bad values; the two sets are disjoint.
// A 32-bit argument arrives in a 64-bit register whose upper half the kernel ignores, so
// refusing comparisons mask to the low 32 bits (junk above cannot dodge them). The family
// ALLOW rules compare all 64 bits instead, to stay disjoint from the "above the highest
// family" range check: junk above an allowed family is refused, never let through.
#include "sandbox/seccomp.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <span>
#include <string_view>

#include "util/unique_fd.hpp"

namespace superd::seccomp {
namespace {

using std::string_view;
using Names = std::set<std::string, std::less<>>;

// ---- Groups, modelled on systemd's (src/shared/seccomp-util.c). Names this libseccomp does
// not know (other architectures' calls, calls newer than the library) are skipped at compile
// time; a unit test checks every name is known to libseccomp or to be newer than it.

constexpr string_view kDefault[] = {
    // What every process needs to start, run and exit, whatever else it is allowed.
    "arch_prctl", "brk", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "execve", "exit", "exit_group", "futex",
    "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "get_robust_list",
    "get_thread_area", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getpgid", "getpgrp", "getpid", "getppid", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "getsid", "gettid", "gettimeofday",
    "getuid", "getuid32", "map_shadow_stack", "membarrier", "mmap", "mmap2", "munmap", "nanosleep",
    "pause", "prlimit64", "restart_syscall", "rseq", "rt_sigreturn", "sched_getaffinity",
    "sched_yield", "set_robust_list", "set_thread_area", "set_tid_address", "set_tls", "sigreturn",
    "time", "ugetrlimit"};
constexpr string_view kAio[] = {"io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
                                "io_pgetevents_time64", "io_setup", "io_submit", "io_uring_enter",
                                "io_uring_register", "io_uring_setup"};
constexpr string_view kBasicIo[] = {"_llseek", "close", "close_range", "dup", "dup2", "dup3", "lseek",
                                    "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2",
                                    "read", "readv", "write", "writev"};
constexpr string_view kChown[] = {"chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32"};
constexpr string_view kClock[] = {"adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime",
                                  "clock_settime64", "settimeofday", "stime"};
constexpr string_view kCpuEmulation[] = {"modify_ldt", "subpage_prot", "switch_endian", "vm86", "vm86old"};
constexpr string_view kDebug[] = {"lookup_dcookie", "perf_event_open", "pidfd_getfd", "ptrace", "rtas",
                                  "s390_runtime_instr", "sys_debug_setcontext"};
constexpr string_view kFileSystem[] = {
    "access", "chdir", "chmod", "close", "creat", "faccessat", "faccessat2", "fallocate", "fchdir",
    "fchmod", "fchmodat", "fchmodat2", "fcntl", "fcntl64", "fgetxattr", "flistxattr", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "ftruncate", "ftruncate64",
    "futimesat", "getcwd", "getdents", "getdents64", "getxattr", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "lgetxattr", "link", "linkat", "listxattr", "llistxattr",
    "lremovexattr", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "mmap",
    "mmap2", "munmap", "newfstatat", "oldfstat", "oldlstat", "oldstat", "open", "openat", "openat2",
    "readlink", "readlinkat", "removexattr", "rename", "renameat", "renameat2", "rmdir", "setxattr",
    "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "truncate", "truncate64",
    "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes"};
constexpr string_view kIoEvent[] = {"_newselect", "epoll_create", "epoll_create1", "epoll_ctl",
                                    "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
                                    "epoll_wait_old", "eventfd", "eventfd2", "poll", "ppoll", "ppoll_time64",
                                    "pselect6", "pselect6_time64", "select"};
constexpr string_view kIpc[] = {"ipc", "memfd_create", "mq_getsetattr", "mq_notify", "mq_open",
                                "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
                                "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
                                "pipe", "pipe2", "process_vm_readv", "process_vm_writev", "semctl", "semget",
                                "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget"};
constexpr string_view kKeyring[] = {"add_key", "keyctl", "request_key"};
constexpr string_view kMemlock[] = {"mlock", "mlock2", "mlockall", "munlock", "munlockall"};
constexpr string_view kModule[] = {"delete_module", "finit_module", "init_module"};
constexpr string_view kMount[] = {"chroot", "fsconfig", "fsmount", "fsopen", "fspick", "mount",
                                  "mount_setattr", "move_mount", "open_tree", "pivot_root", "umount",
                                  "umount2"};
constexpr string_view kNetworkIo[] = {"accept", "accept4", "bind", "connect", "getpeername", "getsockname",
                                      "getsockopt", "listen", "recv", "recvfrom", "recvmmsg",
                                      "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto",
                                      "setsockopt", "shutdown", "socket", "socketcall", "socketpair"};
constexpr string_view kObsolete[] = {"_sysctl", "afs_syscall", "bdflush", "break", "create_module", "ftime",
                                     "get_kernel_syms", "getpmsg", "gtty", "idle", "lock", "mpx", "prof",
                                     "profil", "putpmsg", "query_module", "security", "sgetmask", "ssetmask",
                                     "stty", "sysfs", "tuxcall", "ulimit", "uselib", "ustat", "vserver"};
constexpr string_view kPkey[] = {"pkey_alloc", "pkey_free", "pkey_mprotect"};
constexpr string_view kPrivileged[] = {
    "@chown", "@clock", "@module", "@raw-io", "@reboot", "@swap", "_sysctl", "acct", "bpf", "capset",
    "chroot", "fanotify_init", "fanotify_mark", "nfsservctl", "open_by_handle_at", "pivot_root", "quotactl",
    "quotactl_fd", "setdomainname", "setfsuid", "setfsuid32", "setgroups", "setgroups32", "sethostname",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32", "vhangup"};
constexpr string_view kProcess[] = {"arch_prctl", "capget", "clone", "clone3", "execveat", "fork", "getrusage",
                                    "kill", "pidfd_open", "pidfd_send_signal", "prctl", "rt_sigqueueinfo",
                                    "rt_tgsigqueueinfo", "setns", "swapcontext", "tgkill", "times", "tkill",
                                    "unshare", "vfork", "wait4", "waitid", "waitpid"};
constexpr string_view kRawIo[] = {"ioperm", "iopl", "pciconfig_iobase", "pciconfig_read", "pciconfig_write",
                                  "s390_pci_mmio_read", "s390_pci_mmio_write"};
constexpr string_view kReboot[] = {"kexec_file_load", "kexec_load", "reboot"};
constexpr string_view kResources[] = {"ioprio_set", "mbind", "migrate_pages", "move_pages", "nice",
                                      "sched_setaffinity", "sched_setattr", "sched_setparam",
                                      "sched_setscheduler", "set_mempolicy", "set_mempolicy_home_node",
                                      "setpriority", "setrlimit"};
constexpr string_view kSandbox[] = {"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
                                    "seccomp"};
constexpr string_view kSetuid[] = {"setgid", "setgid32", "setgroups", "setgroups32", "setregid", "setregid32",
                                   "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
                                   "setreuid32", "setuid", "setuid32"};
constexpr string_view kSignal[] = {"rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigsuspend",
                                   "rt_sigtimedwait", "rt_sigtimedwait_time64", "sigaction", "sigaltstack",
                                   "signal", "signalfd", "signalfd4", "sigpending", "sigprocmask", "sigsuspend"};
constexpr string_view kSwap[] = {"swapoff", "swapon"};
constexpr string_view kSync[] = {"fdatasync", "fsync", "msync", "sync", "sync_file_range", "sync_file_range2",
                                 "syncfs"};
constexpr string_view kTimer[] = {"alarm", "getitimer", "setitimer", "timer_create", "timer_delete",
                                  "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
                                  "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
                                  "timerfd_settime", "timerfd_settime64", "times"};
constexpr string_view kSystemService[] = {
    "@aio", "@basic-io", "@chown", "@default", "@file-system", "@io-event", "@ipc", "@keyring", "@memlock",
    "@network-io", "@pkey", "@process", "@resources", "@sandbox", "@setuid", "@signal", "@sync", "@timer",
    "brk", "cachestat", "capget", "capset", "copy_file_range", "fadvise64", "fadvise64_64", "flock",
    "get_mempolicy", "getcpu", "getpriority", "getrandom", "ioctl", "ioprio_get", "kcmp", "madvise",
    "mprotect", "mremap", "mseal", "name_to_handle_at", "oldolduname", "olduname", "personality",
    "process_madvise", "readahead", "readdir", "remap_file_pages", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_yield", "sendfile", "sendfile64",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setpgid", "setsid", "splice", "sysinfo", "tee",
    "umask", "uname", "userfaultfd", "vmsplice"};

struct Group {
  string_view name;
  std::span<const string_view> members;
};

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
constexpr string_view kDefaultDeny[] = {
    "@module", "@reboot", "@swap", "@clock", "@raw-io", "@keyring",
    // The mount API, old and new; chroot stays (it needs CAP_SYS_CHROOT anyway).
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
    "fspick", "mount_setattr",
    // Joining a namespace; creating one is an argument check on clone/unshare.
    "setns",
    // Tracing and reading other processes.
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "bpf", "perf_event_open", "acct", "quotactl", "quotactl_fd", "lookup_dcookie", "syslog", "vhangup",
    "userfaultfd",
    // Found open by a review: watching other users' file activity (fanotify, unprivileged
    // since 5.13), memory hidden from the kernel's own inspection (memfd_secret), the x86 LDT
    // (old exploit surface, only 16-bit programs need it), comparing other processes' kernel
    // objects (kcmp, an ASLR and fd-table oracle).
    "fanotify_init", "memfd_secret", "modify_ldt", "kcmp"};

// What a zygote (spawn/zygote.cpp) calls after loading its filter, and what an instance's own
// set-up calls between the zygote's clone and its exec (spawn/child.cpp, the per-instance
// mounts of sandbox/mounts.cpp, landlock.cpp). The zygote's base opens whichever of these the
// policy refuses; the instance then loads a tail that refuses them again (needs_instance_tail).
constexpr string_view kZygoteNeeds[] = {
    // the zygote's request loop: messages and fds in and out, the plan's strings, the clone
    "recvmsg", "sendmsg", "close", "brk", "mmap", "munmap", "mremap", "madvise", "mprotect", "clone",
    "exit", "exit_group",
    // the instance checklist
    "rt_sigaction", "rt_sigprocmask", "dup2", "dup3", "fcntl", "close_range", "mount", "mkdir", "mkdirat", "chmod",
    "fchmodat", "chown", "fchownat", "mknod", "mknodat", "symlink", "symlinkat", "socket", "ioctl", "setrlimit",
    "prlimit64", "umask", "setpriority", "chdir", "prctl", "capset", "setgroups", "setresgid", "setresuid",
    "landlock_create_ruleset", "landlock_restrict_self", "execve",
    // the zygote loads the gate on top of the base, an instance its tail
    "seccomp"};

// What a zygote's own UID switch calls (allow_identity_change).
constexpr string_view kIdentity[] = {"setresuid", "setresuid32", "setresgid", "setresgid32", "setgroups",
                                     "setgroups32"};

// clone(2)'s flags word is arg0 on every architecture we list but s390 (which we do not);
// CLONE_NEWTIME shares its bit with the exit signal there, so only unshare checks it.
constexpr uint64_t kCloneNsFlags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                      CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};
constexpr uint64_t kUnshareNsFlags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                        CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET, CLONE_NEWTIME};
constexpr uint64_t kPerLinux = 0;
constexpr uint64_t kPerQuery = 0xffffffff;
constexpr uint64_t kLow32 = 0xffffffff;
// O_TMPFILE's own bit (O_TMPFILE also carries O_DIRECTORY): an unnamed file, given a mode.
constexpr uint64_t kOTmpfileBit = 020000000;
constexpr uint64_t kSxidBits[] = {S_ISUID, S_ISGID};

// ---- Names of the other settings.

struct Arch {
  string_view name;
  uint32_t token;
};
constexpr Arch kArchs[] = {
    {"native", SCMP_ARCH_NATIVE}, {"x86", SCMP_ARCH_X86},         {"x86-64", SCMP_ARCH_X86_64},
    {"x32", SCMP_ARCH_X32},       {"arm", SCMP_ARCH_ARM},         {"arm64", SCMP_ARCH_AARCH64},
    {"ppc64-le", SCMP_ARCH_PPC64LE}, {"s390x", SCMP_ARCH_S390X}, {"riscv64", SCMP_ARCH_RISCV64},
};

struct Family {
  string_view name;
  int value;
};
constexpr Family kFamilies[] = {
    {"AF_UNIX", AF_UNIX},       {"AF_LOCAL", AF_LOCAL},         {"AF_INET", AF_INET},
    {"AF_AX25", AF_AX25},       {"AF_IPX", AF_IPX},             {"AF_APPLETALK", AF_APPLETALK},
    {"AF_NETROM", AF_NETROM},   {"AF_BRIDGE", AF_BRIDGE},       {"AF_ATMPVC", AF_ATMPVC},
    {"AF_X25", AF_X25},         {"AF_INET6", AF_INET6},         {"AF_ROSE", AF_ROSE},
    {"AF_DECnet", AF_DECnet},   {"AF_NETBEUI", AF_NETBEUI},     {"AF_SECURITY", AF_SECURITY},
    {"AF_KEY", AF_KEY},         {"AF_NETLINK", AF_NETLINK},     {"AF_ROUTE", AF_ROUTE},
    {"AF_PACKET", AF_PACKET},   {"AF_ASH", AF_ASH},             {"AF_ECONET", AF_ECONET},
    {"AF_ATMSVC", AF_ATMSVC},   {"AF_RDS", AF_RDS},             {"AF_SNA", AF_SNA},
    {"AF_IRDA", AF_IRDA},       {"AF_PPPOX", AF_PPPOX},         {"AF_WANPIPE", AF_WANPIPE},
    {"AF_LLC", AF_LLC},         {"AF_IB", AF_IB},               {"AF_MPLS", AF_MPLS},
    {"AF_CAN", AF_CAN},         {"AF_TIPC", AF_TIPC},           {"AF_BLUETOOTH", AF_BLUETOOTH},
    {"AF_IUCV", AF_IUCV},       {"AF_RXRPC", AF_RXRPC},         {"AF_ISDN", AF_ISDN},
    {"AF_PHONET", AF_PHONET},   {"AF_IEEE802154", AF_IEEE802154}, {"AF_CAIF", AF_CAIF},
    {"AF_ALG", AF_ALG},         {"AF_NFC", AF_NFC},             {"AF_VSOCK", AF_VSOCK},
    {"AF_KCM", AF_KCM},         {"AF_QIPCRTR", AF_QIPCRTR},     {"AF_SMC", AF_SMC},
    {"AF_XDP", AF_XDP},         {"AF_MCTP", AF_MCTP},
};
// A deny list of families under an allow list of calls enumerates the others up to here.
constexpr int kFamilyMax = AF_MAX;

const Group* find_group(string_view name) {
  for (const Group& g : kGroups)
    if (g.name == name) return &g;
  return nullptr;
}

// Adds a group's members (nested groups expanded) or a single name to `out`.
void expand(string_view name, Names& out, int depth = 0) {
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

std::string quoted(string_view s) { return "\"" + std::string(s) + "\""; }

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

// A list in systemd's form: a leading "~" on the first entry makes it a deny list.
struct ParsedList {
  bool deny = false;
  std::vector<string_view> entries;  // without "~"
};

std::optional<ParsedList> parse_list(const std::vector<std::string>& list, const char* what, std::string& why) {
  ParsedList p;
  for (size_t i = 0; i < list.size(); ++i) {
    string_view e = list[i];
    if (!e.empty() && e[0] == '~') {
      // Redundant on a later entry of a deny list; meaningless in an allow list.
      if (i == 0) {
        p.deny = true;
      } else if (!p.deny) {
        why = std::string(what) + ": " + quoted(e) + " is negated but the list is an allow list (a \"~\" belongs on the first entry)";
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

// ---- The resolved policy, before any libseccomp call.

struct Policy {
  bool allow_list = false;  // default-refuse; else default-allow
  Names names;              // allow_list: the allowed calls; else the denied ones
  uint32_t act = 0;         // how a refused call is refused
  std::vector<uint32_t> arches;
  bool namespaces = false;   // clone/unshare without CLONE_NEW*, clone3 ENOSYS
  bool clone_namespaces_open = false;  // zygote_base: its own clone(CLONE_NEW*) must pass
  bool personality = false;  // personality(PER_LINUX) only (and the query, in an allow list)
  bool sxid = false;         // no S_ISUID/S_ISGID modes
  bool families = false;
  bool families_allow = false;
  std::set<int> family_set;
};

bool refuses(const Policy& p, const std::string& name) {
  return p.allow_list ? p.names.count(name) == 0 : p.names.count(name) > 0;
}

// The zygote's split of a whole policy `p`. The base lets through what the zygote and the
// instance set-up call (kZygoteNeeds) and the policy refuses ("opened"), clone() with new
// namespaces, and AF_INET sockets (the per-instance loopback set-up opens one); the tail,
// loaded by each instance last, refuses the opened calls (mount included, whatever the gate
// let through), clone() with new namespaces when the policy refuses them, and AF_INET when the
// policy does. Stacked, base + gate + tail answer as the whole filter (the kernel takes the
// strictest answer of all filters; the tail only ever refuses what the base allowed).
Policy split_for_zygote(Policy p, Settings::Part part) {
  Names opened;
  for (string_view n : kZygoteNeeds)
    if (refuses(p, std::string(n))) opened.emplace(n);
  const bool inet_opened =
      p.families && (p.families_allow ? p.family_set.count(AF_INET) == 0 : p.family_set.count(AF_INET) > 0);
  if (part == Settings::Part::instance_tail) {
    Policy t;
    t.act = p.act;
    t.arches = p.arches;
    t.names = std::move(opened);
    t.namespaces = p.namespaces && !t.names.count("clone");
    t.families = inet_opened;
    t.family_set = {AF_INET};
    return t;
  }
  for (const std::string& n : opened) p.allow_list ? (void)p.names.insert(n) : (void)p.names.erase(n);
  p.clone_namespaces_open = true;
  if (inet_opened) {
    if (p.families_allow) p.family_set.insert(AF_INET);
    else p.family_set.erase(AF_INET);
    p.families = p.families_allow || !p.family_set.empty();
  }
  return p;
}

std::optional<Policy> resolve(const Settings& s, std::string& why) {
  Policy p;
  auto list = parse_list(s.system_call_filter, "system_call_filter", why);
  if (!list) return std::nullopt;
  for (string_view e : list->entries) {
    if (e[0] == '@' ? find_group(e) == nullptr : !known_syscall(e)) {
      why = "unknown syscall or group " + quoted(e) + " in system_call_filter";
      return std::nullopt;
    }
  }
  auto act = parse_action(s.system_call_error_number, why);
  if (!act) return std::nullopt;
  p.act = *act;

  p.arches.push_back(seccomp_arch_native());
  for (const std::string& a : s.system_call_architectures) {
    auto token = parse_arch(a, why);
    if (!token) return std::nullopt;
    if (std::find(p.arches.begin(), p.arches.end(), *token) == p.arches.end()) p.arches.push_back(*token);
  }

  auto fam = parse_list(s.restrict_address_families, "restrict_address_families", why);
  if (!fam) return std::nullopt;
  for (string_view e : fam->entries) {
    auto v = parse_family(e, why);
    if (!v) return std::nullopt;
    p.family_set.insert(*v);
  }
  p.families = !fam->entries.empty();
  p.families_allow = p.families && !fam->deny;
  if (p.families) {
    // Where socket() can also go through socketcall(), the family sits in memory, out of
    // the filter's sight; rather than a check that can be walked around, refuse the setting.
    for (const std::string& a : s.system_call_architectures) {
      auto token = parse_arch(a, why);
      if (token && seccomp_syscall_resolve_name_arch(*token, "socketcall") >= 0) {
        why = "restrict_address_families cannot be enforced for the " + quoted(a) +
              " ABI (its socketcall() hides the family); drop it from system_call_architectures";
        return std::nullopt;
      }
    }
  }

  p.allow_list = !list->entries.empty() && !list->deny;
  Names user;
  for (string_view e : list->entries) expand(e, user);
  Names deny;
  if (s.default_deny_list)
    for (string_view e : kDefaultDeny) expand(e, deny);
  Names identity;
  if (s.allow_identity_change) identity.insert(std::begin(kIdentity), std::end(kIdentity));

  if (p.allow_list) {
    p.names = std::move(user);
    expand("@default", p.names);
    p.names.insert(identity.begin(), identity.end());
    for (const auto& n : deny) p.names.erase(n);
  } else {
    p.names = std::move(user);
    p.names.insert(deny.begin(), deny.end());
    for (const auto& n : identity) p.names.erase(n);
  }
  p.namespaces = s.default_deny_list;
  p.personality = s.default_deny_list;
  p.sxid = s.restrict_suid_sgid;
  if (s.part != Settings::Part::whole) return split_for_zygote(std::move(p), s.part);
  return p;
}

// ---- Emission.

struct CtxDeleter {
  void operator()(void* c) const noexcept { seccomp_release(c); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

struct Rule {
  uint32_t action;
  std::vector<scmp_arg_cmp> cmps;
};

// Refusing comparison on a 32-bit argument: the low half equals `v` whatever the high half.
scmp_arg_cmp low32_eq(unsigned arg, uint64_t v) { return SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, kLow32, v); }
// Bits of `mask` all clear / `bit` set.
scmp_arg_cmp bits_clear(unsigned arg, uint64_t mask) { return SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, mask, 0); }
scmp_arg_cmp bit_set(unsigned arg, uint64_t bit) { return SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, bit, bit); }

// One argument check in both polarities: `refuse` rules match bad calls (any of them);
// `allow` rules match good calls (any of them) and are disjoint from every refuse rule whose
// action differs from the filter's. A default-allow filter gets the refuse rules; a
// default-refuse filter gets the allow rules plus the refuse rules with their own action.
struct Check {
  std::vector<Rule> refuse;
  std::vector<Rule> allow;
};

Check check_namespaces(string_view name, uint32_t act) {
  Check c;
  std::span<const uint64_t> flags = name == "clone" ? std::span<const uint64_t>(kCloneNsFlags)
                                                    : std::span<const uint64_t>(kUnshareNsFlags);
  uint64_t all = 0;
  for (uint64_t f : flags) {
    c.refuse.push_back({act, {bit_set(0, f)}});
    all |= f;
  }
  c.allow.push_back({SCMP_ACT_ALLOW, {bits_clear(0, all)}});
  return c;
}

Check check_personality(uint32_t act) {
  Check c;
  // One comparison per argument per rule: "neither PER_LINUX nor the query" cannot be said in
  // a default-allow filter, so there the query is refused too (as systemd's LockPersonality).
  c.refuse.push_back({act, {SCMP_CMP64(0, SCMP_CMP_NE, kPerLinux)}});
  c.allow.push_back({SCMP_ACT_ALLOW, {low32_eq(0, kPerLinux)}});
  c.allow.push_back({SCMP_ACT_ALLOW, {low32_eq(0, kPerQuery)}});
  return c;
}

// chmod-like: the mode is argument `mode_arg`.
Check check_mode(unsigned mode_arg, uint32_t act) {
  Check c;
  for (uint64_t b : kSxidBits) c.refuse.push_back({act, {bit_set(mode_arg, b)}});
  c.allow.push_back({SCMP_ACT_ALLOW, {bits_clear(mode_arg, S_ISUID | S_ISGID)}});
  return c;
}

// open-like: the mode only matters when the call creates a file.
Check check_open(unsigned flags_arg, unsigned mode_arg, uint32_t act) {
  Check c;
  for (uint64_t create : {uint64_t{O_CREAT}, kOTmpfileBit})
    for (uint64_t b : kSxidBits) c.refuse.push_back({act, {bit_set(flags_arg, create), bit_set(mode_arg, b)}});
  c.allow.push_back({SCMP_ACT_ALLOW, {bits_clear(flags_arg, O_CREAT | kOTmpfileBit)}});
  c.allow.push_back({SCMP_ACT_ALLOW, {bits_clear(mode_arg, S_ISUID | S_ISGID)}});
  return c;
}

Check check_family(const Policy& p) {
  Check c;
  const uint32_t eaf = SCMP_ACT_ERRNO(EAFNOSUPPORT);
  if (p.families_allow) {
    int top = *p.family_set.rbegin();
    for (int f = 0; f <= top; ++f)
      if (!p.family_set.count(f)) c.refuse.push_back({eaf, {low32_eq(0, f)}});
    c.refuse.push_back({eaf, {SCMP_CMP64(0, SCMP_CMP_GT, static_cast<uint64_t>(top))}});
    for (int f : p.family_set) c.allow.push_back({SCMP_ACT_ALLOW, {SCMP_CMP64(0, SCMP_CMP_EQ, static_cast<uint64_t>(f))}});
  } else {
    for (int f : p.family_set) c.refuse.push_back({eaf, {low32_eq(0, f)}});
    // A default-refuse filter lets every other family below AF_MAX through, each exactly;
    // what lies above is refused by default.
    for (int f = 0; f < kFamilyMax; ++f)
      if (!p.family_set.count(f)) c.allow.push_back({SCMP_ACT_ALLOW, {SCMP_CMP64(0, SCMP_CMP_EQ, static_cast<uint64_t>(f))}});
  }
  return c;
}

Check refuse_enosys() { return Check{{{SCMP_ACT_ERRNO(ENOSYS), {}}}, {}}; }

// The argument checks that apply to `name` under this policy, if any.
std::optional<Check> check_for(string_view name, const Policy& p) {
  if (p.namespaces) {
    if (name == "clone" && p.clone_namespaces_open) return std::nullopt;
    if (name == "clone" || name == "unshare") return check_namespaces(name, p.act);
    if (name == "clone3") return refuse_enosys();  // its flags are in memory, out of sight
  }
  if (p.personality && name == "personality") return check_personality(p.act);
  if (p.sxid) {
    if (name == "chmod" || name == "fchmod" || name == "mkdir" || name == "mknod" || name == "creat")
      return check_mode(1, p.act);
    if (name == "fchmodat" || name == "fchmodat2" || name == "mkdirat" || name == "mknodat") return check_mode(2, p.act);
    if (name == "open") return check_open(1, 2, p.act);
    if (name == "openat") return check_open(2, 3, p.act);
    if (name == "openat2") return refuse_enosys();  // flags and mode are in a struct
  }
  if (p.families && (name == "socket" || name == "socketpair")) return check_family(p);
  // io_uring performs opens and socket creation without a syscall seccomp could see.
  if ((p.sxid || p.families) && name == "io_uring_setup") return refuse_enosys();
  return std::nullopt;
}

constexpr string_view kCheckedCalls[] = {"clone", "clone3", "unshare", "personality", "chmod", "fchmod",
                                         "mkdir", "mknod", "creat", "fchmodat", "fchmodat2", "mkdirat",
                                         "mknodat", "open", "openat", "openat2", "socket", "socketpair",
                                         "io_uring_setup"};

std::string rc_text(int rc) { return std::strerror(rc < 0 ? -rc : rc); }

// Adds one rule, unless it would only restate the default action.
bool add_rule(scmp_filter_ctx ctx, const std::vector<uint32_t>& arches, uint32_t default_action, string_view name,
              const Rule& r, std::string& why) {
  if (r.action == default_action) return true;
  const std::string n(name);
  // Only calls some architecture in the filter has (not, say, stime on x86-64 alone), and
  // not group members newer than this libseccomp.
  if (std::none_of(arches.begin(), arches.end(),
                   [&](uint32_t a) { return seccomp_syscall_resolve_name_arch(a, n.c_str()) >= 0; }))
    return true;
  int nr = seccomp_syscall_resolve_name(n.c_str());
  int rc = seccomp_rule_add_array(ctx, r.action, nr, static_cast<unsigned>(r.cmps.size()), r.cmps.data());
  // -EDOM: libseccomp's own "no such call on these architectures".
  if (rc == 0 || rc == -EDOM) return true;
  why = "libseccomp: cannot add a rule for " + std::string(name) + ": " + rc_text(rc);
  return false;
}

std::optional<Ctx> build(const Settings& s, std::string& why) {
  auto pol = resolve(s, why);
  if (!pol) return std::nullopt;
  const Policy& p = *pol;
  const uint32_t default_action = p.allow_list ? p.act : SCMP_ACT_ALLOW;
  Ctx ctx(seccomp_init(default_action));
  if (!ctx) {
    why = "libseccomp: seccomp_init failed";
    return std::nullopt;
  }
  // A call from an ABI we did not list dodges every rule here (other numbers, other
  // multiplexers): kill it, as systemd's SystemCallArchitectures= does.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  // The child sets no_new_privs itself; and a binary tree keeps long allow lists cheap per call.
  if (rc == 0) rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  if (rc == 0) rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc != 0) {
    why = "libseccomp: cannot set filter attributes: " + rc_text(rc);
    return std::nullopt;
  }
  for (uint32_t a : p.arches) {
    rc = seccomp_arch_add(ctx.get(), a);
    if (rc != 0 && rc != -EEXIST) {
      why = "libseccomp: cannot add architecture " + std::to_string(a) + ": " + rc_text(rc);
      return std::nullopt;
    }
  }

  // Every call any rule is about: the listed ones and the checked ones.
  Names calls = p.names;
  calls.insert(std::begin(kCheckedCalls), std::end(kCheckedCalls));
  for (const std::string& name : calls) {
    const bool listed = p.names.count(name) > 0;
    const bool allowed = p.allow_list ? listed : !listed;
    std::vector<Rule> rules;
    if (!allowed) {
      // clone3 refused for any reason answers ENOSYS, so libc falls back to clone.
      if (name == "clone3") rules.push_back({SCMP_ACT_ERRNO(ENOSYS), {}});
      else rules.push_back({p.act, {}});
    } else if (auto c = check_for(name, p)) {
      if (p.allow_list) rules = std::move(c->allow);
      for (Rule& r : c->refuse)
        if (!p.allow_list || r.action != p.act) rules.push_back(std::move(r));
    } else {
      rules.push_back({SCMP_ACT_ALLOW, {}});
    }
    for (const Rule& r : rules)
      if (!add_rule(ctx.get(), p.arches, default_action, name, r, why)) return std::nullopt;
  }
  return ctx;
}

// Reads back what libseccomp wrote into a memfd.
std::optional<std::string> export_to_memory(scmp_filter_ctx ctx, bool pfc, std::string& why) {
  UniqueFd fd(::memfd_create("superd-seccomp", MFD_CLOEXEC));
  if (!fd) {
    why = std::string("memfd_create: ") + std::strerror(errno);
    return std::nullopt;
  }
  int rc = pfc ? seccomp_export_pfc(ctx, fd.get()) : seccomp_export_bpf(ctx, fd.get());
  if (rc != 0) {
    why = std::string("libseccomp: cannot export the filter: ") + rc_text(rc);
    return std::nullopt;
  }
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) {
    why = std::string("fstat on the filter memfd: ") + std::strerror(errno);
    return std::nullopt;
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      why = std::string("reading the filter memfd: ") + (n < 0 ? std::strerror(errno) : "short read");
      return std::nullopt;
    }
    done += static_cast<size_t>(n);
  }
  return out;
}

}  // namespace

bool zygote_compatible(const Settings& s) {
  std::string why;
  return resolve(s, why).has_value();
}

bool needs_instance_tail(const Settings& s) {
  std::string why;
  Settings t = s;
  t.part = Settings::Part::instance_tail;
  auto p = resolve(t, why);
  if (!p) return false;
  // mount() alone is the gate's (as for the built-in deny list): no tail for it.
  return p->families || std::any_of(p->names.begin(), p->names.end(), [](const std::string& n) { return n != "mount"; });
}

std::optional<Program> zygote_gate(const Settings& s, uint32_t clone_flags, std::string& why) {
  auto p = resolve(s, why);
  if (!p) return std::nullopt;
  const bool gate_mount = refuses(*p, "mount");
  const bool gate_clone = p->namespaces;
  uint32_t ns_mask = 0;
  for (uint64_t f : kCloneNsFlags) ns_mask |= static_cast<uint32_t>(f);
  constexpr uint32_t kArgsLow = offsetof(seccomp_data, args);  // little-endian: low half first
  constexpr uint32_t kMgcVal = 0xC0ED0000, kMgcMask = 0xffff0000;
  const uint32_t act = p->act;
  std::vector<sock_filter> f;
  auto stmt = [&](uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); };
  auto jump = [&](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(BPF_JUMP(code, k, jt, jf)); };
  // Layout (jump offsets count from the next instruction):
  //  0 ld arch; 1 jeq native ? 2 : allow
  //  2 ld nr;   3 jeq mount ? 5 : 4;  4 jeq clone ? 9 : allow
  //  5 ld arg3; 6 and MGC mask; 7 jeq MGC ? allow : refuse; 8 (pad: ja refuse)
  //  9 ld arg0; 10 jeq exact ? allow : 11; 11 and ns mask; 12 jeq 0 ? allow : refuse
  // 13 allow;  14 refuse
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
  jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 11);
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
  jump(BPF_JMP | BPF_JEQ | BPF_K, gate_mount ? static_cast<uint32_t>(__NR_mount) : 0xffffffffu, 1, 0);
  jump(BPF_JMP | BPF_JEQ | BPF_K, gate_clone ? static_cast<uint32_t>(__NR_clone) : 0xffffffffu, 4, 8);
  stmt(BPF_LD | BPF_W | BPF_ABS, kArgsLow + 3 * 8);
  stmt(BPF_ALU | BPF_AND | BPF_K, kMgcMask);
  jump(BPF_JMP | BPF_JEQ | BPF_K, kMgcVal, 5, 6);
  stmt(BPF_JMP | BPF_JA, 5);
  stmt(BPF_LD | BPF_W | BPF_ABS, kArgsLow + 0 * 8);
  jump(BPF_JMP | BPF_JEQ | BPF_K, clone_flags, 2, 0);
  stmt(BPF_ALU | BPF_AND | BPF_K, ns_mask);
  jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  stmt(BPF_RET | BPF_K, act);
  return Program(std::move(f));
}

Program::Program(std::vector<struct sock_filter> insns) noexcept : insns_(std::move(insns)) {
  fprog_.len = static_cast<unsigned short>(insns_.size());
  fprog_.filter = insns_.data();
}

Program::Program(Program&& o) noexcept : insns_(std::move(o.insns_)) {
  fprog_.len = static_cast<unsigned short>(insns_.size());
  fprog_.filter = insns_.data();
  o.fprog_ = {};
}

Program& Program::operator=(Program&& o) noexcept {
  if (this != &o) {
    insns_ = std::move(o.insns_);
    fprog_.len = static_cast<unsigned short>(insns_.size());
    fprog_.filter = insns_.data();
    o.fprog_ = {};
  }
  return *this;
}

bool validate(const Settings& s, std::string& why) {
  try {
    return resolve(s, why).has_value();
  } catch (const std::exception& e) {
    why = std::string("validating the syscall filter: ") + e.what();
    return false;
  }
}

std::optional<Program> compile(const Settings& s, std::string& why) {
  try {
    auto ctx = build(s, why);
    if (!ctx) return std::nullopt;
    auto bytes = export_to_memory(ctx->get(), false, why);
    if (!bytes) return std::nullopt;
    constexpr size_t kInsn = sizeof(struct sock_filter);
    if (bytes->empty() || bytes->size() % kInsn != 0 || bytes->size() / kInsn > BPF_MAXINSNS) {
      why = "libseccomp exported a filter of " + std::to_string(bytes->size()) + " bytes (want 1.." +
            std::to_string(BPF_MAXINSNS) + " instructions)";
      return std::nullopt;
    }
    std::vector<struct sock_filter> insns(bytes->size() / kInsn);
    std::memcpy(insns.data(), bytes->data(), bytes->size());
    return Program(std::move(insns));
  } catch (const std::exception& e) {
    why = std::string("compiling the syscall filter: ") + e.what();
    return std::nullopt;
  }
}

std::optional<std::string> pseudo_code(const Settings& s, std::string& why) {
  try {
    auto ctx = build(s, why);
    if (!ctx) return std::nullopt;
    return export_to_memory(ctx->get(), true, why);
  } catch (const std::exception& e) {
    why = std::string("rendering the syscall filter: ") + e.what();
    return std::nullopt;
  }
}

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

}  // namespace superd::seccomp
