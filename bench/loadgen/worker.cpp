// The connection engine of loadgen (see worker.hpp for the scheduling). Non-blocking sockets,
// edge-triggered epoll, one epoll_ctl per connection and never a MOD: each step of the script
// tries its send or read at once and waits only on EAGAIN, so an edge cannot be missed. On a
// 2-core machine the server competes with us for CPU, so the loop spends as few cycles per
// connection as it can.
#include "loadgen/worker.hpp"

#include <fmt/core.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace loadgen {

namespace {

std::atomic<bool> stop_requested{false};

constexpr uint64_t kSecond = 1000000000ULL;
// The longest epoll wait, so that a stop request is seen soon.
constexpr uint64_t kMaxWaitNs = 100000000ULL;

}  // namespace

void request_stop() {
  stop_requested.store(true, std::memory_order_relaxed);
}

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kSecond + static_cast<uint64_t>(ts.tv_nsec);
}

void Counters::add(const Counters& o) {
  started += o.started;
  ok += o.ok;
  connect_errors += o.connect_errors;
  timeouts += o.timeouts;
  mismatches += o.mismatches;
  io_errors += o.io_errors;
  late += o.late;
}

Worker::Worker(const Options& o, unsigned index, unsigned workers, uint64_t t0_ns, std::atomic<uint64_t>* tickets,
               Collector& collector)
    : opt_(o),
      index_(index),
      workers_(workers),
      t0_ns_(t0_ns),
      timeout_ns_(uint64_t{o.timeout_ms} * 1000000ULL),
      tickets_(tickets),
      collector_(collector) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw std::runtime_error(fmt::format("epoll_create1: {}", std::strerror(errno)));
  // This worker's share of the slots: the first (total % workers) get one more.
  const unsigned total = o.open_loop() ? o.max_inflight : o.concurrency;
  const unsigned share = total / workers + (index < total % workers ? 1 : 0);
  slots_.resize(share);
  free_.reserve(share);
  for (unsigned i = share; i-- > 0;) free_.push_back(i);
  if (o.open_loop()) {
    // Connections j = k * workers + index, j < count.
    open_total_ = !o.count ? UINT64_MAX : *o.count > index ? (*o.count - index + workers - 1) / workers : 0;
  }
  const double window = o.duration_s ? *o.duration_s : o.max_seconds;
  launch_until_ns_ = t0_ns_ + static_cast<uint64_t>(window * 1e9);
  // Every connection started before launch_until has its own timeout, and one due before it
  // is late after the timeout: nothing can legitimately run past this.
  hard_stop_ns_ = launch_until_ns_ + timeout_ns_;
  next_boundary_ns_ = t0_ns_ + kSecond;
}

Worker::~Worker() {
  for (Conn& c : slots_)
    if (c.fd >= 0) close(c.fd);
  close(epfd_);
}

void Worker::run() {
  std::vector<epoll_event> events(256);
  for (;;) {
    uint64_t now = now_ns();
    roll(now);
    if (!stopping_ && stop_requested.load(std::memory_order_relaxed)) {
      stopping_ = true;
      launch_until_ns_ = std::min(launch_until_ns_, now);
    }
    if (now >= hard_stop_ns_) {
      abort_all_inflight();
      break;
    }
    // Expire before launching, so that slots freed by timeouts are reused at once.
    expire(now);
    launch(now);
    if (inflight_ == 0 && !more_to_launch(now)) break;

    uint64_t wake = std::min({hard_stop_ns_, next_boundary_ns_, now + kMaxWaitNs});
    if (!timeouts_.empty()) wake = std::min(wake, timeouts_.front().started_ns + timeout_ns_);
    // Open loop: the next connection's schedule, if a slot is free for it. (A closed loop with a
    // free slot here has nothing left to start.)
    if (opt_.open_loop() && !free_.empty() && next_k_ < open_total_) wake = std::min(wake, due_of(next_k_));
    const uint64_t wait = wake > now ? wake - now : 0;
    timespec ts{static_cast<time_t>(wait / kSecond), static_cast<long>(wait % kSecond)};
    int n = epoll_pwait2(epfd_, events.data(), static_cast<int>(events.size()), &ts, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      fatal_ = fmt::format("epoll_pwait2: {}", std::strerror(errno));
      abort_all_inflight();
      break;
    }
    for (int i = 0; i < n; i++) on_event(events[i].data.u64, events[i].events);
  }
  end_ns_ = now_ns();
  // Scheduled but never started: late.
  if (opt_.open_loop()) {
    while (next_k_ < open_total_ && due_of(next_k_) < launch_until_ns_ && due_of(next_k_) < end_ns_) {
      count_failure(Failure::late);
      next_k_++;
    }
  }
  roll(end_ns_);
  second_.inflight = inflight_;
  collector_.hand_in(index_, cur_second_, second_);
  collector_.worker_finished(index_);
}

// ---------------------------------------------------------------- scheduling

