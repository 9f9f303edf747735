// The syscall filter: systemd-style settings (SystemCallFilter=, SystemCallErrorNumber=,
// SystemCallArchitectures=, RestrictAddressFamilies=, RestrictSUIDSGID=) compiled ONCE in the
// parent, at start-up, into a classic-BPF program. The child only hands the prepared bytes to
// seccomp(SECCOMP_SET_MODE_FILTER) after no_new_privs: it allocates nothing and calls no
// library, so the filter costs one syscall per instance.
//
// Invariants of every compiled program:
//   - it is one filter; the native architecture is always in it (the child must still be able
//     to execve), other ABIs only when listed; a syscall from an unlisted ABI (i386 via
//     int 0x80, x32 via __X32_SYSCALL_BIT) kills the process;
//   - deny wins: the built-in deny list and the argument checks (namespaces, personality,
//     setuid/setgid modes, address families) hold whatever an allow list says;
//   - calls whose arguments seccomp cannot see are refused with ENOSYS, so libc and programs
//     take their fallback: clone3 (to clone, whose flags are checked), and with the mode and
//     family checks on, openat2 and io_uring_setup (io_uring operations never meet seccomp);
//   - allow_identity_change keeps setresuid/setresgid/setgroups open whatever the lists say.
#pragma once

#include <linux/filter.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace superd::sandbox::seccomp {

struct Settings {  // exactly what the config file says; all optional
  // {"@system-service", "ioctl"}: an allow list (everything else is refused). A leading "~" on
  // the first entry makes the whole list a deny list: {"~@mount", "@module", "ptrace"}.
  // Empty: only the built-in deny list (if default_deny_list) and the argument checks.
  std::vector<std::string> system_call_filter;
  // "EPERM", "EACCES", any errno name, a number 1..4095, or "kill" (kill the process).
  // Empty: EPERM.
  std::string system_call_error_number;
  // "native", "x86-64", "x86", "x32", "arm64", "arm", ... The native ABI is always allowed.
  std::vector<std::string> system_call_architectures{"native"};
  // {"AF_UNIX", "AF_INET"}: socket()/socketpair() of any other family fail with EAFNOSUPPORT;
  // {"~AF_PACKET", "AF_NETLINK"}: those fail. Empty: no restriction.
  std::vector<std::string> restrict_address_families;
  // chmod/fchmod/fchmodat/fchmodat2, mkdir/mkdirat, mknod/mknodat, and open/openat/creat
  // creating a file (O_CREAT or O_TMPFILE), refuse a mode with S_ISUID or S_ISGID; openat2
  // and io_uring_setup answer ENOSYS.
  bool restrict_suid_sgid = true;
  // The built-in deny list for dynamic-user services (see compile()), on top of the list above.
  bool default_deny_list = true;
  // A zygote installs the filter before the UID switch: setresuid/setresgid/setgroups stay
  // allowed even if a list names them (e.g. "~@setuid").
  bool allow_identity_change = false;
  // For the per-service zygote (spawn/zygote.cpp): `zygote_base` is the whole filter except
  // that it lets through what the zygote's loop and the instances' own set-up still call
  // (mount, clone() with new namespaces, and for an allow list such as "@system-service" any
  // of identity, limits, fds, exec it leaves out); zygote_gate() narrows mount and clone
  // again. Both are loaded once, in the zygote. `instance_tail`, when needs_instance_tail(),
  // is what each instance loads last to refuse the rest again.
  enum class Part { whole, zygote_base, instance_tail } part = Part::whole;
  // The instances attach a tree the daemon prepared (state_directory_idmap): the zygote's base
  // also opens move_mount, and the gate narrows it to kInstanceMoveMountFlags.
  bool instance_attach = false;
};

// The flags of the instance set-up's move_mount (MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_F_AUTOMOUNTS:
// the second is inert with an empty path); the gate lets no other form through.
inline constexpr uint32_t kInstanceMoveMountFlags = 0x04 | 0x02;

