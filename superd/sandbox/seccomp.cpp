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
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <span>
#include <string_view>

#include "sandbox/seccomp_names.hpp"
#include "util/unique_fd.hpp"

namespace superd::sandbox::seccomp {
namespace {

using detail::expand;
using detail::find_group;
using detail::kFamilyMax;
using detail::known_syscall;
using detail::Names;
using detail::parse_action;
using detail::parse_arch;
using detail::parse_family;
using detail::parse_list;
using detail::quoted;
using std::string_view;

constexpr string_view kDefaultDeny[] = {
    "@module", "@reboot", "@swap", "@clock", "@raw-io", "@keyring",
    // The mount API, old and new; chroot stays (it needs CAP_SYS_CHROOT anyway).
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
    "mount_setattr",
    // Joining a namespace; creating one is an argument check on clone/unshare.
    "setns",
    // Tracing and reading other processes.
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "bpf", "perf_event_open", "acct", "quotactl",
    "quotactl_fd", "lookup_dcookie", "syslog", "vhangup", "userfaultfd",
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
    "recvmsg", "sendmsg", "close", "brk", "mmap", "munmap", "mremap", "madvise", "mprotect", "clone", "exit",
    "exit_group",
    // the instance checklist
    "rt_sigaction", "rt_sigprocmask", "setsid", "dup2", "dup3", "fcntl", "close_range", "mount", "mkdir", "mkdirat",
    "chmod", "fchmodat", "chown", "fchownat", "mknod", "mknodat", "symlink", "symlinkat", "socket", "ioctl",
    "setrlimit", "prlimit64", "umask", "setpriority", "chdir", "prctl", "capset", "setgroups", "setresgid", "setresuid",
    "landlock_create_ruleset", "landlock_restrict_self", "execve",
    // the zygote loads the gate on top of the base, an instance its tail
    "seccomp"};

// What a zygote's own UID switch calls (allow_identity_change).
constexpr string_view kIdentity[] = {"setresuid",   "setresuid32", "setresgid",
                                     "setresgid32", "setgroups",   "setgroups32"};

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

// ---- The resolved policy, before any libseccomp call.

struct Policy {
  bool allow_list = false;  // default-refuse; else default-allow
  Names names;              // allow_list: the allowed calls; else the denied ones
  uint32_t act = 0;         // how a refused call is refused
  std::vector<uint32_t> arches;
  bool namespaces = false;             // clone/unshare without CLONE_NEW*, clone3 ENOSYS
  bool clone_namespaces_open = false;  // zygote_base: its own clone(CLONE_NEW*) must pass
  bool personality = false;            // personality(PER_LINUX) only (and the query, in an allow list)
  bool sxid = false;                   // no S_ISUID/S_ISGID modes
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
Policy split_for_zygote(Policy p, Settings::Part part, bool instance_attach) {
  Names opened;
  for (string_view n : kZygoteNeeds)
    if (refuses(p, std::string(n))) opened.emplace(n);
  if (instance_attach && refuses(p, "move_mount")) opened.emplace("move_mount");
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
    if (p.families_allow)
      p.family_set.insert(AF_INET);
    else
      p.family_set.erase(AF_INET);
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
  if (s.part != Settings::Part::whole) return split_for_zygote(std::move(p), s.part, s.instance_attach);
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
scmp_arg_cmp low32_eq(unsigned arg, uint64_t v) {
  return SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, kLow32, v);
}
// Bits of `mask` all clear / `bit` set.
scmp_arg_cmp bits_clear(unsigned arg, uint64_t mask) {
  return SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, mask, 0);
}
scmp_arg_cmp bit_set(unsigned arg, uint64_t bit) {
  return SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, bit, bit);
}

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
  std::span<const uint64_t> flags =
      name == "clone" ? std::span<const uint64_t>(kCloneNsFlags) : std::span<const uint64_t>(kUnshareNsFlags);
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
    for (int f : p.family_set)
      c.allow.push_back({SCMP_ACT_ALLOW, {SCMP_CMP64(0, SCMP_CMP_EQ, static_cast<uint64_t>(f))}});
  } else {
    for (int f : p.family_set) c.refuse.push_back({eaf, {low32_eq(0, f)}});
    // A default-refuse filter lets every other family below AF_MAX through, each exactly;
    // what lies above is refused by default.
    for (int f = 0; f < kFamilyMax; ++f)
      if (!p.family_set.count(f))
        c.allow.push_back({SCMP_ACT_ALLOW, {SCMP_CMP64(0, SCMP_CMP_EQ, static_cast<uint64_t>(f))}});
  }
  return c;
}

