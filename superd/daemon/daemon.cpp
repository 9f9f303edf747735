// The loop and the order of start-up and shutdown. The connection path and everything else the
// loop runs are in the files daemon/hub.hpp lists.
//
// Lifecycle of one connection: accept4 -> admission::Policy -> uid_pool::Leases::acquire ->
// spawn (a zygote, or a clone into a new PID namespace) -> START log -> ... -> pidfd readable
// (or SIGCHLD drain) -> EXIT log -> cleanup batch: IPC removed -> lease dropped (record
// cleared, UID back to the pool). Teardown order is fixed: the process tree is gone (PID
// namespace) before IPC is removed, and IPC is removed before the UID returns. A UID whose
// cleanup fails is quarantined.
#include "daemon/hub.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "listener/listener.hpp"
#include "util/log.hpp"
#include "xinetd/xinetd.hpp"

namespace superd::daemon {

namespace {
constexpr auto kMaxShutdownGrace = std::chrono::seconds(30);
}  // namespace

std::string peer_string(const sockaddr* sa) {
  std::string ip = net::address_string(sa);
  return ip.find(':') != std::string::npos ? fmt::format("[{}]:{}", ip, net::address_port(sa))
                                           : fmt::format("{}:{}", ip, net::address_port(sa));
}

ExitStatus ExitStatus::from_wait(int st) noexcept {
  return WIFSIGNALED(st) ? ExitStatus{true, WTERMSIG(st)} : ExitStatus{false, WEXITSTATUS(st)};
}

std::string ExitStatus::to_string() const {
  if (!signaled) return fmt::format("status={}", code);
  const char* abbrev = sigabbrev_np(code);
  return fmt::format("signal=SIG{}", abbrev ? abbrev : std::to_string(code).c_str());
}

Daemon::Daemon(const config::Config& cfg, const Options& opt)
    : cfg_(cfg),
      opt_(opt),
      roots_{cfg.global.runtime_root, cfg.global.state_root, cfg.global.cache_root, cfg.global.logs_root},
      pool_(cfg.global.uid_min, cfg.global.uid_max),
      signals_(io_),
      stop_timer_(io_) {
  // What `superd upgrade` execs by default: the binary's path (a package upgrade replaces the
  // file there; /proc/self/exe then ends in " (deleted)").
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) exe_path_.assign(exe, static_cast<size_t>(n));
  if (exe_path_.size() > 10 && exe_path_.ends_with(" (deleted)")) exe_path_.resize(exe_path_.size() - 10);
}

