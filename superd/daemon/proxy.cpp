// PROXY protocol in: a service with proxy_protocol set sits behind a load balancer (HAProxy's
// send-proxy / send-proxy-v2, nginx's proxy_protocol, an NLB) that opens each connection with a
// header naming the real client. The loop reads that header before admission, so allow/deny,
// the per-source counts, the rate limit, the log lines and the environment all see the client.
//
// Order: the peer must be one of proxy_allow (else REFUSE, nothing read); the header must come
// within proxy_timeout and within the parser's bounds (proxy/header.hpp); then LOCAL (a health
// check) is closed without a spawn, and PROXY goes on to admit() as the client it names.
//
// The header is consumed exactly and never reaches the service. Each wake-up peeks what is
// there; if the parser needs more, everything peeked is a strict prefix of the header and is
// consumed (so a level-triggered wait never spins on bytes it has seen); once the parser has
// the whole header, exactly its length is consumed and the client's first bytes stay queued.
// While it waits, the connection holds a place under max_connections (Gate::hold), none under
// any source, and keeps a reloaded service alive like an instance does.
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>

#include "daemon/hub.hpp"
#include "util/log.hpp"

namespace superd::daemon {

namespace {

bool trusted(const config::SocketConfig& so, const PeerInfo& p) {
  if (p.peer.is_unix)
    return so.proxy_allow_unix || std::find(so.proxy_allow_uids.begin(), so.proxy_allow_uids.end(), p.peer.unix_uid) !=
                                      so.proxy_allow_uids.end();
  for (const net::Cidr& c : so.proxy_allow)
    if (c.contains(p.ip())) return true;
  return false;
}

// The client the header names, with the proxy's own address and the TLVs for the environment.
PeerInfo client_of(const PeerInfo& proxy, const proxy::Header& h) {
  PeerInfo c = proxy;
  auto& env = c.peer.proxy_env;
  if (proxy.peer.is_unix) {
    env.push_back("PROXY_ADDR=unix");
  } else {
    env.push_back("PROXY_ADDR=" + net::address_string(proxy.ip()));
    env.push_back("PROXY_PORT=" + std::to_string(net::address_port(proxy.ip())));
  }
  for (auto [key, value] : {std::pair{"PROXY_AUTHORITY=", &h.authority}, std::pair{"PROXY_UNIQUE_ID=", &h.unique_id},
                            std::pair{"PROXY_SSL_VERSION=", &h.ssl_version}, std::pair{"PROXY_SSL_CN=", &h.ssl_cn},
                            std::pair{"PROXY_NETNS=", &h.netns}})
    if (!value->empty()) env.push_back(key + *value);
  if (!h.has_addresses) return c;  // UNKNOWN, AF_UNSPEC, AF_UNIX: the connection's own ends stand
  c.peer.is_unix = false;
  c.peer.remote = h.source;
  c.peer.local = h.destination;
  c.text = peer_string(c.ip());
  c.source = net::source_key(c.ip());
  return c;
}

}  // namespace

void Daemon::read_proxy_header(Service& s, UniqueFd conn, PeerInfo proxy, Clock::time_point accepted) {
  const config::SocketConfig& so = s.cfg->socket;
  if (!trusted(so, proxy)) return s.log_refuse(proxy.text, "not a trusted proxy (proxy_allow) for proxy_protocol");
  uint64_t id = ++proxy_ids_;
  auto w = std::make_unique<ProxyWait>(io_, &s, conn.release(), std::move(proxy), accepted);
  w->buf.reserve(proxy::max_header(so.proxy_limits()));
  w->timer.expires_after(so.proxy_timeout);
  w->timer.async_wait([this, id](boost::system::error_code ec) {
    if (ec) return;
    auto it = proxy_waits_.find(id);
    if (it == proxy_waits_.end()) return;
    end_proxy_wait(id, fmt::format("no complete PROXY header within proxy_timeout={}ms",
                                   it->second->service->cfg->socket.proxy_timeout.count()));
  });
  s.policy.gate().hold();
  proxy_waits_.emplace(id, std::move(w));
  on_proxy_readable(id);  // a balancer often sends the header with its first segment
}

void Daemon::on_proxy_readable(uint64_t id) {
  auto it = proxy_waits_.find(id);
  if (it == proxy_waits_.end()) return;
  ProxyWait& w = *it->second;
  const proxy::Limits limits = w.service->cfg->socket.proxy_limits();
  const size_t have = w.buf.size(), cap = proxy::max_header(limits);
  w.buf.resize(cap);
  ssize_t n = ::recv(w.sd.native_handle(), w.buf.data() + have, cap - have, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    n = 0;
  else if (n < 0)
    return end_proxy_wait(id, "reading its PROXY header: " + log::errno_text(errno));
  else if (n == 0)
    return end_proxy_wait(id, "closed before its PROXY header was complete");
  proxy::Result r = proxy::parse(std::span<const uint8_t>(w.buf.data(), have + static_cast<size_t>(n)), limits);
  if (r.kind == proxy::Result::Kind::error) return end_proxy_wait(id, r.error);
  // Consume: the whole header once it is known, else all that was peeked (a prefix of it).
  size_t take = r.kind == proxy::Result::Kind::done ? r.length - have : static_cast<size_t>(n);
  if (take > 0 && ::recv(w.sd.native_handle(), w.buf.data() + have, take, MSG_DONTWAIT) != static_cast<ssize_t>(take))
    return end_proxy_wait(id, "reading its PROXY header: " + log::errno_text(errno));
  w.buf.resize(have + take);
  if (r.kind == proxy::Result::Kind::more) {
    w.waited = true;
    w.sd.async_wait(asio::posix::descriptor_base::wait_read, [this, id](boost::system::error_code ec) {
      if (!ec) on_proxy_readable(id);
    });
    return;
  }

  // The whole header: the wait ends, and the connection goes on as the client it names.
  std::unique_ptr<ProxyWait> done = std::move(it->second);
  proxy_waits_.erase(it);
  Service& s = *done->service;
  UniqueFd conn(done->sd.release());
  // Asio made the socket non-blocking for its wait; the service gets it blocking, as accepted.
  if (done->waited)
    if (int fl = ::fcntl(conn.get(), F_GETFL); fl >= 0 && (fl & O_NONBLOCK))
      ::fcntl(conn.get(), F_SETFL, fl & ~O_NONBLOCK);
  s.policy.gate().unhold();
  if (r.header.local) {
    // A health check (HAProxy's `check send-proxy-v2`): the proxy is alive, so is superd.
    log::debug("service {}: PROXY LOCAL from {} (a health check): closed, nothing spawned", s.cfg->name,
               done->proxy.text);
    ++s.counters.proxy_local;
    conn.reset();
  } else {
    PeerInfo client = client_of(done->proxy, r.header);
    log::debug("service {}: PROXY v{} from {}: client {}", s.cfg->name, r.header.version, done->proxy.text,
               client.text);
    admit(s, std::move(conn), std::move(client), done->accepted, false);
  }
  if (s.state == State::full && s.has_room()) to_polling(s);
  maybe_retire(s);
}

// A wait that ends without a header: REFUSE with the proxy's address, the place under
// max_connections back, and a retired service whose last connection this was goes.
void Daemon::end_proxy_wait(uint64_t id, const std::string& refusal) {
  auto it = proxy_waits_.find(id);
  if (it == proxy_waits_.end()) return;
  std::unique_ptr<ProxyWait> w = std::move(it->second);
  proxy_waits_.erase(it);
  Service& s = *w->service;
  s.policy.gate().unhold();
  s.log_refuse(w->proxy.text, refusal);
  w.reset();  // closes the connection
  if (s.state == State::full && s.has_room()) to_polling(s);
  maybe_retire(s);
}

}  // namespace superd::daemon
