// The command line of loadgen (see the usage text and superd-loadgen(1)). Every value has a
// bound; the target is resolved here, once, so no lookup runs inside the measured loop.
#include "loadgen/options.hpp"

#include <fmt/core.h>
#include <netdb.h>
#include <sys/un.h>

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace loadgen {

namespace {

std::string program = "loadgen";  // or superd-loadgen, as installed: argv[0]'s basename

[[noreturn]] void usage(const std::string& why = {}) {
  if (!why.empty()) fmt::print(stderr, "{}: {}\n", program, why);
  fmt::print(stderr,
             "usage: {} --target HOST:PORT|/path.sock|@abstract\n"
             "               (-c CONCURRENCY | -r RATE [--max-inflight N]) [-T THREADS]\n"
             "               (-n COUNT | -d SECONDS) [--timeout-ms N] [--max-seconds N]\n"
             "               [--send STR] [--no-shutdown] [--expect STR | --expect-prefix STR]\n"
             "               [--script FILE] [--step STEP]... [--repeat N]\n"
             "               [--graceful-close] [--label NAME] [--json] [--csv FILE]\n"
             "               [--json-series FILE] [--no-progress]\n"
             "  STR accepts C escapes: \\n \\r \\t \\\\ \\0 \\xHH\n"
             "  STEP: send STR | expect-prefix STR | expect-regex RE | shutdown | expect STR | eof\n",
             program);
  std::exit(2);
}

double parse_double(const std::string& v, const char* what, double max) {
  char* end = nullptr;
  errno = 0;
  double d = std::strtod(v.c_str(), &end);
  if (errno != 0 || end == v.c_str() || *end != '\0' || !(d > 0) || !std::isfinite(d) || d > max)
    usage(fmt::format("bad {} '{}'", what, v));
  return d;
}

uint64_t parse_uint(const std::string& v, const char* what, uint64_t max) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (errno != 0 || end == v.c_str() || *end != '\0' || n == 0 || n > max || v[0] == '-')
    usage(fmt::format("bad {} '{}' (1..{})", what, v, max));
  return n;
}

Target resolve_target(const std::string& t) {
  Target r;
  if (t.empty()) usage("--target is required");
  if (t[0] == '/' || t[0] == '.' || t[0] == '@') {
    auto* un = reinterpret_cast<sockaddr_un*>(&r.addr);
    un->sun_family = AF_UNIX;
    if (t.size() >= sizeof un->sun_path) usage("socket path too long");
    std::memcpy(un->sun_path, t.data(), t.size());
    r.family = AF_UNIX;
    if (t[0] == '@') {
      un->sun_path[0] = '\0';  // abstract namespace: length is exact
      r.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + t.size());
    } else {
      r.len = sizeof(sockaddr_un);
    }
    return r;
  }
  auto colon = t.rfind(':');
  if (colon == std::string::npos) usage("target must be HOST:PORT, /path or @abstract");
  std::string host = t.substr(0, colon);
  std::string port = t.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0 || res == nullptr)
    usage(fmt::format("cannot resolve '{}': {}", t, gai_strerror(rc)));
  std::memcpy(&r.addr, res->ai_addr, res->ai_addrlen);
  r.len = res->ai_addrlen;
  r.family = res->ai_family;
  freeaddrinfo(res);
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) usage(fmt::format("cannot read script '{}': {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (ss.str().size() > 1024 * 1024) usage(fmt::format("script '{}' is over 1 MiB", path));
  return ss.str();
}

}  // namespace

