// sandbox::mounts::build: the whole operation list (kind, target, source, every flag) for
// configurations that cover each step, against snapshots taken from the single-function builder
// before it was split into named steps. The order is the security argument (sources cloned before
// anything covers them, read-only before the writable paths re-open, the boundary before the
// binds, superd's own directory hidden last), so any reordering must show up here.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "sandbox/mounts.hpp"

using namespace superd;
namespace fs = std::filesystem;

namespace {

const char* op_name(sandbox::Op op) {
  using sandbox::Op;
  switch (op) {
    case Op::make_private:
      return "make_private";
    case Op::bind_self:
      return "bind_self";
    case Op::set_ro:
      return "set_ro";
    case Op::clear_ro:
      return "clear_ro";
    case Op::tmpfs:
      return "tmpfs";
    case Op::proc:
      return "proc";
    case Op::mqueue:
      return "mqueue";
    case Op::clone_tree:
      return "clone_tree";
    case Op::attach_tree:
      return "attach_tree";
    case Op::mkdir:
      return "mkdir";
    case Op::mknod_char:
      return "mknod_char";
    case Op::symlink:
      return "symlink";
    case Op::loopback_up:
      return "loopback_up";
    case Op::bind:
      return "bind";
    case Op::chown_owned:
      return "chown_owned";
    case Op::mkfile:
      return "mkfile";
  }
  return "?";
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
  return s;
}

// One line per operation, every field that is not at its default; the scratch directory reads
// as $S so the snapshot does not depend on mkdtemp's name.
std::string snapshot(const sandbox::MountPlan& p, const std::string& scratch = "") {
  std::string out = "slots=" + std::to_string(p.slots) + "\n";
  for (const sandbox::MountOp& o : p.ops) {
    std::string line = op_name(o.op);
    if (o.path) line += std::string(" ") + o.path;
    if (o.source) line += std::string(" <- ") + o.source;
    if (o.recursive) line += " rec";
    if (o.optional) line += " opt";
    if (o.owned) line += " owned";
    if (o.per_instance) line += " inst";
    if (o.mode) {
      char m[32];
      std::snprintf(m, sizeof m, " mode=%04o", static_cast<unsigned>(o.mode));
      line += m;
    }
    if (o.dev) line += " dev=" + std::to_string(major(o.dev)) + ":" + std::to_string(minor(o.dev));
    if (o.slot >= 0) line += " slot=" + std::to_string(o.slot);
    out += line + "\n";
  }
  return scratch.empty() ? out : replace_all(out, scratch, "$S");
}

struct ScratchDir : superd::test::ScratchDir {
  ScratchDir() : superd::test::ScratchDir("ut-mounts") {}
};

// Trailing slash on logs: join() must not double it.
const sandbox::Roots kRoots{"/run", "/var/lib", "/var/cache", "/var/log/"};

}  // namespace

TEST_CASE("defaults: strict, read-only home, private /tmp", "[mounts]") {
  config::SandboxConfig sb;
  CHECK(snapshot(sandbox::build(sb, kRoots)) == R"(slots=0
make_private /
set_ro / rec
clear_ro /dev rec
proc /proc inst
tmpfs /tmp <- mode=0700,size=67108864,nr_inodes=16384 inst
mkdir /tmp/.0 inst mode=1777
mkdir /tmp/.1 inst mode=1777
mkdir /tmp/.2 inst mode=1777
bind /dev/shm <- /tmp/.2 inst
bind /var/tmp <- /tmp/.1 inst
bind /tmp <- /tmp/.0 inst
tmpfs /run/superd <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /run/superd opt
)");
}

