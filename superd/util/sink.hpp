// log::Sink: where one service's log lines go (service key `log_target`). Three kinds:
//   "stderr"                 superd's own log (log::write, info level); the default
//   "file:/ABS/PATH"         appended, one write(2) per line, "TIMESTAMP superd[PID]: line"
//   "syslog:FACILITY[.LEVEL]" syslog(3), ident "superd", LOG_PID; LEVEL defaults to info
//   "journal"                the native journal protocol (/run/systemd/journal/socket), no
//                            libsystemd: MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=superd, and
//                            SUPERD_SERVICE=, SUPERD_UID=, SUPERD_PEER= where the line has them
// SinkSpec::parse() is pure: the config module stores the SinkSpec it returns, a copyable value.
// A Sink is built from a spec; open() does the I/O, at load/reload, in the running daemon
// (errors are values). write() never throws and never logs about itself: a line
// that cannot be written is dropped (a full disk must not take the daemon down).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "util/log.hpp"
#include "util/unique_fd.hpp"

namespace superd::util::log {

// What a `log_target` names, without any I/O: the config module parses it once at load.
struct SinkSpec {
  enum class Kind { standard_error, file, syslog, journal };
  Kind kind = Kind::standard_error;
  std::string path;  // file sinks only
  int priority = 0;  // syslog: facility | level

  // Parses a `log_target` value; on failure `why` names the bad part. No I/O.
  // Facilities: daemon auth authpriv user mail lpr news uucp ftp cron local0..local7 (xinetd's
  // list plus cron; kern is refused: a user process cannot log as the kernel). Levels: emerg
  // alert crit err warning notice info debug. Names are lower case.
  static std::optional<SinkSpec> parse(std::string_view target, std::string& why);
  // The canonical target string: "stderr", "file:/p", "syslog:daemon.info" (level always shown).
  std::string to_string() const;
  bool operator==(const SinkSpec&) const = default;
};

class Sink {
 public:
  using Kind = SinkSpec::Kind;

  // The default sink: superd's stderr log.
  Sink() noexcept = default;
  // A sink for `spec`, not open yet.
  explicit Sink(SinkSpec spec) noexcept : spec_(std::move(spec)) {}
  Sink(Sink&&) noexcept = default;
  Sink& operator=(Sink&&) noexcept = default;
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  // SinkSpec::parse, then a Sink for it.
  static std::optional<Sink> parse(std::string_view target, std::string& why);

  // file: (re)opens the path O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC|O_NOCTTY, mode 0640 (before
  // umask); missing parent directories are an error (ENOENT), never created. On failure the
  // previous fd, if any, stays in use, so a failed reopen after log rotation loses nothing.
  // syslog: openlog("superd", LOG_PID | LOG_NDELAY, LOG_DAEMON) once per process; the
  // facility is given on every syslog() call. stderr: nothing to do.
  std::error_code open();

  // One line, without its newline (a trailing '\n' is dropped). In every kind, control bytes
  // are escaped by log::append_escaped ("\r", "\n", "\t", "\xHH"; a backslash is "\\"), so
  // a service cannot end, overwrite or forge a line.
  // file: a single write(2) of "YYYY-MM-DDTHH:MM:SS+ZZZZ superd[PID]: line\n" (local time),
  // so concurrent writers (O_APPEND) never interleave mid-line; a file sink not open (yet)
  // falls back to stderr. syslog: syslog(facility | level, "%.*s", line).
  // stderr: log::write(Level::info, line).
  void write(std::string_view line) const noexcept;
  // superd's own log through this sink ([superd] log_target): file lines carry "LEVEL: ", and
  // syslog takes the line's level with the sink's facility.
  void write(Level level, std::string_view line) const noexcept;

  std::string to_string() const { return spec_.to_string(); }
  // Same destination (reload keeps an open sink whose target did not change).
  bool same_target(const Sink& o) const noexcept { return spec_ == o.spec_; }

  const SinkSpec& spec() const noexcept { return spec_; }
  // journal: the SUPERD_SERVICE= field of every line (the service whose sink this is).
  void set_service(std::string name) { service_ = std::move(name); }
  Kind kind() const noexcept { return spec_.kind; }
  const std::string& path() const noexcept { return spec_.path; }  // file sinks only
  int priority() const noexcept { return spec_.priority; }         // syslog: facility | level
  bool is_open() const noexcept { return spec_.kind != Kind::file || static_cast<bool>(fd_); }
  int fd() const noexcept { return fd_.get(); }  // borrowed; -1 unless an open file sink

 private:
  void send_journal(int priority, std::string_view line) const noexcept;
  SinkSpec spec_;
  UniqueFd fd_;
  std::string service_;
};

}  // namespace superd::util::log

// Called by its short name across superd (log::...); it lives in util/.
namespace superd {
namespace log = util::log;
}  // namespace superd
