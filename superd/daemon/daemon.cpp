// Lifecycle of one connection, in the order this file runs it:
//   accept4 -> admission::Gate -> uid_pool::Pool::lease -> spawn::start (clone into a new PID
//   namespace) -> START log -> ... -> pidfd readable (or SIGCHLD drain) -> EXIT log ->
//   cleanup batch: IPC removed -> lease record cleared -> UID back to the pool.
// Teardown order is fixed: the process tree is gone (PID namespace) before IPC is removed, and
// IPC is removed before the UID returns. A UID whose cleanup fails is quarantined.
#include <utility>  // first: Boost 1.74's awaitable.hpp misses it under C++20

#include "daemon/daemon.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <unordered_map>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "admission/admission.hpp"
#include "cleanup/ipc.hpp"
#include "control/control.hpp"
#include "cleanup/proc.hpp"
#include "listener/listener.hpp"
#include "sandbox/dirs.hpp"
#include "spawn/spawn.hpp"
#include "spawn/zygote.hpp"
#include "uid_pool/lease_table.hpp"
#include "uid_pool/pool.hpp"
#include "uid_pool/userdb.hpp"
#include "util/log.hpp"

extern char** environ;

namespace superd::daemon {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr int kAcceptBatch = 32;                 // accepts per wake-up before yielding to the loop
constexpr auto kCensusPeriod = std::chrono::seconds(10);
constexpr auto kMaxShutdownGrace = std::chrono::seconds(30);
constexpr int kCaughtSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE};

std::string errno_text(int err) { return fmt::format("{} ({})", strerrorname_np(err) ? strerrorname_np(err) : "?", std::strerror(err)); }

int pidfd_signal(int pidfd, int sig) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)); }

struct ExitStatus {
  bool signaled = false;
  int code = 0;
  std::string to_string() const {
    if (!signaled) return fmt::format("status={}", code);
    const char* abbrev = sigabbrev_np(code);
    return fmt::format("signal=SIG{}", abbrev ? abbrev : std::to_string(code).c_str());
  }
};

struct Service;

struct Listener {
  Service* service;
  net::ListenSpec spec;
  asio::posix::stream_descriptor sd;
  bool waiting = false;
  // Back-off after EMFILE & co.; a member, so that a listener closed by a reload cancels it.
  std::unique_ptr<asio::steady_timer> backoff;
};

struct Service {
  const config::Service* cfg;
  spawn::ServicePlan plan;
  std::optional<uint32_t> group;  // the shared-directory GID, leased for the daemon's lifetime
  admission::Gate gate;
  std::vector<std::unique_ptr<Listener>> listeners;
  bool paused = false;  // at max_connections: not polling, the backlog holds new connections
  std::shared_ptr<const config::Service> owned_cfg;  // the config this service was built from
  std::unique_ptr<spawn::Zygote> zygote;             // sandboxed services spawn through it
  std::optional<uint32_t> inherited_group;           // taken over from the service it reloaded
};

struct Instance {
  Service* service;
  uint64_t serial;
  uint32_t uid;
  pid_t pid;
  std::string peer;
  net::SourceKey source;
  Clock::time_point started;
  asio::posix::stream_descriptor pidfd;
  asio::posix::stream_descriptor err;
  std::string err_line;
  char err_buf[2048];
  asio::steady_timer timer;
  bool term_sent = false;
  // superd run: the transient service it owns, the caller's control connection, its unit.
  std::unique_ptr<Service> owned_service;
  std::unique_ptr<asio::posix::stream_descriptor> control;
  std::string unit;

  Instance(asio::io_context& io, int pidfd_raw, int err_raw)
      : pidfd(io, pidfd_raw), err(io, err_raw), timer(io) {}
};

class Daemon {
 public:
  Daemon(const config::Config& cfg, const Options& opt)
      : cfg_(cfg),
        opt_(opt),
        roots_{cfg.global.runtime_root, cfg.global.state_root, cfg.global.cache_root, cfg.global.logs_root},
        pool_(cfg.global.uid_min, cfg.global.uid_max), signals_(io_), census_timer_(io_),
        stop_timer_(io_), inotify_(io_), control_(io_) {}

  int run();

 private:
  bool prepare_runtime();
  void recover_orphans();
  std::optional<uint32_t> lease_named(const std::string& name, std::optional<uint32_t> prefer);
  bool prepare_service(Service& s);
  void census();
  void refresh_userdb();
  void watch_userdb();
  void arm_userdb_watch();
  bool open_listeners();
  std::unique_ptr<Service> build_service(std::shared_ptr<const config::Service> sc, Service* previous,
                                         std::vector<Listener*>& reuse);
  void release_group(Service& s);
  std::string reload();
  void notify_ready();
  void arm(Listener& l);
  void on_readable(Listener& l);
  void on_connection(Service& s, const Listener& l, UniqueFd conn, const sockaddr_storage& peer);
  std::optional<spawn::Child> launch(Service& s, const spawn::InstancePlan& plan, uint32_t uid,
                                     uint64_t serial, const std::string& name, std::string& failure);
  void watch_instance(Instance& inst);
  void read_stderr(Instance& inst);
  void flush_stderr(Instance& inst, bool all);
  void drain_children();
  void on_reaped(pid_t pid, ExitStatus st);
  // `host_shm`: the instance could write to the host's /dev/shm (no private one).
  void queue_cleanup(uint32_t uid, bool host_shm);
  void run_cleanup();
  void on_signal(int sig);
  bool open_control();
  void arm_control();
  void on_control_request(std::shared_ptr<asio::posix::stream_descriptor> conn);
  nlohmann::json status_json() const;
  void handle_run(std::shared_ptr<asio::posix::stream_descriptor> conn, const nlohmann::json& req,
                  std::vector<UniqueFd> fds);
  void begin_shutdown();
  void maybe_finish_shutdown();