Check refuse_enosys() {
  return Check{{{SCMP_ACT_ERRNO(ENOSYS), {}}}, {}};
}

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
    if (name == "fchmodat" || name == "fchmodat2" || name == "mkdirat" || name == "mknodat")
      return check_mode(2, p.act);
    if (name == "open") return check_open(1, 2, p.act);
    if (name == "openat") return check_open(2, 3, p.act);
    if (name == "openat2") return refuse_enosys();  // flags and mode are in a struct
  }
  if (p.families && (name == "socket" || name == "socketpair")) return check_family(p);
  // io_uring performs opens and socket creation without a syscall seccomp could see.
  if ((p.sxid || p.families) && name == "io_uring_setup") return refuse_enosys();
  return std::nullopt;
}

constexpr string_view kCheckedCalls[] = {"clone",     "clone3",  "unshare",    "personality",   "chmod",
                                         "fchmod",    "mkdir",   "mknod",      "creat",         "fchmodat",
                                         "fchmodat2", "mkdirat", "mknodat",    "open",          "openat",
                                         "openat2",   "socket",  "socketpair", "io_uring_setup"};

std::string rc_text(int rc) {
  return std::strerror(rc < 0 ? -rc : rc);
}

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
      if (name == "clone3")
        rules.push_back({SCMP_ACT_ERRNO(ENOSYS), {}});
      else
        rules.push_back({p.act, {}});
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
  struct stat st {};
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
  // mount() and move_mount() alone are the gate's (as for the built-in deny list): no tail for them.
  return p->families || std::any_of(p->names.begin(), p->names.end(),
                                    [](const std::string& n) { return n != "mount" && n != "move_mount"; });
}

std::optional<Program> zygote_gate(const Settings& s, uint32_t clone_flags, std::string& why) {
  auto p = resolve(s, why);
  if (!p) return std::nullopt;
  const bool gate_mount = refuses(*p, "mount");
  const bool gate_clone = p->namespaces;
  const bool gate_move = s.instance_attach && refuses(*p, "move_mount");
  uint32_t ns_mask = 0;
  for (uint64_t f : kCloneNsFlags) ns_mask |= static_cast<uint32_t>(f);
  constexpr uint32_t kArgsLow = offsetof(seccomp_data, args);  // little-endian: low half first
  constexpr uint32_t kMgcVal = 0xC0ED0000, kMgcMask = 0xffff0000;
  constexpr uint32_t kNever = 0xffffffffu;  // a syscall number that never matches
  const uint32_t act = p->act;
  std::vector<sock_filter> f;
  auto stmt = [&](uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); };
  auto jump = [&](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(BPF_JUMP(code, k, jt, jf)); };
  // Layout (jump offsets count from the next instruction):
  //  0 ld arch; 1 jeq native ? 2 : allow
  //  2 ld nr;   3 jeq mount ? 6 : 4;  4 jeq clone ? 10 : 5;  5 jeq move_mount ? 14 : allow
  //  6 ld arg3; 7 and MGC mask; 8 jeq MGC ? allow : refuse; 9 (pad: ja refuse)
  // 10 ld arg0; 11 jeq exact ? allow : 12; 12 and ns mask; 13 jeq 0 ? allow : refuse
  // 14 ld arg4; 15 jeq kInstanceMoveMountFlags ? allow : refuse
  // 16 allow;  17 refuse
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
  jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 14);
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
  jump(BPF_JMP | BPF_JEQ | BPF_K, gate_mount ? static_cast<uint32_t>(__NR_mount) : kNever, 2, 0);
  jump(BPF_JMP | BPF_JEQ | BPF_K, gate_clone ? static_cast<uint32_t>(__NR_clone) : kNever, 5, 0);
  jump(BPF_JMP | BPF_JEQ | BPF_K, gate_move ? static_cast<uint32_t>(__NR_move_mount) : kNever, 8, 10);
  stmt(BPF_LD | BPF_W | BPF_ABS, kArgsLow + 3 * 8);
  stmt(BPF_ALU | BPF_AND | BPF_K, kMgcMask);
  jump(BPF_JMP | BPF_JEQ | BPF_K, kMgcVal, 7, 8);
  stmt(BPF_JMP | BPF_JA, 7);
  stmt(BPF_LD | BPF_W | BPF_ABS, kArgsLow + 0 * 8);
  jump(BPF_JMP | BPF_JEQ | BPF_K, clone_flags, 4, 0);
  stmt(BPF_ALU | BPF_AND | BPF_K, ns_mask);
  jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 3);
  stmt(BPF_LD | BPF_W | BPF_ABS, kArgsLow + 4 * 8);
  jump(BPF_JMP | BPF_JEQ | BPF_K, kInstanceMoveMountFlags, 0, 1);
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

}  // namespace superd::sandbox::seccomp
