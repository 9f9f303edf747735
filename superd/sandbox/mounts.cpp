#include "sandbox/mounts.hpp"

#include <fcntl.h>
#include <linux/mount.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "sandbox/seccomp.hpp"

// glibc 2.36's <sys/mount.h> clashes with <linux/mount.h>; the mount calls go through syscall().
extern "C" int mount(const char*, const char*, const char*, unsigned long, const void*) noexcept;

namespace superd::sandbox {
using seccomp::kInstanceMoveMountFlags;
namespace {

void add(MountPlan& p, MountOp op) {
  p.ops.push_back(op);
}

MountOp mk(Op op, const char* path) {
  MountOp o;
  o.op = op;
  o.path = path;
  return o;
}

// "<root>/private/<name>" and friends.
std::string join(const std::string& a, const std::string& b) {
  return a.back() == '/' ? a + b : a + "/" + b;
}

// The boundary roots and the service's directories under each: state, cache, logs (the
// runtime directories live in the instance tmpfs instead).
struct RootDirs {
  const std::string* root;
  const config::ExecDirs* dirs;
};
std::array<RootDirs, 3> boundary_roots(const config::SandboxConfig& sb, const Roots& roots) {
  return {RootDirs{&roots.state, &sb.state}, RootDirs{&roots.cache, &sb.cache}, RootDirs{&roots.logs, &sb.logs}};
}

// A bind path's cloned tree, attached at its target late in the plan.
struct Attach {
  int slot;
  std::string target;
  bool read_only;
  bool optional;
};
// The open_tree slots cloned by clone_sources, in the order the later steps attach them.
struct Sources {
  std::vector<int> dir_slots;  // boundary directories, in boundary_roots() order
  std::vector<Attach> binds;   // bind_paths, then bind_read_only_paths
};

// Directories that become read-only after the global step: the OS directories protect_system
// yes/full names, the home directories of protect_home = "read-only" (strict covers those
// already), and read_only_paths.
std::vector<config::Path> read_only_dirs(const config::SandboxConfig& sb) {
  using config::ProtectHome;
  using config::ProtectSystem;
  std::vector<config::Path> out;
  if (sb.protect_system == ProtectSystem::yes || sb.protect_system == ProtectSystem::full) {
    for (const char* d : {"/usr", "/boot", "/efi"}) out.push_back({d, true});
    if (sb.protect_system == ProtectSystem::full) out.push_back({"/etc", true});
  }
  if (sb.protect_home == ProtectHome::read_only && sb.protect_system != ProtectSystem::strict)
    for (const char* d : {"/home", "/root", "/run/user"}) out.push_back({d, true});
  for (const auto& r : sb.read_only_paths) out.push_back(r);
  return out;
}

// 1. Nothing mounted in the namespace propagates back to the host.
void add_make_private(MountPlan& p) {
  add(p, mk(Op::make_private, "/"));
}

// 2. Sources first: once <root>/private is covered (add_boundary), its contents are out of reach.
Sources clone_sources(MountPlan& p, const config::SandboxConfig& sb, const Roots& roots) {
  auto clone_src = [&](const std::string& src, bool recursive, bool optional) {
    MountOp o = mk(Op::clone_tree, nullptr);
    o.source = p.keep(src);
    o.slot = p.slots++;
    o.recursive = recursive;
    o.optional = optional;
    add(p, o);
    return o.slot;
  };
  Sources s;
  for (const RootDirs& rd : boundary_roots(sb, roots))
    for (const std::string& name : rd.dirs->names) {
      std::string src = join(join(*rd.root, "private"), name);
      if (!sb.idmap_dirs) {
        s.dir_slots.push_back(clone_src(src, false, false));
        continue;
      }
      // Idmapped: the daemon clones it per instance (the map names the instance's UID).
      s.dir_slots.push_back(p.slots);
      p.idmapped.push_back({p.slots++, std::move(src)});
    }
  for (const auto& b : sb.bind_paths)
    s.binds.push_back({clone_src(b.source, true, b.optional), b.target, false, b.optional});
  for (const auto& b : sb.bind_read_only_paths)
    s.binds.push_back({clone_src(b.source, true, b.optional), b.target, true, b.optional});
  return s;
}

// 3. Paths that get their own flags must be mounts of their own: bound onto themselves.
void add_own_mounts(MountPlan& p, const std::vector<config::Path>& read_only,
                    const std::vector<config::Path>& read_write) {
  auto bind_self = [&](const config::Path& path) {
    MountOp o = mk(Op::bind_self, p.keep(path.path));
    o.source = o.path;
    o.recursive = true;
    o.optional = path.optional;
    add(p, o);
  };
  for (const config::Path& d : read_only) bind_self(d);
  for (const config::Path& w : read_write) bind_self(w);
}

// 4. The OS read-only: all of it (strict), then the listed directories.
void add_read_only_os(MountPlan& p, const config::SandboxConfig& sb, const std::vector<config::Path>& read_only) {
  if (sb.protect_system == config::ProtectSystem::strict) {
    MountOp o = mk(Op::set_ro, "/");
    o.recursive = true;
    add(p, o);
    // API filesystems stay usable: /dev writable (device nodes, /dev/shm); /proc is replaced
    // below; /sys stays read-only (stricter than systemd's strict, which leaves it to
    // ProtectKernelTunables=).
    MountOp dev = mk(Op::clear_ro, "/dev");
    dev.recursive = true;
    add(p, dev);
  }
  for (const config::Path& d : read_only) {
    MountOp o = mk(Op::set_ro, p.keep(d.path));
    o.recursive = true;
    o.optional = d.optional;
    add(p, o);
  }
}

// 5. read_write_paths writable again, inside the read-only OS.
void add_read_write(MountPlan& p, const std::vector<config::Path>& read_write) {
  for (const config::Path& w : read_write) {
    MountOp o = mk(Op::clear_ro, p.keep(w.path));
    o.recursive = true;
    o.optional = w.optional;
    add(p, o);
  }
}

// 6. A fresh procfs for the instance's PID namespace.
void add_proc(MountPlan& p) {
  MountOp proc = mk(Op::proc, "/proc");
  proc.per_instance = true;
  add(p, proc);
}

// 7. private_devices: a small tmpfs /dev with the harmless nodes and links only; sealed
// read-only by seal_private_dev once everything under /dev is in place.
void add_private_dev(MountPlan& p, const config::SandboxConfig& sb) {
  if (!sb.private_devices) return;
  MountOp t = mk(Op::tmpfs, "/dev");
  t.source = "mode=0755,size=64k,nr_inodes=64";
  add(p, t);
  struct Node {
    const char* name;
    unsigned major, minor;
  };
  static const Node kNodes[] = {{"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
                                {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};
  for (const Node& n : kNodes) {
    MountOp o = mk(Op::mknod_char, n.name);
    o.mode = 0666;
    o.dev = makedev(n.major, n.minor);
    add(p, o);
  }
  static const char* kLinks[][2] = {{"/dev/fd", "/proc/self/fd"},
                                    {"/dev/stdin", "/proc/self/fd/0"},
                                    {"/dev/stdout", "/proc/self/fd/1"},
                                    {"/dev/stderr", "/proc/self/fd/2"}};
  for (const auto& l : kLinks) {
    MountOp o = mk(Op::symlink, l[0]);
    o.source = l[1];
    add(p, o);
  }
  for (const char* d : {"/dev/shm", "/dev/mqueue"}) {
    MountOp o = mk(Op::mkdir, d);
    o.mode = 0755;
    add(p, o);
  }
}

// 8. private_ipc: the IPC namespace's own mqueue filesystem, where the host has one mounted.
void add_private_mqueue(MountPlan& p, const config::SandboxConfig& sb) {
  if (!sb.private_ipc) return;
  MountOp mq = mk(Op::mqueue, "/dev/mqueue");
  mq.optional = true;
  mq.per_instance = true;
  add(p, mq);
}

// Inodes of the instance tmpfs: each costs kernel memory outside the size budget.
constexpr unsigned kInstanceTmpfsInodes = 16384;

// 9. The instance's private writable places: /tmp and /var/tmp (private_tmp), /dev/shm
// (private_tmp or private_ipc: POSIX shared memory is files there) and its runtime directories.
// They share ONE tmpfs, so private_tmp_size bounds them together: a tmpfs each would let one
// connection hold several budgets of RAM. The tmpfs is mounted on the first place; each place
// gets a subdirectory ".N" of it, bound onto the place, the first last (it covers the tmpfs
// root, so the subdirectories of the others are out of sight). One place: a plain tmpfs.
void add_instance_tmpfs(MountPlan& p, const config::SandboxConfig& sb, const Roots& roots) {
  struct Place {
    const char* path;
    mode_t mode;
    bool owned;
  };
  std::vector<Place> places;
  if (sb.private_tmp) {
    places.push_back({"/tmp", 01777, false});
    places.push_back({"/var/tmp", 01777, false});
  }
  if (sb.private_tmp || sb.private_ipc) places.push_back({"/dev/shm", 01777, false});
  for (const std::string& name : sb.runtime.names)
    places.push_back({p.keep(join(roots.runtime, name)), sb.runtime.mode, true});
  if (places.empty()) return;
  auto per_instance = [&](MountOp o) {
    o.per_instance = true;
    add(p, o);
  };
  char opts[96];  // mode= is octal in tmpfs options
  const Place& first = places.front();
  if (places.size() == 1) {
    std::snprintf(opts, sizeof opts, "mode=%04o,size=%llu,nr_inodes=%u", static_cast<unsigned>(first.mode),
                  static_cast<unsigned long long>(sb.private_tmp_size), kInstanceTmpfsInodes);
    MountOp t = mk(Op::tmpfs, first.path);
    t.source = p.keep(opts);
    t.owned = first.owned;
    return per_instance(t);
  }
  std::snprintf(opts, sizeof opts, "mode=0700,size=%llu,nr_inodes=%u",
                static_cast<unsigned long long>(sb.private_tmp_size), kInstanceTmpfsInodes);
  MountOp t = mk(Op::tmpfs, first.path);
  t.source = p.keep(opts);
  per_instance(t);
  std::vector<const char*> subdirs;
  for (size_t i = 0; i < places.size(); ++i) {
    MountOp m = mk(Op::mkdir, p.keep(join(first.path, "." + std::to_string(i))));
    m.mode = places[i].mode;
    per_instance(m);
    if (places[i].owned) per_instance(mk(Op::chown_owned, m.path));
    subdirs.push_back(m.path);
  }
  for (size_t i = places.size(); i-- > 0;) {  // the first place last
    MountOp b = mk(Op::bind, places[i].path);
    b.source = subdirs[i];
    per_instance(b);
  }
}

// 10. protect_home tmpfs/yes: an empty (or unreadable) read-only tmpfs over each home root.
void add_protect_home(MountPlan& p, const config::SandboxConfig& sb) {
  using config::ProtectHome;
  if (sb.protect_home != ProtectHome::tmpfs && sb.protect_home != ProtectHome::yes) return;
  for (const char* d : {"/home", "/root", "/run/user"}) {
    MountOp o = mk(Op::tmpfs, d);
    o.source =
        sb.protect_home == ProtectHome::tmpfs ? "mode=0755,size=4k,nr_inodes=4" : "mode=0000,size=4k,nr_inodes=4";
    o.optional = true;
    add(p, o);
    MountOp ro = mk(Op::set_ro, d);
    ro.optional = true;
    add(p, ro);
  }
}

// 11. inaccessible_paths: a directory (or a missing path) under a mode-0000 read-only tmpfs, a
// file under the daemon's mode-0000 placeholder file. Looked at on the host, once per service.
void add_inaccessible(MountPlan& p, const config::SandboxConfig& sb, const Roots& roots) {
  for (const auto& ia : sb.inaccessible_paths) {
    struct stat st {};
    bool is_dir = ::stat(ia.path.c_str(), &st) != 0 || S_ISDIR(st.st_mode);
    const char* path = p.keep(ia.path);
    if (is_dir) {
      MountOp o = mk(Op::tmpfs, path);
      o.source = "mode=0000,size=4k,nr_inodes=4";
      o.optional = ia.optional;
      add(p, o);
      MountOp ro = mk(Op::set_ro, path);
      ro.optional = ia.optional;
      add(p, ro);
    } else {
      MountOp o = mk(Op::bind_self, path);
      o.source = p.keep(join(roots.runtime, "superd/inaccessible"));
      o.optional = ia.optional;
      add(p, o);
    }
  }
}

// 12. Boundary: <root>/private becomes an empty read-only tmpfs with only this service's own
// directories attached back, so a recycled UID's old files elsewhere stay out of reach.
void add_boundary(MountPlan& p, const config::SandboxConfig& sb, const Roots& roots,
                  const std::vector<int>& dir_slots) {
  size_t di = 0;
  for (const RootDirs& rd : boundary_roots(sb, roots)) {
    if (rd.dirs->names.empty()) continue;
    std::string priv = join(*rd.root, "private");
    MountOp t = mk(Op::tmpfs, p.keep(priv));
    t.source = "mode=0755,size=4k,nr_inodes=1024";
    add(p, t);
    for (const std::string& name : rd.dirs->names) {
      // Nested names ("a/b") need their parents inside the tmpfs.
      for (size_t pos = name.find('/'); pos != std::string::npos; pos = name.find('/', pos + 1)) {
        MountOp m = mk(Op::mkdir, p.keep(join(priv, name.substr(0, pos))));
        m.mode = 0755;
        m.optional = true;  // EEXIST when two names share a parent
        add(p, m);
      }
      MountOp m = mk(Op::mkdir, p.keep(join(priv, name)));
      m.mode = 0755;
      add(p, m);
      MountOp a = mk(Op::attach_tree, m.path);
      a.slot = dir_slots[di++];
      // An idmapped tree is the instance's own: attached in its namespace, onto the mountpoint
      // made here (a zygote's read-only boundary keeps it; mounting needs no write access).
      a.per_instance = sb.idmap_dirs;
      add(p, a);
    }
    add(p, mk(Op::set_ro, p.keep(priv)));
  }
}

// 13. bind_paths and bind_read_only_paths attached at their targets (the latter read-only).
void add_binds(MountPlan& p, const std::vector<Attach>& binds) {
  for (const Attach& b : binds) {
    MountOp a = mk(Op::attach_tree, p.keep(b.target));
    a.slot = b.slot;
    a.optional = b.optional;
    add(p, a);
    if (b.read_only) {
      MountOp ro = mk(Op::set_ro, a.path);
      ro.recursive = true;
      ro.optional = b.optional;
      add(p, ro);
    }
  }
}

// 14. log_syslog: the service's syslog socket (daemon/syslog.hpp) at /dev/log, once per service
// namespace (a zygote's; per instance only on the clone path, where every step is). In a private
// /dev on a placeholder, before the seal. Else over the host's /dev/log, in this namespace only; a
// symlink (systemd's to journald's dev-log) is followed, so the bind lands on its target. A host
// without /dev/log leaves nothing to bind over: its /dev is not ours to create in. Optional: a
// socket the daemon could not create (it said so) leaves /dev/log as it was.
void add_dev_log(MountPlan& p, const config::SandboxConfig& sb, const std::string& socket) {
  if (socket.empty() || !sb.enabled || !sb.log_syslog) return;
  struct stat st {};
  if (sb.private_devices) {
    MountOp f = mk(Op::mkfile, "/dev/log");
    f.mode = 0666;
    add(p, f);
    p.dev_log = DevLog::private_dev;
  } else if (::stat("/dev/log", &st) == 0 && !S_ISDIR(st.st_mode)) {
    p.dev_log = DevLog::host;
  } else {
    p.dev_log = DevLog::no_host_dev_log;
    return;
  }
  MountOp b = mk(Op::bind, "/dev/log");
  b.source = p.keep(socket);
  b.optional = true;
  add(p, b);
}

// 15. The private /dev read-only, now that its nodes and /dev/shm are in place.
void seal_private_dev(MountPlan& p, const config::SandboxConfig& sb) {
  if (sb.private_devices) add(p, mk(Op::set_ro, "/dev"));
}

// 16. superd's own runtime directory (lease table, control socket) is none of an instance's business.
void add_hidden_runtime(MountPlan& p, const Roots& roots) {
  MountOp o = mk(Op::tmpfs, p.keep(join(roots.runtime, "superd")));
  o.source = "mode=0000,size=4k,nr_inodes=4";
  o.optional = true;
  add(p, o);
  MountOp ro = mk(Op::set_ro, o.path);
  ro.optional = true;
  add(p, ro);
}

// 17. private_network: "lo" up in the fresh network namespace (not a mount, but the child's
// mount step is where the namespace is set up).
void add_loopback(MountPlan& p, const config::SandboxConfig& sb) {
  if (!sb.private_network) return;
  MountOp lo = mk(Op::loopback_up, nullptr);
  lo.per_instance = true;
  add(p, lo);
}

}  // namespace

std::string MountPlan::describe(size_t i) const {
  if (i >= ops.size()) return "?";
  static const char* kNames[] = {"make-private", "bind",      "read-only",  "read-write", "tmpfs", "proc",
                                 "mqueue",       "open_tree", "move_mount", "mkdir",      "mknod", "symlink",
                                 "loopback-up",  "bind",      "chown",      "mkfile"};
  const MountOp& o = ops[i];
  std::string s = kNames[static_cast<int>(o.op)];
  if (o.source && (o.op == Op::clone_tree || o.op == Op::bind_self || o.op == Op::bind))
    s += std::string(" ") + o.source;
  if (o.path) s += std::string(" ") + o.path;
  return s;
}

// The checklist; the order is the security argument (see the header), one step per line.
MountPlan build(const config::SandboxConfig& sb, const Roots& roots, const std::string& syslog_socket) {
  MountPlan p;
  const std::vector<config::Path> read_only = read_only_dirs(sb);
  add_make_private(p);                                  // 1.
  const Sources sources = clone_sources(p, sb, roots);  // 2.
  add_own_mounts(p, read_only, sb.read_write_paths);    // 3.
  add_read_only_os(p, sb, read_only);                   // 4.
  add_read_write(p, sb.read_write_paths);               // 5.
  add_proc(p);                                          // 6.
  add_private_dev(p, sb);                               // 7.
  add_private_mqueue(p, sb);                            // 8.
  add_instance_tmpfs(p, sb, roots);                     // 9.
  add_protect_home(p, sb);                              // 10.
  add_inaccessible(p, sb, roots);                       // 11.
  add_boundary(p, sb, roots, sources.dir_slots);        // 12.
  add_binds(p, sources.binds);                          // 13.
  add_dev_log(p, sb, syslog_socket);                    // 14.
  seal_private_dev(p, sb);                              // 15.
  add_hidden_runtime(p, roots);                         // 16.
  add_loopback(p, sb);                                  // 17.
  return p;
}

namespace {

int setattr(const char* path, bool recursive, uint64_t set, uint64_t clr) noexcept {
  mount_attr attr{};
  attr.attr_set = set;
  attr.attr_clr = clr;
  return static_cast<int>(
      ::syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr, sizeof attr));
}

// Appends ",uid=N,gid=N" to a tmpfs option string without allocating.
void owned_opts(char* out, size_t cap, const char* base, uid_t uid) noexcept {
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s && n + 1 < cap) out[n++] = *s++;
  };
  auto put_num = [&](unsigned v) {
    char digits[12];
    int k = 0;
    do digits[k++] = static_cast<char>('0' + v % 10), v /= 10;
    while (v);
    while (k && n + 1 < cap) out[n++] = digits[--k];
  };
  put(base);
  put(",uid=");
  put_num(uid);
  put(",gid=");
  put_num(uid);
  out[n] = '\0';
}

int loopback_up() noexcept {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  int rc = ::ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    rc = ::ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int saved = errno;
  ::close(s);
  errno = saved;
  return rc;
}

}  // namespace