  config::Config cfg_;
  Options opt_;
  sandbox::Roots roots_;
  asio::io_context io_{1};
  uid_pool::Pool pool_;
  uid_pool::LeaseTable table_;
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<Service>> retired_;  // replaced by a reload, instances still live
  std::unordered_map<pid_t, std::unique_ptr<Instance>> instances_;
  std::vector<uint32_t> pending_cleanup_;
  bool pending_host_shm_ = false;  // some instance in the batch used the host's /dev/shm
  bool cleanup_posted_ = false;
  uint64_t serial_ = 0;
  UniqueFd null_fd_;
  spawn::InstancePlan plan_;  // reused per connection to keep its vectors' capacity
  asio::signal_set signals_;
  asio::steady_timer census_timer_;
  asio::steady_timer stop_timer_;
  asio::posix::stream_descriptor inotify_;
  char inotify_buf_[4096];
  asio::posix::stream_descriptor control_;
  std::string control_path_;
  std::unordered_set<std::string> live_units_;
  bool stopping_ = false;
};

bool Daemon::prepare_runtime() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = fs::path(cfg_.global.runtime_root) / "superd" / "dynamic-uid";
  fs::create_directories(dir, ec);
  if (ec) {
    log::error("cannot create {}: {}", dir.string(), ec.message());
    return false;
  }
  ::chmod(dir.parent_path().c_str(), 0755);
  ::chmod(dir.c_str(), 0755);
  table_ = uid_pool::LeaseTable::open(dir.string(), cfg_.global.uid_min, cfg_.global.uid_max, ec);
  if (ec) {
    if (ec == std::errc::device_or_resource_busy)
      log::error("{}/leases is locked: another superd runs with runtime_root {}", dir.string(), cfg_.global.runtime_root);
    else
      log::error("cannot open lease table in {}: {}", dir.string(), ec.message());
    return false;
  }
  std::string failed;
  if (auto e = sandbox::prepare_runtime(roots_, failed)) {
    log::error("cannot prepare {}: {}", failed, e.message());
    return false;
  }
  null_fd_.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null_fd_) {
    log::error("cannot open /dev/null: {}", std::strerror(errno));
    return false;
  }
  return true;
}

// Leases a previous daemon left behind (it crashed or was killed): their PID namespaces outlive
// it, so sweep each UID's processes, then its IPC objects; quarantine whatever resists.
void Daemon::recover_orphans() {
  auto orphans = table_.take_orphans();
  if (orphans.empty()) return;
  std::unordered_set<uint32_t> uids;
  for (const auto& r : orphans) {
    log::warning("orphaned lease uid={} service={} serial={} pid={}: cleaning", r.uid, r.service, r.serial, r.pid);
    if (auto ec = proc::kill_all_of_uid(r.uid)) {
      log::error("uid={}: processes survive the kill sweep ({}); quarantined", r.uid, ec.message());
      pool_.block(r.uid, uid_pool::kQuarantined);
      continue;
    }
    uids.insert(r.uid);
  }
  for (const auto& f : ipc::remove_owned_by(uids)) {
    log::error("uid={}: cannot remove {} {}{}: {}; quarantined", f.owner, ipc::kind_name(f.object.kind),
               f.object.id, f.object.name, errno_text(f.err));
    pool_.block(f.owner, uid_pool::kQuarantined);
  }
}

void Daemon::refresh_userdb() {
  auto ids = userdb::ids_in_range(pool_.first(), pool_.last());
  pool_.set_blocked_exactly(uid_pool::kStaticUser, ids);
  if (!ids.empty()) log::info("user database: {} IDs in the dynamic range are taken by static users/groups", ids.size());
}

// Watches /etc for a new passwd or group (written in place or renamed over, as useradd does).
void Daemon::watch_userdb() {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0 || ::inotify_add_watch(fd, "/etc", IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
    log::warning("cannot watch /etc for user database changes: {}", std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return;
  }
  inotify_.assign(fd);
  arm_userdb_watch();
}

void Daemon::arm_userdb_watch() {
  inotify_.async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec || stopping_) return;
    bool changed = false;
    ssize_t n;
    while ((n = ::read(inotify_.native_handle(), inotify_buf_, sizeof inotify_buf_)) > 0) {
      for (char* p = inotify_buf_; p < inotify_buf_ + n;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        if (ev->len && (!std::strcmp(ev->name, "passwd") || !std::strcmp(ev->name, "group"))) changed = true;
        p += sizeof(inotify_event) + ev->len;
      }
    }
    if (changed) refresh_userdb();
    arm_userdb_watch();
  });
}

// The slow eligibility checks, off the connection path: UIDs that some process we do not own
// runs with, or that own IPC objects we did not create, are blocked until a later census finds
// them clear. Our own live (held) UIDs are left out: their processes are expected.
void Daemon::census() {
  std::vector<uint32_t> procs, ipcs;
  for (uint32_t u : proc::uids_in_range(pool_.first(), pool_.last()))
    if (!pool_.is_held(u)) procs.push_back(u);
  for (const auto& o : ipc::owned_in_range(pool_.first(), pool_.last()))
    if (!pool_.is_held(o.owner)) ipcs.push_back(o.owner);
  pool_.set_blocked_exactly(uid_pool::kForeignProcess, procs);
  pool_.set_blocked_exactly(uid_pool::kForeignIpc, ipcs);
  if (!procs.empty() || !ipcs.empty())
    log::debug("census: {} foreign process UIDs, {} foreign IPC owners in range", procs.size(), ipcs.size());
  census_timer_.expires_after(kCensusPeriod);
  census_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec && !stopping_) census();
  });
}

