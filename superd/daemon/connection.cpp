// The connection path, one hop per step:
//   accept4 (on_readable) -> peer identity -> [PROXY header, daemon/proxy.cpp] -> admit:
//   admission::Policy::decide -> banners ->
//   Leases::acquire -> make_instance_plan -> ZygotePool::send or spawn::start (launch) -> adopt.
// The connection fd is owned (UniqueFd) all the way: it is handed to the spawner, which takes its
// own copy, or it closes when this returns (a refusal, a failure).
#include "daemon/hub.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "util/log.hpp"

namespace superd::daemon {

namespace {

constexpr int kAcceptBatch = 32;  // accepts per wake-up before yielding to the loop

using log::errno_text;

// Banners go out on a fresh socket whose send buffer holds them (they are capped at 64 KiB):
// one non-blocking send, never a wait in the loop.
void send_banner(int fd, const config::Banner& b, const std::string& service) {
  if (b.text.empty()) return;
  ssize_t n = ::send(fd, b.text.data(), b.text.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(b.text.size()))
    log::debug("service {}: banner {} cut short: {} of {} bytes", service, b.path, n < 0 ? 0 : n, b.text.size());
}

// False (and `why`) if a UNIX peer's credentials cannot be read.
bool identify(int conn, const net::ListenSpec& local, const sockaddr_storage& addr, PeerInfo& out, std::string& why) {
  out.peer.remote = addr;
  if (addr.ss_family == AF_UNIX) {
    ucred cred{};
    socklen_t cl = sizeof cred;
    if (::getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
      why = fmt::format("SO_PEERCRED: {}", std::strerror(errno));
      return false;
    }
    out.peer.is_unix = true;
    out.peer.unix_pid = cred.pid;
    out.peer.unix_uid = cred.uid;
    out.peer.unix_gid = cred.gid;
    out.text = fmt::format("unix:pid={},uid={}", cred.pid, cred.uid);
    out.source = net::source_key_uid(cred.uid);
    return true;
  }
  // The local address is the listener's own unless it is a wildcard: no syscall then.
  if (!local.is_wildcard()) {
    std::memcpy(&out.peer.local, &local.addr, local.addr_len);
  } else {
    socklen_t ll = sizeof out.peer.local;
    ::getsockname(conn, reinterpret_cast<sockaddr*>(&out.peer.local), &ll);
  }
  out.text = peer_string(out.ip());
  out.source = net::source_key(out.ip());
  return true;
}

}  // namespace

bool log_pipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  return true;
}

void Daemon::on_readable(Listener& l) {
  Service& s = *l.service;
  if (s.state != State::polling) return;  // a sibling listener's wake-up came first
  if (l.datagram && s.internal) return on_datagrams(l);
  if (s.wait_mode) return start_wait_instance(s);  // readable: a client is there; the instance takes it
  for (int i = 0; i < kAcceptBatch; ++i) {
    if (!s.has_room()) return to_full(s);
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = ::accept4(l.sd.native_handle(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      log::error("service {}: accept on {}: {}", s.cfg->name, l.spec.to_string(), errno_text(errno));
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: back off briefly instead of spinning on a ready socket.
        if (!l.backoff) l.backoff = std::make_unique<asio::steady_timer>(io_);
        l.backoff->expires_after(std::chrono::milliseconds(100));
        l.backoff->async_wait([this, &l](boost::system::error_code e) {
          if (!e) arm(l);
        });
        return;
      }
      break;
    }
    on_connection(s, l.spec, UniqueFd(fd), peer);
    if (s.state != State::polling) return;  // that one was deferred: the hold timer resumes
  }
  arm(l);
}

// Over max_connection_rate with the "defer" action: stop polling the service's listeners until
// the limit has room again (the kernel keeps the backlog, or the datagrams). Never disables it.
void Daemon::defer_for_rate(Service& s) {
  if (s.state == State::held) return;
  auto now = Clock::now();
  auto until = s.policy.rate_room_at(now);
  log::info("service {}: max_connection_rate={} per {}ms reached, deferring for {}ms", s.cfg->name,
            s.cfg->socket.max_connection_rate, s.cfg->socket.connection_rate_interval.count(),
            std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count());
  to_held(s, until, true);
}

// Out of descriptors (RLIMIT_NOFILE) with a connection accepted: it is held back as a rate
// "defer" holds one, and the service polls again after kFdRetry (descriptors come back as
// instances end). The kernel's backlog keeps the others. Dropping it lost every connection past
// the limit. Said at most once a second.
void Daemon::defer_for_fds(Service& s, UniqueFd conn, PeerInfo who) {
  auto now = Clock::now();
  if (now - fds_short_logged_ >= std::chrono::seconds(1)) {
    fds_short_logged_ = now;
    log::warning("service {}: out of file descriptors (RLIMIT_NOFILE); connections wait until instances end",
                 s.cfg->name);
  }
  s.deferred = Deferred{std::move(conn), std::move(who)};
  to_held(s, now + kFdRetry, true);
}

