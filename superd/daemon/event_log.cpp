#include "daemon/event_log.hpp"

#include <fmt/format.h>

#include "config/config.hpp"

namespace superd::daemon::event_log {
namespace {

// "START svc serial=N peer=... uid=U pid=P": the part START and EXIT lines share (the service and
// serial always; the UID whenever there is one).
std::string instance_fields(const char* event, const Who& w, uint32_t fields) {
  std::string line = fmt::format("{} {} serial={}", event, w.service, w.serial);
  if (fields & config::kLogHost) line += fmt::format(" peer={}", w.peer);
  if (w.uid != kNoUid) line += fmt::format(" uid={}", w.uid);
  if ((fields & config::kLogPid) && w.pid) line += fmt::format(" pid={}", w.pid);
  return line;
}

}  // namespace

std::string start(const Who& who, uint32_t fields) {
  return fields ? instance_fields("START", who, fields) : std::string();
}

std::string exit(const Who& who, uint32_t fields, std::chrono::milliseconds duration, std::string_view status,
                 const Traffic* traffic) {
  if (!fields) return {};
  std::string line = instance_fields("EXIT", who, fields);
  if (fields & config::kLogDuration) {
    auto ms = duration.count();
    line += fmt::format(" duration={}.{:03}s", ms / 1000, ms % 1000);
  }
  if (fields & config::kLogExit) line += fmt::format(" {}", status);
  if ((fields & config::kLogTraffic) && traffic)
    line += fmt::format(" bytes_in={} bytes_out={}", traffic->from_client, traffic->to_client);
  return line;
}

std::string refuse(std::string_view service, std::string_view peer, std::string_view reason, uint32_t fields) {
  if (!fields) return {};
  std::string line = fmt::format("REFUSE {}", service);
  if (fields & config::kLogHost) line += fmt::format(" peer={}", peer);
  return line + fmt::format(" reason=\"{}\"", reason);
}

std::string fail(const Who& who, uint32_t fields, std::string_view why) {
  std::string line = fmt::format("FAIL {} serial={}", who.service, who.serial);
  if (fields & config::kLogHost) line += fmt::format(" peer={}", who.peer);
  return line + fmt::format(" uid={}: {}", who.uid, why);
}

std::string stderr_line(const Who& who, std::string_view text) {
  return fmt::format("{}[{}] uid={}: {}", who.service, who.serial, who.uid, text);
}

std::string syslog_line(std::string_view service, std::optional<uint64_t> serial, std::optional<uint32_t> uid,
                        std::string_view priority, std::string_view text, size_t full_size) {
  std::string line = fmt::format("{}[{}] uid={} syslog.{}: {}", service, serial ? std::to_string(*serial) : "?",
                                 uid ? std::to_string(*uid) : "?", priority, text);
  if (full_size > text.size()) line += fmt::format(" [cut: {} bytes]", full_size);
  return line;
}

std::string syslog_dropped(std::string_view service, uint64_t dropped, uint32_t per_second) {
  return fmt::format("{} syslog: {} messages dropped (at most {} a second are logged)", service, dropped, per_second);
}

}  // namespace superd::daemon::event_log