// A named lease: a stable UID for a name. Strategy (as systemd's pick_uid): first the current
// owner of the name's existing directory, so no chown is needed; then a hash of the name; then
// the next free UIDs after it. Bounded: at most 4096 probes.
std::optional<uint32_t> Daemon::lease_named(const std::string& name, std::optional<uint32_t> prefer) {
  if (prefer && pool_.lease_exact(*prefer)) return prefer;
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  uint32_t size = pool_.size();
  for (uint32_t i = 0; i < std::min<uint32_t>(size, 4096); ++i) {
    uint32_t uid = pool_.first() + static_cast<uint32_t>((h + i) % size);
    if (pool_.lease_exact(uid)) return uid;
  }
  return std::nullopt;
}

// Host side of a service's sandbox: its shared-directory group and boundary directories.
bool Daemon::prepare_service(Service& s) {
  const auto& sb = s.cfg->service.sandbox;
  auto dirs = sandbox::boundary_dirs(sb, roots_);
  std::optional<uint32_t> gid;
  if (!dirs.empty() && s.cfg->service.dynamic_user) {
    auto current = sandbox::existing_group(dirs);
    gid = s.inherited_group ? s.inherited_group : lease_named("group:" + s.cfg->name, current);
    if (!gid) {
      log::error("service {}: no GID left in the dynamic range for its directories", s.cfg->name);
      return false;
    }
    s.group = gid;
    if (!s.inherited_group) table_.record(*gid, 0, 0, 0, "group:" + s.cfg->name);
    s.plan.groups = {*gid};
    if (!s.cfg->service.umask_set) s.plan.umask = 0007;  // group-writable among the service's instances
  }
  std::string failed;
  if (auto ec = sandbox::prepare_dirs(sb, roots_, 0, gid.value_or(0), gid ? 02070 : 0, failed)) {
    log::error("service {}: cannot prepare {}: {}", s.cfg->name, failed, ec.message());
    return false;
  }
  return true;
}

// Builds a service: plan, directories and group, zygote, and listeners. Listeners whose spec an
// old service already listens on are not opened again: `reuse` collects them for commit().
// On failure everything new is undone by the destructors (and the group released).
std::unique_ptr<Service> Daemon::build_service(std::shared_ptr<const config::Service> sc, Service* previous,
                                               std::vector<Listener*>& reuse) {
  std::unique_ptr<Service> svc;
  try {
    svc = std::make_unique<Service>(Service{sc.get(), spawn::make_service_plan(*sc, roots_, environ, true),
                                            std::nullopt, admission::Gate(admission::limits_from(sc->socket)), {},
                                            false, sc});
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    return nullptr;
  }
  // A reloaded service keeps its shared-directory group: no chown, files stay writable.
  if (previous && previous->group && !sandbox::boundary_dirs(sc->service.sandbox, roots_).empty())
    svc->inherited_group = previous->group;
  if (!prepare_service(*svc)) return nullptr;
  if (svc->plan.use_zygote) {
    std::string failure;
    svc->zygote = spawn::Zygote::start(svc->plan, failure);
    if (!svc->zygote) {
      log::error("service {}: cannot set up its sandbox: {}", sc->name, failure);
      release_group(*svc);
      return nullptr;
    }
  }
  listener::Options lo = listener::options_from(sc->socket);
  for (const config::Listen& l : sc->socket.listen) {
    Listener* old = nullptr;
    for (auto& os : services_)
      for (auto& ol : os->listeners)
        if (ol->spec.to_string() == l.spec.to_string()) old = ol.get();
    if (old) {
      reuse.push_back(old);
      continue;
    }
    std::error_code ec;
    UniqueFd fd = listener::open(l.spec, lo, ec);
    if (!fd) {
      log::error("{}:{}:{}: service {}: cannot listen on {}: {}", l.where.file, l.where.line, l.where.column, sc->name,
                 l.spec.to_string(), ec.message());
      release_group(*svc);
      return nullptr;
    }
    svc->listeners.push_back(
        std::make_unique<Listener>(Listener{svc.get(), l.spec, asio::posix::stream_descriptor(io_, fd.release())}));
    log::info("service {}: listening on {}", sc->name, l.spec.to_string());
  }
  return svc;
}

void Daemon::release_group(Service& s) {
  if (s.group && !s.inherited_group) {
    table_.clear(*s.group);
    pool_.release(*s.group);
  }
  s.group.reset();
}

bool Daemon::open_listeners() {
  for (const config::Service& sc : cfg_.services) {
    std::vector<Listener*> reuse;
    auto svc = build_service(std::make_shared<const config::Service>(sc), nullptr, reuse);
    if (!svc) return false;
    services_.push_back(std::move(svc));
  }
  return true;
}

