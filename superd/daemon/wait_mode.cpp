// Wait mode (accept = false): one instance gets the listening sockets and serves until it
// exits; superd does not poll them meanwhile (State::wait_running). Its UID is a named lease
// hashed from the service (preferring the owner of its existing directories), or the static
// user. An instance that exits at once makes superd back off before polling again.
#include "daemon/hub.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener/listener.hpp"
#include "util/log.hpp"

namespace superd::daemon {

namespace {
// An instance that lives less than kQuickExit makes superd wait before polling again,
// kWaitBackoffFirst after the first such exit, doubling per exit in a row, at most kWaitBackoffMax.
constexpr auto kQuickExit = std::chrono::seconds(1);
constexpr auto kWaitBackoffFirst = std::chrono::milliseconds(250);
constexpr auto kWaitBackoffMax = std::chrono::seconds(60);

// The instance shares the sockets' file descriptions: it expects blocking sockets, as xinetd
// gives them. superd does not touch them until the instance is gone, then restores them.
void set_blocking(Service& s, bool blocking) {
  for (auto& l : s.listeners) {
    int fd = l->sd.native_handle();
    int fl = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK);
  }
}
}  // namespace

void Daemon::start_wait_instance(Service& s) {
  const std::string& name = s.cfg->name;
  if (!s.policy.take_rate(Clock::now())) return defer_for_rate(s);
  uid_pool::Lease lease;
  uint32_t uid = s.plan.static_uid;
  std::string user = uid_pool::user_name_for(name);  // the names file's and USER's
  if (!s.plan.static_identity) {
    auto owner =
        sandbox::existing_owner(sandbox::boundary_dirs(s.cfg->service.sandbox, roots_), sandbox::OwnerLookup::non_root);
    auto got = leases_.acquire_named("wait:" + name, owner, {serial_ + 1, uid_pool::Leases::now_ms(), name, user});
    if (!got) {
      log::error("FAIL {}: no UID left in the dynamic range for its wait-mode instance; retrying in 1s", name);
      return to_held(s, Clock::now() + std::chrono::seconds(1), false);
    }
    lease = std::move(*got);
    uid = lease.uid();
  }
  uint64_t serial = ++serial_;
  UniqueFd err_read, err_write;
  if (!log_pipe(err_read, err_write)) return s.log_fail(serial, "wait", uid, "pipe2: " + log::errno_text(errno));
  int listen_fds[config::kMaxListenFds];
  unsigned n = 0;
  for (auto& l : s.listeners)
    if (n < config::kMaxListenFds) listen_fds[n++] = l->sd.native_handle();
  set_blocking(s, true);
  spawn::make_wait_plan(plan_, s.plan, uid, user, serial, listen_fds, n);
  plan_.stderr_fd = err_write.get();
  plan_.null_fd = null_fd_.get();
  spawn::Launch started = spawn::launch(plan_);
  err_write.reset();
  if (!started) {
    set_blocking(s, false);
    s.log_fail(serial, "wait", uid, started.failure + "; retrying on the next client in 1s");
    // Do not spin on a socket that stays readable: try again a second later.
    return to_held(s, Clock::now() + std::chrono::seconds(1), false);
  }
  to_wait_running(s);
  s.policy.gate().enter(net::source_key_uid(0));
  adopt(s, std::move(started.child), std::move(err_read), serial, std::move(lease), uid, "wait",
        net::source_key_uid(0));
}

// The wait-mode instance is gone: the sockets are superd's again.
void Daemon::wait_instance_ended(Service& s, Clock::time_point started, const ExitStatus& st) {
  if (s.state != State::wait_running) return;  // shutting down: the listeners are closed
  bool quick_exit = Clock::now() - started < kQuickExit;
  set_blocking(s, false);
  replace_shut_listeners(s);
  // An instance that exits at once, whatever its status, probably left the client queued (or
  // has no socket left to serve): respawning it at once would loop. Back off, doubling per
  // consecutive quick exit up to a cap (xinetd disables such a service; superd never does).
  s.quick_exits = quick_exit ? s.quick_exits + 1 : 0;
  if (!s.quick_exits) return to_polling(s);
  auto delay =
      std::min<Clock::duration>(kWaitBackoffFirst * (1LL << std::min(s.quick_exits - 1, 20u)), kWaitBackoffMax);
  log::warning("service {}: wait-mode instance exited within {}ms ({} in a row, {}); polling again in {}ms",
               s.cfg->name, std::chrono::duration_cast<std::chrono::milliseconds>(kQuickExit).count(), s.quick_exits,
               st.to_string(), std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  to_held(s, Clock::now() + delay, false);
}

// A wait-mode instance shares the listening sockets and may shut one down (shutdown(2) on a
// listening socket stops it listening for every holder); the port would stay dead. A stream
// listener that no longer accepts is replaced by a fresh bind of the same spec.
void Daemon::replace_shut_listeners(Service& s) {
  for (auto& l : s.listeners) {
    if (l->datagram) continue;  // shutdown(2) of an unconnected datagram socket fails: nothing to undo
    int accepting = 1;
    socklen_t len = sizeof accepting;
    if (::getsockopt(l->sd.native_handle(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || accepting) continue;
    boost::system::error_code ignored;
    l->sd.close(ignored);
    std::error_code ec;
    UniqueFd fd = listener::open(l->spec, listener::options_from(s.cfg->socket), ec, false);
    if (!fd) {
      log::error("service {}: its instance shut down the listener on {}, and a fresh bind failed: {}", s.cfg->name,
                 l->spec.to_string(), ec.message());
      continue;
    }
    l->sd.assign(fd.release());
    l->armed = false;
    log::warning("service {}: its instance shut down the listener on {}; listening again on a fresh socket",
                 s.cfg->name, l->spec.to_string());
  }
}

}  // namespace superd::daemon
