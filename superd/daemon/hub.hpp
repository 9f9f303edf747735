// The daemon's hub: one Boost.Asio loop on one thread, and the registries it owns (services,
// instances, sessions, the UID leases). It calls the stages in order, one file per concern:
//
//   accept .............. daemon/connection.cpp   on_readable: accept4, EMFILE back-off
//   PROXY header ........ daemon/proxy.cpp        behind a load balancer: the real client
//   admission decision .. admission/policy.cpp    Policy::decide (stream and datagram alike)
//   lease ............... uid_pool/lease.cpp      Leases::acquire -> a move-only Lease
//   plan ................ spawn/plan.cpp          make_instance_plan (per service: make_service_plan)
//   spawner ............. spawn/zygote_pool.cpp   ZygotePool::send, or spawn/spawn.cpp spawn::launch
//   instance ............ daemon/instances.cpp    adopt, watch, stderr relay, reap
//                         daemon/syslog.cpp       its syslog(3) messages, from the service's /dev/log
//   cleanup batch ....... cleanup/batch.cpp       IPC removed, then the leases dropped
//
// Beside that path: services and reload (daemon/services.cpp, with the state transitions),
// wait mode (daemon/wait_mode.cpp), in-loop sessions and datagrams (daemon/sessions.cpp), the
// control requests and `superd run` (daemon/requests.cpp, on daemon/control_server.cpp), the
// host watches (daemon/host_watch.cpp), the orphan sweep (daemon/orphans.cpp). daemon.cpp keeps
// the loop and the order of start-up and shutdown.
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <boost/asio.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "capsule/capsule.hpp"
#include "cleanup/batch.hpp"
#include "cleanup/ipc.hpp"
#include "control/request.hpp"
#include "daemon/control_server.hpp"
#include "daemon/daemon.hpp"
#include "daemon/handover.hpp"
#include "daemon/host_watch.hpp"
#include "daemon/metrics.hpp"
#include "daemon/notify.hpp"
#include "daemon/orphans.hpp"
#include "daemon/service.hpp"
#include "listener/passed.hpp"
#include "sandbox/dirs.hpp"
#include "sandbox/idmap.hpp"
#include "spawn/spawn.hpp"
#include "uid_pool/lease.hpp"
#include "uid_pool/lease_table.hpp"
#include "uid_pool/pool.hpp"
#include "util/unique_fd.hpp"

namespace superd::daemon {

struct ExitStatus {
  bool signaled = false;
  int code = 0;
  static ExitStatus from_wait(int st) noexcept;
  std::string to_string() const;
};

// "1.2.3.4:5" or "[::1]:5", as log lines show a peer.
std::string peer_string(const sockaddr* sa);

// An instance's stderr: a pipe whose (non-blocking) read end the loop drains into the log.
bool log_pipe(UniqueFd& read_end, UniqueFd& write_end);

// A running capsule (daemon/capsules.cpp): its superd is PID 1 of the capsule's namespaces.
struct CapsuleRun {
  std::string name, home;
  uint32_t block = 0;
  pid_t pid = -1;
  asio::posix::stream_descriptor pidfd, ready, out;
  asio::steady_timer timer;  // ready deadline, then the stop grace
  UniqueFd alive;            // its read end in the capsule sees the daemon die (capsule/launch.cpp)
  bool ready_seen = false, stopping = false;
  Clock::time_point started, stop_asked;
  double ready_ms = 0;
  std::string early, line;  // output before ready (for the answer), a partial line
  std::vector<std::shared_ptr<asio::posix::stream_descriptor>> start_waiters, stop_waiters;
  CapsuleRun(asio::io_context& io, int pidfd_raw, int ready_raw, int out_raw)
      : pidfd(io, pidfd_raw), ready(io, ready_raw), out(io, out_raw), timer(io) {}
};

// A connection whose PROXY header is being read (daemon/proxy.cpp), bounded by proxy_timeout
// and by max_connections (Gate::hold).
struct ProxyWait {
  Service* service;
  asio::posix::stream_descriptor sd;  // the connection; handed on as a UniqueFd when done
  asio::steady_timer timer;           // proxy_timeout
  PeerInfo proxy;                     // the balancer's end of the connection
  Clock::time_point accepted;
  std::vector<uint8_t> buf;  // the header so far (all of it header bytes: see proxy.cpp)
  bool waited = false;       // Asio waited on `sd` (and set O_NONBLOCK on it)
  ProxyWait(asio::io_context& io, Service* s, int fd, PeerInfo p, Clock::time_point at)
      : service(s), sd(io, fd), timer(io), proxy(std::move(p)), accepted(at) {}
};

// An upgrade in the old image (daemon/upgrade.cpp): the new binary's check, then the drain.
struct Upgrade {
  enum class Stage { checking, sessions, quiet };
  Stage stage = Stage::checking;
  std::shared_ptr<asio::posix::stream_descriptor> conn;  // the `superd upgrade` asking; null: SIGUSR2
  std::string binary;
  Clock::time_point requested, paused;
  pid_t check_pid = -1;
  bool check_reaped = false, check_eof = false;
  int check_status = 0;
  std::unique_ptr<asio::posix::stream_descriptor> check_out;
  std::string output;
  asio::steady_timer timer;
  explicit Upgrade(asio::io_context& io) : timer(io) {}
};

class Daemon {
 public:
  Daemon(const config::Config& cfg, const Options& opt);
  int run();

