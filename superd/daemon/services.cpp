// Services and reload, and the transitions of a service's State (service.hpp has the diagram).
//
// A Service belongs to one configuration generation. Reload builds every new service first (a
// failure undoes them all: destructors close what was opened, the leases drop), then moves
// unchanged listeners over without closing them, retires the old services (their live
// instances run on untouched; a retired service goes when its last instance ends) and arms.
#include "daemon/hub.hpp"
#include "listener/passed.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>

#include "listener/listener.hpp"
#include "sandbox/landlock.hpp"
#include "util/log.hpp"

extern char** environ;

namespace superd::daemon {

namespace {
admission::Policy policy_for(const config::SocketConfig& so) {
  return admission::Policy(
      so.limits, so.access_times,
      {so.max_connection_rate, so.connection_rate_interval, so.connection_rate_action == config::RateAction::defer});
}
}  // namespace

// The service's shared-directory group (a dynamic user with boundary directories), before its
// plan is built: the plan carries it. A reloaded service keeps its predecessor's group: no
// chown, files stay writable.
bool Daemon::lease_group(Service& s, Service* previous) {
  auto dirs = sandbox::boundary_dirs(s.cfg->service.sandbox, roots_);
  // Idmapped directories need no shared group: every instance is their owner (idmap_dirs.cpp).
  if (dirs.empty() || !s.cfg->service.dynamic_user || s.cfg->service.sandbox.idmap_dirs) return true;
  if (previous && previous->group) {
    s.group = previous->group;
    return true;
  }
  std::string name = "group:" + s.cfg->name, group = uid_pool::user_name_for(name);
  if (handed_)  // an upgrade: the group the old image had
    for (const auto& l : handed_->leases)
      if (l.user == group && l.kind == static_cast<uint8_t>(uid_pool::NameKind::group))
        if (auto it = handed_leases_.find(l.uid); it != handed_leases_.end()) {
          s.group = std::make_shared<uid_pool::Lease>(std::move(it->second));
          handed_leases_.erase(it);
          return true;
        }
  auto lease =
      leases_.acquire_named(name, sandbox::existing_group(dirs), {0, 0, name, group, uid_pool::NameKind::group});
  if (!lease) {
    log::error("service {}: no GID left in the dynamic range for its directories", s.cfg->name);
    return false;
  }
  s.group = std::make_shared<uid_pool::Lease>(std::move(*lease));
  return true;
}

// Host side of a service's sandbox: its boundary directories, owned by its group.
bool Daemon::prepare_service(Service& s, Service* previous) {
  const auto& sb = s.cfg->service.sandbox;
  if (sb.idmap_dirs) return prepare_idmap(s, previous);
  std::optional<uint32_t> gid;
  if (s.group) gid = s.group->uid();
  std::string failed;
  // A static user owns its directories, as systemd's StateDirectory= with User= does.
  const auto& se = s.cfg->service;
  uid_t owner = se.dynamic_user ? 0 : se.uid;
  gid_t group = se.dynamic_user ? gid.value_or(0) : se.gid;
  if (auto ec = sandbox::prepare_dirs(sb, roots_, owner, group, gid ? 02070 : 0, failed)) {
    log::error("service {}: cannot prepare {}: {}", s.cfg->name, failed, ec.message());
    return false;
  }
  return true;
}

// Builds a service: plan, directories and group, zygotes, and listeners. Listeners whose spec an
// old service already listens on are not opened again: `reuse` collects them for the commit.
// On failure everything new is undone by the destructors (and the group lease dropped).
std::unique_ptr<Service> Daemon::build_service(std::shared_ptr<const config::Service> sc, Service* previous,
                                               std::vector<Listener*>& reuse) {
  bool spawns = !sc->service.exec.empty();  // internal and redirect services run in the loop
  bool wait_mode = spawns && !sc->socket.accept;
  auto svc = std::make_unique<Service>(sc, spawn::ServicePlan{}, policy_for(sc->socket));
  if (previous && sandbox::boundary_dirs(sc->service.sandbox, roots_).empty()) previous = nullptr;
  if (!idmap_toggle_allowed(*sc)) return nullptr;
  if (spawns && !lease_group(*svc, previous)) return nullptr;
  std::optional<gid_t> group;
  if (svc->group) group = svc->group->uid();
  // A wait-mode instance starts rarely and gets the listening sockets: no zygote for it.
  if (spawns) {
    const std::string syslog_socket = syslog_path(*sc);
    auto plan = spawn::make_service_plan(*sc, roots_, environ, host_limits_, group, !wait_mode, syslog_socket);
    if (!plan) {
      log::error("{}", plan.error());
      return nullptr;
    }
    svc->plan = std::move(*plan);
    open_syslog(*svc, syslog_socket);  // before the zygotes start: their namespaces bind it
  }
  if (auto w = sandbox::landlock::warning_once(svc->plan.landlock_missing)) log::warning("{}", *w);
  svc->wait_mode = wait_mode;
  if (sc->service.internal) {
    svc->internal = sc->service.internal;
    svc->datagrams.buf.resize(65536);
  }
  if (!sc->service.log_target.empty()) {
    log::Sink sink(sc->service.log_sink);
    sink.set_service(sc->name);
    if (std::error_code ec = sink.open()) {
      log::error("{}: service {}: log_target \"{}\": {}", sc->where.file, sc->name, sc->service.log_target,
                 ec.message());
      return nullptr;
    }
    svc->sink = std::move(sink);
  }
  if (spawns && !prepare_service(*svc, previous)) return nullptr;
  if (svc->plan.use_zygote) {
    svc->zygotes =
        std::make_unique<spawn::ZygotePool>(io_, svc->plan, sc->name, zygote_events(*svc), cfg_.global.zygotes);
    if (auto e = svc->zygotes->start()) {
      log::error("service {}: cannot set up its sandbox: {}", sc->name, e->describe(svc->plan));
      return nullptr;
    }
  }
  listener::Options lo = listener::options_from(sc->socket);
  if (!cfg_.global.capsule.empty()) lo.trusted_root = cfg_.global.runtime_root;  // the host prepared it
  for (const config::Listen& l : sc->socket.listen) {
    std::string key =
        fmt::format("{} {} {} {} {} {} {}", l.datagram ? "udp" : "stream", l.spec.to_string(),
                    static_cast<int>(lo.bind_ipv6_only), lo.no_delay, lo.keep_alive, lo.reuse_port, lo.backlog);
    Listener* old = nullptr;
    for (auto& os : services_)
      for (auto& ol : os->listeners)
        if (ol->key == key) old = ol.get();
    if (old) {
      reuse.push_back(old);
      continue;
    }
    // An upgrade's old image listened here with the same options: its socket, never closed.
    if (handed_) {
      auto& hl = handed_->listeners;
      auto h = std::find_if(hl.begin(), hl.end(), [&](const handover::Listener& x) { return x.key == key; });
      if (h != hl.end()) {
        ::fcntl(h->fd, F_SETFD, FD_CLOEXEC);
        log::info("service {}: listening on {}{} (kept by the upgrade)", sc->name, l.datagram ? "udp " : "",
                  l.spec.to_string());
        svc->listeners.push_back(
            std::make_unique<Listener>(svc.get(), l, asio::posix::stream_descriptor(io_, h->fd), std::move(key)));
        hl.erase(h);
        continue;
      }
      // The same address with other options: the old socket goes first, so the new one can bind.
      std::string addr = key.substr(0, key.find(' ', key.find(' ') + 1));
      h = std::find_if(hl.begin(), hl.end(),
                       [&](const handover::Listener& x) { return x.key.rfind(addr + " ", 0) == 0; });
      if (h != hl.end()) {
        log::info("service {}: {} has other socket options now: opened anew", sc->name, l.spec.to_string());
        ::close(h->fd);
        hl.erase(h);
      }
    }
    // A socket systemd passed for this address: adopted, not bound again.
    auto adopt = std::find_if(passed_.begin(), passed_.end(), [&](const listener::Passed& p) {
      return p.datagram == l.datagram && p.address == l.spec.to_string();
    });
    if (adopt != passed_.end()) {
      log::info("service {}: listening on {}{} (passed {})", sc->name, l.datagram ? "udp " : "", l.spec.to_string(),
                adopt->describe());
      svc->listeners.push_back(
          std::make_unique<Listener>(svc.get(), l, asio::posix::stream_descriptor(io_, adopt->fd), std::move(key)));
      passed_.erase(adopt);
      continue;
    }
    std::error_code ec;
    UniqueFd fd = listener::open(l.spec, lo, ec, l.datagram);
    if (!fd) {
      log::error("{}:{}:{}: service {}: cannot listen on {}: {}", l.where.file, l.where.line, l.where.column, sc->name,
                 l.spec.to_string(), ec.message());
      return nullptr;
    }
    svc->listeners.push_back(
        std::make_unique<Listener>(svc.get(), l, asio::posix::stream_descriptor(io_, fd.release()), std::move(key)));
    log::info("service {}: listening on {}{}", sc->name, l.datagram ? "udp " : "", l.spec.to_string());
  }
  return svc;
}

bool Daemon::open_listeners() {
  std::vector<std::string> warnings;
  passed_ = listener::take_passed_sockets(warnings);
  for (const auto& w : warnings) log::warning("{}", w);
  for (const config::Service& sc : cfg_.services) {
    std::vector<Listener*> reuse;
    auto svc = build_service(std::make_shared<const config::Service>(sc), nullptr, reuse);
    if (!svc && handed_) {  // an upgrade: the others serve on (its instances run to their end)
      log::error("upgrade: service {} could not be set up in the new image; it is not served", sc.name);
      continue;
    }
    if (!svc) return false;
    services_.push_back(std::move(svc));
  }
  for (const auto& p : passed_) {
    log::warning("passed {} matches no listener of the configuration: closed", p.describe());
    ::close(p.fd);
  }
  passed_.clear();
  if (handed_) {
    for (const auto& h : handed_->listeners) {
      log::info("upgrade: service {}'s listener ({}) is not in the configuration any more: closed", h.service, h.key);
      ::close(h.fd);
    }
    handed_->listeners.clear();
    for (auto& h : handed_->syslogs)  // of a service gone or without log_syslog now
      if (h.fd >= 0) {
        ::close(std::exchange(h.fd, -1));
        ::unlink(h.path.c_str());
      }
  }
  return true;
}

// Reload (SIGHUP, `superd reload`): re-read the configuration; if anything is wrong, keep the
// running one and say why.
std::string Daemon::reload() {
  notify_.reloading();
  std::string report = reload_config();
  notify_.send("READY=1");  // reloaded, or still serving the running configuration
  return report;
}

std::string Daemon::reload_config() {
  config::Problems problems;
  const auto& g0 = cfg_.global;  // a capsule's superd reads its capsule's files again
  config::Config next = g0.capsule.empty()
                            ? load_config(opt_.config_path, opt_.xinetd_path, problems)
                            : config::load_capsule(g0.capsule, g0.capsule_home, g0.runtime_root, problems);
  std::string report;
  for (const auto& p : config::skip_failed_services(next, problems))
    log::error("reload: {} (service {} is not served)", p.to_string(), p.service);
  for (const auto& p : problems.list()) report += p.to_string() + "\n";
  if (!problems.empty()) {
    // One line per problem: log lines are escaped, so an embedded newline would not break a line.
    log::error("reload: {} problem(s); the running configuration stays", problems.list().size());
    for (const auto& p : problems.list()) log::error("reload: {}", p.to_string());
    return report;
  }
  const auto &g = next.global, &h = cfg_.global;
  if (g.uid_min != h.uid_min || g.uid_max != h.uid_max || g.runtime_root != h.runtime_root ||
      g.state_root != h.state_root || g.cache_root != h.cache_root || g.logs_root != h.logs_root ||
      g.capsule_first != h.capsule_first || g.capsule_last != h.capsule_last) {
    report = "reload: dynamic_uid_range, capsule_uid_range and the roots cannot change while running; restart superd\n";
    log::error("{}", report);
    return report;
  }
  // What was started or stopped at run time stays so.
  if (std::string runtime = apply_runtime(next); !runtime.empty()) {
    log::error("reload: the services started at run time do not fit; the running configuration stays");
    return "reload: the services started at run time do not fit:\n" + runtime;
  }
  std::vector<std::unique_ptr<Service>> built;
  std::vector<std::vector<Listener*>> reuses;
  for (const config::Service& sc : next.services) {
    Service* previous = find_service(sc.name);
    reuses.emplace_back();
    auto svc = build_service(std::make_shared<const config::Service>(sc), previous, reuses.back());
    if (!svc) {
      report = "reload: a service could not be set up (see the log); the running configuration stays\n";
      log::error("{}", report);
      return report;  // `built` goes: its listeners close, its group leases drop
    }
    built.push_back(std::move(svc));
  }
  // Commit: the counters carry over, unchanged listeners are taken over, the old services retire.
  for (auto& b : built)
    for (auto& os : services_)
      if (os->cfg->name == b->cfg->name) b->counters = os->counters;
  for (size_t i = 0; i < built.size(); ++i)
    for (Listener* l : reuses[i])
      for (auto& os : services_)
        for (auto& ol : os->listeners)
          if (ol.get() == l) {
            l->service = built[i].get();
            built[i]->listeners.push_back(std::move(ol));
          }
  for (auto& os : services_) {
    for (auto& ol : os->listeners)
      if (ol) {
        boost::system::error_code ignored;
        ol->sd.close(ignored);
        listener::unlink_path(ol->spec);
      }
    os->listeners.clear();
  }
  // A wait-mode instance of the old service still holds the sockets: its successor waits for it.
  for (auto& b : built)
    for (auto& os : services_)
      if (b->wait_mode && os->state == State::wait_running && os->cfg->name == b->cfg->name) to_wait_running(*b);
  for (auto& os : services_)
    if (os->policy.gate().live() > 0) retired_.push_back(std::move(os));
  services_ = std::move(built);  // the old services without instances go, and their group leases
  // A moved listener may still have its wait pending (arm() then does nothing): its handler
  // reads l.service, which now is the new service.
  for (auto& s : services_)
    for (auto& l : s->listeners) arm(*l);
  cfg_.services = std::move(next.services);
  cfg_.disabled = std::move(next.disabled);
  cfg_.templates = std::move(next.templates);
  cfg_.failed = std::move(next.failed);
  if (open_own_log(next.global.log_sink)) cfg_.global.log_sink = next.global.log_sink;
  log::info("reloaded: {} services", services_.size());
  return {};
}

void Daemon::arm(Listener& l) {
  if (l.armed || stopping_ || l.service->state != State::polling || upgrade_holds(*l.service)) return;
  l.armed = true;
  l.sd.async_wait(asio::posix::descriptor_base::wait_read, [this, &l](boost::system::error_code ec) {
    // Aborted: the listener was closed (shutdown, reload) and may already be gone.
    if (ec == asio::error::operation_aborted) return;
    l.armed = false;
    if (!ec && !stopping_) on_readable(l);
  });
}

// Whether `s` is still a service of ours and `l` one of its listeners (a reload may have freed
// either since a handler was posted).
bool Daemon::alive(const Service* s, const Listener* l) const {
  for (const auto* list : {&services_, &retired_})
    for (const auto& svc : *list)
      if (svc.get() == s)
        for (const auto& x : svc->listeners)
          if (x.get() == l) return true;
  return false;
}

// --- State transitions --------------------------------------------------------------------

void Daemon::set_state(Service& s, State to) {
  if (!transition_allowed(s.state, to)) {
    log::error("service {}: internal error: state {} -> {} is not a transition; ignored", s.cfg->name,
               state_name(s.state), state_name(to));
    return;
  }
  s.state = to;
}

// Polling again (or still): arm every listener. Asio's wait completes on new readiness only (it
// never tests the socket first, and epoll is edge-triggered): a client that queued while the
// service did not poll would sit in the backlog until the next one arrives. So look once, and
// serve it from the loop.
void Daemon::to_polling(Service& s) {
  if (s.state == State::stopping) return;
  set_state(s, State::polling);
  for (auto& l : s.listeners) {
    arm(*l);
    pollfd pfd{l->sd.native_handle(), POLLIN, 0};
    if (l->armed && ::poll(&pfd, 1, 0) == 1) {
      asio::post(io_, [this, sp = &s, lp = l.get()] {
        if (!alive(sp, lp) || stopping_ || sp->state != State::polling) return;
        on_readable(*lp);  // harmless if the wait fires too: accept finds EAGAIN, arm() sees it armed
      });
    }
  }
}

// At max_connections (or the zygotes' backlog): stop polling every listener of the service; the
// kernel's backlog holds new connections until an instance ends (tcpserver's behaviour). The
// service itself stays enabled.
void Daemon::to_full(Service& s) {
  if (s.state == State::full) return;
  if (s.policy.gate().full())
    log::info("service {}: max_connections={} reached, deferring new connections", s.cfg->name,
              s.cfg->socket.limits.max_connections);
  set_state(s, State::full);
}

// Not polling until `until`: over max_connection_rate with the "defer" action (`for_rate`: the
// timer then serves the connection held back), or backing off (a wait-mode instance that failed
// at once, no UID left), so that a socket that stays readable cannot make superd spin.
void Daemon::to_held(Service& s, Clock::time_point until, bool for_rate) {
  set_state(s, State::held);
  if (!s.hold_timer) s.hold_timer = std::make_unique<asio::steady_timer>(io_);
  s.hold_timer->expires_at(until);
  s.hold_timer->async_wait([this, &s, for_rate](boost::system::error_code ec) {
    if (ec || stopping_) return;  // aborted: the service is gone or shutting down
    set_state(s, State::polling);
    if (for_rate) return on_rate_room(s);
    to_polling(s);
  });
}

void Daemon::to_wait_running(Service& s) {
  set_state(s, State::wait_running);
}

// Shutdown: the listeners close (a UNIX socket's path goes), a connection held back by the rate
// limit too, and nothing polls again.
void Daemon::to_stopping(Service& s) {
  s.state = State::stopping;
  for (auto& l : s.listeners) {
    boost::system::error_code ignored;
    l->sd.close(ignored);
    listener::unlink_path(l->spec);
  }
  s.deferred.reset();
  if (s.hold_timer) s.hold_timer->cancel();
}

// An instance, session or unanswered request of `s` is gone: admission counts it out (the
// mirror of Gate::enter), and a full service polls again once it has room.
void Daemon::count_out(Service& s, const net::SourceKey& source) {
  s.policy.gate().leave(source);
  if (s.state == State::full && s.has_room()) to_polling(s);
}

// The same, and a retired service whose last instance this was goes away (so `s` may be gone
// when this returns).
void Daemon::instance_ended(Service& s, const net::SourceKey& source) {
  count_out(s, source);
  maybe_retire(s);
}

// A retired service (replaced by a reload) goes with its last instance; `s` may be gone after.
void Daemon::maybe_retire(Service& s) {
  if (s.policy.gate().live() != 0) return;
  for (auto it = retired_.begin(); it != retired_.end(); ++it)
    if (it->get() == &s) {
      // A wait-mode service reloaded while its instance ran: its successor polls from now on.
      for (auto& n : services_)
        if (n->wait_mode && n->state == State::wait_running && n->cfg->name == s.cfg->name &&
            n->policy.gate().live() == 0)
          to_polling(*n);
      retired_.erase(it);
      return;
    }
}

}  // namespace superd::daemon