// Reload (SIGHUP, `superd reload`): re-read the configuration; if anything is wrong, keep the
// running one and say why. Otherwise build every new service first (a failure undoes them all),
// then move unchanged listeners over without closing them, retire the old services (their live
// instances run on untouched; a retired service goes when its last instance ends) and arm.
std::string Daemon::reload() {
  config::Problems problems;
  config::Config next = config::load(opt_.config_path, problems);
  std::string report;
  for (const auto& p : problems.list()) report += p.to_string() + "\n";
  if (!problems.empty()) {
    log::error("reload: {} problem(s); the running configuration stays:\n{}", problems.list().size(), report);
    return report;
  }
  const auto& g = next.global, &h = cfg_.global;
  if (g.uid_min != h.uid_min || g.uid_max != h.uid_max || g.runtime_root != h.runtime_root ||
      g.state_root != h.state_root || g.cache_root != h.cache_root || g.logs_root != h.logs_root) {
    report = "reload: dynamic_uid_range and the roots cannot change while running; restart superd\n";
    log::error("{}", report);
    return report;
  }
  std::vector<std::unique_ptr<Service>> built;
  std::vector<std::vector<Listener*>> reuses;
  for (const config::Service& sc : next.services) {
    Service* previous = nullptr;
    for (auto& os : services_)
      if (os->cfg->name == sc.name) previous = os.get();
    reuses.emplace_back();
    auto svc = build_service(std::make_shared<const config::Service>(sc), previous, reuses.back());
    if (!svc) {
      for (auto& b : built) release_group(*b);
      report = "reload: a service could not be set up (see the log); the running configuration stays\n";
      log::error("{}", report);
      return report;
    }
    built.push_back(std::move(svc));
  }
  // Commit: take over unchanged listeners, retire the old services.
  for (size_t i = 0; i < built.size(); ++i)
    for (Listener* l : reuses[i])
      for (auto& os : services_)
        for (auto& ol : os->listeners)
          if (ol.get() == l) {
            l->service = built[i].get();
            built[i]->listeners.push_back(std::move(ol));
          }
  for (auto& os : services_) {
    for (auto& ol : os->listeners)
      if (ol) {
        boost::system::error_code ignored;
        ol->sd.close(ignored);
        listener::unlink_path(ol->spec);
      }
    os->listeners.clear();
    for (auto& b : built)
      if (b->inherited_group && os->group == b->inherited_group) os->group.reset();  // handed over
  }
  for (auto& b : built) b->inherited_group.reset();  // from here the new service owns its group
  for (auto& os : services_) {
    if (os->gate.live() > 0) {
      retired_.push_back(std::move(os));
    } else {
      release_group(*os);
    }
  }
  services_ = std::move(built);
  // A moved listener may still have its wait pending (arm() then does nothing): its handler
  // reads l.service, which now is the new service.
  for (auto& s : services_)
    for (auto& l : s->listeners) arm(*l);
  cfg_.services = std::move(next.services);
  log::info("reloaded: {} services", services_.size());
  return {};
}

void Daemon::notify_ready() {
  if (opt_.ready_fd >= 0) {
    static const char kReady[] = "READY\n";
    if (::write(opt_.ready_fd, kReady, sizeof kReady - 1) < 0) log::warning("--ready-fd: {}", std::strerror(errno));
    ::close(opt_.ready_fd);
    opt_.ready_fd = -1;
  }
  // sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.
  if (const char* ns = ::getenv("NOTIFY_SOCKET"); ns && (ns[0] == '/' || ns[0] == '@')) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    size_t len = std::min(std::strlen(ns), sizeof sa.sun_path - 1);
    std::memcpy(sa.sun_path, ns, len);
    if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
    UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    static const char kMsg[] = "READY=1";
    if (fd) ::sendto(fd.get(), kMsg, sizeof kMsg - 1, 0, reinterpret_cast<sockaddr*>(&sa),
                     static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  }
}

void Daemon::arm(Listener& l) {
  if (l.waiting || stopping_ || l.service->paused) return;
  l.waiting = true;
  l.sd.async_wait(asio::posix::descriptor_base::wait_read, [this, &l](boost::system::error_code ec) {
    // Aborted: the listener was closed (shutdown, reload) and may already be gone.
    if (ec == asio::error::operation_aborted) return;
    l.waiting = false;
    if (!ec && !stopping_) on_readable(l);
  });
}

void Daemon::on_readable(Listener& l) {
  Service& s = *l.service;
  for (int i = 0; i < kAcceptBatch; ++i) {
    if (s.gate.full()) {
      // Stop polling every listener of the service; the kernel's backlog holds new connections
      // until an instance ends (tcpserver's behaviour). The service itself stays enabled.
      if (!s.paused) log::info("service {}: max_connections={} reached, deferring new connections", s.cfg->name,
                               s.cfg->socket.max_connections);
      s.paused = true;
      return;
    }
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = ::accept4(l.sd.native_handle(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      log::error("service {}: accept on {}: {}", s.cfg->name, l.spec.to_string(), errno_text(errno));
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: back off briefly instead of spinning on a ready socket.
        if (!l.backoff) l.backoff = std::make_unique<asio::steady_timer>(io_);
        l.backoff->expires_after(std::chrono::milliseconds(100));
        l.backoff->async_wait([this, &l](boost::system::error_code e) {
          if (!e) arm(l);
        });
        return;
      }
      break;
    }
    on_connection(s, l, UniqueFd(fd), peer);
  }
  arm(l);
}

// Records the lease and starts the instance. On failure the child (if any) is reaped, the
// lease cleared and the UID returned at once — the child never ran service code, so nothing
// of the UID can remain — and `failure` says which step failed and why.
std::optional<spawn::Child> Daemon::launch(Service& s, const spawn::InstancePlan& plan, uint32_t uid,
                                           uint64_t serial, const std::string& name, std::string& failure) {
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  table_.record(uid, 0, serial, now_ms, name);
  spawn::ChildError cerr;
  std::error_code ec;
  spawn::Child child = s.zygote ? s.zygote->spawn(plan, cerr, ec) : spawn::start(plan, cerr, ec);
  if (ec && s.zygote) {
    // The zygote should never die; if it did (killed by hand, OOM), start a new one and retry
    // once, so the service keeps serving.
    log::error("service {}: its zygote (pid {}) is gone ({}); starting a new one", s.cfg->name, s.zygote->pid(),
               ec.message());
    std::string why;
    s.zygote.reset();
    s.zygote = spawn::Zygote::start(s.plan, why);
    if (s.zygote) {
      ec.clear();
      child = s.zygote->spawn(plan, cerr, ec);
    } else {
      log::error("service {}: cannot start a new zygote: {}", s.cfg->name, why);
    }
  }
  if (!ec && cerr.step == spawn::Step::none) return child;
  if (ec) {
    failure = "clone: " + ec.message();
  } else {
    int st = 0;
    while (::waitpid(child.pid, &st, 0) < 0 && errno == EINTR) {
    }
    std::string what = cerr.step == spawn::Step::mounts
                           ? fmt::format(" ({})", s.plan.mounts.describe(static_cast<size_t>(cerr.detail)))
                           : "";
    failure = fmt::format("step {}{} failed: {}", spawn::step_name(cerr.step), what, errno_text(cerr.err));
  }
  table_.clear(uid);
  pool_.release(uid);
  return std::nullopt;
}

