#include "spawn/plan.hpp"

#include <sched.h>
#include <sys/prctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "sandbox/landlock.hpp"
#include "uid_pool/lease_table.hpp"
#include "util/net.hpp"

namespace superd::spawn {

namespace {
constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";
}  // namespace

const char* step_name(Step s) noexcept {
  switch (s) {
    case Step::none:
      return "none";
    case Step::signals:
      return "signals";
    case Step::stdio:
      return "stdio";
    case Step::close_fds:
      return "close_fds";
    case Step::mounts:
      return "mounts";
    case Step::rlimits:
      return "rlimits";
    case Step::umask_nice:
      return "umask_nice";
    case Step::chdir:
      return "chdir";
    case Step::capability_bounding_set:
      return "capability_bounding_set";
    case Step::keep_caps:
      return "keep_caps";
    case Step::setgroups:
      return "setgroups";
    case Step::setresgid:
      return "setresgid";
    case Step::setresuid:
      return "setresuid";
    case Step::ambient_caps:
      return "ambient_caps";
    case Step::no_new_privs:
      return "no_new_privs";
    case Step::landlock:
      return "landlock";
    case Step::seccomp:
      return "seccomp";
    case Step::parent_death:
      return "parent_death";
    case Step::exec:
      return "exec";
    case Step::session:
      return "session";
  }
  return "?";
}

namespace {

uint64_t cap_mask(const std::vector<int>& caps) {
  uint64_t m = 0;
  for (int c : caps) m |= 1ULL << c;
  return m;
}

int read_cap_last() {
  int v = 40;
  if (FILE* f = std::fopen("/proc/sys/kernel/cap_last_cap", "re")) {
    if (std::fscanf(f, "%d", &v) != 1) v = 40;
    std::fclose(f);
  }
  return v;
}

std::string join_dirs(const std::string& root, const std::vector<std::string>& names) {
  std::string v;
  for (const std::string& n : names) v += (v.empty() ? "" : ":") + (root.back() == '/' ? root + n : root + "/" + n);
  return v;
}

}  // namespace

bool drop_bounding_set(const ServicePlan& plan) noexcept {
  for (int c = 0; c <= plan.cap_last; ++c)
    if (!(plan.cap_keep & (1ULL << c)) && ::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) return false;
  return true;
}

HostLimits raise_nofile_limit() noexcept {
  HostLimits host;
  rlimit original{};
  if (::getrlimit(RLIMIT_NOFILE, &original) != 0) return host;
  // As root, go up to 512Ki (systemd's choice for its manager) even past the hard limit.
  rlim_t target = std::max<rlim_t>(original.rlim_max, 524288);
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "re")) {
    unsigned long nr_open = 0;
    if (std::fscanf(f, "%lu", &nr_open) == 1 && nr_open < target) target = nr_open;
    std::fclose(f);
  }
  rlimit raised{target, target};
  bool ok = ::setrlimit(RLIMIT_NOFILE, &raised) == 0;
  if (!ok) {
    raised = {original.rlim_max, original.rlim_max};
    ok = ::setrlimit(RLIMIT_NOFILE, &raised) == 0;
  }
  if (ok) host.original_nofile = original;
  return host;
}

