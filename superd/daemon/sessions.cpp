// Connections served inside the loop, without an instance or a UID: internal services (echo,
// discard, daytime, chargen, time) and redirects, over streams; and internal datagram services,
// each datagram admitted by the same Policy as a connection and answered from the loop.
#include "daemon/hub.hpp"

#include <sys/socket.h>

#include "daemon/event_log.hpp"
#include "util/log.hpp"

namespace superd::daemon {

namespace {
constexpr uint32_t kDatagramRefusalsLogged = 20;  // per service and second
using event_log::kNoUid;                          // log lines of sessions, which run as nobody else
constexpr int kDatagramBatch = 32;                // datagrams per wake-up before yielding to the loop

// The datagram loop guards, between access_times and the rate limit (a refusal takes no token).
std::string loop_guard(const void* ctx, const sockaddr* sa) {
  const auto& own = *static_cast<const inloop::OwnSockets*>(ctx);
  if (inloop::drop_datagram_from(sa)) return "source port or address that gets no reply (loop/amplification guard)";
  if (own.contains(sa)) return "source is a local address on a port superd listens on: a reply would loop (loop guard)";
  return {};
}

// Datagrams cost nothing to forge: at most kDatagramRefusalsLogged lines a second, then a count.
void refuse_datagram(Service& s, const sockaddr* sa, const std::string& reason) {
  DatagramState& d = s.datagrams;
  auto now = Clock::now();
  if (now - d.refusal_window >= std::chrono::seconds(1)) {
    if (d.refusals_unlogged)
      s.log_refuse("*", fmt::format("{} more datagrams refused in the last second", d.refusals_unlogged));
    d.refusal_window = now;
    d.refusals_logged = d.refusals_unlogged = 0;
  }
  if (d.refusals_logged < kDatagramRefusalsLogged) {
    ++d.refusals_logged;
    s.log_refuse(peer_string(sa), reason);
  } else {
    ++d.refusals_unlogged;
  }
}
}  // namespace

// An internal service or a redirect: the connection is served by the loop itself.
void Daemon::start_session(Service& s, UniqueFd conn, uint64_t serial, std::string peer, const net::SourceKey& source) {
  auto done = [this, serial](inloop::Traffic t, std::error_code ec) { on_session_done(serial, t, ec); };
  std::unique_ptr<inloop::Session> io;
  if (s.internal) {
    io = inloop::serve_stream(io_, *s.internal, std::move(conn), std::move(done));
  } else {
    const net::ListenSpec& to = *s.cfg->service.redirect;
    io = inloop::relay(io_, std::move(conn), to.addr, to.addr_len, std::move(done));
  }
  s.policy.gate().enter(source);
  s.log_start(serial, peer, kNoUid, 0);
  Session& se = sessions_[serial];
  se = Session{&s, serial, std::move(peer), source, Clock::now(), std::move(io), nullptr};
  if (auto max = s.cfg->service.runtime_max; max.count() > 0) {
    se.timer = std::make_unique<asio::steady_timer>(io_, max);
    se.timer->async_wait([this, serial](boost::system::error_code ec) {
      if (ec) return;
      auto it = sessions_.find(serial);
      if (it == sessions_.end()) return;
      log::warning("TIMEOUT {} serial={}: runtime_max reached, closing", it->second.service->cfg->name, serial);
      // Destroying the session closes its sockets and never calls done: end it here.
      inloop::Traffic so_far = it->second.io->traffic();
      it->second.io.reset();
      on_session_done(serial, so_far, std::make_error_code(std::errc::timed_out));
    });
  }
}

void Daemon::on_session_done(uint64_t serial, inloop::Traffic t, std::error_code ec) {
  auto it = sessions_.find(serial);
  if (it == sessions_.end()) return;
  Session se = std::move(it->second);
  sessions_.erase(it);
  se.io.reset();
  std::string status = ec ? fmt::format("error=\"{}\"", ec.message()) : "status=0";
  se.service->log_exit(serial, se.peer, kNoUid, 0, se.started, status, &t);
  instance_ended(*se.service, se.source);
  maybe_finish_shutdown();
}

// Internal datagram services (echo, daytime, ... over UDP): a reply also needs a token from the
// service's reply limits (per source, all sources).
void Daemon::on_datagrams(Listener& l) {
  Service& s = *l.service;
  const config::SocketConfig& so = s.cfg->socket;
  DatagramState& dg = s.datagrams;
  if (!dg.own_sockets) {
    // Built at the first datagram: a Service belongs to one configuration generation (a reload
    // builds new ones and arms them only after the commit), so services_ now has every listener.
    std::vector<net::ListenSpec> specs;
    for (const auto& other : services_)
      for (const auto& ol : other->listeners) specs.push_back(ol->spec);
    dg.own_sockets = std::make_unique<inloop::OwnSockets>(specs, inloop::OwnSockets::host_addresses());
    dg.reply_limit = std::make_unique<inloop::ReplyLimiter>(
        inloop::ReplyLimiter::Rate{so.datagram_reply_rate, so.datagram_reply_interval},
        inloop::ReplyLimiter::Rate{so.datagram_reply_rate_per_source, so.datagram_reply_interval_per_source});
  }
  char* buf = dg.buf.data();
  size_t half = dg.buf.size() / 2;
  for (int i = 0; i < kDatagramBatch; ++i) {
    if (s.policy.rate_deferred(Clock::now())) return defer_for_rate(s);
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    ssize_t n = ::recvfrom(l.sd.native_handle(), buf, half, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&peer), &len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      log::warning("service {}: recvfrom on udp {}: {}", s.cfg->name, l.spec.to_string(), log::errno_text(errno));
      break;
    }
    auto* sa = reinterpret_cast<const sockaddr*>(&peer);
    net::SourceKey source = net::source_key(sa);
    admission::Decision d = s.policy.decide(admission::Path::datagram, sa, source, Clock::now(), -1, false,
                                            {loop_guard, dg.own_sockets.get()});
    if (!d.admitted()) {
      refuse_datagram(s, sa, d.reason);
      continue;
    }
    auto reply = inloop::answer_datagram(*s.internal, buf, static_cast<size_t>(n), buf + half, half, ::time(nullptr));
    if (!reply) continue;  // discard: nothing sent, no reply token taken
    switch (dg.reply_limit->take(source, Clock::now())) {
      case inloop::ReplyLimiter::Verdict::reply:
        break;
      case inloop::ReplyLimiter::Verdict::over_source:
        refuse_datagram(s, sa,
                        fmt::format("datagram_reply_rate_per_source={} per {}ms", so.datagram_reply_rate_per_source,
                                    so.datagram_reply_interval_per_source.count()));
        continue;
      case inloop::ReplyLimiter::Verdict::over_all:
        refuse_datagram(s, sa,
                        fmt::format("datagram_reply_rate={} per {}ms (all sources)", so.datagram_reply_rate,
                                    so.datagram_reply_interval.count()));
        continue;
    }
    ::sendto(l.sd.native_handle(), buf + half, *reply, MSG_DONTWAIT | MSG_NOSIGNAL, sa, len);
    log::debug("{} datagram from {}: {} bytes in, {} out", s.cfg->name, peer_string(sa), n, *reply);
  }
  arm(l);
}

}  // namespace superd::daemon