void Daemon::on_connection(Service& s, const Listener& l, UniqueFd conn, const sockaddr_storage& peer_addr) {
  const std::string& name = s.cfg->name;
  spawn::Peer peer;
  peer.remote = peer_addr;
  std::string peer_text;
  net::SourceKey source;
  const sockaddr* ip_peer = nullptr;
  if (peer_addr.ss_family == AF_UNIX) {
    ucred cred{};
    socklen_t cl = sizeof cred;
    if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
      log::warning("REFUSE {} peer=unix reason=\"SO_PEERCRED: {}\"", name, std::strerror(errno));
      return;
    }
    peer.is_unix = true;
    peer.unix_pid = cred.pid;
    peer.unix_uid = cred.uid;
    peer.unix_gid = cred.gid;
    peer_text = fmt::format("unix:pid={},uid={}", cred.pid, cred.uid);
    source = net::source_key_uid(cred.uid);
  } else {
    // The local address is the listener's own unless it is a wildcard: no syscall then.
    if (!l.spec.is_wildcard()) {
      std::memcpy(&peer.local, &l.spec.addr, l.spec.addr_len);
    } else {
      socklen_t ll = sizeof peer.local;
      ::getsockname(conn.get(), reinterpret_cast<sockaddr*>(&peer.local), &ll);
    }
    ip_peer = reinterpret_cast<const sockaddr*>(&peer_addr);
    std::string ip = net::address_string(ip_peer);
    peer_text = ip.find(':') != std::string::npos ? fmt::format("[{}]:{}", ip, net::address_port(ip_peer))
                                                  : fmt::format("{}:{}", ip, net::address_port(ip_peer));
    source = net::source_key(ip_peer);
  }

  admission::Verdict v = s.gate.check(ip_peer, source);
  if (v != admission::Verdict::admit) {
    log::warning("REFUSE {} peer={} reason=\"{}\"", name, peer_text, admission::verdict_reason(v));
    return;
  }
  auto uid = pool_.lease();
  if (!uid) {
    log::warning("REFUSE {} peer={} reason=\"dynamic UID pool exhausted ({} held, {} quarantined)\"", name, peer_text,
                 pool_.held(), pool_.quarantined());
    return;
  }
  uint64_t serial = ++serial_;

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    log::error("FAIL {} serial={} peer={} uid={}: pipe2: {}", name, serial, peer_text, *uid, errno_text(errno));
    pool_.release(*uid);
    return;
  }
  UniqueFd err_read(pipefd[0]), err_write(pipefd[1]);
  ::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);

  spawn::make_instance_plan(plan_, s.plan, peer, *uid, serial);
  plan_.conn_fd = conn.get();
  plan_.stderr_fd = err_write.get();
  plan_.null_fd = null_fd_.get();
  std::string failure;
  auto started = launch(s, plan_, *uid, serial, name, failure);
  err_write.reset();
  conn.reset();  // the child has its copy
  if (!started) {
    log::error("FAIL {} serial={} peer={} uid={}: {}", name, serial, peer_text, *uid, failure);
    return;
  }
  spawn::Child child = std::move(*started);
  table_.set_pid(*uid, child.pid);
  s.gate.enter(source);
  auto inst = std::make_unique<Instance>(io_, child.pidfd.release(), err_read.release());
  inst->service = &s;
  inst->serial = serial;
  inst->uid = *uid;
  inst->pid = child.pid;
  inst->peer = std::move(peer_text);
  inst->source = source;
  inst->started = Clock::now();
  Instance& ref = *inst;
  instances_.emplace(child.pid, std::move(inst));
  log::info("START {} serial={} peer={} uid={} pid={}", name, serial, ref.peer, ref.uid, ref.pid);
  watch_instance(ref);
}

void Daemon::watch_instance(Instance& inst) {
  pid_t pid = inst.pid;
  inst.pidfd.async_wait(asio::posix::descriptor_base::wait_read, [this, pid](boost::system::error_code ec) {
    if (ec) return;
    auto it = instances_.find(pid);
    if (it == instances_.end()) return;
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->second->pidfd.native_handle()), &si,
                 WEXITED | WNOHANG) == 0 &&
        si.si_pid != 0)
      on_reaped(pid, ExitStatus{si.si_code != CLD_EXITED, si.si_status});
  });
  read_stderr(inst);
  auto runtime_max = inst.service->cfg->service.runtime_max;
  if (runtime_max.count() > 0) {
    inst.timer.expires_after(runtime_max);
    inst.timer.async_wait([this, pid](boost::system::error_code ec) {
      if (ec) return;
      auto it = instances_.find(pid);
      if (it == instances_.end()) return;
      Instance& i = *it->second;
      log::warning("TIMEOUT {} serial={} uid={} pid={}: runtime_max reached, sending SIGTERM", i.service->cfg->name,
                   i.serial, i.uid, i.pid);
      pidfd_signal(i.pidfd.native_handle(), SIGTERM);
      i.term_sent = true;
      // PID 1 of a namespace ignores SIGTERM unless it handles it: KILL follows after timeout_stop.
      i.timer.expires_after(i.service->cfg->service.timeout_stop);
      i.timer.async_wait([this, pid](boost::system::error_code ec2) {
        if (ec2) return;
        auto it2 = instances_.find(pid);
        if (it2 == instances_.end()) return;
        log::warning("KILL {} serial={} uid={} pid={}: still running after timeout_stop", it2->second->service->cfg->name,
                     it2->second->serial, it2->second->uid, pid);
        pidfd_signal(it2->second->pidfd.native_handle(), SIGKILL);
      });
    });
  }
}