bool Daemon::prepare_runtime() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = fs::path(cfg_.global.runtime_root) / "superd" / "dynamic-uid";
  fs::create_directories(dir, ec);
  if (ec) {
    log::error("cannot create {}: {}", dir.string(), ec.message());
    return false;
  }
  // The names file there is world-readable; the lease table's own mode (0600) keeps it root's.
  ::chmod(dir.parent_path().c_str(), 0755);
  ::chmod(dir.c_str(), 0755);
  table_ = uid_pool::LeaseTable::open(dir.string(), cfg_.global.uid_min, cfg_.global.uid_max, ec,
                                      UniqueFd(handed_ ? handed_->table_fd : -1));
  if (ec) {
    if (ec == std::errc::device_or_resource_busy)
      log::error("{}/leases is locked: another superd runs with runtime_root {}", dir.string(),
                 cfg_.global.runtime_root);
    else
      log::error(
          "cannot allocate the lease table for {} UIDs in {}: {}{}", cfg_.global.uid_max - cfg_.global.uid_min + 1,
          dir.string(), ec.message(),
          ec == std::errc::no_space_on_device ? " (free space there, or choose a smaller dynamic_uid_range)" : "");
    return false;
  }
  if (handed_) {  // an upgrade: the old image's leases, taken again as they were
    std::vector<uid_pool::Leases::Handed> handed;
    for (const auto& l : handed_->leases) handed.push_back({l.uid, l.user, static_cast<uid_pool::NameKind>(l.kind)});
    handed_leases_ = leases_.readopt(handed);
  }
  // POSIX message queues are visible only through an mqueue filesystem, which many hosts do not
  // mount: superd mounts its own, in a mount namespace of its own, and cleans through it.
  ipc_roots_.mqueue = (dir.parent_path() / "mqueue").string();
  if (auto e = ipc::mount_private_mqueue(ipc_roots_.mqueue)) {
    log::error("cannot mount a private mqueue filesystem at {}: {}", ipc_roots_.mqueue, e.message());
    return false;
  }
  // The services' /dev/log sockets (daemon/syslog.hpp): root's only; a killed superd's are stale.
  // An upgrade keeps the sockets it was handed (live instances bind them): the rest go.
  syslog_dir_ = (dir.parent_path() / "syslog").string();
  for (const auto& e : fs::directory_iterator(syslog_dir_, ec)) {
    auto kept = [&](const handover::Syslog& h) { return h.path == e.path().string(); };
    if (!handed_ || std::none_of(handed_->syslogs.begin(), handed_->syslogs.end(), kept)) fs::remove_all(e.path(), ec);
  }
  if (handed_)
    for (const auto& h : handed_->syslogs)
      syslog_sockets_ =
          std::max<uint64_t>(syslog_sockets_, std::strtoull(fs::path(h.path).filename().c_str(), nullptr, 10));
  fs::create_directory(syslog_dir_, ec);
  if (ec || ::chmod(syslog_dir_.c_str(), 0700) != 0) {
    log::error("cannot create {}: {}", syslog_dir_, ec ? ec.message() : log::errno_text(errno));
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
// (daemon/orphans.hpp) returns or quarantines each.
void Daemon::start_orphan_sweep() {
  auto orphans = leases_.hold_orphans();
  if (orphans.empty()) return;
  orphans_.start(orphans, ipc_roots_,
                 {[this](uint32_t uid) {
                    leases_.orphan_swept(uid);
                    maybe_finish_shutdown();
                  },
                  [this](uint32_t uid) {
                    leases_.orphan_quarantined(uid);
                    maybe_finish_shutdown();
                  }});
}

void Daemon::on_signal(int sig) {
  switch (sig) {
    case SIGCHLD:
      drain_children();
      break;
    case SIGTERM:
    case SIGINT:
      begin_shutdown();
      break;
    case SIGHUP:
      if (upgrade_)
        log::warning("SIGHUP: an upgrade is in progress; the new image reads the configuration");
      else if (!stopping_)
        reload();
      break;
    case SIGUSR2:
      upgrade(nullptr, {});
      break;
  }
}

size_t Daemon::spawns_in_flight() const {
  size_t n = 0;
  for (const auto* list : {&services_, &retired_})
    for (const auto& s : *list)
      if (s->zygotes) n += s->zygotes->in_flight();
  return n;
}

void Daemon::begin_shutdown() {
  if (stopping_) return;
  stopping_ = true;
  notify_.send("STOPPING=1");
  notify_.stop();
  metrics_.close();
  log::info("shutting down: {} live instances", instances_.size());
  for (auto& s : services_) to_stopping(*s);
  host_.stop();
  // Sessions in the loop end with their sockets, as do connections still sending a PROXY header.
  sessions_.clear();
  proxy_waits_.clear();
  control_.close();
  auto grace = std::chrono::milliseconds(0);
  for (auto& [name, c] : capsules_) {
    spawn::pidfd_signal(c->pidfd.native_handle(), SIGTERM);
    grace = std::max<std::chrono::milliseconds>(grace, std::chrono::seconds(10));
  }
  for (auto& [pid, inst] : instances_) {
    spawn::pidfd_signal(inst->pidfd.native_handle(), SIGTERM);
    grace = std::max(grace, inst->service->cfg->service.timeout_stop);
  }
  stop_timer_.expires_after(std::min<Clock::duration>(grace, kMaxShutdownGrace));
  stop_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    for (auto& [pid, inst] : instances_) {
      log::warning("KILL {} serial={} uid={} pid={}: still running at shutdown deadline", inst->service->cfg->name,
                   inst->serial, inst->uid, pid);
      spawn::pidfd_signal(inst->pidfd.native_handle(), SIGKILL);
    }
    for (auto& [name, c] : capsules_) {
      log::warning("KILL capsule {}: still running at shutdown deadline", name);
      spawn::pidfd_signal(c->pidfd.native_handle(), SIGKILL);
    }
  });
  maybe_finish_shutdown();
}