uint64_t Worker::due_of(uint64_t k) const {
  const double j = static_cast<double>(k) * workers_ + index_;
  return t0_ns_ + static_cast<uint64_t>(j * 1e9 / *opt_.rate);
}

bool Worker::take_ticket() {
  if (tickets_ == nullptr) return true;
  uint64_t left = tickets_->load(std::memory_order_relaxed);
  while (left > 0 && !tickets_->compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) {
  }
  return left > 0;
}

bool Worker::more_to_launch(uint64_t now) const {
  if (opt_.open_loop()) return next_k_ < open_total_ && due_of(next_k_) < launch_until_ns_;
  if (stopping_ || now >= launch_until_ns_) return false;
  return tickets_ == nullptr || tickets_->load(std::memory_order_relaxed) > 0;
}

void Worker::launch(uint64_t now) {
  if (!opt_.open_loop()) {
    while (!free_.empty() && more_to_launch(now) && take_ticket()) start_one(now, now);
    return;
  }
  while (next_k_ < open_total_) {
    const uint64_t due = due_of(next_k_);
    if (due >= launch_until_ns_ || due > now) break;
    if (now - due > timeout_ns_) {
      // It would time out before it started: counted, never attempted.
      count_failure(Failure::late);
      next_k_++;
      continue;
    }
    if (free_.empty()) break;  // started as soon as a slot frees, still timed from `due`
    start_one(now, due);
    next_k_++;
  }
}

// ---------------------------------------------------------------- one connection

void Worker::note_error(const char* what, int err) {
  // A handful of messages explain a failure mode; thousands only cost time in the loop.
  if (sample_errors_.size() < 5) sample_errors_.push_back(fmt::format("{}: {}", what, std::strerror(err)));
}

void Worker::start_one(uint64_t now, uint64_t due) {
  unsigned idx = free_.back();
  free_.pop_back();
  Conn& c = slots_[idx];
  c.gen++;
  c.step = 0;
  c.sent = 0;
  c.rx.clear();
  c.dropped = 0;
  c.peer_eof = false;
  c.send_broken = false;
  c.due_ns = due;
  c.started_ns = now;
  counts_.started++;
  second_.started++;
  inflight_++;

  c.fd = socket(opt_.addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    note_error("socket", errno);
    finish(idx, false, Failure::connect);
    return;
  }
  bool connected = false;
  if (connect(c.fd, reinterpret_cast<const sockaddr*>(&opt_.addr.addr), opt_.addr.len) == 0) {
    connected = true;  // UNIX sockets connect synchronously
  } else if (errno != EINPROGRESS) {
    // EAGAIN here means a full UNIX backlog: a server overload signal, counted as a connect
    // error like ECONNREFUSED.
    note_error("connect", errno);
    finish(idx, false, Failure::connect);
    return;
  }
  c.state = connected ? State::running : State::connecting;
  // Edge-triggered with everything we may want: one epoll_ctl per connection.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = (uint64_t{c.gen} << 32) | idx;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev) < 0) {
    note_error("epoll_ctl", errno);
    finish(idx, false, Failure::io);
    return;
  }
  timeouts_.push_back({idx, c.gen, now});
  if (connected) advance(idx);
}

void Worker::on_event(uint64_t data, uint32_t events) {
  unsigned idx = static_cast<uint32_t>(data);
  uint32_t gen = static_cast<uint32_t>(data >> 32);
  Conn& c = slots_[idx];
  if (c.gen != gen || c.state == State::idle) return;  // for a connection already finished
  if (c.state == State::connecting) {
    if ((events & EPOLLERR) || ((events & EPOLLHUP) && !(events & EPOLLOUT))) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      note_error("connect", err != 0 ? err : ECONNREFUSED);
      finish(idx, false, Failure::connect);
      return;
    }
    if (!(events & (EPOLLOUT | EPOLLIN))) return;
    c.state = State::running;
  }
  advance(idx);
}

Worker::Io Worker::send_some(Conn& c, const std::string& text) {
  while (c.sent < text.size()) {
    ssize_t w = ::send(c.fd, text.data() + c.sent, text.size() - c.sent, MSG_NOSIGNAL);
    if (w > 0) {
      c.sent += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Io::again;  // next EPOLLOUT edge
    if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      // The server answered without reading everything; its reply (if any) is still ours
      // to read and judge.
      c.send_broken = true;
      return Io::progress;
    }
    note_error("send", errno);
    return Io::error;
  }
  return Io::progress;
}

