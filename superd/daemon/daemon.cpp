// Lifecycle of one connection, in the order this file runs it:
//   accept4 -> admission::Gate -> uid_pool::Pool::lease -> spawn::start (clone into a new PID
//   namespace) -> START log -> ... -> pidfd readable (or SIGCHLD drain) -> EXIT log ->
//   cleanup batch: IPC removed -> lease record cleared -> UID back to the pool.
// Teardown order is fixed: the process tree is gone (PID namespace) before IPC is removed, and
// IPC is removed before the UID returns. A UID whose cleanup fails is quarantined.
#include <utility>  // first: Boost 1.74's awaitable.hpp misses it under C++20

#include "daemon/daemon.hpp"
#include "daemon/control_server.hpp"
#include "daemon/event_log.hpp"
#include "daemon/orphans.hpp"

#include <fcntl.h>
#include <poll.h>
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
#include <fmt/ranges.h>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <unordered_map>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "admission/access_times.hpp"
#include "admission/admission.hpp"
#include "admission/rate.hpp"
#include "cleanup/ipc.hpp"
#include "control/control.hpp"
#include "cleanup/proc.hpp"
#include "inloop/inloop.hpp"
#include "listener/listener.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/dirs.hpp"
#include "sandbox/landlock.hpp"
#include "spawn/spawn.hpp"
#include "spawn/zygote.hpp"
#include "uid_pool/lease_table.hpp"
#include "uid_pool/pool.hpp"
#include "uid_pool/userdb.hpp"
#include "util/log.hpp"
#include "util/sink.hpp"
#include "xinetd/xinetd.hpp"

extern char** environ;

namespace superd::daemon {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kDatagramRefusalsLogged = 20;  // per service and second
using event_log::kNoUid;  // log lines of sessions, which run as nobody else
constexpr size_t kMaxZygotes = 4;                 // per sandboxed service, at most one per CPU
constexpr size_t kMaxEarlyExits = 4 * 64;     // kMaxZygotes * kMaxPendingPerZygote
constexpr size_t kMaxPendingPerZygote = 64;        // requests in flight; past that accepting pauses
constexpr int kAcceptBatch = 32;                 // accepts per wake-up before yielding to the loop
constexpr auto kCensusPeriod = std::chrono::seconds(10);
constexpr size_t kMaxAttackersLogged = 1024;  // distinct creators of given-away IPC objects
// Wait mode: an instance that lives less than kQuickExit makes superd wait before polling again,
// kWaitBackoffFirst after the first such exit, doubling per exit in a row, at most kWaitBackoffMax.
constexpr auto kQuickExit = std::chrono::seconds(1);
constexpr auto kWaitBackoffFirst = std::chrono::milliseconds(250);
constexpr auto kWaitBackoffMax = std::chrono::seconds(60);
constexpr auto kMaxShutdownGrace = std::chrono::seconds(30);
constexpr int kCaughtSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE};

using log::errno_text;

// "1.2.3.4:5" or "[::1]:5", as log lines show a peer.
std::string peer_string(const sockaddr* sa) {
  std::string ip = net::address_string(sa);
  return ip.find(':') != std::string::npos ? fmt::format("[{}]:{}", ip, net::address_port(sa))
                                           : fmt::format("{}:{}", ip, net::address_port(sa));
}

// The instance's stderr: a pipe whose read end the loop drains into the log.
bool log_pipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  return true;
}

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
  Listener(Service* s, const config::Listen& l, asio::posix::stream_descriptor fd, std::string k)
      : service(s), spec(l.spec), sd(std::move(fd)), datagram(l.datagram), key(std::move(k)) {}
  Service* service;
  net::ListenSpec spec;
  asio::posix::stream_descriptor sd;
  bool waiting = false;
  // Back-off after EMFILE & co.; a member, so that a listener closed by a reload cancels it.
  std::unique_ptr<asio::steady_timer> backoff;
  bool datagram = false;
  std::string key;  // spec and socket options: a reload reuses a listener only if they all match
};

// A connection accepted past the rate limit with connection_rate_action = "defer": held until
// the limit lets it through (one at most per service: accepting stops while one waits).
struct Deferred {
  UniqueFd conn;
  sockaddr_storage peer{};
  net::ListenSpec local;
};

// A connection served inside the loop (internal service or redirect) rather than by a process.
struct Session {
  Service* service;
  uint64_t serial;
  std::string peer;
  net::SourceKey source;
  Clock::time_point started;
  std::unique_ptr<inloop::Session> io;
  std::unique_ptr<asio::steady_timer> timer;  // runtime_max
};

// A connection handed to a zygote whose answer has not come yet.
struct PendingSpawn {
  uint64_t serial;
  uint32_t uid;
  std::string peer;
  net::SourceKey source;
  UniqueFd err_read;
};

// One zygote and the requests it has not answered yet, in the order it answers them. A
// sandboxed service has one per CPU (up to kMaxZygotes): the clone into fresh namespaces is the
// slowest step of a connection, and the daemon does not wait for it (bench/spawn_parallel.sh).
struct ZygoteSlot {
  std::unique_ptr<spawn::Zygote> zygote;
  std::unique_ptr<asio::posix::stream_descriptor> answers;  // a dup of its socket, for the loop
  std::deque<PendingSpawn> pending;
  bool waiting = false;
};

struct Service {
  Service(std::shared_ptr<const config::Service> c, spawn::ServicePlan p)
      : cfg(c.get()), plan(std::move(p)), gate(c->socket.limits), owned_cfg(std::move(c)) {}
  const config::Service* cfg;
  spawn::ServicePlan plan;
  std::optional<uint32_t> group;  // the shared-directory GID, leased for the daemon's lifetime
  admission::Gate gate;
  std::vector<std::unique_ptr<Listener>> listeners;
  bool paused = false;  // at max_connections: not polling, the backlog holds new connections
  std::shared_ptr<const config::Service> owned_cfg;  // the config this service was built from
  std::vector<std::unique_ptr<ZygoteSlot>> zygotes;   // sandboxed services spawn through them
  std::optional<uint32_t> inherited_group;           // taken over from the service it reloaded
  admission::RateLimit rate{0, std::chrono::milliseconds(1000)};
  admission::AccessTimes access;
  log::Sink sink;  // where START/EXIT/REFUSE/FAIL and the instances' stderr go
  std::optional<inloop::Internal> internal;
  bool wait_mode = false;     // accept = false: one instance at a time gets the listening sockets
  bool wait_running = false;  // that instance is alive: the listeners are not polled
  unsigned quick_exits = 0;   // wait mode: instances in a row that exited within kQuickExit
  bool rate_paused = false;   // over max_connection_rate: rate_timer resumes polling
  std::unique_ptr<asio::steady_timer> rate_timer;
  std::optional<Deferred> deferred;
  std::vector<char> datagram_buf;  // internal datagram services: one request, one reply
  Clock::time_point refusal_window{};  // REFUSE lines for datagrams, bounded per second
  uint32_t refusals_logged = 0, refusals_unlogged = 0;
  // Internal datagram services: the loop guard and the reply limits, built at the first datagram.
  std::unique_ptr<inloop::OwnSockets> own_sockets;
  std::unique_ptr<inloop::ReplyLimiter> reply_limit;
};

struct Instance {
  Service* service;
  uint64_t serial;
  uint32_t uid;
  pid_t pid;
  std::string peer;
  net::SourceKey source;
  Clock::time_point started;
  bool leased = true;  // a UID from the pool (false: a static user, nothing to return)
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
        stop_timer_(io_), inotify_(io_) {}