TEST_CASE("strict with every boundary directory, binds, paths, devices, IPC and network", "[mounts]") {
  ScratchDir scratch;
  const std::string s = scratch.path.string();
  fs::create_directories(s + "/hidden-dir");
  std::ofstream(s + "/hidden-file") << "x";
  config::SandboxConfig sb;
  sb.protect_home = config::ProtectHome::tmpfs;
  sb.private_tmp_size = 1 << 20;
  sb.private_devices = true;
  sb.private_ipc = true;
  sb.private_network = true;
  sb.state.names = {"svc", "a/b", "a/c"};
  sb.cache.names = {"svc"};
  sb.logs.names = {"svc"};
  sb.runtime.names = {"svc", "svc2"};
  sb.runtime.mode = 0750;
  sb.read_only_paths = {{"/opt", false}, {"/srv/maybe", true}};
  sb.read_write_paths = {{"/var/spool", false}, {"/var/mail", true}};
  sb.inaccessible_paths = {{s + "/hidden-dir", false}, {s + "/hidden-file", true}, {s + "/missing", true}};
  sb.bind_paths = {{"/srv/data", "/data", false}, {"/srv/opt-data", "/opt-data", true}};
  sb.bind_read_only_paths = {{"/srv/ro", "/ro", false}};
  CHECK(snapshot(sandbox::build(sb, kRoots), s) == R"(slots=8
make_private /
clone_tree <- /var/lib/private/svc slot=0
clone_tree <- /var/lib/private/a/b slot=1
clone_tree <- /var/lib/private/a/c slot=2
clone_tree <- /var/cache/private/svc slot=3
clone_tree <- /var/log/private/svc slot=4
clone_tree <- /srv/data rec slot=5
clone_tree <- /srv/opt-data rec opt slot=6
clone_tree <- /srv/ro rec slot=7
bind_self /opt <- /opt rec
bind_self /srv/maybe <- /srv/maybe rec opt
bind_self /var/spool <- /var/spool rec
bind_self /var/mail <- /var/mail rec opt
set_ro / rec
clear_ro /dev rec
set_ro /opt rec
set_ro /srv/maybe rec opt
clear_ro /var/spool rec
clear_ro /var/mail rec opt
proc /proc inst
tmpfs /dev <- mode=0755,size=64k,nr_inodes=64
mknod_char /dev/null mode=0666 dev=1:3
mknod_char /dev/zero mode=0666 dev=1:5
mknod_char /dev/full mode=0666 dev=1:7
mknod_char /dev/random mode=0666 dev=1:8
mknod_char /dev/urandom mode=0666 dev=1:9
mknod_char /dev/tty mode=0666 dev=5:0
symlink /dev/fd <- /proc/self/fd
symlink /dev/stdin <- /proc/self/fd/0
symlink /dev/stdout <- /proc/self/fd/1
symlink /dev/stderr <- /proc/self/fd/2
mkdir /dev/shm mode=0755
mkdir /dev/mqueue mode=0755
mqueue /dev/mqueue opt inst
tmpfs /tmp <- mode=0700,size=1048576,nr_inodes=16384 inst
mkdir /tmp/.0 inst mode=1777
mkdir /tmp/.1 inst mode=1777
mkdir /tmp/.2 inst mode=1777
mkdir /tmp/.3 inst mode=0750
chown_owned /tmp/.3 inst
mkdir /tmp/.4 inst mode=0750
chown_owned /tmp/.4 inst
bind /run/svc2 <- /tmp/.4 inst
bind /run/svc <- /tmp/.3 inst
bind /dev/shm <- /tmp/.2 inst
bind /var/tmp <- /tmp/.1 inst
bind /tmp <- /tmp/.0 inst
tmpfs /home <- mode=0755,size=4k,nr_inodes=4 opt
set_ro /home opt
tmpfs /root <- mode=0755,size=4k,nr_inodes=4 opt
set_ro /root opt
tmpfs /run/user <- mode=0755,size=4k,nr_inodes=4 opt
set_ro /run/user opt
tmpfs $S/hidden-dir <- mode=0000,size=4k,nr_inodes=4
set_ro $S/hidden-dir
bind_self $S/hidden-file <- /run/superd/inaccessible opt
tmpfs $S/missing <- mode=0000,size=4k,nr_inodes=4 opt
set_ro $S/missing opt
tmpfs /var/lib/private <- mode=0755,size=4k,nr_inodes=1024
mkdir /var/lib/private/svc mode=0755
attach_tree /var/lib/private/svc slot=0
mkdir /var/lib/private/a opt mode=0755
mkdir /var/lib/private/a/b mode=0755
attach_tree /var/lib/private/a/b slot=1
mkdir /var/lib/private/a opt mode=0755
mkdir /var/lib/private/a/c mode=0755
attach_tree /var/lib/private/a/c slot=2
set_ro /var/lib/private
tmpfs /var/cache/private <- mode=0755,size=4k,nr_inodes=1024
mkdir /var/cache/private/svc mode=0755
attach_tree /var/cache/private/svc slot=3
set_ro /var/cache/private
tmpfs /var/log/private <- mode=0755,size=4k,nr_inodes=1024
mkdir /var/log/private/svc mode=0755
attach_tree /var/log/private/svc slot=4
set_ro /var/log/private
attach_tree /data slot=5
attach_tree /opt-data opt slot=6
attach_tree /ro slot=7
set_ro /ro rec
set_ro /dev
tmpfs /run/superd <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /run/superd opt
loopback_up inst
)");
}