void Daemon::read_stderr(Instance& inst) {
  pid_t pid = inst.pid;
  inst.err.async_read_some(asio::buffer(inst.err_buf), [this, pid](boost::system::error_code ec, size_t n) {
    auto it = instances_.find(pid);
    if (it == instances_.end()) return;
    Instance& i = *it->second;
    if (n > 0) {
      i.err_line.append(i.err_buf, n);
      flush_stderr(i, false);
    }
    if (!ec) read_stderr(i);
  });
}

// Logs complete lines of the instance's stderr (all of it with `all`), prefixed with the
// service, serial and UID; a line over 4 KiB is cut so one instance cannot grow our memory.
void Daemon::flush_stderr(Instance& i, bool all) {
  size_t start = 0, nl;
  while ((nl = i.err_line.find('\n', start)) != std::string::npos) {
    log::info("{}[{}] uid={}: {}", i.service->cfg->name, i.serial, i.uid, std::string_view(i.err_line).substr(start, nl - start));
    start = nl + 1;
  }
  i.err_line.erase(0, start);
  if ((all && !i.err_line.empty()) || i.err_line.size() > 4096) {
    log::info("{}[{}] uid={}: {}", i.service->cfg->name, i.serial, i.uid, i.err_line);
    i.err_line.clear();
  }
}

// SIGCHLD backstop: reaps whatever exited, in case a pidfd wake-up was missed.
void Daemon::drain_children() {
  int st = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) {
    ExitStatus es = WIFSIGNALED(st) ? ExitStatus{true, WTERMSIG(st)} : ExitStatus{false, WEXITSTATUS(st)};
    on_reaped(pid, es);
  }
}

void Daemon::on_reaped(pid_t pid, ExitStatus st) {
  auto it = instances_.find(pid);
  if (it == instances_.end()) return;
  std::unique_ptr<Instance> inst = std::move(it->second);
  instances_.erase(it);
  // The main process was PID 1 of its namespace: its death killed and reaped every other
  // process there, so the stderr pipe has no writer left and can be drained to the end.
  ssize_t n;
  while ((n = ::read(inst->err.native_handle(), inst->err_buf, sizeof inst->err_buf)) > 0)
    inst->err_line.append(inst->err_buf, static_cast<size_t>(n));
  flush_stderr(*inst, true);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - inst->started).count();
  log::info("EXIT {} serial={} peer={} uid={} pid={} duration={}.{:03}s {}", inst->service->cfg->name, inst->serial,
            inst->peer, inst->uid, inst->pid, ms / 1000, ms % 1000, st.to_string());
  if (inst->control) {
    nlohmann::json msg = {{"exit", {{"signaled", st.signaled}, {"code", st.code}}}};
    control::send_message(inst->control->native_handle(), msg.dump());
    live_units_.erase(inst->unit);
  }
  Service& s = *inst->service;
  s.gate.leave(inst->source);
  const auto& sb = s.cfg->service.sandbox;
  queue_cleanup(inst->uid, !(sb.enabled && s.plan.mount_ns && (sb.private_tmp || sb.private_ipc)));
  inst.reset();  // cancels its waits; their handlers find no instance and return
  if (s.paused && !s.gate.full()) {
    s.paused = false;
    for (auto& l : s.listeners) arm(*l);
  }
  if (s.gate.live() == 0)
    for (auto it = retired_.begin(); it != retired_.end(); ++it)
      if (it->get() == &s) {
        release_group(**it);
        retired_.erase(it);
        break;
      }
}

void Daemon::queue_cleanup(uint32_t uid, bool host_shm) {
  pending_cleanup_.push_back(uid);
  pending_host_shm_ = pending_host_shm_ || host_shm;
  if (cleanup_posted_) return;
  cleanup_posted_ = true;
  // Batched: every UID released within one turn of the loop shares one IPC scan.
  asio::post(io_, [this] { run_cleanup(); });
}

void Daemon::run_cleanup() {
  cleanup_posted_ = false;
  std::vector<uint32_t> batch;
  batch.swap(pending_cleanup_);
  std::unordered_set<uint32_t> ids(batch.begin(), batch.end());
  ipc::Roots roots;
  if (!pending_host_shm_) roots.dev_shm.clear();  // every instance had its own /dev/shm
  pending_host_shm_ = false;
  for (const auto& f : ipc::remove_owned_by(ids, roots)) {
    log::error("uid={}: cannot remove {} {}{}: {}; UID quarantined", f.owner, ipc::kind_name(f.object.kind),
               f.object.id, f.object.name, errno_text(f.err));
    pool_.block(f.owner, uid_pool::kQuarantined);
  }
  for (uint32_t uid : batch) {
    table_.clear(uid);
    pool_.release(uid);
  }
  maybe_finish_shutdown();
}

void Daemon::on_signal(int sig) {
  switch (sig) {
    case SIGCHLD: drain_children(); break;
    case SIGTERM:
    case SIGINT: begin_shutdown(); break;
    case SIGHUP:
      if (!stopping_) reload();
      break;
  }
}