void Daemon::maybe_finish_shutdown() {
  if (!stopping_ || !instances_.empty() || !capsules_.empty() || spawns_in_flight() || cleanup_posted_ ||
      !cleanup_.empty() || orphans_.busy())
    return;
  stop_timer_.cancel();
  signals_.cancel();
  for (auto* list : {&services_, &retired_})
    for (auto& s : *list) s->group.reset();
  io_.stop();
}

// superd's own log to [superd] log_target: a file or syslog instead of stderr.
bool Daemon::open_own_log(const log::SinkSpec& spec) {
  if (spec == own_log_.spec()) return true;
  log::Sink sink(spec);
  if (spec.kind != log::SinkSpec::Kind::standard_error)
    if (std::error_code ec = sink.open()) {
      log::error("log_target \"{}\": {}", spec.to_string(), ec.message());
      return false;
    }
  log::set_output(nullptr);
  own_log_ = std::move(sink);
  if (spec.kind != log::SinkSpec::Kind::standard_error) log::set_output(&own_log_);
  return true;
}

int Daemon::run() {
  if (!open_own_log(cfg_.global.log_sink)) return 1;
  if (opt_.handover_fd >= 0 && !restore_begin()) return 1;
  host_limits_ = spawn::raise_nofile_limit();
  if (!prepare_runtime()) return 1;
  start_orphan_sweep();
  report_cgroup_support(cfg_);
  host_.start();
  ::signal(SIGPIPE, SIG_IGN);
  for (int sig : spawn::kCaughtSignals)
    if (sig != SIGPIPE) signals_.add(sig);
  std::function<void(boost::system::error_code, int)> handler = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    on_signal(sig);
    if (!io_.stopped()) signals_.async_wait(handler);
  };
  signals_.async_wait(handler);
  if (!open_listeners() || !open_control()) return 1;
  if (const auto& m = cfg_.global.metrics_listen) {
    if (auto ec = metrics_.open(*m, cfg_.global.metrics_allow)) {
      log::error("metrics_listen {}: {}", m->to_string(), ec.message());
      return 1;
    }
    log::info("metrics: GET /metrics on {}", m->to_string());
  }
  sweep_capsule_records();
  // Two fds per live instance (pidfd, stderr pipe): say so at start rather than fail later.
  rlimit nofile{};
  uint64_t need = 64;
  for (const auto& sc : cfg_.services) need += 2ULL * sc.socket.limits.max_connections;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < need)
    log::warning(
        "RLIMIT_NOFILE is {} but the services' max_connections need about {} fds; connections past "
        "that wait (in the backlog) until instances end",
        nofile.rlim_cur, need);
  if (handed_) restore_instances();
  for (auto& s : services_)
    for (auto& l : s->listeners) arm(*l);
  log::info("ready: {} services, UIDs {}..{} ({} free of {})", services_.size(), pool_.first(), pool_.last(),
            pool_.size() - pool_.held(), pool_.size());
  notify_ready(opt_.ready_fd);
  notify_.send("READY=1");
  notify_.start([this] {
    return fmt::format("{} live instances; UIDs {} held, {} free of {}", instances_.size(), pool_.held(),
                       pool_.size() - pool_.held(), pool_.size());
  });
  if (handed_)
    restore_finish();
  else
    start_enabled_capsules();
  io_.run();
  log::info("stopped: every instance ended and every UID returned ({} quarantined)", pool_.quarantined());
  log::set_output(nullptr);
  return 0;
}

config::Config load_config(const std::string& config_path, const std::string& xinetd_path, config::Problems& problems) {
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