  int run();

 private:
  bool prepare_runtime();
  void start_orphan_sweep();
  void report_cgroup_support() const;
  void read_sweep_results();
  void on_swept(const sweep::Result& r);
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
  void on_connection(Service& s, const net::ListenSpec& local, UniqueFd conn, const sockaddr_storage& peer,
                     bool rate_taken = false);
  void on_datagrams(Listener& l);
  void start_wait_instance(Service& s);
  void replace_shut_listeners(Service& s);
  void adopt(Service& s, spawn::Child child, UniqueFd err_read, uint64_t serial, uint32_t uid, bool leased,
             std::string peer, const net::SourceKey& source, bool counted = false);
  void start_session(Service& s, UniqueFd conn, uint64_t serial, std::string peer, const net::SourceKey& source);
  void on_session_done(uint64_t serial, inloop::Traffic t, std::error_code ec);
  void defer_for_rate(Service& s);
  void resume(Service& s);
  bool alive(const Service* s, const Listener* l) const;
  void pause_for(Service& s, Clock::duration d);
  void instance_left(Service& s, const net::SourceKey& source);
  void leave(Service& s, const net::SourceKey& source);
  void maybe_retire(Service& s);
  bool start_zygote(Service& s, ZygoteSlot& slot, std::string& failure);
  std::string reap_failed_child(const Service& s, const spawn::Child& child, const spawn::ChildError& cerr);
  bool spawn_backlog_full(const Service& s) const;
  bool send_to_zygote(Service& s, spawn::InstancePlan& plan, PendingSpawn p, std::string& failure);
  void arm_answers(Service& s, ZygoteSlot& slot);
  void on_answers(Service& s, ZygoteSlot& slot);
  void zygote_lost(Service& s, ZygoteSlot& slot, const std::string& why);
  std::optional<spawn::Child> launch(Service& s, const spawn::InstancePlan& plan, std::optional<uint32_t> lease,
                                     uint64_t serial, const std::string& name, std::string& failure);
  // The service's log lines, with the fields its log_on_success / log_on_failure select.
  void log_line(const Service& s, log::Level level, const std::string& line);
  void log_start(const Service& s, uint64_t serial, const std::string& peer, uint32_t uid, pid_t pid);
  void log_exit(const Service& s, uint64_t serial, const std::string& peer, uint32_t uid, pid_t pid,
                Clock::time_point started, const std::string& status, const inloop::Traffic* traffic);
  void log_refuse(const Service& s, const std::string& peer, const std::string& reason);
  void log_fail(const Service& s, uint64_t serial, const std::string& peer, uint32_t uid, const std::string& why);
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
  void on_control_request(std::shared_ptr<asio::posix::stream_descriptor> conn);
  nlohmann::json status_json() const;
  nlohmann::json pool_json() const;
  void handle_run(std::shared_ptr<asio::posix::stream_descriptor> conn, const nlohmann::json& req,
                  std::vector<UniqueFd> fds);
  void begin_shutdown();
  void maybe_finish_shutdown();