 private:
  // --- start-up and shutdown (daemon.cpp) ---
  bool prepare_runtime();
  void start_orphan_sweep();
  void on_signal(int sig);
  void begin_shutdown();
  void maybe_finish_shutdown();
  size_t spawns_in_flight() const;

  // --- services, reload and the state transitions (services.cpp) ---
  bool open_listeners();
  std::unique_ptr<Service> build_service(std::shared_ptr<const config::Service> sc, Service* previous,
                                         std::vector<Listener*>& reuse);
  bool lease_group(Service& s, Service* previous);
  bool prepare_service(Service& s, Service* previous);
  // --- state_directory_idmap (idmap_dirs.cpp) ---
  bool prepare_idmap(Service& s, Service* previous);
  bool idmap_toggle_allowed(const config::Service& sc) const;
  // The instance's idmapped trees into `trees`, their fds into plan_; empty or why not.
  std::string add_idmap_trees(const Service& s, uid_t uid, sandbox::idmap::Trees& trees);
  // Builds, one per turn of the loop, the user namespaces of the UIDs the pool hands out next.
  void kick_idmap_prefill();
  void prefill_idmap();
  std::unique_ptr<spawn::ZygotePool> make_zygotes(Service& s);
  std::string reload();  // with sd_notify's RELOADING=1 ... READY=1 around it
  std::string reload_config();
  void arm(Listener& l);
  bool alive(const Service* s, const Listener* l) const;
  void to_polling(Service& s);
  void to_full(Service& s);
  void to_held(Service& s, Clock::time_point until, bool for_rate);
  void to_wait_running(Service& s);
  void to_stopping(Service& s);
  void set_state(Service& s, State to);
  void count_out(Service& s, const net::SourceKey& source);       // admission's mirror of enter()
  void instance_ended(Service& s, const net::SourceKey& source);  // count_out, then maybe retire
  void maybe_retire(Service& s);

  // --- services started and stopped at run time (units.cpp) ---
  Service* find_service(const std::string& name) const;
  std::string apply_runtime(config::Config& next);  // problems, one per line; "" if none
  std::string start_unit(const std::string& name);
  std::string stop_unit(const std::string& name);
  void keep_unit(const std::string& name);

  // --- capsules (capsules.cpp) ---
  capsule::Roots capsule_roots() const;
  std::string capsule_records_dir() const;
  void sweep_capsule_records();
  void start_enabled_capsules();
  void capsule_start(const std::string& name, std::shared_ptr<asio::posix::stream_descriptor> conn);
  void capsule_stop(const std::string& name, std::shared_ptr<asio::posix::stream_descriptor> conn);
  void watch_capsule(CapsuleRun& c);
  void read_capsule_output(CapsuleRun& c);
  bool drain_capsule_output(CapsuleRun& c);
  void capsule_exited(CapsuleRun& c);
  nlohmann::json capsules_json() const;
  std::string metrics_text() const;  // metrics.cpp
  void write_capsule_names() const;

  // --- the connection path (connection.cpp) ---
  void on_readable(Listener& l);
  void on_connection(Service& s, const net::ListenSpec& local, UniqueFd conn, const sockaddr_storage& peer);
  void admit(Service& s, UniqueFd conn, PeerInfo who, Clock::time_point accepted, bool rate_taken);
  void defer_for_rate(Service& s);
  void defer_for_fds(Service& s, UniqueFd conn, PeerInfo who);
  static constexpr auto kFdRetry = std::chrono::milliseconds(100);
  void on_rate_room(Service& s);

  // --- PROXY protocol headers, read in the loop before admission (proxy.cpp) ---
  void read_proxy_header(Service& s, UniqueFd conn, PeerInfo proxy, Clock::time_point accepted);
  void on_proxy_readable(uint64_t id);
  void end_proxy_wait(uint64_t id, const std::string& refusal);

  // --- wait mode (wait_mode.cpp) ---
  void start_wait_instance(Service& s);
  void wait_instance_ended(Service& s, Clock::time_point started, const ExitStatus& st);
  void replace_shut_listeners(Service& s);

  // --- in-loop sessions and datagrams (sessions.cpp) ---
  void start_session(Service& s, UniqueFd conn, uint64_t serial, std::string peer, const net::SourceKey& source);
  void on_session_done(uint64_t serial, inloop::Traffic t, std::error_code ec);
  void on_datagrams(Listener& l);

  // --- the services' /dev/log sockets (syslog.cpp) ---
  std::string syslog_path(const config::Service& sc);
  void open_syslog(Service& s, const std::string& path);
  void wait_syslog(Service& s);
  void on_syslog_readable(Service& s);
  bool read_syslog(Service& s, int max);
  std::optional<uint64_t> syslog_sender(const Service& s, const ucred& c) const;