Result<ServicePlan> make_service_plan(const config::Service& svc, const sandbox::Roots& roots, char** superd_environ,
                                      const HostLimits& host, std::optional<gid_t> shared_group, bool use_zygote,
                                      const std::string& syslog_socket) {
  ServicePlan p;
  const auto& s = svc.service;
  const auto& sb = s.sandbox;
  p.path = s.exec_path;
  for (const std::string& a : s.exec) p.argv.push_back(config::expand_specifiers(a, svc.name));
  // pass_environment copies values from superd's own environment as it was at start-up;
  // nothing else of that environment reaches a service.
  for (const std::string& name : s.pass_environment) {
    for (char** e = superd_environ; e && *e; ++e)
      if (std::strncmp(*e, name.c_str(), name.size()) == 0 && (*e)[name.size()] == '=') p.env.emplace_back(*e);
  }
  for (const auto& [k, v] : s.environment) p.env.push_back(k + "=" + config::expand_specifiers(v, svc.name));
  // systemd's default PATH, a fixed value (not superd's own): programs that run helpers by name
  // (git daemon runs "git upload-pack") need one, and xinetd's services inherited xinetd's.
  bool has_path = false;
  for (const std::string& e : p.env) has_path = has_path || e.rfind("PATH=", 0) == 0;
  if (!has_path) p.env.emplace_back(kDefaultPath);
  struct DirVar {
    const char* name;
    const std::string* root;
    const config::ExecDirs* dirs;
  };
  for (const DirVar& d :
       {DirVar{"STATE_DIRECTORY", &roots.state, &sb.state}, DirVar{"CACHE_DIRECTORY", &roots.cache, &sb.cache},
        DirVar{"LOGS_DIRECTORY", &roots.logs, &sb.logs}, DirVar{"RUNTIME_DIRECTORY", &roots.runtime, &sb.runtime}})
    if (!d.dirs->names.empty()) p.env.push_back(std::string(d.name) + "=" + join_dirs(*d.root, d.dirs->names));
  p.limits = s.limits;
  bool nofile_set = false, nproc_set = false;
  for (const auto& l : s.limits) {
    nofile_set = nofile_set || l.resource == RLIMIT_NOFILE;
    nproc_set = nproc_set || l.resource == RLIMIT_NPROC;
  }
  // RLIMIT_NPROC counts the processes of the real UID: with a fresh UID per connection it bounds
  // one instance, where superd's own limit (inherited otherwise) is above pid_max. A static
  // user's limit would count all of that user's processes, so it gets none by default.
  if (!nproc_set && s.dynamic_user) p.limits.push_back({RLIMIT_NPROC, config::kDefaultNproc});
  if (host.original_nofile && !nofile_set) {
    p.reset_nofile = true;
    p.nofile = *host.original_nofile;
  }
  p.stdio = s.stdio;
  p.umask = s.umask;
  if (s.nice) {
    p.set_nice = true;
    p.nice = *s.nice;
  }
  if (!s.working_directory.empty()) p.cwd = s.working_directory;
  if (!s.dynamic_user) {
    p.static_identity = true;
    p.static_uid = s.uid;
    p.static_gid = s.gid;
    p.user_name = s.user;
    p.home = s.home;
    p.groups = s.supplementary_groups;
  }
  // Every instance carries the service's group, so files one instance writes in the shared
  // directories (mode 2770) the next can write too.
  if (shared_group) {
    p.groups = {*shared_group};
    if (!s.umask_set) p.umask = 0007;
  }
  for (size_t i = 0; i < svc.socket.listen.size(); ++i) p.listen_fdnames += (i ? ":" : "") + svc.name;
  for (const std::string& a : p.argv) p.per_connection_specifier |= a.find("%c") != std::string::npos;
  for (const std::string& e : p.env) p.per_connection_specifier |= e.find("%c") != std::string::npos;

  // The sandbox. A mount namespace whenever any filesystem setting asks for one (always with
  // the dynamic-user defaults); IPC and network namespaces as configured.
  p.mount_ns = sb.protect_system != config::ProtectSystem::no || sb.protect_home != config::ProtectHome::no ||
               sb.private_tmp || sb.private_devices || sb.private_ipc || !sb.read_write_paths.empty() ||
               !sb.read_only_paths.empty() || !sb.inaccessible_paths.empty() || !sb.bind_paths.empty() ||
               !sb.bind_read_only_paths.empty() || !sb.state.names.empty() || !sb.cache.names.empty() ||
               !sb.logs.names.empty() || !sb.runtime.names.empty() || sb.private_network;
  if (p.mount_ns) {
    p.clone_flags |= CLONE_NEWNS;
    p.mounts = sandbox::build(sb, roots, syslog_socket);
  }
  if (sb.private_ipc) p.clone_flags |= CLONE_NEWIPC;
  if (sb.private_network) p.clone_flags |= CLONE_NEWNET;
  p.drop_bounding_set = (s.dynamic_user && sb.enabled) || !sb.capability_bounding_set.empty();
  p.cap_keep = cap_mask(sb.capability_bounding_set);
  p.cap_ambient = cap_mask(sb.ambient_capabilities);
  p.cap_last = read_cap_last();
  p.no_new_privs = sb.no_new_privileges;
  if (sb.filter_syscalls) {
    seccomp::Settings st = sb.seccomp;                // a copy: the zygote's parts set st.part
    st.instance_attach = !p.mounts.idmapped.empty();  // the instances move_mount their idmapped trees
    std::string why;
    // Sandboxed dynamic-user services spawn through a zygote that holds the filter's base.
    p.use_zygote = use_zygote && s.dynamic_user && sb.enabled && p.mount_ns && seccomp::zygote_compatible(st);
    if (p.use_zygote) {
      p.zygote_clone_flags = CLONE_VM | CLONE_VFORK | CLONE_PARENT | CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID |
                             (p.clone_flags & (CLONE_NEWIPC | CLONE_NEWNET));
      auto gate = seccomp::zygote_gate(st, static_cast<uint32_t>(p.zygote_clone_flags), why);
      if (!gate)
        return Result<ServicePlan>::failure("service " + svc.name + ": cannot compile the syscall filter: " + why);
      p.gate_filter = std::make_unique<seccomp::Program>(std::move(*gate));
      if (seccomp::needs_instance_tail(st)) {
        seccomp::Settings tail = st;
        tail.part = seccomp::Settings::Part::instance_tail;
        auto t = seccomp::compile(tail, why);
        if (!t)
          return Result<ServicePlan>::failure("service " + svc.name + ": cannot compile the syscall filter: " + why);
        p.tail_filter = std::make_unique<seccomp::Program>(std::move(*t));
      }
      st.part = seccomp::Settings::Part::zygote_base;
    }
    auto prog = seccomp::compile(st, why);
    if (!prog)
      return Result<ServicePlan>::failure("service " + svc.name + ": cannot compile the syscall filter: " + why);
    p.filter = std::make_unique<seccomp::Program>(std::move(*prog));
    // The filter needs no_new_privs to be loaded by an unprivileged process.
    p.no_new_privs = true;
  }
  const uint64_t scopes = (sb.restrict_abstract_sockets ? sandbox::landlock::kScopeAbstractUnixSocket : 0) |
                          (sb.restrict_signals ? sandbox::landlock::kScopeSignal : 0);
  if (scopes) {
    p.landlock_scopes = scopes & sandbox::landlock::supported_scopes();
    p.landlock_missing = scopes & ~p.landlock_scopes;
    if (p.landlock_scopes) p.no_new_privs = true;  // landlock_restrict_self needs it (or CAP_SYS_ADMIN)
  }
  return Result<ServicePlan>(std::move(p));
}