  config::Config cfg_;
  Options opt_;
  sandbox::Roots roots_;
  ipc::Roots ipc_roots_;  // where IPC objects are seen: /proc/sysvipc, /dev/shm, our mqueue view
  asio::io_context io_{1};
  uid_pool::Pool pool_;
  uid_pool::LeaseTable table_;
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<Service>> retired_;  // replaced by a reload, instances still live
  std::unordered_map<pid_t, std::unique_ptr<Instance>> instances_;
  std::unordered_map<uint64_t, Session> sessions_;  // by serial
  size_t spawns_in_flight_ = 0;  // sent to a zygote, not answered yet
  std::vector<std::pair<pid_t, ExitStatus>> early_exits_;  // reaped before their answer came
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
  ControlServer control_{io_, [this](ControlServer::Connection c) {
                            if (!stopping_) on_control_request(std::move(c));
                          }};
  std::unordered_set<std::string> live_units_;
  std::unordered_set<uint32_t> attackers_logged_;
  OrphanSweep orphans_{io_};  // creators of given-away IPC objects, named once
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
  ::chmod(dir.parent_path().c_str(), 0755);  // the names file there is world-readable
  ::chmod(dir.c_str(), 0700);                // the lease table is root's
  table_ = uid_pool::LeaseTable::open(dir.string(), cfg_.global.uid_min, cfg_.global.uid_max, ec);
  if (ec) {
    if (ec == std::errc::device_or_resource_busy)
      log::error("{}/leases is locked: another superd runs with runtime_root {}", dir.string(), cfg_.global.runtime_root);
    else
      log::error("cannot allocate the lease table for {} UIDs in {}: {}{}", cfg_.global.uid_max - cfg_.global.uid_min + 1,
                 dir.string(), ec.message(),
                 ec == std::errc::no_space_on_device ? " (free space there, or choose a smaller dynamic_uid_range)" : "");
    return false;
  }
  // POSIX message queues are visible only through an mqueue filesystem, which many hosts do not
  // mount: superd mounts its own, in a mount namespace of its own, and cleans through it.
  ipc_roots_.mqueue = (dir.parent_path() / "mqueue").string();
  if (auto e = ipc::mount_private_mqueue(ipc_roots_.mqueue)) {
    log::error("cannot mount a private mqueue filesystem at {}: {}", ipc_roots_.mqueue, e.message());
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

// Leases a previous daemon left behind: their UIDs stay blocked, and recorded, until the sweep
// (daemon/orphans.hpp) returns or quarantines each. Shared-directory groups are GIDs on
// directories, no process runs as them: they are free at once.
void Daemon::start_orphan_sweep() {
  std::vector<uid_pool::LeaseRecord> orphans;
  for (const auto& r : table_.take_orphans()) {
    if (std::string_view(r.service).rfind("group:", 0) == 0) continue;
    pool_.block(r.uid, uid_pool::kOrphan);
    table_.record(r.uid, r.pid, r.serial, r.started_ms, r.service);
    orphans.push_back(r);
  }
  if (orphans.empty()) return;
  orphans_.start(orphans, ipc_roots_,
                 {[this](uint32_t uid) {
                    table_.clear(uid);
                    pool_.unblock(uid, uid_pool::kOrphan);
                  },
                  [this](uint32_t uid) { pool_.block(uid, uid_pool::kQuarantined); }});
}

// cgroup v2 bounds: said once at start-up, with what bounds instances instead (sandbox/cgroup.hpp).
void Daemon::report_cgroup_support() const {
  auto cg = sandbox::cgroup::detect();
  std::vector<std::string> asking;
  for (const auto& sc : cfg_.services)
    if (sc.service.memory_max || sc.service.tasks_max || sc.service.cpu_weight) asking.push_back(sc.name);
  std::string fallback = fmt::format("instances are bounded by their rlimits (limits.nproc defaults to {}) and "
                                     "private_tmp_size (default {}M)",
                                     config::kDefaultNproc, config::kDefaultPrivateTmpSize >> 20);
  std::string why = cg.usable ? fmt::format("the controllers are there ([{}]) but superd does not create per-instance "
                                            "cgroups yet", cg.controllers)
                              : cg.why;
  if (asking.empty()) {
    log::info("cgroup v2 bounds not applied: {}; {}", why, fallback);
  } else {
    log::warning("cgroup v2 bounds not applied: {}; memory_max, tasks_max and cpu_weight of {} have no effect; {}", why,
                 fmt::join(asking, ", "), fallback);
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
  size_t given_away = 0;
  for (const auto& o : ipc::owned_in_range(pool_.first(), pool_.last(), ipc_roots_)) {
    if (pool_.is_held(o.owner)) continue;  // a live instance's own: removed when it ends
    if (o.creator != o.owner) {
      // Someone handed an object to a UID of our range (IPC_SET can set any owner): left alone,
      // such objects would block that UID, and 10,000 of them the whole pool. The range is
      // superd's: remove it, and name the creator once.
      int err = ipc::remove(o, ipc_roots_);
      if (err == 0) ++given_away;
      if (err == 0 && attackers_logged_.size() < kMaxAttackersLogged && attackers_logged_.insert(o.creator).second)
        log::warning("census: uid {} gave {} {} to uid {} of the dynamic range; removed (further objects from uid {} "
                     "are removed without a line)", o.creator, ipc::kind_name(o.kind), o.id, o.owner, o.creator);
      if (err == 0) continue;
    }
    ipcs.push_back(o.owner);
  }
  pool_.set_blocked_exactly(uid_pool::kForeignProcess, procs);
  pool_.set_blocked_exactly(uid_pool::kForeignIpc, ipcs);
  if (!procs.empty() || !ipcs.empty() || given_away)
    log::debug("census: {} foreign process UIDs, {} foreign IPC owners in range, {} given-away objects removed",
               procs.size(), ipcs.size(), given_away);
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
  // A static user owns its directories, as systemd's StateDirectory= with User= does.
  const auto& se = s.cfg->service;
  uid_t owner = se.dynamic_user ? 0 : se.uid;
  gid_t group = se.dynamic_user ? gid.value_or(0) : se.gid;
  if (auto ec = sandbox::prepare_dirs(sb, roots_, owner, group, gid ? 02070 : 0, failed)) {
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
  bool spawns = !sc->service.exec.empty();  // internal and redirect services run in the loop
  bool wait_mode = spawns && !sc->socket.accept;
  try {
    // A wait-mode instance starts rarely and gets the listening sockets: no zygote for it.
    svc = std::make_unique<Service>(
        sc, spawns ? spawn::make_service_plan(*sc, roots_, environ, !wait_mode) : spawn::ServicePlan{});
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    return nullptr;
  }
  if (auto w = sandbox::landlock::warning_once(svc->plan.landlock_missing)) log::warning("{}", *w);
  const auto& so = sc->socket;
  svc->wait_mode = wait_mode;
  svc->rate = admission::RateLimit(so.max_connection_rate, so.connection_rate_interval);
  svc->access = so.access_times;
  if (sc->service.internal) {
    svc->internal = sc->service.internal;
    svc->datagram_buf.resize(65536);
  }
  if (!sc->service.log_target.empty()) {
    log::Sink sink(sc->service.log_sink);
    if (std::error_code ec = sink.open()) {
      log::error("{}: service {}: log_target \"{}\": {}", sc->where.file, sc->name, sc->service.log_target,
                 ec.message());
      return nullptr;
    }
    svc->sink = std::move(sink);
  }
  // A reloaded service keeps its shared-directory group: no chown, files stay writable.
  if (previous && previous->group && !sandbox::boundary_dirs(sc->service.sandbox, roots_).empty())
    svc->inherited_group = previous->group;
  if (spawns && !prepare_service(*svc)) return nullptr;
  if (svc->plan.use_zygote) {
    std::string failure;
    long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = std::clamp<size_t>(cpus > 0 ? static_cast<size_t>(cpus) : 1, 1, kMaxZygotes);
    for (size_t i = 0; i < n && failure.empty(); ++i) {
      auto slot = std::make_unique<ZygoteSlot>();
      if (start_zygote(*svc, *slot, failure)) svc->zygotes.push_back(std::move(slot));
    }
    if (!failure.empty()) {
      log::error("service {}: cannot set up its sandbox: {}", sc->name, failure);
      release_group(*svc);
      return nullptr;
    }
  }
  listener::Options lo = listener::options_from(sc->socket);
  for (const config::Listen& l : sc->socket.listen) {
    std::string key = fmt::format("{} {} {} {} {} {} {}", l.datagram ? "udp" : "stream", l.spec.to_string(),
                                  static_cast<int>(lo.bind_ipv6_only), lo.no_delay, lo.keep_alive, lo.reuse_port,
                                  lo.backlog);
    Listener* old = nullptr;
    for (auto& os : services_)
      for (auto& ol : os->listeners)
        if (ol->key == key) old = ol.get();
    if (old) {
      reuse.push_back(old);
      continue;
    }
    std::error_code ec;
    UniqueFd fd = listener::open(l.spec, lo, ec, l.datagram);
    if (!fd) {
      log::error("{}:{}:{}: service {}: cannot listen on {}: {}", l.where.file, l.where.line, l.where.column, sc->name,
                 l.spec.to_string(), ec.message());
      release_group(*svc);
      return nullptr;
    }
    svc->listeners.push_back(std::make_unique<Listener>(svc.get(), l, asio::posix::stream_descriptor(io_, fd.release()),
                                                        std::move(key)));
    log::info("service {}: listening on {}{}", sc->name, l.datagram ? "udp " : "", l.spec.to_string());
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
  config::Config next = load_config(opt_.config_path, opt_.xinetd_path, problems);
  std::string report;
  for (const auto& p : problems.list()) report += p.to_string() + "\n";
  if (!problems.empty()) {
    // One line per problem: log lines are escaped, so an embedded newline would not break a line.
    log::error("reload: {} problem(s); the running configuration stays", problems.list().size());
    for (const auto& p : problems.list()) log::error("reload: {}", p.to_string());
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
  // A wait-mode instance of the old service still holds the sockets: its successor waits for it.
  for (auto& b : built)
    for (auto& os : services_)
      if (b->wait_mode && os->wait_running && os->cfg->name == b->cfg->name) b->wait_running = true;
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
  cfg_.disabled = std::move(next.disabled);
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
  Service& s = *l.service;
  if (l.waiting || stopping_ || s.paused || s.rate_paused || s.wait_running) return;
  l.waiting = true;
  l.sd.async_wait(asio::posix::descriptor_base::wait_read, [this, &l](boost::system::error_code ec) {
    // Aborted: the listener was closed (shutdown, reload) and may already be gone.
    if (ec == asio::error::operation_aborted) return;
    l.waiting = false;
    if (!ec && !stopping_) on_readable(l);
  });
}

void Daemon::resume(Service& s) {
  for (auto& l : s.listeners) {
    arm(*l);
    // Asio's wait completes on new readiness only (it never tests the socket first, and epoll
    // is edge-triggered): a client that queued while the service was paused would sit in the
    // backlog until the next one arrives. Look once, and serve it from the loop.
    pollfd pfd{l->sd.native_handle(), POLLIN, 0};
    if (l->waiting && ::poll(&pfd, 1, 0) == 1) {
      asio::post(io_, [this, sp = &s, lp = l.get()] {
        if (!alive(sp, lp) || stopping_ || sp->paused || sp->rate_paused || sp->wait_running) return;
        on_readable(*lp);  // harmless if the wait fires too: accept finds EAGAIN, arm() sees it armed
      });
    }
  }
}

// Whether `s` is still a service of ours and `l` one of its listeners (a reload may have freed
// either since a handler was posted).
bool Daemon::alive(const Service* s, const Listener* l) const {
  for (const auto* list : {&services_, &retired_})
    for (const auto& svc : *list)
      if (svc.get() == s)
        for (const auto& x : svc->listeners)
          if (x.get() == l) return true;
  return false;
}

// Stops polling the service for `d` (a wait-mode instance that failed at once, no UID left):
// a socket that stays readable must not make superd spin.
void Daemon::pause_for(Service& s, Clock::duration d) {
  s.rate_paused = true;
  if (!s.rate_timer) s.rate_timer = std::make_unique<asio::steady_timer>(io_);
  s.rate_timer->expires_after(d);
  s.rate_timer->async_wait([this, &s](boost::system::error_code ec) {
    if (ec || stopping_) return;
    s.rate_paused = false;
    resume(s);
  });
}

void Daemon::on_readable(Listener& l) {
  Service& s = *l.service;
  if (s.paused || s.rate_paused || s.wait_running) return;  // a sibling listener's wake-up came first
  if (l.datagram && s.internal) return on_datagrams(l);
  if (s.wait_mode) return start_wait_instance(s);  // readable: a client is there; the instance takes it
  for (int i = 0; i < kAcceptBatch; ++i) {
    if (s.gate.full() || spawn_backlog_full(s)) {
      // Stop polling every listener of the service; the kernel's backlog holds new connections
      // until an instance ends (tcpserver's behaviour). The service itself stays enabled.
      if (!s.paused && s.gate.full())
        log::info("service {}: max_connections={} reached, deferring new connections", s.cfg->name,
                  s.cfg->socket.limits.max_connections);
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
    on_connection(s, l.spec, UniqueFd(fd), peer);
    if (s.rate_paused) return;  // that one was deferred: the rate timer resumes
  }
  arm(l);
}

// Over max_connection_rate with the "defer" action: stop polling the service's listeners until
// the limit has room again (the kernel keeps the backlog, or the datagrams), then serve the
// connection that was held back, if any. Never disables the service.
void Daemon::defer_for_rate(Service& s) {
  if (s.rate_paused) return;
  s.rate_paused = true;
  auto now = Clock::now();
  auto until = s.rate.next_allowed(now);
  log::info("service {}: max_connection_rate={} per {}ms reached, deferring for {}ms", s.cfg->name,
            s.cfg->socket.max_connection_rate, s.cfg->socket.connection_rate_interval.count(),
            std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count());
  if (!s.rate_timer) s.rate_timer = std::make_unique<asio::steady_timer>(io_);
  s.rate_timer->expires_at(until);
  s.rate_timer->async_wait([this, &s](boost::system::error_code ec) {
    if (ec || stopping_) return;  // aborted: the service is gone or shutting down
    s.rate_paused = false;
    if (s.deferred) {
      if (!s.rate.try_take(Clock::now())) return defer_for_rate(s);
      Deferred d = std::move(*s.deferred);
      s.deferred.reset();
      on_connection(s, d.local, std::move(d.conn), d.peer, true);
    } else if (s.wait_mode) {
      return start_wait_instance(s);
    }
    resume(s);
  });
}

// Internal datagram services (echo, daytime, ... over UDP): each datagram is admitted (allow,
// deny, access_times, the loop guards, the rate limit) and answered from the loop; no instance,
// no UID. A reply also needs a token from the service's reply limits (per source, all sources).
void Daemon::on_datagrams(Listener& l) {
  Service& s = *l.service;
  const config::SocketConfig& so = s.cfg->socket;
  if (!s.own_sockets) {
    // Built at the first datagram: a Service belongs to one configuration generation (a reload
    // builds new ones and arms them only after the commit), so services_ now has every listener.
    std::vector<net::ListenSpec> specs;
    for (const auto& other : services_)
      for (const auto& ol : other->listeners) specs.push_back(ol->spec);
    s.own_sockets = std::make_unique<inloop::OwnSockets>(specs, inloop::OwnSockets::host_addresses());
    s.reply_limit = std::make_unique<inloop::ReplyLimiter>(
        inloop::ReplyLimiter::Rate{so.datagram_reply_rate, so.datagram_reply_interval},
        inloop::ReplyLimiter::Rate{so.datagram_reply_rate_per_source, so.datagram_reply_interval_per_source});
  }
  // Datagrams cost nothing to forge: at most kDatagramRefusalsLogged lines a second, then a count.
  auto refuse = [this, &s](const sockaddr* sa, const std::string& reason) {
    auto now = Clock::now();
    if (now - s.refusal_window >= std::chrono::seconds(1)) {
      if (s.refusals_unlogged)
        log_refuse(s, "*", fmt::format("{} more datagrams refused in the last second", s.refusals_unlogged));
      s.refusal_window = now;
      s.refusals_logged = s.refusals_unlogged = 0;
    }
    if (s.refusals_logged < kDatagramRefusalsLogged) {
      ++s.refusals_logged;
      log_refuse(s, peer_string(sa), reason);
    } else {
      ++s.refusals_unlogged;
    }
  };
  char* buf = s.datagram_buf.data();
  size_t half = s.datagram_buf.size() / 2;
  for (int i = 0; i < kAcceptBatch; ++i) {
    if (!s.rate.unlimited() && s.rate.next_allowed(Clock::now()) > Clock::now()) {
      if (so.connection_rate_action == config::RateAction::defer) return defer_for_rate(s);
    }
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    ssize_t n = ::recvfrom(l.sd.native_handle(), buf, half, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&peer), &len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      log::warning("service {}: recvfrom on udp {}: {}", s.cfg->name, l.spec.to_string(), errno_text(errno));
      break;
    }
    auto* sa = reinterpret_cast<const sockaddr*>(&peer);
    net::SourceKey source = net::source_key(sa);
    std::string reason;
    admission::Verdict v = s.gate.check(sa, source);
    if (v == admission::Verdict::denied || v == admission::Verdict::not_allowed) reason = admission::verdict_reason(v);
    else if (!s.access.empty() && !s.access.allows(admission::AccessTimes::minute_of_day_now()))
      reason = "outside access_times " + s.access.to_string();
    else if (inloop::drop_datagram_from(sa)) reason = "source port or address that gets no reply (loop/amplification guard)";
    else if (s.own_sockets->contains(sa))
      reason = "source is a local address on a port superd listens on: a reply would loop (loop guard)";
    else if (!s.rate.unlimited() && !s.rate.try_take(Clock::now()))
      reason = fmt::format("max_connection_rate={} per {}ms", so.max_connection_rate, so.connection_rate_interval.count());
    if (!reason.empty()) {
      refuse(sa, reason);
      continue;
    }
    auto reply = inloop::answer_datagram(*s.internal, buf, static_cast<size_t>(n), buf + half, half, ::time(nullptr));
    if (!reply) continue;  // discard: nothing sent, no reply token taken
    switch (s.reply_limit->take(source, Clock::now())) {
      case inloop::ReplyLimiter::Verdict::reply: break;
      case inloop::ReplyLimiter::Verdict::over_source:
        refuse(sa, fmt::format("datagram_reply_rate_per_source={} per {}ms", so.datagram_reply_rate_per_source,
                               so.datagram_reply_interval_per_source.count()));
        continue;
      case inloop::ReplyLimiter::Verdict::over_all:
        refuse(sa, fmt::format("datagram_reply_rate={} per {}ms (all sources)", so.datagram_reply_rate,
                               so.datagram_reply_interval.count()));
        continue;
    }
    ::sendto(l.sd.native_handle(), buf + half, *reply, MSG_DONTWAIT | MSG_NOSIGNAL, sa, len);
    log::debug("{} datagram from {}: {} bytes in, {} out", s.cfg->name, peer_string(sa), n, *reply);
  }
  arm(l);
}

// Wait mode (accept = false): one instance gets the listening sockets and serves until it
// exits; superd does not poll them meanwhile. Its UID is a named lease hashed from the service
// (preferring the owner of its existing directories), or the static user.
void Daemon::start_wait_instance(Service& s) {
  const std::string& name = s.cfg->name;
  if (!s.rate.unlimited() && !s.rate.try_take(Clock::now())) return defer_for_rate(s);
  std::optional<uint32_t> lease;
  uint32_t uid = s.plan.static_uid;
  if (!s.plan.static_identity) {
    std::optional<uint32_t> owner;
    for (const std::string& d : sandbox::boundary_dirs(s.cfg->service.sandbox, roots_)) {
      struct stat st {};
      if (::stat(d.c_str(), &st) == 0 && st.st_uid != 0) {
        owner = st.st_uid;
        break;
      }
    }
    lease = lease_named("wait:" + name, owner);
    if (!lease) {
      log::error("FAIL {}: no UID left in the dynamic range for its wait-mode instance; retrying in 1s", name);
      pause_for(s, std::chrono::seconds(1));
      return;
    }
    uid = *lease;
  }
  uint64_t serial = ++serial_;
  UniqueFd err_read, err_write;
  if (!log_pipe(err_read, err_write)) {
    log_fail(s, serial, "wait", uid, "pipe2: " + errno_text(errno));
    if (lease) pool_.release(*lease);
    return;
  }
  int fds[config::kMaxListenFds];
  unsigned n = 0;
  for (auto& l : s.listeners)
    if (n < config::kMaxListenFds) {
      fds[n++] = l->sd.native_handle();
      // The instance shares the socket's file description: it expects a blocking socket, as
      // xinetd gives it. superd does not touch it until the instance is gone, then restores it.
      ::fcntl(l->sd.native_handle(), F_SETFL, ::fcntl(l->sd.native_handle(), F_GETFL) & ~O_NONBLOCK);
    }
  spawn::make_wait_plan(plan_, s.plan, uid, serial, fds, n);
  plan_.stderr_fd = err_write.get();
  plan_.null_fd = null_fd_.get();
  std::string failure;
  auto started = launch(s, plan_, lease, serial, name, failure);
  err_write.reset();
  if (!started) {
    for (auto& l : s.listeners) ::fcntl(l->sd.native_handle(), F_SETFL, ::fcntl(l->sd.native_handle(), F_GETFL) | O_NONBLOCK);
    log_fail(s, serial, "wait", uid, failure + "; retrying on the next client in 1s");
    // Do not spin on a socket that stays readable: try again a second later.
    pause_for(s, std::chrono::seconds(1));
    return;
  }
  s.wait_running = true;
  adopt(s, std::move(*started), std::move(err_read), serial, uid, lease.has_value(), "wait", net::source_key_uid(0));
}

// A wait-mode instance shares the listening sockets and may shut one down (shutdown(2) on a
// listening socket stops it listening for every holder); the port would stay dead. A stream
// listener that no longer accepts is replaced by a fresh bind of the same spec.
void Daemon::replace_shut_listeners(Service& s) {
  for (auto& l : s.listeners) {
    if (l->datagram) continue;  // shutdown(2) of an unconnected datagram socket fails: nothing to undo
    int accepting = 1;
    socklen_t len = sizeof accepting;
    if (::getsockopt(l->sd.native_handle(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || accepting) continue;
    boost::system::error_code ignored;
    l->sd.close(ignored);
    std::error_code ec;
    UniqueFd fd = listener::open(l->spec, listener::options_from(s.cfg->socket), ec, false);
    if (!fd) {
      log::error("service {}: its instance shut down the listener on {}, and a fresh bind failed: {}", s.cfg->name,
                 l->spec.to_string(), ec.message());
      continue;
    }
    l->sd.assign(fd.release());
    l->waiting = false;
    log::warning("service {}: its instance shut down the listener on {}; listening again on a fresh socket",
                 s.cfg->name, l->spec.to_string());
  }
}

// A child that failed a step of its checklist has exited: reap it and say what failed.
std::string Daemon::reap_failed_child(const Service& s, const spawn::Child& child, const spawn::ChildError& cerr) {
  int st = 0;
  while (::waitpid(child.pid, &st, 0) < 0 && errno == EINTR) {
  }
  std::string what = cerr.step == spawn::Step::mounts
                         ? fmt::format(" ({})", s.plan.mounts.describe(static_cast<size_t>(cerr.detail)))
                         : "";
  return fmt::format("step {}{} failed: {}", spawn::step_name(cerr.step), what, errno_text(cerr.err));
}

// Records the lease (if the UID is leased) and starts the instance. On failure the child (if
// any) is reaped, the lease cleared and the UID returned at once — the child never ran service
// code, so nothing of the UID can remain — and `failure` says which step failed and why.
std::optional<spawn::Child> Daemon::launch(Service& s, const spawn::InstancePlan& plan, std::optional<uint32_t> lease,
                                           uint64_t serial, const std::string& name, std::string& failure) {
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  if (lease) table_.record(*lease, 0, serial, now_ms, name);
  spawn::ChildError cerr;
  std::error_code ec;
  spawn::Child child = spawn::start(plan, cerr, ec);
  if (!ec && cerr.step == spawn::Step::none) return child;
  failure = ec ? "clone: " + ec.message() : reap_failed_child(s, child, cerr);
  if (lease) {
    table_.clear(*lease);
    pool_.release(*lease);
  }
  return std::nullopt;
}

// --- Spawning through the zygotes, without waiting for them ---------------------------------
// Strategy: a request goes to the zygote with the fewest unanswered ones; the connection's fds
// travel with it, so the daemon closes its copies at once. The answer (the instance's pidfd, or
// the step that failed) is read when the zygote's socket becomes readable, in request order.
// In-flight requests count against max_connections (admission entered at send time). A zygote
// that dies is replaced on the next request; UIDs of requests it never answered may belong to a
// running instance nobody can see, so they are quarantined, never reused.

bool Daemon::start_zygote(Service& s, ZygoteSlot& slot, std::string& failure) {
  slot.zygote = spawn::Zygote::start(s.plan, failure);
  if (!slot.zygote) return false;
  // Non-blocking on both fds (one file description): answers are read until EAGAIN.
  int fd = slot.zygote->socket();
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) {
    failure = "dup: " + errno_text(errno);
    slot.zygote.reset();
    return false;
  }
  slot.answers = std::make_unique<asio::posix::stream_descriptor>(io_, dup);
  slot.waiting = false;
  return true;
}

bool Daemon::spawn_backlog_full(const Service& s) const {
  for (const auto& z : s.zygotes)
    if (z->pending.size() < kMaxPendingPerZygote) return false;
  return !s.zygotes.empty();
}

bool Daemon::send_to_zygote(Service& s, spawn::InstancePlan& plan, PendingSpawn p, std::string& failure) {
  ZygoteSlot* slot = nullptr;
  for (auto& z : s.zygotes)
    if (!slot || z->pending.size() < slot->pending.size()) slot = z.get();
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::error_code ec = slot->zygote ? slot->zygote->send(plan) : std::make_error_code(std::errc::no_such_process);
    if (!ec) {
      auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
      table_.record(p.uid, 0, p.serial, now_ms, s.cfg->name);
      s.gate.enter(p.source);
      slot->pending.push_back(std::move(p));
      ++spawns_in_flight_;
      arm_answers(s, *slot);
      return true;
    }
    if (ec == std::errc::resource_unavailable_try_again) {
      failure = "the zygote's request queue is full";
      return false;
    }
    // Gone (killed by hand, OOM): replace it and try once more, so the service keeps serving.
    // (A slot whose zygote was already found gone has nothing left to fail.)
    if (slot->zygote) zygote_lost(s, *slot, ec.message());
    if (!slot->zygote) {
      std::string why;
      log::error("service {}: its zygote is gone; starting a new one", s.cfg->name);
      if (!start_zygote(s, *slot, why)) {
        failure = "cannot start a new zygote: " + why;
        return false;
      }
    }
  }
  failure = "the zygote does not take requests";
  return false;
}

void Daemon::arm_answers(Service& s, ZygoteSlot& slot) {
  if (slot.waiting || slot.pending.empty() || !slot.answers) return;
  slot.waiting = true;
  slot.answers->async_wait(asio::posix::descriptor_base::wait_read, [this, &s, &slot](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;  // the slot (or its service) is gone
    slot.waiting = false;
    on_answers(s, slot);
  });
}

void Daemon::on_answers(Service& s, ZygoteSlot& slot) {
  while (!slot.pending.empty() && slot.zygote) {
    spawn::ChildError cerr;
    std::error_code ec;
    bool lost = false;
    spawn::Child child = slot.zygote->receive(cerr, ec, lost);
    if (ec == std::errc::resource_unavailable_try_again || ec == std::errc::operation_would_block) break;
    if (ec && lost) {
      zygote_lost(s, slot, ec.message());
      break;
    }
    PendingSpawn p = std::move(slot.pending.front());
    slot.pending.pop_front();
    --spawns_in_flight_;
    if (!ec && cerr.step == spawn::Step::none) {
      pid_t pid = child.pid;
      adopt(s, std::move(child), std::move(p.err_read), p.serial, p.uid, true, std::move(p.peer), p.source, true);
      // Started after SIGTERM's round of signals: it gets its own (the deadline's KILL covers it too).
      if (auto it = instances_.find(pid); stopping_ && it != instances_.end())
        pidfd_signal(it->second->pidfd.native_handle(), SIGTERM);
      continue;
    }
    std::string failure = ec ? "clone: " + ec.message() : reap_failed_child(s, child, cerr);
    log_fail(s, p.serial, p.peer, p.uid, failure);
    table_.clear(p.uid);
    pool_.release(p.uid);
    leave(s, p.source);
  }
  arm_answers(s, slot);
  if (!spawns_in_flight_) early_exits_.clear();  // what is left there was no instance of ours
  if (s.paused && !s.gate.full() && !spawn_backlog_full(s)) {
    s.paused = false;
    resume(s);
  }
  maybe_retire(s);  // last: it may destroy `s`
  maybe_finish_shutdown();
}

// The zygote died: nothing it was asked for can be vouched for. Each unanswered request is
// failed, its UID quarantined (an instance may run with it, outside our books; a restarted
// superd sweeps it), and the slot is left empty for the next request to restart.
void Daemon::zygote_lost(Service& s, ZygoteSlot& slot, const std::string& why) {
  log::error("service {}: its zygote (pid {}) is gone ({}); {} unanswered requests failed", s.cfg->name,
             slot.zygote ? slot.zygote->pid() : -1, why, slot.pending.size());
  for (PendingSpawn& p : slot.pending) {
    log_fail(s, p.serial, p.peer, p.uid, "the zygote died before answering; UID quarantined");
    table_.clear(p.uid);
    pool_.block(p.uid, uid_pool::kQuarantined);
    pool_.release(p.uid);
    s.gate.leave(p.source);
    --spawns_in_flight_;
  }
  slot.pending.clear();
  slot.answers.reset();  // cancels its wait
  slot.waiting = false;
  slot.zygote.reset();   // kills and reaps what is left of it
}

namespace {
// Banners go out on a fresh socket whose send buffer holds them (they are capped at 64 KiB):
// one non-blocking send, never a wait in the loop.
void send_banner(int fd, const config::Banner& b, const std::string& service) {
  if (b.text.empty()) return;
  ssize_t n = ::send(fd, b.text.data(), b.text.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(b.text.size()))
    log::debug("service {}: banner {} cut short: {} of {} bytes", service, b.path, n < 0 ? 0 : n, b.text.size());
}
}  // namespace

void Daemon::on_connection(Service& s, const net::ListenSpec& local, UniqueFd conn, const sockaddr_storage& peer_addr,
                           bool rate_taken) {
  const std::string& name = s.cfg->name;
  const config::SocketConfig& so = s.cfg->socket;
  spawn::Peer peer;
  peer.remote = peer_addr;
  std::string peer_text;
  net::SourceKey source;
  const sockaddr* ip_peer = nullptr;
  if (peer_addr.ss_family == AF_UNIX) {
    ucred cred{};
    socklen_t cl = sizeof cred;
    if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
      log_refuse(s, "unix", fmt::format("SO_PEERCRED: {}", std::strerror(errno)));
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
    if (!local.is_wildcard()) {
      std::memcpy(&peer.local, &local.addr, local.addr_len);
    } else {
      socklen_t ll = sizeof peer.local;
      ::getsockname(conn.get(), reinterpret_cast<sockaddr*>(&peer.local), &ll);
    }
    ip_peer = reinterpret_cast<const sockaddr*>(&peer_addr);
    peer_text = peer_string(ip_peer);
    source = net::source_key(ip_peer);
  }

  // Admission: allow/deny and the limits, then access_times, then the rate limit. A refused
  // connection gets banner and banner_fail (xinetd's order) and is closed; nothing is spawned.
  std::string reason;
  admission::Verdict v = s.gate.check(ip_peer, source);
  if (v != admission::Verdict::admit) reason = admission::verdict_reason(v);
  else if (!s.access.empty() && !s.access.allows(admission::AccessTimes::minute_of_day_now()))
    reason = "outside access_times " + s.access.to_string();
  else if (!rate_taken && !s.rate.unlimited() && !s.rate.try_take(Clock::now())) {
    if (so.connection_rate_action == config::RateAction::defer) {
      s.deferred = Deferred{std::move(conn), peer_addr, local};
      return defer_for_rate(s);
    }
    reason = fmt::format("max_connection_rate={} per {}ms", so.max_connection_rate, so.connection_rate_interval.count());
  }
  send_banner(conn.get(), so.banner, name);
  if (!reason.empty()) {
    send_banner(conn.get(), so.banner_fail, name);
    log_refuse(s, peer_text, reason);
    return;
  }
  send_banner(conn.get(), so.banner_success, name);
  uint64_t serial = ++serial_;
  if (s.internal || s.cfg->service.redirect) return start_session(s, std::move(conn), serial, std::move(peer_text), source);

  std::optional<uint32_t> lease;
  uint32_t uid = s.plan.static_uid;
  if (!s.plan.static_identity) {
    lease = pool_.lease();
    if (!lease) {
      send_banner(conn.get(), so.banner_fail, name);
      log_refuse(s, peer_text, fmt::format("dynamic UID pool exhausted ({} held, {} quarantined)", pool_.held(),
                                           pool_.quarantined()));
      return;
    }
    uid = *lease;
  }

  UniqueFd err_read, err_write;
  if (!log_pipe(err_read, err_write)) {
    log_fail(s, serial, peer_text, uid, "pipe2: " + errno_text(errno));
    if (lease) pool_.release(*lease);
    return;
  }

  spawn::make_instance_plan(plan_, s.plan, peer, uid, serial);
  plan_.conn_fd = conn.get();
  plan_.stderr_fd = err_write.get();
  plan_.null_fd = null_fd_.get();
  std::string failure;
  if (!s.zygotes.empty()) {
    // The zygote takes its own copies of the fds; ours close when this returns.
    if (!send_to_zygote(s, plan_, PendingSpawn{serial, uid, peer_text, source, std::move(err_read)}, failure)) {
      log_fail(s, serial, peer_text, uid, failure);
      pool_.release(uid);
    }
    return;
  }
  auto started = launch(s, plan_, lease, serial, name, failure);
  err_write.reset();
  conn.reset();  // the child has its copy
  if (!started) {
    log_fail(s, serial, peer_text, uid, failure);
    return;
  }
  adopt(s, std::move(*started), std::move(err_read), serial, uid, lease.has_value(), std::move(peer_text), source);
}

// A started instance joins the books: its lease record gets the PID, admission counts it, the
// loop watches its pidfd, stderr and runtime_max.
void Daemon::adopt(Service& s, spawn::Child child, UniqueFd err_read, uint64_t serial, uint32_t uid, bool leased,
                   std::string peer, const net::SourceKey& source, bool counted) {
  if (leased) table_.set_pid(uid, child.pid);
  if (!counted) s.gate.enter(source);  // an answered zygote request was counted when sent
  auto inst = std::make_unique<Instance>(io_, child.pidfd.release(), err_read.release());
  inst->service = &s;
  inst->serial = serial;
  inst->uid = uid;
  inst->pid = child.pid;
  inst->peer = std::move(peer);
  inst->source = source;
  inst->started = Clock::now();
  inst->leased = leased;
  Instance& ref = *inst;
  instances_.emplace(child.pid, std::move(inst));
  log_start(s, serial, ref.peer, ref.uid, ref.pid);
  watch_instance(ref);
  // Already reaped by the SIGCHLD drain, before the zygote's answer was read: end it now.
  for (auto it = early_exits_.begin(); it != early_exits_.end(); ++it)
    if (it->first == ref.pid) {
      ExitStatus es = it->second;
      pid_t pid = ref.pid;
      early_exits_.erase(it);
      asio::post(io_, [this, pid, es] { on_reaped(pid, es); });
      break;
    }
}

// An internal service or a redirect: the connection is served by the loop itself.
void Daemon::start_session(Service& s, UniqueFd conn, uint64_t serial, std::string peer, const net::SourceKey& source) {
  auto done = [this, serial](inloop::Traffic t, std::error_code ec) { on_session_done(serial, t, ec); };
  std::unique_ptr<inloop::Session> io;
  if (s.internal) {
    io = inloop::serve_stream(io_, *s.internal, std::move(conn), std::move(done));
  } else {
    const net::ListenSpec& to = *s.cfg->service.redirect;
    io = inloop::relay(io_, std::move(conn), to.addr, to.addr_len, std::move(done));
  }
  s.gate.enter(source);
  log_start(s, serial, peer, kNoUid, 0);
  Session& se = sessions_[serial];
  se = Session{&s, serial, std::move(peer), source, Clock::now(), std::move(io), nullptr};
  if (auto max = s.cfg->service.runtime_max; max.count() > 0) {
    se.timer = std::make_unique<asio::steady_timer>(io_, max);
    se.timer->async_wait([this, serial](boost::system::error_code ec) {
      if (ec) return;
      auto it = sessions_.find(serial);
      if (it == sessions_.end()) return;
      log::warning("TIMEOUT {} serial={}: runtime_max reached, closing", it->second.service->cfg->name, serial);
      // Destroying the session closes its sockets and never calls done: end it here.
      inloop::Traffic so_far = it->second.io->traffic();
      it->second.io.reset();
      on_session_done(serial, so_far, std::make_error_code(std::errc::timed_out));
    });
  }
}

void Daemon::on_session_done(uint64_t serial, inloop::Traffic t, std::error_code ec) {
  auto it = sessions_.find(serial);
  if (it == sessions_.end()) return;
  Session se = std::move(it->second);
  sessions_.erase(it);
  se.io.reset();
  std::string status = ec ? fmt::format("error=\"{}\"", ec.message()) : "status=0";
  log_exit(*se.service, serial, se.peer, kNoUid, 0, se.started, status, &t);
  instance_left(*se.service, se.source);
  maybe_finish_shutdown();
}

// An instance or session of `s` ended: admission counts it out, polling resumes if the service
// was at max_connections (or was a running wait-mode instance), and a retired service whose
// last instance this was goes away (so `s` may be gone when this returns).
void Daemon::instance_left(Service& s, const net::SourceKey& source) {
  leave(s, source);
  maybe_retire(s);
}

void Daemon::leave(Service& s, const net::SourceKey& source) {
  s.gate.leave(source);
  if (s.paused && !s.gate.full() && !spawn_backlog_full(s)) {
    s.paused = false;
    resume(s);
  }
}

// A retired service (replaced by a reload) goes with its last instance; `s` may be gone after.
void Daemon::maybe_retire(Service& s) {
  if (s.gate.live() != 0) return;
  for (auto it = retired_.begin(); it != retired_.end(); ++it)
    if (it->get() == &s) {
      // A wait-mode service reloaded while its instance ran: its successor polls from now on.
      for (auto& n : services_)
        if (n->wait_mode && n->wait_running && n->cfg->name == s.cfg->name && n->gate.live() == 0) {
          n->wait_running = false;
          resume(*n);
        }
      release_group(**it);
      retired_.erase(it);
      return;
    }
}

void Daemon::log_line(const Service& s, log::Level level, const std::string& line) {
  if (s.sink.kind() == log::Sink::Kind::standard_error) {
    if (log::level() <= level) log::write(level, line);
  } else {
    s.sink.write(line);
  }
}

void Daemon::log_start(const Service& s, uint64_t serial, const std::string& peer, uint32_t uid, pid_t pid) {
  std::string line = event_log::start({s.cfg->name, serial, peer, uid, pid}, s.cfg->service.log_on_success);
  if (!line.empty()) log_line(s, log::Level::info, line);
}

void Daemon::log_exit(const Service& s, uint64_t serial, const std::string& peer, uint32_t uid, pid_t pid,
                      Clock::time_point started, const std::string& status, const inloop::Traffic* traffic) {
  event_log::Traffic t{traffic ? traffic->from_client : 0, traffic ? traffic->to_client : 0};
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  std::string line = event_log::exit({s.cfg->name, serial, peer, uid, pid}, s.cfg->service.log_on_success, took,
                                     status, traffic ? &t : nullptr);
  if (!line.empty()) log_line(s, log::Level::info, line);
}

void Daemon::log_refuse(const Service& s, const std::string& peer, const std::string& reason) {
  std::string line = event_log::refuse(s.cfg->name, peer, reason, s.cfg->service.log_on_failure);
  if (!line.empty()) log_line(s, log::Level::warning, line);
}

void Daemon::log_fail(const Service& s, uint64_t serial, const std::string& peer, uint32_t uid, const std::string& why) {
  log_line(s, log::Level::error, event_log::fail({s.cfg->name, serial, peer, uid, 0}, s.cfg->service.log_on_failure, why));
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
    log_line(*i.service, log::Level::info,
             event_log::stderr_line({i.service->cfg->name, i.serial, {}, i.uid, 0},
                                    std::string_view(i.err_line).substr(start, nl - start)));
    start = nl + 1;
  }
  i.err_line.erase(0, start);
  if ((all && !i.err_line.empty()) || i.err_line.size() > 4096) {
    log_line(*i.service, log::Level::info, event_log::stderr_line({i.service->cfg->name, i.serial, {}, i.uid, 0}, i.err_line));
    i.err_line.clear();
  }
}

// SIGCHLD backstop: reaps whatever exited, in case a pidfd wake-up was missed.
void Daemon::drain_children() {
  int st = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) {
    ExitStatus es = WIFSIGNALED(st) ? ExitStatus{true, WTERMSIG(st)} : ExitStatus{false, WEXITSTATUS(st)};
    if (instances_.count(pid)) {
      on_reaped(pid, es);
    } else if (spawns_in_flight_) {
      // An instance can exit before its zygote's answer is read: keep its status for adopt()
      // (bounded: only while answers are outstanding, at most kMaxEarlyExits).
      if (early_exits_.size() >= kMaxEarlyExits) early_exits_.erase(early_exits_.begin());
      early_exits_.emplace_back(pid, es);
    }
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
  log_exit(*inst->service, inst->serial, inst->peer, inst->uid, inst->pid, inst->started, st.to_string(), nullptr);
  if (inst->control) {
    nlohmann::json msg = {{"exit", {{"signaled", st.signaled}, {"code", st.code}}}};
    control::send_message(inst->control->native_handle(), msg.dump());
    live_units_.erase(inst->unit);
  }
  Service& s = *inst->service;
  const auto& sb = s.cfg->service.sandbox;
  // A static user's processes and IPC are not superd's to sweep; its PID namespace is gone.
  if (inst->leased) queue_cleanup(inst->uid, !(sb.enabled && s.plan.mount_ns && (sb.private_tmp || sb.private_ipc)));
  std::unique_ptr<Service> transient = std::move(inst->owned_service);  // superd run: goes with it
  net::SourceKey source = inst->source;
  bool quick_exit = Clock::now() - inst->started < kQuickExit;
  inst.reset();  // cancels its waits; their handlers find no instance and return
  if (transient) return maybe_finish_shutdown();
  if (s.wait_mode && s.wait_running) {
    s.wait_running = false;
    for (auto& l : s.listeners)
      ::fcntl(l->sd.native_handle(), F_SETFL, ::fcntl(l->sd.native_handle(), F_GETFL) | O_NONBLOCK);
    if (!stopping_) replace_shut_listeners(s);
    // An instance that exits at once, whatever its status, probably left the client queued (or
    // has no socket left to serve): respawning it at once would loop. Back off, doubling per
    // consecutive quick exit up to a cap (xinetd disables such a service; superd never does).
    s.quick_exits = quick_exit ? s.quick_exits + 1 : 0;
    if (s.quick_exits && !stopping_) {
      auto delay = std::min<Clock::duration>(kWaitBackoffFirst * (1LL << std::min(s.quick_exits - 1, 20u)), kWaitBackoffMax);
      log::warning("service {}: wait-mode instance exited within {}ms ({} in a row, {}); polling again in {}ms",
                   s.cfg->name, std::chrono::duration_cast<std::chrono::milliseconds>(kQuickExit).count(),
                   s.quick_exits, st.to_string(), std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
      pause_for(s, delay);
    } else {
      resume(s);
    }
  }
  instance_left(s, source);
  maybe_finish_shutdown();  // nothing queued for cleanup when the UID was a static one
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
  ipc::Roots roots = ipc_roots_;
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
  // Sessions in the loop end with their sockets; a connection held back by the rate limit too.
  sessions_.clear();
  for (auto& s : services_) {
    s->deferred.reset();
    if (s->rate_timer) s->rate_timer->cancel();
  }
  if (inotify_.is_open()) inotify_.close();
  control_.close();
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
  if (!stopping_ || !instances_.empty() || spawns_in_flight_ || cleanup_posted_ || !pending_cleanup_.empty()) return;
  stop_timer_.cancel();
  signals_.cancel();
  for (auto& s : services_) release_group(*s);
  for (auto& s : retired_) release_group(*s);
  io_.stop();
}

bool Daemon::open_control() {
  std::string path = control::socket_path(cfg_.global.runtime_root);
  if (auto ec = control_.open(path)) {
    log::error("control socket {}: {}", path, ec.message());
    return false;
  }
  return true;
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

// The pool's occupancy: held, free, and what blocks the UIDs that are neither (with a sample).
nlohmann::json Daemon::pool_json() const {
  uid_pool::BlockedSummary b = pool_.blocked_summary();
  nlohmann::json reasons = nlohmann::json::object(), sample = nlohmann::json::array();
  auto names = [](uint8_t bits) {
    nlohmann::json list = nlohmann::json::array();
    for (int k = 0; k < uid_pool::kBlockKinds; ++k)
      if (bits & (1 << k)) list.push_back(uid_pool::block_name(k));
    return list;
  };
  for (int k = 0; k < uid_pool::kBlockKinds; ++k)
    if (b.by_reason[k]) reasons[uid_pool::block_name(k)] = b.by_reason[k];
  for (const auto& [uid, bits] : b.sample) sample.push_back({{"uid", uid}, {"why", names(bits)}});
  return {{"first", pool_.first()},   {"last", pool_.last()},       {"size", pool_.size()},
          {"held", pool_.held()},     {"quarantined", pool_.quarantined()},
          {"blocked", b.unavailable}, {"free", pool_.size() - pool_.held() - b.unavailable},
          {"blocked_by", reasons},    {"blocked_sample", sample}};
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
                        {"max_connections", s->cfg->socket.limits.max_connections},
                        {"paused", s->paused || s->rate_paused},
                        {"mode", s->internal                      ? std::string("internal ") + inloop::internal_name(*s->internal)
                                 : s->cfg->service.redirect         ? "redirect " + s->cfg->service.redirect->to_string()
                                 : s->wait_mode                     ? std::string("wait")
                                                                    : std::string("accept")},
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
  for (const auto& [serial, se] : sessions_)
    instances.push_back({{"service", se.service->cfg->name},
                         {"serial", serial},
                         {"uid", 0},
                         {"pid", 0},
                         {"peer", se.peer},
                         {"age_s", std::chrono::duration<double>(now - se.started).count()}});
  return {{"pid", ::getpid()},
          {"services", services},
          {"disabled", cfg_.disabled},
          {"instances", instances},
          {"pool", pool_json()}};
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
  auto owned = std::make_unique<Service>(holder, spawn::make_service_plan(*holder, roots_, environ));
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
  auto started = launch(*owned, plan, uid, serial, name, failure);
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
  start_orphan_sweep();
  report_cgroup_support();
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
  for (const auto& sc : cfg_.services) need += 2ULL * sc.socket.limits.max_connections;
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

config::Config load_config(const std::string& config_path, const std::string& xinetd_path,
                           config::Problems& problems) {
  if (xinetd_path.empty()) return config::load(config_path, problems);
  xinetd::Result converted = xinetd::convert_file(xinetd_path);
  for (const auto& w : converted.warnings) log::warning("{}", w.to_string());
  for (const auto& e : converted.errors) problems.add({xinetd_path, 0, 0}, "", e);
  std::vector<config::MemoryService> extra;
  for (const auto& f : converted.services)
    extra.push_back({f.name, f.toml, f.origin_file, f.line_origin, f.origin_line});
  return config::load(config_path, extra, problems);
}

int serve(const config::Config& config, const Options& options) {
  Daemon d(config, options);
  return d.run();
}

}  // namespace superd::daemon
