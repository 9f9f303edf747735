// loadgen: the client side of every superd benchmark.
//
// Keeps C short-lived connections in flight against one target (TCP, UNIX
// path or abstract UNIX socket): connect, optionally send a request and
// half-close, read to EOF, check the payload, close; repeat until a count or
// a duration is reached. One thread, non-blocking sockets, edge-triggered
// epoll: on a 2-core machine the server competes with us for CPU, so the
// generator must spend as few cycles per connection as possible.
//
// Output: a human summary on stderr; with --json exactly one JSON line on
// stdout (label, target, concurrency, ok, failed, conns_per_s, p50_ms,
// p90_ms, p99_ms, max_ms, duration_s, plus the failure breakdown).

#include <fmt/core.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

// ---------------------------------------------------------------- options

struct options {
  std::string target;
  unsigned concurrency = 1;
  std::optional<uint64_t> count;
  std::optional<double> duration_s;
  // -n alone still needs a time bound: a wedged server must not keep a
  // benchmark script waiting forever.
  double max_seconds = 300.0;
  std::optional<std::string> expect;
  bool expect_is_prefix = false;
  std::optional<std::string> send;
  bool shutdown_after_send = true;
  bool graceful_close = false;
  unsigned timeout_ms = 5000;
  std::string label;
  bool json = false;
};

[[noreturn]] void usage(const char* why = nullptr) {
  if (why != nullptr) fmt::print(stderr, "loadgen: {}\n", why);
  fmt::print(stderr,
             "usage: loadgen --target HOST:PORT|/path.sock|@abstract -c CONCURRENCY\n"
             "               (-n COUNT | -d SECONDS) [--expect STR | --expect-prefix STR]\n"
             "               [--send STR] [--no-shutdown] [--timeout-ms N] [--max-seconds N]\n"
             "               [--graceful-close] [--label NAME] [--json]\n"
             "  STR accepts C escapes: \\n \\r \\t \\\\ \\0 \\xHH\n");
  std::exit(2);
}

// Shell-friendly escapes so that --expect 'hello\n' means what it says.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    switch (c) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case '0':
        out += '\0';
        break;
      case '\\':
        out += '\\';
        break;
      case 'x':
        if (i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
          out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
          i += 2;
          break;
        }
        [[fallthrough]];
      default:
        out += '\\';
        out += c;
    }
  }
  return out;
}

double parse_double(const std::string& v, const char* what) {
  char* end = nullptr;
  errno = 0;
  double d = std::strtod(v.c_str(), &end);
  if (errno != 0 || end == v.c_str() || *end != '\0' || !(d > 0) || !std::isfinite(d))
    usage(fmt::format("bad {} '{}'", what, v).c_str());
  return d;
}

uint64_t parse_uint(const std::string& v, const char* what, uint64_t max) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (errno != 0 || end == v.c_str() || *end != '\0' || n == 0 || n > max || v[0] == '-')
    usage(fmt::format("bad {} '{}'", what, v).c_str());
  return n;
}

options parse_args(int argc, char** argv) {
  options o;
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
      if (i + 1 >= argc) usage(fmt::format("{} needs a value", a).c_str());
      return argv[++i];
    };
    if (a == "--target" || a == "-t") {
      o.target = value();
    } else if (a == "-c" || a == "--concurrency") {
      o.concurrency = static_cast<unsigned>(parse_uint(value(), "concurrency", 100000));
    } else if (a == "-n" || a == "--count") {
      o.count = parse_uint(value(), "count", UINT64_MAX);
    } else if (a == "-d" || a == "--duration") {
      o.duration_s = parse_double(value(), "duration");
    } else if (a == "--max-seconds") {
      o.max_seconds = parse_double(value(), "max-seconds");
    } else if (a == "--expect") {
      o.expect = unescape(value());
      o.expect_is_prefix = false;
    } else if (a == "--expect-prefix") {
      o.expect = unescape(value());
      o.expect_is_prefix = true;
    } else if (a == "--send") {
      o.send = unescape(value());
    } else if (a == "--no-shutdown") {
      o.shutdown_after_send = false;
    } else if (a == "--graceful-close") {
      o.graceful_close = true;
    } else if (a == "--timeout-ms") {
      o.timeout_ms = static_cast<unsigned>(parse_uint(value(), "timeout-ms", 3600000));
    } else if (a == "--label") {
      o.label = value();
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "-h" || a == "--help") {
      usage();
    } else {
      usage(fmt::format("unknown argument '{}'", a).c_str());
    }
  }
  if (o.target.empty()) usage("--target is required");
  if (!o.count && !o.duration_s) usage("one of -n COUNT or -d SECONDS is required");
  return o;
}