namespace {
// What every instance plan starts with: its service, its UID = GID, an empty environment.
std::vector<std::string>& begin_plan(InstancePlan& out, const ServicePlan& svc, uid_t uid, bool passthrough) {
  out.service = &svc;
  out.passthrough = passthrough;
  out.uid = svc.static_identity ? svc.static_uid : uid;
  out.gid = svc.static_identity ? svc.static_gid : uid;
  out.n_listen_fds = 0;
  out.n_idmap_fds = 0;  // the daemon adds its idmapped trees after (daemon/idmap_dirs.cpp)
  out.env_storage.clear();
  return out.env_storage;
}

// USER, LOGNAME and HOME: a dynamic user has no passwd entry and no home, so HOME=/ as systemd
// does for DynamicUser=; a static user's come from passwd.
// `dynamic`: the dynamic user's name, as the names file (and so NSS) has it.
void add_identity(std::vector<std::string>& env, const ServicePlan& svc, const std::string& dynamic) {
  const std::string& user = svc.static_identity ? svc.user_name : dynamic;
  env.push_back("USER=" + user);
  env.push_back("LOGNAME=" + user);
  env.push_back("HOME=" + (svc.static_identity ? svc.home : std::string("/")));
}
}  // namespace

void make_instance_plan(InstancePlan& out, const ServicePlan& svc, const Peer& peer, uid_t uid,
                        uint64_t serial_number) {
  auto& env = begin_plan(out, svc, uid, false);
  env.reserve(16 + svc.env.size());
  auto add = [&](const char* k, const std::string& v) { env.push_back(std::string(k) + "=" + v); };
  if (peer.is_unix) {
    // UCSPI-unix names for the peer's credentials (SO_PEERCRED).
    add("PROTO", "UNIX");
    add("UNIXREMOTEPID", std::to_string(peer.unix_pid));
    add("UNIXREMOTEEUID", std::to_string(peer.unix_uid));
    add("UNIXREMOTEEGID", std::to_string(peer.unix_gid));
  } else {
    auto* r = reinterpret_cast<const sockaddr*>(&peer.remote);
    auto* l = reinterpret_cast<const sockaddr*>(&peer.local);
    std::string rip = net::address_string(r), rport = std::to_string(net::address_port(r));
    bool v6 = r->sa_family == AF_INET6 && rip.find(':') != std::string::npos;
    add("PROTO", v6 ? "TCP6" : "TCP");
    add("REMOTE_ADDR", rip);
    add("REMOTE_PORT", rport);
    add("REMOTE_HOST", rip);  // xinetd's name for it (the address: superd does no DNS lookup)
    add("TCPREMOTEIP", rip);
    add("TCPREMOTEPORT", rport);
    add("TCPLOCALIP", net::address_string(l));
    add("TCPLOCALPORT", std::to_string(net::address_port(l)));
  }
  for (const std::string& e : peer.proxy_env) env.push_back(e);
  add_identity(env, svc, uid_pool::connection_user_name(uid));
  if (svc.stdio == config::Stdio::listen_fds) {
    // The service is PID 1 of its own PID namespace (see spawn.cpp), so LISTEN_PID is 1.
    add("LISTEN_FDS", "1");
    add("LISTEN_PID", "1");
    add("LISTEN_FDNAMES", "connection");
  }
  for (const std::string& e : svc.env) env.push_back(e);
  finish_arrays(out, svc, serial_number);
}

