// A service's log lines (formats in event_log, destination in its sink) and its state table.
#include "daemon/service.hpp"

#include "daemon/event_log.hpp"
#include "util/log.hpp"

namespace superd::daemon {

const char* state_name(State s) noexcept {
  switch (s) {
    case State::polling:
      return "polling";
    case State::full:
      return "full";
    case State::held:
      return "held";
    case State::wait_running:
      return "wait-running";
    case State::stopping:
      return "stopping";
  }
  return "?";
}

// The diagram in service.hpp, as a table: kAllowed[from] has bit `to`.
bool transition_allowed(State from, State to) noexcept {
  auto bit = [](State s) { return 1u << static_cast<unsigned>(s); };
  static constexpr unsigned kAny = 0x1f;
  unsigned allowed = 0;
  switch (from) {
    case State::polling:
      allowed = kAny;
      break;  // (polling -> polling: resume is idempotent)
    case State::full:
      allowed = bit(State::polling) | bit(State::stopping);
      break;
    case State::held:
      allowed = bit(State::polling) | bit(State::held) | bit(State::stopping);
      break;
    case State::wait_running:
      allowed = bit(State::polling) | bit(State::held) | bit(State::stopping);
      break;
    case State::stopping:
      allowed = bit(State::stopping);
      break;
  }
  return allowed & bit(to);
}

void Service::log_line(log::Level level, const std::string& line) const {
  if (sink.kind() == log::Sink::Kind::standard_error) {
    if (log::level() <= level) log::write(level, line);
  } else {
    sink.write(line);
  }
}

namespace {
// A refusal's reason as a metric label: what kind of rule refused it.
std::string refusal_class(const std::string& reason) {
  for (auto [needle, cls] : {std::pair{"PROXY", "proxy"},  // a header's fault, or an untrusted proxy
                             {"proxy_", "proxy"},
                             {"access_times", "access_times"},
                             {"max_connection_rate", "rate"},
                             {"per_source", "per_source"},
                             {"max_connections_per", "per_source"},
                             {"pool", "uid_pool"},
                             {"deny", "address"},
                             {"allow", "address"},
                             {"not in", "address"}})
    if (reason.find(needle) != std::string::npos) return cls;
  return "other";
}

// A FAIL's step ("step mounts (tmpfs /tmp) failed: ..." -> "mounts"), else "spawn".
std::string failure_step(const std::string& why) {
  size_t at = why.find("step ");
  if (at == std::string::npos) return "spawn";
  size_t end = why.find_first_of(" (:", at + 5);
  return why.substr(at + 5, end == std::string::npos ? std::string::npos : end - at - 5);
}
}  // namespace

void Service::Counters::spawned(Clock::duration took) noexcept {
  double s = std::chrono::duration<double>(took).count();
  for (size_t i = 0; i < std::size(kBuckets); ++i)
    if (s <= kBuckets[i]) ++spawn_buckets[i];
  ++spawn_count;
  spawn_sum += s;
}

void Service::log_start(uint64_t serial, const std::string& peer, uint32_t uid, pid_t pid) const {
  ++counters.accepted;
  std::string line = event_log::start({cfg->name, serial, peer, uid, pid}, cfg->service.log_on_success);
  if (!line.empty()) log_line(log::Level::info, line);
}

void Service::log_exit(uint64_t serial, const std::string& peer, uint32_t uid, pid_t pid, Clock::time_point started,
                       const std::string& status, const inloop::Traffic* traffic) const {
  ++(status == "status=0"              ? counters.ended_ok
     : status.rfind("signal=", 0) == 0 ? counters.ended_signal
                                       : counters.ended_error);
  event_log::Traffic t{traffic ? traffic->from_client : 0, traffic ? traffic->to_client : 0};
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  std::string line = event_log::exit({cfg->name, serial, peer, uid, pid}, cfg->service.log_on_success, took, status,
                                     traffic ? &t : nullptr);
  if (!line.empty()) log_line(log::Level::info, line);
}

void Service::log_refuse(const std::string& peer, const std::string& reason) const {
  ++counters.refused;
  ++counters.refused_by[refusal_class(reason)];
  std::string line = event_log::refuse(cfg->name, peer, reason, cfg->service.log_on_failure);
  if (!line.empty()) log_line(log::Level::warning, line);
}

void Service::log_fail(uint64_t serial, const std::string& peer, uint32_t uid, const std::string& why) const {
  ++counters.failed;
  ++counters.failed_by[failure_step(why)];
  log_line(log::Level::error, event_log::fail({cfg->name, serial, peer, uid, 0}, cfg->service.log_on_failure, why));
}

void Service::log_stderr(uint64_t serial, uint32_t uid, std::string_view line) const {
  log_line(log::Level::info, event_log::stderr_line({cfg->name, serial, {}, uid, 0}, line));
}

void Service::log_syslog(std::optional<uint64_t> serial, std::optional<uint32_t> uid, const syslog::Message& m) const {
  log_line(
      syslog::level_of(m.severity),
      event_log::syslog_line(cfg->name, serial, uid, syslog::priority_name(m.facility, m.severity), m.text, m.size));
}

void Service::log_syslog_dropped(uint64_t dropped) const {
  log_line(log::Level::warning, event_log::syslog_dropped(cfg->name, dropped, syslog::Budget::kPerSecond));
}

}  // namespace superd::daemon
