// The event log's lines, as pure functions: START, EXIT, REFUSE and FAIL of a service, with the
// fields its log_on_success / log_on_failure select (xinetd's PID HOST USERID EXIT DURATION
// TRAFFIC and HOST USERID ATTEMPT), and the prefix of a line an instance wrote on stderr. The
// daemon decides when to log and where (the service's sink); this file only says what the line
// is, so the formats are unit-tested (tests/unit/test_event_log.cpp). An empty string: no line.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace superd::daemon::event_log {

constexpr uint32_t kNoUid = UINT32_MAX;  // in-loop sessions: no process, no UID

struct Traffic {
  uint64_t from_client = 0, to_client = 0;
};

// What a line names: the service, the connection's serial and peer, the instance's UID and PID.
struct Who {
  std::string_view service;
  uint64_t serial = 0;
  std::string_view peer;
  uint32_t uid = kNoUid;
  pid_t pid = 0;  // 0: none (a session)
};

// `fields`: the service's log_on_success bits (config::kLog*); 0 turns START and EXIT off.
std::string start(const Who& who, uint32_t fields);
std::string exit(const Who& who, uint32_t fields, std::chrono::milliseconds duration, std::string_view status,
                 const Traffic* traffic);
// `fields`: log_on_failure; 0 turns REFUSE off. FAIL lines always stay.
std::string refuse(std::string_view service, std::string_view peer, std::string_view reason, uint32_t fields);
std::string fail(const Who& who, uint32_t fields, std::string_view why);
// "svc[serial] uid=U: text" for a line of an instance's stderr.
std::string stderr_line(const Who& who, std::string_view text);
// "svc[serial] uid=U syslog.PRIORITY: text" for a message on the service's /dev/log (PRIORITY as
// "auth.err"), "?" for a serial or UID superd cannot tell; a cut text ends in
// " [cut: N bytes]" with its full size N (`full_size` > text.size()).
std::string syslog_line(std::string_view service, std::optional<uint64_t> serial, std::optional<uint32_t> uid,
                        std::string_view priority, std::string_view text, size_t full_size);
// "svc syslog: N messages dropped (at most K a second are logged)".
std::string syslog_dropped(std::string_view service, uint64_t dropped, uint32_t per_second);

}  // namespace superd::daemon::event_log
