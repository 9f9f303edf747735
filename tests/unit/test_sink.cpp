// log::Sink: parsing of every log_target form, file writing read back from a scratch directory
// (under /srv/superd-test, not /tmp), stderr capture, syslog without a check of delivery; and
// log::append_escaped, the escaper every sink shares (a forged line must stay one visible line).
#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "util/log.hpp"
#include "util/sink.hpp"

using superd::log::Sink;
namespace fs = std::filesystem;

namespace {

std::optional<Sink> parse_ok(std::string_view s) {
  std::string why;
  auto sink = Sink::parse(s, why);
  INFO(s << ": " << why);
  REQUIRE(sink);
  return sink;
}

std::string parse_error(std::string_view s) {
  std::string why;
  auto sink = Sink::parse(s, why);
  INFO(s);
  CHECK_FALSE(sink);
  CHECK_FALSE(why.empty());
  return why;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// /srv/superd-test/unit-sink-PID, removed with everything in it at the end of the test.
struct ScratchDir {
  fs::path path;
  bool ok = false;
  ScratchDir() {
    std::error_code ec;
    fs::path base = "/srv/superd-test";
    fs::create_directories(base, ec);
    path = base / ("unit-sink-" + std::to_string(::getpid()));
    fs::remove_all(path, ec);
    ok = fs::create_directory(path, ec);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Redirects fd 2 into a file for the lifetime of the object.
struct StderrCapture {
  fs::path file;
  int saved = -1;
  explicit StderrCapture(fs::path f) : file(std::move(f)) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    saved = ::dup(STDERR_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  std::string finish() {
    if (saved >= 0) {
      ::dup2(saved, STDERR_FILENO);
      ::close(saved);
      saved = -1;
    }
    return slurp(file);
  }
  ~StderrCapture() { finish(); }
};

const std::regex kFileLine(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} superd\[(\d+)\]: (.*))");

}  // namespace

TEST_CASE("sink: stderr and file targets parse and print back", "[sink]") {
  auto s = parse_ok("stderr");
  CHECK(s->kind() == Sink::Kind::standard_error);
  CHECK(s->to_string() == "stderr");
  CHECK(s->is_open());
  CHECK(Sink().to_string() == "stderr");

  auto f = parse_ok("file:/var/log/superd/echo.log");
  CHECK(f->kind() == Sink::Kind::file);
  CHECK(f->path() == "/var/log/superd/echo.log");
  CHECK(f->to_string() == "file:/var/log/superd/echo.log");
  CHECK_FALSE(f->is_open());  // parse does no I/O
  CHECK(f->fd() == -1);
}

TEST_CASE("sink: syslog targets, every facility and level, default level info", "[sink]") {
  auto d = parse_ok("syslog:daemon");
  CHECK(d->kind() == Sink::Kind::syslog);
  CHECK(d->priority() == (LOG_DAEMON | LOG_INFO));
  CHECK(d->to_string() == "syslog:daemon.info");

  auto a = parse_ok("syslog:authpriv.warning");
  CHECK(a->priority() == (LOG_AUTHPRIV | LOG_WARNING));
  CHECK(a->to_string() == "syslog:authpriv.warning");

  const std::pair<const char*, int> facilities[] = {
      {"daemon", LOG_DAEMON}, {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"user", LOG_USER},
      {"mail", LOG_MAIL},     {"lpr", LOG_LPR},       {"news", LOG_NEWS},         {"uucp", LOG_UUCP},
      {"ftp", LOG_FTP},       {"cron", LOG_CRON},     {"local0", LOG_LOCAL0},     {"local1", LOG_LOCAL1},
      {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},     {"local5", LOG_LOCAL5},
      {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
  const std::pair<const char*, int> levels[] = {{"emerg", LOG_EMERG}, {"alert", LOG_ALERT},     {"crit", LOG_CRIT},
                                                {"err", LOG_ERR},     {"warning", LOG_WARNING}, {"notice", LOG_NOTICE},
                                                {"info", LOG_INFO},   {"debug", LOG_DEBUG}};
  for (auto [fname, fval] : facilities)
    for (auto [lname, lval] : levels) {
      std::string target = std::string("syslog:") + fname + "." + lname;
      auto s = parse_ok(target);
      CHECK(s->priority() == (fval | lval));
      CHECK(s->to_string() == target);  // round trip
    }
}

TEST_CASE("sink: parse errors name the bad part", "[sink]") {
  CHECK_THAT(parse_error(""), Catch::Contains("expected \"stderr\""));
  CHECK_THAT(parse_error("stdout"), Catch::Contains("\"stdout\""));
  CHECK_THAT(parse_error("STDERR"), Catch::Contains("expected"));
  CHECK_THAT(parse_error("file"), Catch::Contains("expected"));
  CHECK_THAT(parse_error("file:"), Catch::Contains("absolute"));
  CHECK_THAT(parse_error("file:var/log/x.log"), Catch::Contains("absolute"));
  CHECK_THAT(parse_error("file:/var/log/"), Catch::Contains("directory"));
  CHECK_THAT(parse_error(std::string_view("file:/a\0b", 9)), Catch::Contains("NUL"));
  CHECK_THAT(parse_error("file:/" + std::string(5000, 'x')), Catch::Contains("longer"));
  CHECK_THAT(parse_error("syslog:"), Catch::Contains("facility \"\""));
  CHECK_THAT(parse_error("syslog:kern"), Catch::Contains("facility \"kern\""));
  CHECK_THAT(parse_error("syslog:DAEMON"), Catch::Contains("facility \"DAEMON\""));
  CHECK_THAT(parse_error("syslog:local8"), Catch::Contains("facility \"local8\""));
  CHECK_THAT(parse_error("syslog:daemon."), Catch::Contains("level \"\""));
  CHECK_THAT(parse_error("syslog:daemon.verbose"), Catch::Contains("level \"verbose\""));
  CHECK_THAT(parse_error("syslog:daemon.info.x"), Catch::Contains("level \"info.x\""));
  CHECK_THAT(parse_error("syslog:daemon.verbose"), Catch::Contains("emerg alert"));
}

TEST_CASE("sink: a file sink appends timestamped lines, one write each, and reopens", "[sink]") {
  ScratchDir dir;
  REQUIRE(dir.ok);

  SECTION("missing parent directory is an error, not created") {
    auto s = parse_ok("file:" + (dir.path / "no" / "such" / "x.log").string());
    std::error_code ec = s->open();
    CHECK(ec == std::errc::no_such_file_or_directory);
    CHECK_FALSE(s->is_open());
    CHECK_FALSE(fs::exists(dir.path / "no"));
  }

  SECTION("lines read back; created 0640, O_APPEND, close-on-exec") {
    fs::path log = dir.path / "svc.log";
    auto s = parse_ok("file:" + log.string());
    mode_t old_mask = ::umask(022);
    std::error_code ec = s->open();
    ::umask(old_mask);
    REQUIRE_FALSE(ec);
    REQUIRE(s->is_open());
    CHECK((::fcntl(s->fd(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(s->fd(), F_GETFL) & O_APPEND) != 0);
    struct stat st {};
    REQUIRE(::stat(log.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);

    s->write("START echo serial=1 peer=127.0.0.1:5000 uid=60001 pid=42");
    s->write("EXIT echo serial=1\n");            // trailing newline dropped
    s->write("REFUSE echo reason=\"a\nb\rc\"");  // inner line breaks escaped

    std::istringstream in(slurp(log));
    std::string line;
    std::vector<std::string> bodies;
    while (std::getline(in, line)) {
      std::smatch m;
      INFO(line);
      REQUIRE(std::regex_match(line, m, kFileLine));
      CHECK(m[1] == std::to_string(::getpid()));
      bodies.push_back(m[2]);
    }
    REQUIRE(bodies.size() == 3);
    CHECK(bodies[0] == "START echo serial=1 peer=127.0.0.1:5000 uid=60001 pid=42");
    CHECK(bodies[1] == "EXIT echo serial=1");
    CHECK(bodies[2] == R"(REFUSE echo reason="a\nb\rc")");
  }

  SECTION("open appends to an existing file and reopens after rotation") {
    fs::path log = dir.path / "rot.log";
    { std::ofstream(log) << "kept\n"; }
    auto s = parse_ok("file:" + log.string());
    REQUIRE_FALSE(s->open());
    s->write("one");
    fs::rename(log, dir.path / "rot.log.1");
    s->write("two");  // still the old file until reopened
    REQUIRE_FALSE(s->open());
    s->write("three");

    std::string old_text = slurp(dir.path / "rot.log.1");
    CHECK(old_text.rfind("kept\n", 0) == 0);
    CHECK_THAT(old_text, Catch::Contains(": one\n") && Catch::Contains(": two\n"));
    std::string new_text = slurp(log);
    CHECK_THAT(new_text, Catch::EndsWith(": three\n"));
    CHECK_THAT(new_text, !Catch::Contains("two"));

    // Moving hands the fd over.
    int fd = s->fd();
    Sink moved = std::move(*s);
    CHECK(moved.fd() == fd);
    CHECK(moved.same_target(*parse_ok("file:" + log.string())));
    CHECK_FALSE(moved.same_target(Sink()));
  }

  SECTION("a failed reopen keeps the old fd") {
    fs::path sub = dir.path / "sub";
    fs::create_directory(sub);
    auto s = parse_ok("file:" + (sub / "x.log").string());
    REQUIRE_FALSE(s->open());
    int fd = s->fd();
    fs::remove_all(sub);
    CHECK(s->open() == std::errc::no_such_file_or_directory);
    CHECK(s->fd() == fd);
    s->write("into the unlinked file; must not crash");
  }

  SECTION("stderr sinks, and file sinks not opened yet, write superd's log") {
    StderrCapture cap(dir.path / "stderr.txt");
    Sink().write("hello");
    parse_ok("file:/nonexistent/x.log")->write("fallback");
    std::string text = cap.finish();
    CHECK(text == "info: hello\ninfo: fallback\n");
  }
}

TEST_CASE("sink: syslog sinks open and write without crashing", "[sink]") {
  auto s = parse_ok("syslog:local7.debug");
  CHECK_FALSE(s->open());
  CHECK_FALSE(s->open());  // openlog once; a second open is harmless
  CHECK(s->is_open());
  s->write("superd unit test: syslog sink, ignore");
}

namespace {
std::string escaped(std::string_view s) {
  fmt::memory_buffer b;
  superd::log::append_escaped(b, s);
  return fmt::to_string(b);
}
// A service's stderr line that tries to hide itself behind CR and erase-line, then forge START.
const std::string kForged = "ok\rSTART forged serial=1 uid=0\x1b[2K\n";
const std::string kForgedEscaped = R"(ok\rSTART forged serial=1 uid=0\x1b[2K)";
}  // namespace

TEST_CASE("sink: append_escaped escapes control bytes and backslashes, nothing else", "[sink]") {
  CHECK(escaped("") == "");
  CHECK(escaped("START echo serial=1 uid=60001") == "START echo serial=1 uid=60001");
  CHECK(escaped("caf\xc3\xa9 \xe2\x82\xac ~") == "caf\xc3\xa9 \xe2\x82\xac ~");  // UTF-8 and 0x7e pass
  CHECK(escaped("a\rb") == R"(a\rb)");
  CHECK(escaped("a\nb") == R"(a\nb)");
  CHECK(escaped("a\tb") == R"(a\tb)");
  CHECK(escaped("\x1b[2K") == R"(\x1b[2K)");
  CHECK(escaped(std::string_view("\0", 1)) == R"(\x00)");
  CHECK(escaped("\x01\x08\x0b\x0c\x1f\x7f") == R"(\x01\x08\x0b\x0c\x1f\x7f)");
  CHECK(escaped("\x20") == " ");
  // A backslash is doubled, so text that looks like an escape cannot pass for one.
  CHECK(escaped(R"(\r)") == R"(\\r)");
  CHECK(escaped(R"(C:\x1b)") == R"(C:\\x1b)");
  CHECK(escaped("\\\r") == R"(\\\r)");
  // Every byte below 0x20, and 0x7f, comes out as printable ASCII.
  for (int c = 0; c < 256; ++c) {
    std::string out = escaped(std::string(1, static_cast<char>(c)));
    INFO(c);
    if (c < 0x20 || c == 0x7f || c == '\\') {
      CHECK(out.size() >= 2);
      CHECK(out[0] == '\\');
      for (char o : out) CHECK((o >= 0x20 && o < 0x7f));
    } else {
      CHECK(out == std::string(1, static_cast<char>(c)));
    }
  }
  // A long line (past the buffer's inline storage) keeps every byte.
  std::string big(3000, 'a');
  big[1500] = '\r';
  std::string out = escaped(big);
  CHECK(out.size() == 3001);
  CHECK(out.substr(1499, 4) == R"(a\ra)");
}

TEST_CASE("sink: a forged line stays one escaped line in the file and stderr sinks", "[sink]") {
  ScratchDir dir;
  REQUIRE(dir.ok);

  SECTION("file sink") {
    fs::path log = dir.path / "forge.log";
    auto s = parse_ok("file:" + log.string());
    REQUIRE_FALSE(s->open());
    s->write(kForged);
    std::string text = slurp(log);
    CHECK(text.find('\r') == std::string::npos);
    CHECK(text.find('\x1b') == std::string::npos);
    REQUIRE(std::count(text.begin(), text.end(), '\n') == 1);
    std::smatch m;
    std::string line = text.substr(0, text.size() - 1);
    REQUIRE(std::regex_match(line, m, kFileLine));
    CHECK(m[2] == kForgedEscaped);
  }

  SECTION("stderr sink, a file sink not opened, and log::write itself") {
    StderrCapture cap(dir.path / "stderr.txt");
    Sink().write(kForged);
    parse_ok("file:/nonexistent/x.log")->write(kForged);
    superd::log::write(superd::log::Level::warning, "peer=\x1b]0;title\x07 x\\y");
    std::string text = cap.finish();
    CHECK(text == "info: " + kForgedEscaped + "\ninfo: " + kForgedEscaped + "\n" +
                      R"(warning: peer=\x1b]0;title\x07 x\\y)" + "\n");
  }
}

TEST_CASE("sink: journal is a target of its own, and a journal socket that is not there is an error", "[sink]") {
  auto sink = parse_ok("journal");
  CHECK(sink->to_string() == "journal");
  CHECK(sink->spec().kind == superd::log::SinkSpec::Kind::journal);
  CHECK(parse_error("journal:x").size() > 0);
  // The real journal socket is exercised by test_operations (a journald of its own); here there
  // is none at /run/systemd/journal/socket unless the machine runs journald.
  struct stat st {};
  if (::stat("/run/systemd/journal/socket", &st) != 0) CHECK(sink->open());
}