void Daemon::begin_shutdown() {
  if (stopping_) return;
  stopping_ = true;
  log::info("shutting down: {} live instances", instances_.size());
  for (auto& s : services_)
    for (auto& l : s->listeners) {
      boost::system::error_code ignored;
      l->sd.close(ignored);
      listener::unlink_path(l->spec);
    }
  census_timer_.cancel();
  if (inotify_.is_open()) inotify_.close();
  if (control_.is_open()) {
    control_.close();
    ::unlink(control_path_.c_str());
  }
  auto grace = std::chrono::milliseconds(0);
  for (auto& [pid, inst] : instances_) {
    pidfd_signal(inst->pidfd.native_handle(), SIGTERM);
    grace = std::max(grace, inst->service->cfg->service.timeout_stop);
  }
  stop_timer_.expires_after(std::min<Clock::duration>(grace, kMaxShutdownGrace));
  stop_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    for (auto& [pid, inst] : instances_) {
      log::warning("KILL {} serial={} uid={} pid={}: still running at shutdown deadline", inst->service->cfg->name,
                   inst->serial, inst->uid, pid);
      pidfd_signal(inst->pidfd.native_handle(), SIGKILL);
    }
  });
  maybe_finish_shutdown();
}

void Daemon::maybe_finish_shutdown() {
  if (!stopping_ || !instances_.empty() || cleanup_posted_ || !pending_cleanup_.empty()) return;
  stop_timer_.cancel();
  signals_.cancel();
  for (auto& s : services_) release_group(*s);
  for (auto& s : retired_) release_group(*s);
  io_.stop();
}

bool Daemon::open_control() {
  control_path_ = control::socket_path(cfg_.global.runtime_root);
  net::ListenSpec spec;
  std::string why;
  auto parsed = net::parse_listen(control_path_, why);
  if (!parsed) {
    log::error("control socket {}: {}", control_path_, why);
    return false;
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  ::unlink(control_path_.c_str());
  if (!fd || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&parsed->addr), parsed->addr_len) != 0 ||
      ::chmod(control_path_.c_str(), 0600) != 0 || ::listen(fd.get(), 64) != 0) {
    log::error("control socket {}: {}", control_path_, std::strerror(errno));
    return false;
  }
  control_.assign(fd.release());
  arm_control();
  return true;
}

void Daemon::arm_control() {
  control_.async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec || stopping_) return;
    int fd;
    while ((fd = ::accept4(control_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
      auto conn = std::make_shared<asio::posix::stream_descriptor>(io_, fd);
      conn->async_wait(asio::posix::descriptor_base::wait_read,
                       [this, conn](boost::system::error_code e) {
                         if (!e) on_control_request(conn);
                       });
    }
    arm_control();
  });
}

void Daemon::on_control_request(std::shared_ptr<asio::posix::stream_descriptor> conn) {
  std::string msg;
  std::vector<UniqueFd> fds;
  if (auto ec = control::recv_message(conn->native_handle(), msg, &fds, 3)) {
    log::warning("control: bad request: {}", ec.message());
    return;
  }
  auto req = nlohmann::json::parse(msg, nullptr, false);
  auto reply_error = [&](const std::string& e) {
    control::send_message(conn->native_handle(), nlohmann::json{{"error", e}}.dump());
  };
  if (req.is_discarded() || !req.is_object() || !req.contains("op")) return reply_error("malformed request");
  if (req["op"] == "run") {
    if (fds.size() != 3) return reply_error("run needs stdin, stdout and stderr");
    try {
      handle_run(conn, req, std::move(fds));
    } catch (const std::exception& e) {
      reply_error(e.what());
    }
    return;
  }
  if (req["op"] == "reload") {
    std::string problems = stopping_ ? "shutting down" : reload();
    control::send_message(conn->native_handle(),
                          (problems.empty() ? nlohmann::json{{"ok", true}} : nlohmann::json{{"error", problems}}).dump());
    return;
  }
  if (req["op"] == "status") {
    control::send_message(conn->native_handle(), status_json().dump());
    return;
  }
  reply_error("unknown op");
}

// What `superd status` shows: services and listeners, live instances, pool occupancy.
nlohmann::json Daemon::status_json() const {
  auto now = Clock::now();
  nlohmann::json services = nlohmann::json::array();
  for (const auto& s : services_) {
    nlohmann::json listen = nlohmann::json::array();
    for (const auto& l : s->listeners) listen.push_back(l->spec.to_string());
    services.push_back({{"name", s->cfg->name},
                        {"listen", listen},
                        {"live", s->gate.live()},
                        {"max_connections", s->cfg->socket.max_connections},
                        {"paused", s->paused},
                        {"group", s->group ? nlohmann::json(*s->group) : nlohmann::json(nullptr)}});
  }
  nlohmann::json instances = nlohmann::json::array();
  for (const auto& [pid, inst] : instances_)
    instances.push_back({{"service", inst->service->cfg->name},
                         {"serial", inst->serial},
                         {"uid", inst->uid},
                         {"pid", pid},
                         {"peer", inst->peer},
                         {"age_s", std::chrono::duration<double>(now - inst->started).count()}});
  return {{"pid", ::getpid()},
          {"services", services},
          {"instances", instances},
          {"pool", {{"first", pool_.first()},
                    {"last", pool_.last()},
                    {"size", pool_.size()},
                    {"held", pool_.held()},
                    {"quarantined", pool_.quarantined()}}}};
}