Options parse_args(int argc, char** argv) {
  if (argc > 0 && argv[0] != nullptr) {
    const std::string a0 = argv[0];
    program = a0.substr(a0.rfind('/') + 1);
  }
  Options o;
  std::optional<std::string> send, expect;
  bool expect_is_prefix = false, shutdown_after_send = true, concurrency_given = false;
  std::vector<std::string> steps;
  std::optional<std::string> script_file;
  std::optional<uint64_t> repeat;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    std::optional<std::string> inline_value;
    if (a.rfind("--", 0) == 0) {
      if (auto eq = a.find('='); eq != std::string::npos) {
        inline_value = a.substr(eq + 1);
        a.resize(eq);
      }
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) usage(fmt::format("{} needs a value", a));
      return argv[++i];
    };
    if (a == "--target" || a == "-t") {
      o.target = value();
    } else if (a == "-c" || a == "--concurrency") {
      o.concurrency = static_cast<unsigned>(parse_uint(value(), "concurrency", kMaxConcurrency));
      concurrency_given = true;
    } else if (a == "-T" || a == "--threads") {
      o.threads = static_cast<unsigned>(parse_uint(value(), "threads", kMaxThreads));
    } else if (a == "-r" || a == "--rate") {
      o.rate = parse_double(value(), "rate", kMaxRate);
    } else if (a == "--max-inflight") {
      o.max_inflight = static_cast<unsigned>(parse_uint(value(), "max-inflight", kMaxInflight));
    } else if (a == "-n" || a == "--count") {
      o.count = parse_uint(value(), "count", UINT64_MAX);
    } else if (a == "-d" || a == "--duration") {
      o.duration_s = parse_double(value(), "duration", 7 * 86400.0);
    } else if (a == "--max-seconds") {
      o.max_seconds = parse_double(value(), "max-seconds", 7 * 86400.0);
    } else if (a == "--expect") {
      expect = script::unescape(value());
      expect_is_prefix = false;
    } else if (a == "--expect-prefix") {
      expect = script::unescape(value());
      expect_is_prefix = true;
    } else if (a == "--send") {
      send = script::unescape(value());
    } else if (a == "--no-shutdown") {
      shutdown_after_send = false;
    } else if (a == "--script") {
      script_file = value();
    } else if (a == "--step") {
      steps.push_back(value());
    } else if (a == "--repeat") {
      repeat = parse_uint(value(), "repeat", script::kMaxRepeat);
    } else if (a == "--graceful-close") {
      o.graceful_close = true;
    } else if (a == "--timeout-ms") {
      o.timeout_ms = static_cast<unsigned>(parse_uint(value(), "timeout-ms", 3600000));
    } else if (a == "--label") {
      o.label = value();
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--csv") {
      o.csv_path = value();
    } else if (a == "--json-series") {
      o.series_json_path = value();
    } else if (a == "--no-progress") {
      o.progress = false;
    } else if (a == "-h" || a == "--help") {
      usage();
    } else {
      usage(fmt::format("unknown argument '{}'", a));
    }
  }
  o.addr = resolve_target(o.target);
  if (!o.count && !o.duration_s) usage("one of -n COUNT or -d SECONDS is required");
  if (o.rate && concurrency_given) usage("-c is the closed loop's concurrency; with -r use --max-inflight");
  if (!o.csv_path.empty() && o.csv_path == o.series_json_path) usage("--csv and --json-series need two files");

  const bool scripted = script_file || !steps.empty();
  if (scripted && (send || expect || !shutdown_after_send))
    usage("--send/--expect/--expect-prefix/--no-shutdown are the short form of a script: not with --script/--step");
  if (scripted) {
    if (script_file) {
      if (auto e = script::parse(o.script, read_file(*script_file))) usage(fmt::format("{}: {}", *script_file, *e));
    }
    for (const auto& s : steps)
      if (auto e = script::add_line(o.script, s)) usage(fmt::format("--step '{}': {}", s, *e));
  } else {
    o.script = script::from_legacy(send, shutdown_after_send, expect, expect_is_prefix);
  }
  if (repeat) o.script.repeat = *repeat;
  if (auto e = script::validate(o.script)) usage(*e);

  // More threads than connections in flight would leave some idle: clamp.
  const unsigned slots = o.open_loop() ? o.max_inflight : o.concurrency;
  if (o.threads > slots) o.threads = slots;
  return o;
}

}  // namespace loadgen