TEST_CASE("full, no private /tmp, one runtime directory, inaccessible home", "[mounts]") {
  config::SandboxConfig sb;
  sb.protect_system = config::ProtectSystem::full;
  sb.protect_home = config::ProtectHome::yes;
  sb.private_tmp = false;
  sb.runtime.names = {"only"};
  sb.read_only_paths = {{"/opt", true}};
  sb.read_write_paths = {{"/etc/svc", false}};
  CHECK(snapshot(sandbox::build(sb, kRoots)) == R"(slots=0
make_private /
bind_self /usr <- /usr rec opt
bind_self /boot <- /boot rec opt
bind_self /efi <- /efi rec opt
bind_self /etc <- /etc rec opt
bind_self /opt <- /opt rec opt
bind_self /etc/svc <- /etc/svc rec
set_ro /usr rec opt
set_ro /boot rec opt
set_ro /efi rec opt
set_ro /etc rec opt
set_ro /opt rec opt
clear_ro /etc/svc rec
proc /proc inst
tmpfs /run/only <- mode=0755,size=67108864,nr_inodes=16384 owned inst
tmpfs /home <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /home opt
tmpfs /root <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /root opt
tmpfs /run/user <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /run/user opt
tmpfs /run/superd <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /run/superd opt
)");
}

TEST_CASE("yes with read-only home and only a private IPC namespace's /dev/shm", "[mounts]") {
  config::SandboxConfig sb;
  sb.protect_system = config::ProtectSystem::yes;
  sb.private_tmp = false;
  sb.private_ipc = true;
  sb.cache.names = {"c"};
  CHECK(snapshot(sandbox::build(sb, kRoots)) == R"(slots=1
make_private /
clone_tree <- /var/cache/private/c slot=0
bind_self /usr <- /usr rec opt
bind_self /boot <- /boot rec opt
bind_self /efi <- /efi rec opt
bind_self /home <- /home rec opt
bind_self /root <- /root rec opt
bind_self /run/user <- /run/user rec opt
set_ro /usr rec opt
set_ro /boot rec opt
set_ro /efi rec opt
set_ro /home rec opt
set_ro /root rec opt
set_ro /run/user rec opt
proc /proc inst
mqueue /dev/mqueue opt inst
tmpfs /dev/shm <- mode=1777,size=67108864,nr_inodes=16384 inst
tmpfs /var/cache/private <- mode=0755,size=4k,nr_inodes=1024
mkdir /var/cache/private/c mode=0755
attach_tree /var/cache/private/c slot=0
set_ro /var/cache/private
tmpfs /run/superd <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /run/superd opt
)");
}

TEST_CASE("nothing protected: only the private propagation, /proc and the hidden runtime", "[mounts]") {
  config::SandboxConfig sb;
  sb.protect_system = config::ProtectSystem::no;
  sb.protect_home = config::ProtectHome::no;
  sb.private_tmp = false;
  CHECK(snapshot(sandbox::build(sb, kRoots)) == R"(slots=0
make_private /
proc /proc inst
tmpfs /run/superd <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /run/superd opt
)");
}