// Reads one chunk; keeps at most keep_limit bytes in rx and counts the rest as dropped.
Worker::Io Worker::read_some(Conn& c, size_t keep_limit) {
  char tmp[16384];
  for (;;) {
    ssize_t r = ::read(c.fd, tmp, sizeof tmp);
    if (r > 0) {
      const size_t room = keep_limit - std::min(keep_limit, c.rx.size());
      const size_t keep = std::min(static_cast<size_t>(r), room);
      c.rx.append(tmp, keep);
      c.dropped += static_cast<size_t>(r) - keep;
      return Io::progress;
    }
    if (r == 0) {
      c.peer_eof = true;
      return Io::eof;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::again;
    note_error("read", errno);
    return Io::error;
  }
}

// Runs the script from the connection's cursor until it has to wait, fails or ends.
void Worker::advance(unsigned idx) {
  Conn& c = slots_[idx];
  const script::Script& s = opt_.script;
  const uint64_t length = s.length();
  for (;;) {
    if (c.step == length) {
      finish(idx, true);
      return;
    }
    const script::Step& step = s.at(c.step);
    Io io = Io::progress;
    switch (step.kind) {
      case script::Kind::send:
        if (!c.send_broken) io = send_some(c, step.text);
        if (io == Io::progress) {
          c.step++;
          c.sent = 0;
          continue;
        }
        break;
      case script::Kind::shutdown:
        shutdown(c.fd, SHUT_WR);
        c.step++;
        continue;
      case script::Kind::expect_prefix: {
        const size_t n = step.text.size();
        if (c.rx.size() >= n) {
          if (c.rx.compare(0, n, step.text) != 0) return finish(idx, false, Failure::mismatch);
          c.rx.erase(0, n);
          c.step++;
          continue;
        }
        if (c.peer_eof) return finish(idx, false, Failure::mismatch);
        io = read_some(c, SIZE_MAX);
        break;
      }
      case script::Kind::expect_regex: {
        std::smatch m;
        if (std::regex_search(c.rx, m, *step.re)) {
          c.rx.erase(0, static_cast<size_t>(m.position(0) + m.length(0)));
          c.step++;
          continue;
        }
        if (c.peer_eof || c.rx.size() >= script::kMaxRegexBuffer) return finish(idx, false, Failure::mismatch);
        io = read_some(c, SIZE_MAX);
        break;
      }
      case script::Kind::expect_exact:
        // Exact needs one byte beyond the expectation to notice an over-long reply.
        if (c.peer_eof) {
          const bool same = c.dropped == 0 && c.rx == step.text;
          if (!same) return finish(idx, false, Failure::mismatch);
          c.step++;
          continue;
        }
        io = read_some(c, step.text.size() + 1);
        break;
      case script::Kind::eof:
        if (c.peer_eof) {
          c.step++;
          continue;
        }
        c.rx.clear();
        io = read_some(c, 0);
        break;
    }
    if (io == Io::again) return;
    if (io == Io::error) return finish(idx, false, Failure::io);
  }
}

void Worker::count_failure(Failure f) {
  switch (f) {
    case Failure::connect:
      counts_.connect_errors++;
      break;
    case Failure::timeout:
      counts_.timeouts++;
      break;
    case Failure::mismatch:
      counts_.mismatches++;
      break;
    case Failure::io:
      counts_.io_errors++;
      break;
    case Failure::late:
      counts_.late++;
      second_.late++;
      break;
  }
  second_.failed++;
}

void Worker::finish(unsigned idx, bool ok, Failure f) {
  Conn& c = slots_[idx];
  const uint64_t now = now_ns();
  roll(now);
  if (ok) {
    counts_.ok++;
    second_.ok++;
    second_.latency.record(now - c.due_ns);
  } else {
    count_failure(f);
  }
  if (c.fd >= 0) {
    if (ok && c.peer_eof && !opt_.graceful_close && opt_.addr.family != AF_UNIX) {
      // The server closed first; an abortive close (RST) lets both ends forget the connection
      // at once instead of leaving one TIME_WAIT per connection, which at thousands of
      // connections per second would skew later runs.
      linger l{1, 0};
      setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(c.fd);  // also removes it from the epoll set
    c.fd = -1;
  }
  c.state = State::idle;
  c.rx.clear();
  c.gen++;
  inflight_--;
  free_.push_back(idx);
}

void Worker::expire(uint64_t now) {
  // All connections share one timeout, so start order is deadline order and a FIFO is
  // enough; entries of finished connections are recognised by their generation and dropped.
  while (!timeouts_.empty()) {
    const auto& t = timeouts_.front();
    Conn& c = slots_[t.idx];
    if (c.gen != t.gen || c.state == State::idle) {
      timeouts_.pop_front();
      continue;
    }
    if (t.started_ns + timeout_ns_ > now) break;
    unsigned idx = t.idx;
    timeouts_.pop_front();
    finish(idx, false, Failure::timeout);
  }
}

void Worker::abort_all_inflight() {
  for (unsigned i = 0; i < slots_.size(); i++)
    if (slots_[i].state != State::idle) finish(i, false, Failure::timeout);
}

// Hands in every second the clock has left behind, empty ones included, so that the
// collector can complete them.
void Worker::roll(uint64_t now) {
  while (now >= next_boundary_ns_) {
    second_.inflight = inflight_;
    collector_.hand_in(index_, cur_second_, second_);
    second_.clear();
    cur_second_++;
    next_boundary_ns_ += kSecond;
  }
}

}  // namespace loadgen
