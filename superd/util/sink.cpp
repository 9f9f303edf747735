// log::Sink. The file line is assembled in a stack-backed buffer and handed to the kernel in one
// write(2): with O_APPEND each write lands whole at the end of the file, which is what keeps
// lines from superd and from other writers of the same file from interleaving.
#include "util/sink.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "util/log.hpp"

namespace superd::util::log {
namespace {

struct Name {
  std::string_view name;
  int value;
};

constexpr Name kFacilities[] = {
    {"daemon", LOG_DAEMON}, {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"user", LOG_USER},
    {"mail", LOG_MAIL},     {"lpr", LOG_LPR},       {"news", LOG_NEWS},         {"uucp", LOG_UUCP},
    {"ftp", LOG_FTP},       {"cron", LOG_CRON},     {"local0", LOG_LOCAL0},     {"local1", LOG_LOCAL1},
    {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},     {"local5", LOG_LOCAL5},
    {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

constexpr Name kLevels[] = {
    {"emerg", LOG_EMERG},     {"alert", LOG_ALERT},   {"crit", LOG_CRIT}, {"err", LOG_ERR},
    {"warning", LOG_WARNING}, {"notice", LOG_NOTICE}, {"info", LOG_INFO}, {"debug", LOG_DEBUG},
};

template <size_t N>
const Name* find(const Name (&table)[N], std::string_view name) {
  for (const Name& n : table)
    if (n.name == name) return &n;
  return nullptr;
}

template <size_t N>
std::string_view name_of(const Name (&table)[N], int value) {
  for (const Name& n : table)
    if (n.value == value) return n.name;
  return "?";
}

template <size_t N>
std::string names(const Name (&table)[N]) {
  std::string s;
  for (const Name& n : table) {
    if (!s.empty()) s += ' ';
    s += n.name;
  }
  return s;
}

// openlog once per process: the ident and options are process-wide state of libc anyway.
void open_syslog_once() {
  static bool opened = false;
  if (opened) return;
  ::openlog("superd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
  opened = true;
}

}  // namespace

std::optional<SinkSpec> SinkSpec::parse(std::string_view target, std::string& why) {
  SinkSpec s;
  if (target == "stderr") return s;
  if (target == "journal") {
    s.kind = Kind::journal;
    s.priority = LOG_INFO;
    return s;
  }

  if (target.substr(0, 5) == "file:") {
    std::string_view path = target.substr(5);
    if (path.empty() || path.front() != '/') {
      why = "log target \"" + std::string(target) + "\": the file path must be absolute";
      return std::nullopt;
    }
    if (path.back() == '/') {
      why = "log target \"" + std::string(target) + "\": the file path names a directory";
      return std::nullopt;
    }
    if (path.find('\0') != std::string_view::npos) {
      why = "log target: the file path contains NUL";
      return std::nullopt;
    }
    if (path.size() >= PATH_MAX) {
      why = "log target: the file path is longer than " + std::to_string(PATH_MAX - 1) + " bytes";
      return std::nullopt;
    }
    s.kind = Kind::file;
    s.path = std::string(path);
    return s;
  }

  if (target.substr(0, 7) == "syslog:") {
    std::string_view spec = target.substr(7);
    std::string_view facility = spec, level = "info";
    if (size_t dot = spec.find('.'); dot != std::string_view::npos) {
      facility = spec.substr(0, dot);
      level = spec.substr(dot + 1);
    }
    const Name* f = find(kFacilities, facility);
    if (!f) {
      why = "log target \"" + std::string(target) + "\": unknown syslog facility \"" + std::string(facility) + "\" (" +
            names(kFacilities) + ")";
      return std::nullopt;
    }
    const Name* l = find(kLevels, level);
    if (!l) {
      why = "log target \"" + std::string(target) + "\": unknown syslog level \"" + std::string(level) + "\" (" +
            names(kLevels) + ")";
      return std::nullopt;
    }
    s.kind = Kind::syslog;
    s.priority = f->value | l->value;
    return s;
  }

  why =
      "log target \"" + std::string(target) + "\": expected \"stderr\", \"file:/PATH\" or \"syslog:FACILITY[.LEVEL]\"";
  return std::nullopt;
}

std::optional<Sink> Sink::parse(std::string_view target, std::string& why) {
  auto spec = SinkSpec::parse(target, why);
  if (!spec) return std::nullopt;
  return Sink(std::move(*spec));
}

std::error_code Sink::open() {
  switch (spec_.kind) {
    case Kind::standard_error:
      return {};
    case Kind::syslog:
      open_syslog_once();
      return {};
    case Kind::journal: {
      UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strcpy(sa.sun_path, "/run/systemd/journal/socket");
      if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
        return {errno, std::system_category()};
      fd_ = std::move(fd);
      return {};
    }
    case Kind::file: {
      int fd = ::open(spec_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
      if (fd < 0) return {errno, std::system_category()};
      fd_.reset(fd);
      return {};
    }
  }
  return {};
}

// One datagram of "FIELD=value\n" lines (values escaped, so never a newline in them). The
// uid= and peer= of superd's event lines become fields of their own, for journalctl to match.
void Sink::send_journal(int priority, std::string_view line) const noexcept {
  if (!fd_) return log::write(Level::info, line);
  try {
    fmt::memory_buffer buf;
    auto out = std::back_inserter(buf);
    buf.append(std::string_view("MESSAGE="));
    append_escaped(buf, line);
    fmt::format_to(out, "\nPRIORITY={}\nSYSLOG_IDENTIFIER=superd\n", priority & LOG_PRIMASK);
    if (!service_.empty()) {
      buf.append(std::string_view("SUPERD_SERVICE="));
      append_escaped(buf, service_);
      buf.push_back('\n');
    }
    auto field = [&](std::string_view key, std::string_view name, const char* ends) {
      size_t at = line.find(key);
      if (at == std::string_view::npos || (at > 0 && line[at - 1] != ' ')) return;
      std::string_view v = line.substr(at + key.size());
      v = v.substr(0, std::min(v.find_first_of(ends), v.size()));
      if (v.empty()) return;
      buf.append(name);
      append_escaped(buf, v);
      buf.push_back('\n');
    };
    field("uid=", "SUPERD_UID=", " :");  // "svc[7] uid=61184: a stderr line"
    field("peer=", "SUPERD_PEER=", " ");
    ::send(fd_.get(), buf.data(), buf.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  } catch (...) {
  }
}

void Sink::write(Level level, std::string_view line) const noexcept {
  static constexpr int kSyslogLevel[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
  static constexpr const char* kName[] = {"debug: ", "info: ", "warning: ", "error: "};
  int i = static_cast<int>(level);
  if (spec_.kind == Kind::standard_error) return log::write(level, line);
  if (spec_.kind == Kind::syslog) {
    Sink leveled(SinkSpec{Kind::syslog, {}, (spec_.priority & LOG_FACMASK) | kSyslogLevel[i]});
    return leveled.write(line);
  }
  if (spec_.kind == Kind::journal) return send_journal(kSyslogLevel[i], line);
  try {
    write(std::string(kName[i]) + std::string(line));
  } catch (...) {
  }
}

void Sink::write(std::string_view line) const noexcept {
  // The line's own newline is the writer's to add; every other control byte, in every kind, goes
  // through the escaper log::write uses, so no sink passes on a CR, LF or ESC that forges a line.
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  try {
    switch (spec_.kind) {
      case Kind::standard_error:
        log::write(Level::info, line);
        return;
      case Kind::journal:
        send_journal(spec_.priority, line);
        return;
      case Kind::syslog: {
        fmt::memory_buffer buf;
        append_escaped(buf, line);
        int n = buf.size() > INT_MAX ? INT_MAX : static_cast<int>(buf.size());
        ::syslog(spec_.priority, "%.*s", n, buf.data());
        return;
      }
      case Kind::file: {
        if (!fd_) {
          log::write(Level::info, line);
          return;
        }
        char stamp[40] = "";
        std::time_t now = std::time(nullptr);
        std::tm tm{};
        if (::localtime_r(&now, &tm)) std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S%z", &tm);
        fmt::memory_buffer buf;
        fmt::format_to(std::back_inserter(buf), "{} superd[{}]: ", stamp, ::getpid());
        append_escaped(buf, line);
        buf.push_back('\n');
        // One write; EINTR retries the whole line. A short write (disk full) is not completed:
        // a second write could land after another writer's line and split this one.
        while (::write(fd_.get(), buf.data(), buf.size()) < 0 && errno == EINTR) {
        }
        return;
      }
    }
  } catch (...) {
    // Out of memory while formatting: the line is dropped.
  }
}

std::string SinkSpec::to_string() const {
  switch (kind) {
    case Kind::standard_error:
      return "stderr";
    case Kind::file:
      return "file:" + path;
    case Kind::journal:
      return "journal";
    case Kind::syslog:
      return "syslog:" + std::string(name_of(kFacilities, priority & LOG_FACMASK)) + "." +
             std::string(name_of(kLevels, priority & LOG_PRIMASK));
  }
  return "stderr";
}

}  // namespace superd::util::log