TEST_CASE("log_syslog: the service's socket bound at /dev/log, in a private /dev before its seal", "[mounts]") {
  config::SandboxConfig sb;
  sb.protect_system = config::ProtectSystem::no;
  sb.protect_home = config::ProtectHome::no;
  sb.private_tmp = false;
  sb.private_devices = true;
  const std::string sock = "/run/superd/syslog/1";
  auto plan = sandbox::build(sb, kRoots, sock);
  CHECK(plan.dev_log == sandbox::DevLog::private_dev);
  CHECK(snapshot(plan) == R"(slots=0
make_private /
proc /proc inst
tmpfs /dev <- mode=0755,size=64k,nr_inodes=64
mknod_char /dev/null mode=0666 dev=1:3
mknod_char /dev/zero mode=0666 dev=1:5
mknod_char /dev/full mode=0666 dev=1:7
mknod_char /dev/random mode=0666 dev=1:8
mknod_char /dev/urandom mode=0666 dev=1:9
mknod_char /dev/tty mode=0666 dev=5:0
symlink /dev/fd <- /proc/self/fd
symlink /dev/stdin <- /proc/self/fd/0
symlink /dev/stdout <- /proc/self/fd/1
symlink /dev/stderr <- /proc/self/fd/2
mkdir /dev/shm mode=0755
mkdir /dev/mqueue mode=0755
mkfile /dev/log mode=0666
bind /dev/log <- /run/superd/syslog/1 opt
set_ro /dev
tmpfs /run/superd <- mode=0000,size=4k,nr_inodes=4 opt
set_ro /run/superd opt
)");
  CHECK(plan.describe(plan.ops.size() - 5) == "mkfile /dev/log");
  CHECK(plan.describe(plan.ops.size() - 4) == "bind /run/superd/syslog/1 /dev/log");
  // Off, without a sandbox, or without a socket: /dev/log is left alone.
  auto without = [&](config::SandboxConfig c, const std::string& s) {
    auto p = sandbox::build(c, kRoots, s);
    bool touches = false;
    for (const auto& o : p.ops) touches = touches || (o.path && std::string(o.path) == "/dev/log");
    return p.dev_log == sandbox::DevLog::none && !touches;
  };
  config::SandboxConfig off = sb;
  off.log_syslog = false;
  CHECK(without(off, sock));
  config::SandboxConfig unsandboxed = sb;
  unsandboxed.enabled = false;
  CHECK(without(unsandboxed, sock));
  CHECK(without(sb, ""));
  // The host's /dev: bound over its /dev/log where there is one, else nothing to bind onto.
  config::SandboxConfig host = sb;
  host.private_devices = false;
  auto hp = sandbox::build(host, kRoots, sock);
  struct stat st {};
  if (::stat("/dev/log", &st) == 0 && !S_ISDIR(st.st_mode)) {
    CHECK(hp.dev_log == sandbox::DevLog::host);
    CHECK(snapshot(hp).find("bind /dev/log <- /run/superd/syslog/1 opt\ntmpfs /run/superd") != std::string::npos);
  } else {
    CHECK(hp.dev_log == sandbox::DevLog::no_host_dev_log);
    CHECK(snapshot(hp).find("/dev/log") == std::string::npos);
  }
}

TEST_CASE("describe() names the operation, its source and its path", "[mounts]") {
  config::SandboxConfig sb;
  sb.bind_paths = {{"/srv/data", "/data", false}};
  auto plan = sandbox::build(sb, kRoots);
  CHECK(plan.describe(0) == "make-private /");
  CHECK(plan.describe(1) == "open_tree /srv/data");
  CHECK(plan.describe(plan.ops.size()) == "?");
  bool found = false;
  for (size_t i = 0; i < plan.ops.size(); ++i)
    if (plan.ops[i].op == sandbox::Op::attach_tree) found = plan.describe(i) == "move_mount /data";
  CHECK(found);
}