// ---------------------------------------------------------------- target

struct target_addr {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
};

target_addr resolve_target(const std::string& t) {
  target_addr r;
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
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  // Resolved once, before the clock starts.
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0 || res == nullptr)
    usage(fmt::format("cannot resolve '{}': {}", t, gai_strerror(rc)).c_str());
  std::memcpy(&r.addr, res->ai_addr, res->ai_addrlen);
  r.len = res->ai_addrlen;
  r.family = res->ai_family;
  freeaddrinfo(res);
  return r;
}

// ---------------------------------------------------------------- clock

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// ---------------------------------------------------------------- engine

enum class conn_state { idle, connecting, sending, reading };

struct conn {
  int fd = -1;
  uint32_t gen = 0;  // bumped on every reuse so stale events/timeouts are ignored
  conn_state state = conn_state::idle;
  uint64_t start_ns = 0;
  size_t sent = 0;
  size_t received = 0;  // total bytes, even beyond what is kept in buf
  std::string buf;      // at most keep_bytes of the payload
};

struct counters {
  uint64_t started = 0, ok = 0;
  uint64_t connect_errors = 0, timeouts = 0, mismatches = 0, io_errors = 0;
  uint64_t failed() const { return connect_errors + timeouts + mismatches + io_errors; }
};

enum class failure { connect, timeout, mismatch, io };