// superd run: a transient service under a fresh (or, with --unit, a stable named) UID, in the
// same sandbox and with the same cleanup as a connection; the caller's stdio passed through.
void Daemon::handle_run(std::shared_ptr<asio::posix::stream_descriptor> conn, const nlohmann::json& req,
                        std::vector<UniqueFd> fds) {
  auto reply = [&](const nlohmann::json& j) { control::send_message(conn->native_handle(), j.dump()); };
  auto argv = req.value("argv", std::vector<std::string>{});
  auto props = req.value("properties", std::vector<std::string>{});
  std::string unit = req.value("unit", std::string{});
  if (argv.empty()) return reply({{"error", "no command given"}});
  if (!unit.empty() && live_units_.count(unit)) return reply({{"error", "unit " + unit + " is already running"}});
  uint64_t serial = ++serial_;
  std::string name = unit.empty() ? "run-" + std::to_string(serial) : unit;
  config::Problems problems;
  auto svc_cfg = config::parse_run_service(props, argv, name, problems);
  if (svc_cfg) {
    config::Config one;
    one.services.push_back(*svc_cfg);
    config::validate_system(one, problems);
  }
  if (!problems.empty()) {
    std::string e;
    for (const auto& pr : problems.list()) e += (e.empty() ? "" : "\n") + pr.key + ": " + pr.message;
    return reply({{"error", e}});
  }
  // The config must live as long as the instance: the Service owns it.
  auto holder = std::make_shared<config::Service>(std::move(*svc_cfg));
  auto owned = std::make_unique<Service>(Service{holder.get(), spawn::make_service_plan(*holder, roots_, environ),
                                                 std::nullopt, admission::Gate(admission::limits_from(holder->socket)),
                                                 {}, false, holder});
  const auto& sb = holder->service.sandbox;
  auto dirs = sandbox::boundary_dirs(sb, roots_);
  std::optional<uint32_t> uid;
  if (!unit.empty()) {
    // A named lease prefers the owner of the unit's existing directory: no chown needed.
    std::optional<uint32_t> owner;
    for (const std::string& d : dirs) {
      struct stat st {};
      if (::lstat(d.c_str(), &st) == 0) {
        owner = st.st_uid;
        break;
      }
    }
    uid = lease_named(unit, owner);
  } else {
    uid = pool_.lease();
  }
  if (!uid) return reply({{"error", "dynamic UID pool exhausted"}});
  std::string failed;
  if (auto ec = sandbox::prepare_dirs(sb, roots_, *uid, *uid, 0, failed)) {
    pool_.release(*uid);
    return reply({{"error", "cannot prepare " + failed + ": " + ec.message()}});
  }
  spawn::InstancePlan plan;
  spawn::make_run_plan(plan, owned->plan, *uid, serial, unit.empty() ? "superd-" + std::to_string(*uid) : unit);
  plan.stdin_fd = fds[0].get();
  plan.stdout_fd = fds[1].get();
  plan.stderr_fd = fds[2].get();
  plan.null_fd = null_fd_.get();
  std::string failure;
  auto started = launch(*owned, plan, *uid, serial, name, failure);
  fds.clear();
  if (!started) {
    log::error("FAIL {} serial={} peer=run uid={}: {}", name, serial, *uid, failure);
    return reply({{"error", failure}});
  }
  spawn::Child child = std::move(*started);
  table_.set_pid(*uid, child.pid);
  // stderr goes to the caller; the log pipe slot holds a /dev/null duplicate nobody writes.
  auto inst = std::make_unique<Instance>(io_, child.pidfd.release(), ::fcntl(null_fd_.get(), F_DUPFD_CLOEXEC, 3));
  inst->service = owned.get();
  inst->owned_service = std::move(owned);
  inst->serial = serial;
  inst->uid = *uid;
  inst->pid = child.pid;
  inst->peer = "run";
  inst->started = Clock::now();
  inst->unit = unit;
  inst->control = std::make_unique<asio::posix::stream_descriptor>(io_, ::dup(conn->native_handle()));
  ::fcntl(inst->control->native_handle(), F_SETFD, FD_CLOEXEC);
  if (!unit.empty()) live_units_.insert(unit);
  Instance& ref = *inst;
  pid_t pid = child.pid;
  instances_.emplace(pid, std::move(inst));
  log::info("START {} serial={} peer=run uid={} pid={}", name, serial, ref.uid, pid);
  reply({{"ok", true}, {"uid", *uid}, {"pid", pid}});
  // The caller went away (Ctrl-C, killed): end the instance.
  ref.control->async_wait(asio::posix::descriptor_base::wait_read, [this, pid](boost::system::error_code e) {
    if (e) return;
    auto it = instances_.find(pid);
    if (it == instances_.end()) return;
    log::info("run {} serial={}: caller disconnected, killing", it->second->service->cfg->name, it->second->serial);
    pidfd_signal(it->second->pidfd.native_handle(), SIGKILL);
  });
  watch_instance(ref);
}

int Daemon::run() {
  spawn::raise_nofile_limit();
  if (!prepare_runtime()) return 1;
  recover_orphans();
  refresh_userdb();
  census();
  watch_userdb();
  spawn::set_caught_signals(kCaughtSignals, std::size(kCaughtSignals));
  ::signal(SIGPIPE, SIG_IGN);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) signals_.add(sig);
  std::function<void(boost::system::error_code, int)> handler = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    on_signal(sig);
    if (!io_.stopped()) signals_.async_wait(handler);
  };
  signals_.async_wait(handler);
  if (!open_listeners() || !open_control()) return 1;
  // Two fds per live instance (pidfd, stderr pipe): say so at start rather than fail later.
  rlimit nofile{};
  uint64_t need = 64;
  for (const auto& sc : cfg_.services) need += 2ULL * sc.socket.max_connections;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < need)
    log::warning("RLIMIT_NOFILE is {} but the services' max_connections need about {} fds; connections past "
                 "that are refused (EMFILE)", nofile.rlim_cur, need);
  for (auto& s : services_)
    for (auto& l : s->listeners) arm(*l);
  log::info("ready: {} services, UIDs {}..{} ({} free of {})", services_.size(), pool_.first(), pool_.last(),
            pool_.size() - pool_.held(), pool_.size());
  notify_ready();
  io_.run();
  log::info("stopped: every instance ended and every UID returned ({} quarantined)", pool_.quarantined());
  return 0;
}

}  // namespace

int serve(const config::Config& config, const Options& options) {
  Daemon d(config, options);
  return d.run();
}

}  // namespace superd::daemon