  // --- instances (instances.cpp) ---
  spawn::ZygotePool::Events zygote_events(Service& s);
  Instance& adopt(Service& s, spawn::Child child, UniqueFd err_read, uint64_t serial, uid_pool::Lease lease,
                  uint32_t uid, std::string peer, const net::SourceKey& source);
  void watch_instance(Instance& inst);
  void read_stderr(Instance& inst);
  void flush_stderr(Instance& inst, bool all);
  void drain_children();
  void on_reaped(pid_t pid, ExitStatus st);
  void queue_cleanup(uid_pool::Lease lease, bool host_shm);
  void run_cleanup();

  // --- zero-downtime upgrade: the old image (upgrade.cpp), the new one (restore.cpp) ---
  void upgrade(std::shared_ptr<asio::posix::stream_descriptor> conn, const std::string& binary);
  std::string upgrade_refusal() const;
  void upgrade_read_check();
  void upgrade_checked();
  void upgrade_step();
  void upgrade_abort(const std::string& why);
  void upgrade_exec();
  bool upgrade_holds(const Service& s) const;
  void pause_listeners(bool in_loop_only);
  handover::State handover_state(int exe_fd, int reply_fd) const;
  bool restore_begin();
  void restore_instances();
  void restore_capsules();
  void restore_finish();
  Service& placeholder_service(const std::string& name);
  [[noreturn]] void rollback(const std::string& why);
  void arm_runtime_timer(Instance& inst, Clock::time_point deadline, bool kill);

  // --- control requests and `superd run` (requests.cpp) ---
  bool open_control();
  void on_control_request(std::shared_ptr<asio::posix::stream_descriptor> conn);
  nlohmann::json status_json() const;
  nlohmann::json pool_json() const;
  void handle_run(std::shared_ptr<asio::posix::stream_descriptor> conn, const control::Request& req,
                  std::vector<UniqueFd> fds);

  config::Config cfg_;
  Options opt_;
  sandbox::Roots roots_;
  ipc::Roots ipc_roots_;  // where IPC objects are seen: /proc/sysvipc, /dev/shm, our mqueue view
  asio::io_context io_{1};
  // The UID books first: every Lease below returns into them when it is destroyed.
  uid_pool::Pool pool_;
  uid_pool::LeaseTable table_;
  uid_pool::Leases leases_{pool_, table_};
  spawn::HostLimits host_limits_;  // from raise_nofile_limit() in run(), before any plan
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<Service>> retired_;  // replaced by a reload, instances still live
  sandbox::idmap::Cache idmap_cache_;              // user namespaces by (instance UID, owner)
  bool idmap_prefill_posted_ = false;              // a prefill_idmap() turn is queued on io_
  std::unordered_map<pid_t, std::unique_ptr<Instance>> instances_;
  std::unordered_map<uint64_t, Session> sessions_;                        // by serial
  std::unordered_map<uint64_t, std::unique_ptr<ProxyWait>> proxy_waits_;  // by proxy_ids_
  uint64_t proxy_ids_ = 0;
  cleanup::Batch cleanup_;
  bool cleanup_posted_ = false;
  uint64_t cleanup_batches_ = 0;  // for /metrics
  double cleanup_seconds_ = 0;
  uint64_t serial_ = 0;
  std::string syslog_dir_;  // <runtime_root>/superd/syslog: the services' /dev/log sockets
  uint64_t syslog_sockets_ = 0;
  UniqueFd null_fd_;
  spawn::InstancePlan plan_;  // reused per connection to keep its vectors' capacity
  asio::signal_set signals_;
  asio::steady_timer stop_timer_;
  HostWatch host_{io_, pool_, ipc_roots_};
  ControlServer control_{io_, [this](ControlServer::Connection c) {
                           if (!stopping_) on_control_request(std::move(c));
                         }};
  std::unordered_set<std::string> live_units_;
  std::map<std::string, std::unique_ptr<CapsuleRun>> capsules_;
  std::set<std::string> started_;                   // instances started at run time, without a file
  std::map<std::string, config::Service> stopped_;  // services of the files, stopped at run time
  OrphanSweep orphans_{io_};
  Notifier notify_{io_};
  log::Sink own_log_;  // [superd] log_target, when not stderr (log::set_output)
  bool open_own_log(const log::SinkSpec& spec);
  MetricsServer metrics_{io_, [this] { return metrics_text(); }};
  std::vector<listener::Passed> passed_;  // from systemd, until open_listeners() adopted them
  bool stopping_ = false;
  std::string exe_path_;                     // the binary this image runs, as a path (what upgrade execs)
  std::unique_ptr<Upgrade> upgrade_;         // old image: an upgrade under way
  std::unique_ptr<handover::State> handed_;  // new image: the state, until restore_finish()
  std::map<uint32_t, uid_pool::Lease> handed_leases_;
  Clock::time_point start_time_ = Clock::now();
  Clock::time_point fds_short_logged_{};  // defer_for_fds's warning, at most once a second
};

}  // namespace superd::daemon