// argv/envp arrays over the plan's strings, with %c (the serial) expanded where present: the
// only specifier that cannot be expanded at start-up.
void finish_arrays(InstancePlan& out, const ServicePlan& svc, uint64_t serial_number) {
  auto& env = out.env_storage;
  out.serial = serial_number;
  out.argv.clear();
  if (svc.per_connection_specifier) {
    std::string serial = std::to_string(serial_number);
    auto expand_c = [&](std::string s) {
      for (size_t pos = 0; (pos = s.find("%c", pos)) != std::string::npos; pos += serial.size())
        s.replace(pos, 2, serial);
      return s;
    };
    for (std::string& e : env) e = expand_c(e);
    out.argv_storage.clear();
    for (const std::string& a : svc.argv) out.argv_storage.push_back(expand_c(a));
    for (std::string& a : out.argv_storage) out.argv.push_back(a.data());
  } else {
    for (const std::string& a : svc.argv) out.argv.push_back(const_cast<char*>(a.c_str()));
  }
  out.argv.push_back(nullptr);
  out.envp.clear();
  for (std::string& e : env) out.envp.push_back(e.data());
  out.envp.push_back(nullptr);
}

void make_wait_plan(InstancePlan& out, const ServicePlan& svc, uid_t uid, const std::string& user, uint64_t serial,
                    const int* fds, unsigned n) {
  auto& env = begin_plan(out, svc, uid, false);
  add_identity(env, svc, user);
  if (svc.stdio == config::Stdio::listen_fds) {
    out.n_listen_fds = std::min<unsigned>(n, config::kMaxListenFds);
    std::copy(fds, fds + out.n_listen_fds, out.listen_fds);
    env.push_back("LISTEN_FDS=" + std::to_string(out.n_listen_fds));
    env.push_back("LISTEN_PID=1");
    env.push_back("LISTEN_FDNAMES=" + svc.listen_fdnames);
  } else {
    out.conn_fd = n ? fds[0] : -1;
  }
  for (const std::string& e : svc.env) env.push_back(e);
  finish_arrays(out, svc, serial);
}

void make_run_plan(InstancePlan& out, const ServicePlan& svc, uid_t uid, uint64_t serial, const std::string& user) {
  auto& env = begin_plan(out, svc, uid, true);
  env.push_back("USER=" + user);
  env.push_back("LOGNAME=" + user);
  env.push_back("HOME=/");
  for (const std::string& e : svc.env) env.push_back(e);
  finish_arrays(out, svc, serial);
}

}  // namespace superd::spawn