int apply(const MountPlan& plan, int* slots, uid_t uid, Which which) noexcept {
  // An instance cloned from a zygote mounts with MS_MGC_VAL in the flags' high half: the
  // kernel discards it, and the zygote's seccomp gate lets no other mount() through.
  const unsigned long magic = which == Which::per_instance ? MS_MGC_VAL : 0;
  // Directories and nodes get exactly the plan's modes (/tmp's 01777): one umask(0) here rather
  // than a chmod after each. The child sets the service's umask later in its checklist.
  ::umask(0);
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const MountOp& o = plan.ops[i];
    if ((which == Which::per_service && o.per_instance) || (which == Which::per_instance && !o.per_instance)) continue;
    int rc = 0;
    switch (o.op) {
      case Op::make_private:
        rc = mount(nullptr, o.path, nullptr, MS_REC | MS_PRIVATE, nullptr);
        break;
      case Op::bind_self:
        rc = mount(o.source, o.path, nullptr, MS_BIND | (o.recursive ? MS_REC : 0), nullptr);
        break;
      case Op::set_ro:
        rc = setattr(o.path, o.recursive, MOUNT_ATTR_RDONLY, 0);
        break;
      case Op::clear_ro:
        rc = setattr(o.path, o.recursive, 0, MOUNT_ATTR_RDONLY);
        break;
      case Op::tmpfs: {
        char opts[160];
        const char* data = o.source;
        if (o.owned) {
          owned_opts(opts, sizeof opts, o.source, uid);
          data = opts;
        }
        unsigned long flags = MS_NOSUID | (std::strcmp(o.path, "/dev") == 0 ? 0 : MS_NODEV);
        rc = mount("tmpfs", o.path, "tmpfs", flags | magic, data);
        break;
      }
      case Op::proc:
        rc = mount("proc", o.path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | magic, nullptr);
        break;
      case Op::mqueue:
        rc = mount("mqueue", o.path, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC | magic, nullptr);
        break;
      case Op::clone_tree: {
        long fd = ::syscall(SYS_open_tree, AT_FDCWD, o.source,
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (o.recursive ? AT_RECURSIVE : 0));
        slots[o.slot] = static_cast<int>(fd);
        rc = fd < 0 ? -1 : 0;
        break;
      }
      case Op::attach_tree:
        if (slots[o.slot] < 0) {
          errno = ENOENT;  // its optional source was missing
          rc = -1;
          break;
        }
        // Per instance (an idmapped tree the daemon prepared) in the form the zygote's gate
        // lets through (sandbox/seccomp.hpp).
        rc = static_cast<int>(::syscall(SYS_move_mount, slots[o.slot], "", AT_FDCWD, o.path,
                                        o.per_instance ? kInstanceMoveMountFlags : MOVE_MOUNT_F_EMPTY_PATH));
        break;
      case Op::mkdir:
        rc = ::mkdir(o.path, o.mode);
        if (rc != 0 && errno == EEXIST && o.optional) rc = 0;
        break;
      case Op::chown_owned:
        rc = ::chown(o.path, uid, uid);
        break;
      case Op::bind:
        rc = mount(o.source, o.path, nullptr, MS_BIND | magic, nullptr);
        break;
      case Op::mknod_char:
        rc = ::mknod(o.path, S_IFCHR | o.mode, o.dev);
        break;
      case Op::mkfile:
        rc = ::mknod(o.path, S_IFREG | o.mode, 0);
        break;
      case Op::symlink:
        rc = ::symlink(o.source, o.path);
        break;
      case Op::loopback_up:
        rc = loopback_up();
        break;
    }
    if (rc != 0) {
      if (o.optional && errno == ENOENT) continue;
      return static_cast<int>(i);
    }
  }
  return -1;
}

}  // namespace superd::sandbox