class engine {
 public:
  engine(const options& o, const target_addr& t) : opt_(o), target_(t), slots_(o.concurrency) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) {
      fmt::print(stderr, "loadgen: epoll_create1: {}\n", std::strerror(errno));
      std::exit(1);
    }
    // Exact match needs one byte beyond the expectation to notice
    // over-long payloads; prefix match needs only the prefix.
    if (o.expect) keep_bytes_ = o.expect->size() + (o.expect_is_prefix ? 0 : 1);
    for (auto& c : slots_) c.buf.reserve(keep_bytes_);
    free_.reserve(o.concurrency);
    for (unsigned i = o.concurrency; i-- > 0;) free_.push_back(i);
    if (o.count) latencies_ns_.reserve(std::min<uint64_t>(*o.count, 1u << 20));
  }

  ~engine() { close(epfd_); }

  void run() {
    start_ns_ = now_ns();
    const uint64_t timeout_ns = uint64_t{opt_.timeout_ms} * 1000000ULL;
    const double launch_window = opt_.duration_s ? *opt_.duration_s : opt_.max_seconds;
    launch_until_ns_ = start_ns_ + static_cast<uint64_t>(launch_window * 1e9);
    // Every connection started before launch_until has its own timeout,
    // so nothing can legitimately run past this: a hard stop.
    const uint64_t hard_stop_ns = launch_until_ns_ + timeout_ns;

    std::vector<epoll_event> events(256);
    for (;;) {
      uint64_t now = now_ns();
      if (now >= hard_stop_ns) {
        abort_all_inflight();
        break;
      }
      // Expire before refilling, so that slots freed by timeouts are
      // reused in this same iteration rather than after a sleep.
      expire(now, timeout_ns);
      while (!free_.empty() && may_start(now)) start_one(now);
      if (inflight_ == 0 && !may_start(now)) break;

      // Sleep until the next event, the oldest connection's timeout or
      // the hard stop. Every slot is busy here (the loop above filled
      // them), so only a finishing connection can free one.
      uint64_t wake = hard_stop_ns;
      if (!timeouts_.empty()) wake = std::min(wake, oldest_deadline(timeout_ns));
      int wait_ms = wake > now ? static_cast<int>((wake - now + 999999) / 1000000) : 0;

      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), wait_ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        fmt::print(stderr, "loadgen: epoll_wait: {}\n", std::strerror(errno));
        std::exit(1);
      }
      for (int i = 0; i < n; i++) on_event(events[i]);
    }
    end_ns_ = now_ns();
  }

  const counters& counts() const { return counts_; }
  std::vector<uint64_t>& latencies() { return latencies_ns_; }
  double elapsed_s() const { return static_cast<double>(end_ns_ - start_ns_) / 1e9; }
  const std::vector<std::string>& sample_errors() const { return sample_errors_; }

 private:
  bool may_start(uint64_t now) const {
    if (opt_.count && counts_.started >= *opt_.count) return false;
    return now < launch_until_ns_;
  }

  uint64_t oldest_deadline(uint64_t timeout_ns) const {
    return timeouts_.front().start_ns + timeout_ns;
  }

  void note_error(const char* what, int err) {
    // A handful of messages explain a failure mode; thousands only
    // cost time in the measured loop.
    if (sample_errors_.size() < 5)
      sample_errors_.push_back(fmt::format("{}: {}", what, std::strerror(err)));
  }

  void start_one(uint64_t now) {
    unsigned idx = free_.back();
    free_.pop_back();
    conn& c = slots_[idx];
    c.gen++;
    c.sent = 0;
    c.received = 0;
    c.buf.clear();
    c.start_ns = now;
    counts_.started++;
    inflight_++;

    c.fd = socket(target_.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      note_error("socket", errno);
      finish(idx, failure::connect);
      return;
    }
    bool connected = false;
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&target_.addr), target_.len) == 0) {
      connected = true;  // UNIX sockets connect synchronously
    } else if (errno != EINPROGRESS) {
      // EAGAIN here means a full UNIX backlog: a server overload
      // signal, counted as a connect error like ECONNREFUSED.
      note_error("connect", errno);
      finish(idx, failure::connect);
      return;
    }
    c.state = connected ? next_state_after_connect() : conn_state::connecting;
    // Edge-triggered with everything we may want: one epoll_ctl per
    // connection, never a MOD between phases.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = (uint64_t{c.gen} << 32) | idx;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev) < 0) {
      note_error("epoll_ctl", errno);
      finish(idx, failure::io);
      return;
    }
    timeouts_.push_back({idx, c.gen, now});
    // With ET, an ADD on an already-ready socket still reports it, so
    // there is nothing to do eagerly here.
  }

  conn_state next_state_after_connect() const {
    return opt_.send ? conn_state::sending : conn_state::reading;
  }

  void on_event(const epoll_event& ev) {
    unsigned idx = static_cast<uint32_t>(ev.data.u64);
    uint32_t gen = static_cast<uint32_t>(ev.data.u64 >> 32);
    conn& c = slots_[idx];
    if (c.gen != gen || c.state == conn_state::idle)
      return;  // event for a connection already finished

    if (c.state == conn_state::connecting) {
      if ((ev.events & EPOLLERR) || ((ev.events & EPOLLHUP) && !(ev.events & EPOLLOUT))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        note_error("connect", err != 0 ? err : ECONNREFUSED);
        finish(idx, failure::connect);
        return;
      }
      if (!(ev.events & (EPOLLOUT | EPOLLIN))) return;
      c.state = next_state_after_connect();
    }
    if (c.state == conn_state::sending && !do_send(idx)) return;
    if (c.state == conn_state::reading) do_read(idx);
  }

  // Returns false if the connection was finished.
  bool do_send(unsigned idx) {
    conn& c = slots_[idx];
    const std::string& s = *opt_.send;
    while (c.sent < s.size()) {
      ssize_t w = ::send(c.fd, s.data() + c.sent, s.size() - c.sent, MSG_NOSIGNAL);
      if (w > 0) {
        c.sent += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return false;  // wait for the next EPOLLOUT edge
      if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        // The server answered without reading everything; its
        // reply (if any) is still ours to read and judge.
        break;
      }
      note_error("send", errno);
      finish(idx, failure::io);
      return false;
    }
    if (opt_.shutdown_after_send) shutdown(c.fd, SHUT_WR);
    c.state = conn_state::reading;
    return true;
  }

  void do_read(unsigned idx) {
    conn& c = slots_[idx];
    char tmp[4096];
    for (;;) {
      ssize_t r = ::read(c.fd, tmp, sizeof tmp);
      if (r > 0) {
        size_t keep =
            std::min(static_cast<size_t>(r), keep_bytes_ - std::min(keep_bytes_, c.buf.size()));
        c.buf.append(tmp, keep);
        c.received += static_cast<size_t>(r);
        continue;
      }
      if (r == 0) {
        finish(idx, payload_ok(c) ? std::optional<failure>{} : failure::mismatch);
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      note_error("read", errno);
      finish(idx, failure::io);
      return;
    }
  }

  bool payload_ok(const conn& c) const {
    if (!opt_.expect) return true;
    const std::string& e = *opt_.expect;
    if (opt_.expect_is_prefix) return c.buf.size() == e.size() && c.buf == e;
    return c.received == e.size() && c.buf == e;
  }

  void finish(unsigned idx, std::optional<failure> f) {
    conn& c = slots_[idx];
    if (!f) {
      counts_.ok++;
      latencies_ns_.push_back(now_ns() - c.start_ns);
    } else {
      switch (*f) {
        case failure::connect:
          counts_.connect_errors++;
          break;
        case failure::timeout:
          counts_.timeouts++;
          break;
        case failure::mismatch:
          counts_.mismatches++;
          break;
        case failure::io:
          counts_.io_errors++;
          break;
      }
    }
    if (c.fd >= 0) {
      if (!f && !opt_.graceful_close && target_.family != AF_UNIX) {
        // The server closed first; an abortive close (RST) lets
        // both ends forget the connection at once instead of
        // leaving one TIME_WAIT per connection, which at thousands
        // of connections per second would skew later runs.
        linger l{1, 0};
        setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      close(c.fd);  // also removes it from the epoll set
      c.fd = -1;
    }
    c.state = conn_state::idle;
    c.gen++;
    inflight_--;
    free_.push_back(idx);
  }

  void expire(uint64_t now, uint64_t timeout_ns) {
    // All connections share one timeout, so start order is deadline
    // order and a FIFO is enough; entries of finished connections are
    // recognised by their generation and dropped.
    while (!timeouts_.empty()) {
      const auto& t = timeouts_.front();
      conn& c = slots_[t.idx];
      if (c.gen != t.gen || c.state == conn_state::idle) {
        timeouts_.pop_front();
        continue;
      }
      if (t.start_ns + timeout_ns > now) break;
      unsigned idx = t.idx;
      timeouts_.pop_front();
      finish(idx, failure::timeout);
    }
  }

  void abort_all_inflight() {
    for (unsigned i = 0; i < slots_.size(); i++)
      if (slots_[i].state != conn_state::idle) finish(i, failure::timeout);
  }

  struct pending_timeout {
    unsigned idx;
    uint32_t gen;
    uint64_t start_ns;
  };

  const options& opt_;
  const target_addr& target_;
  int epfd_ = -1;
  std::vector<conn> slots_;
  std::vector<unsigned> free_;
  std::deque<pending_timeout> timeouts_;
  std::vector<uint64_t> latencies_ns_;
  std::vector<std::string> sample_errors_;
  counters counts_;
  size_t keep_bytes_ = 0;
  unsigned inflight_ = 0;
  uint64_t start_ns_ = 0, end_ns_ = 0, launch_until_ns_ = 0;
};

// Nearest-rank percentile over sorted samples, in milliseconds.
double percentile_ms(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1e6;
}

double round3(double v) {
  return std::round(v * 1000.0) / 1000.0;
}

void raise_fd_limit(unsigned concurrency) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < concurrency + 64u) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, concurrency + 64u);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse_args(argc, argv);
  target_addr t = resolve_target(o.target);
  // send() uses MSG_NOSIGNAL already; this only guards stdout/stderr.
  std::signal(SIGPIPE, SIG_IGN);
  raise_fd_limit(o.concurrency);

  engine e(o, t);
  e.run();

  auto& lat = e.latencies();
  std::sort(lat.begin(), lat.end());
  const counters& c = e.counts();
  double elapsed = e.elapsed_s();
  double rate = elapsed > 0 ? static_cast<double>(c.ok) / elapsed : 0.0;
  double p50 = percentile_ms(lat, 0.50), p90 = percentile_ms(lat, 0.90);
  double p99 = percentile_ms(lat, 0.99),
         pmax = lat.empty() ? 0.0 : static_cast<double>(lat.back()) / 1e6;

  fmt::print(
      stderr,
      "loadgen{}{} {} c={}: ok={} failed={} (connect={} timeout={} mismatch={} io={})\n"
      "  {:.1f} conns/s over {:.2f} s; latency ms p50={:.3f} p90={:.3f} p99={:.3f} max={:.3f}\n",
      o.label.empty() ? "" : " ", o.label, o.target, o.concurrency, c.ok, c.failed(),
      c.connect_errors, c.timeouts, c.mismatches, c.io_errors, rate, elapsed, p50, p90, p99, pmax);
  for (const auto& err : e.sample_errors()) fmt::print(stderr, "  e.g. {}\n", err);

  if (o.json) {
    nlohmann::ordered_json j;
    j["label"] = o.label;
    j["target"] = o.target;
    j["concurrency"] = o.concurrency;
    j["ok"] = c.ok;
    j["failed"] = c.failed();
    j["conns_per_s"] = std::round(rate * 10.0) / 10.0;
    j["p50_ms"] = round3(p50);
    j["p90_ms"] = round3(p90);
    j["p99_ms"] = round3(p99);
    j["max_ms"] = round3(pmax);
    j["duration_s"] = round3(elapsed);
    j["connect_errors"] = c.connect_errors;
    j["timeouts"] = c.timeouts;
    j["mismatches"] = c.mismatches;
    j["io_errors"] = c.io_errors;
    std::fputs((j.dump() + "\n").c_str(), stdout);
    std::fflush(stdout);
  }
  // Non-zero when nothing succeeded, so scripts notice a dead target.
  return c.ok > 0 ? 0 : 1;
}