// The rate limit has room again after a "defer": serve the connection held back (if any), or
// start the wait-mode instance, then poll.
void Daemon::on_rate_room(Service& s) {
  if (s.deferred) {
    if (!s.policy.take_rate(Clock::now())) return defer_for_rate(s);
    Deferred d = std::move(*s.deferred);
    s.deferred.reset();
    admit(s, std::move(d.conn), std::move(d.who), Clock::now(), true);
  } else if (s.wait_mode) {
    return start_wait_instance(s);
  }
  if (s.state == State::polling) to_polling(s);
}

void Daemon::on_connection(Service& s, const net::ListenSpec& local, UniqueFd conn, const sockaddr_storage& peer_addr) {
  const auto accepted = Clock::now();
  PeerInfo who;
  std::string why;
  if (!identify(conn.get(), local, peer_addr, who, why)) return s.log_refuse("unix", why);
  if (s.cfg->socket.proxy_protocol) return read_proxy_header(s, std::move(conn), std::move(who), accepted);
  admit(s, std::move(conn), std::move(who), accepted, false);
}

// Admission, then the lease, the plan and the spawner; `who` is the real client.
void Daemon::admit(Service& s, UniqueFd conn, PeerInfo who, Clock::time_point accepted, bool rate_taken) {
  const std::string& name = s.cfg->name;
  const config::SocketConfig& so = s.cfg->socket;

  // Admission. A refused connection gets banner and banner_fail (xinetd's order) and is
  // closed; nothing is spawned.
  admission::Decision d = s.policy.decide(admission::Path::stream, who.ip(), who.source, Clock::now(), -1, rate_taken);
  if (d.kind == admission::Decision::Kind::defer) {
    s.deferred = Deferred{std::move(conn), std::move(who)};
    return defer_for_rate(s);
  }
  // The stderr pipe first, before any banner: out of descriptors, the connection is held back
  // and tried again (defer_for_fds), not dropped, and must not have seen a banner yet.
  UniqueFd err_read, err_write;
  if (d.admitted() && !s.internal && !s.cfg->service.redirect && !log_pipe(err_read, err_write)) {
    if (errno == EMFILE || errno == ENFILE) return defer_for_fds(s, std::move(conn), std::move(who));
    return s.log_fail(++serial_, who.text, s.plan.static_uid, "pipe2: " + errno_text(errno));
  }
  send_banner(conn.get(), so.banner, name);
  if (!d.admitted()) {
    send_banner(conn.get(), so.banner_fail, name);
    return s.log_refuse(who.text, d.reason);
  }
  send_banner(conn.get(), so.banner_success, name);
  uint64_t serial = ++serial_;
  if (s.internal || s.cfg->service.redirect)
    return start_session(s, std::move(conn), serial, std::move(who.text), who.source);

  // Lease.
  uid_pool::Lease lease;
  uint32_t uid = s.plan.static_uid;
  if (!s.plan.static_identity) {
    auto got = leases_.acquire({serial, uid_pool::Leases::now_ms(), name});
    if (!got) {
      send_banner(conn.get(), so.banner_fail, name);
      return s.log_refuse(who.text, fmt::format("dynamic UID pool exhausted ({} held, {} quarantined)", pool_.held(),
                                                pool_.quarantined()));
    }
    lease = std::move(*got);
    uid = lease.uid();
  }

  // Plan, then the spawner.
  spawn::make_instance_plan(plan_, s.plan, who.peer, uid, serial);
  plan_.conn_fd = conn.get();
  plan_.stderr_fd = err_write.get();
  plan_.null_fd = null_fd_.get();
  sandbox::idmap::Trees trees;  // state_directory_idmap: closed once the zygote or the child has them
  if (std::string why = add_idmap_trees(s, uid, trees); !why.empty()) return s.log_fail(serial, who.text, uid, why);
  if (s.zygotes) {
    // The zygote takes its own copies of the fds; ours close when this returns, the stderr
    // pipe's write end when the answer is read (Pending::answer_room). In flight, the
    // request counts against max_connections.
    spawn::Pending p{
        serial, accepted, std::move(lease), who.text, who.source, std::move(err_read), std::move(err_write)};
    if (auto failure = s.zygotes->send(plan_, std::move(p))) return s.log_fail(serial, who.text, uid, *failure);
    s.policy.gate().enter(who.source);
    return;  // on failure `p` (and its lease) drops here
  }
  spawn::Launch started = spawn::launch(plan_);
  err_write.reset();
  conn.reset();                                                             // the child has its copy
  if (!started) return s.log_fail(serial, who.text, uid, started.failure);  // the lease drops: it never ran
  s.policy.gate().enter(who.source);
  adopt(s, std::move(started.child), std::move(err_read), serial, std::move(lease), uid, std::move(who.text),
        who.source);
  s.counters.spawned(Clock::now() - accepted);
}

}  // namespace superd::daemon