// Whether a zygote can carry this policy: any valid one, deny list or allow list (the base
// opens what the set-up needs, the tail closes it). Invalid settings: false.
bool zygote_compatible(const Settings& s);

// Whether an instance cloned by the zygote must load the `instance_tail` filter: the policy
// refuses something of the set-up other than mount() (which the gate handles), e.g. an allow
// list without @setuid, or restrict_address_families without AF_INET. The built-in deny list
// and "@system-service" need none: their instances load nothing.
bool needs_instance_tail(const Settings& s);

// The gate loaded in the zygote on top of the `zygote_base` filter: mount() is refused (with
// the configured action) unless its flags carry the MS_MGC_VAL magic in their high half (which
// the kernel discards, and only the instance set-up passes), and clone() asking for a new
// namespace is refused unless its flags are exactly `clone_flags`, the zygote's own; with
// `instance_attach`, move_mount() is refused unless its flags are kInstanceMoveMountFlags. All
// forms still need CAP_SYS_ADMIN, which no instance keeps: for a service they fail with EPERM
// instead of the configured error; every other form answers as the whole filter does.
std::optional<class Program> zygote_gate(const Settings& s, uint32_t clone_flags, std::string& why);

// Checks every name (syscalls, @groups, errno, architectures, address families). On error
// returns false and sets `why` naming the bad entry, e.g. `unknown syscall or group "@x"`.
bool validate(const Settings& s, std::string& why);

// A compiled filter. Move-only; owns the instructions that fprog() points into.
class Program {
 public:
  Program(Program&& o) noexcept;
  Program& operator=(Program&& o) noexcept;
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;
  ~Program() = default;

  // For the child: syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, fprog()), after
  // prctl(PR_SET_NO_NEW_PRIVS, 1). Valid as long as this Program lives and is not moved from.
  const struct sock_fprog* fprog() const noexcept { return &fprog_; }
  size_t size() const noexcept { return insns_.size(); }  // number of BPF instructions

 private:
  friend std::optional<Program> compile(const Settings& s, std::string& why);
  friend std::optional<Program> zygote_gate(const Settings& s, uint32_t clone_flags, std::string& why);
  explicit Program(std::vector<struct sock_filter> insns) noexcept;

  std::vector<struct sock_filter> insns_;
  struct sock_fprog fprog_ {};
};

// Validates, then builds the filter with libseccomp and exports it as BPF (through a memfd:
// libseccomp 2.5 cannot export to memory). The built-in deny list, when default_deny_list:
//   module loading, the mount API, setns, unshare/clone asking for new namespaces (clone3:
//   ENOSYS), reboot/kexec, swap, bpf, perf_event_open, the keyring, ptrace and its relatives
//   (process_vm_readv/writev, pidfd_getfd), setting clocks, iopl/ioperm, acct, quotactl,
//   lookup_dcookie, syslog, vhangup, userfaultfd, fanotify_init, memfd_secret, modify_ldt, kcmp
//   (also under an allow list that names them, e.g. kcmp in @system-service); personality() only to PER_LINUX, and
//   under an allow list also the 0xffffffff query (a deny-list filter cannot tell the two apart: libseccomp compares an
//   argument once per rule).
// Returns nullopt and sets `why` on an invalid setting or a libseccomp failure.
std::optional<Program> compile(const Settings& s, std::string& why);

// libseccomp's human-readable rendering of the same filter (for `superd config check -v` and
// for tests); nullopt and `why` on failure.
std::optional<std::string> pseudo_code(const Settings& s, std::string& why);

// Names of the built-in groups ("@default", "@system-service", ...), for docs and errors.
std::vector<std::string> group_names();

// The members of a group, nested groups expanded, sorted; empty for an unknown group. Names
// this libseccomp does not know are included (they are skipped when compiling).
std::vector<std::string> group_members(const std::string& group);

}  // namespace superd::sandbox::seccomp

// Called by its short name across superd (seccomp::...); it lives in sandbox/.
namespace superd {
namespace seccomp = sandbox::seccomp;
}  // namespace superd
