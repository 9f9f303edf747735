// The control requests (status, reload, run) on the control socket (daemon/control_server.hpp
// bounds the accepts), the status JSON, and `superd run`: a transient service under a fresh (or,
// with --unit, a stable named) UID, in the same sandbox and with the same cleanup as a
// connection, the caller's stdio passed through.
#include "daemon/hub.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "control/control.hpp"
#include "control/request.hpp"
#include "util/log.hpp"

extern char** environ;

namespace superd::daemon {

bool Daemon::open_control() {
  std::string path = control::socket_path(cfg_.global.runtime_root);
  if (auto ec = control_.open(path, handed_ ? handed_->control_fd : -1)) {
    log::error("control socket {}: {}", path, ec.message());
    return false;
  }
  return true;
}

void Daemon::on_control_request(std::shared_ptr<asio::posix::stream_descriptor> conn) {
  std::string msg;
  std::vector<UniqueFd> fds;
  if (auto ec = control::recv_message(conn->native_handle(), msg, &fds, 3)) {
    log::warning("control: bad request: {}", ec.message());
    return;
  }
  auto reply_error = [&](const std::string& e) {
    control::send_message(conn->native_handle(), nlohmann::json{{"error", e}}.dump());
  };
  std::string error;
  auto req = control::parse_request(msg, error);
  if (!req) return reply_error(error);
  using Op = control::Request::Op;
  if (req->op == Op::upgrade) return upgrade(conn, req->binary);
  // Nothing changes while an upgrade drains: the new image reads the configuration anyway.
  if (upgrade_ && req->op != Op::status)
    return reply_error("an upgrade is in progress; try again when it has finished");
  switch (req->op) {
    case Op::run:
      if (fds.size() != 3) return reply_error("run needs stdin, stdout and stderr");
      return handle_run(conn, *req, std::move(fds));
    case Op::reload: {
      std::string problems = stopping_ ? "shutting down" : reload();
      control::send_message(
          conn->native_handle(),
          (problems.empty() ? nlohmann::json{{"ok", true}} : nlohmann::json{{"error", problems}}).dump());
      return;
    }
    case Op::status:
      control::send_message(conn->native_handle(), status_json().dump());
      return;
    case Op::capsule:
      if (stopping_) return reply_error("shutting down");
      if (req->action == "start") return capsule_start(req->name, conn);
      if (req->action == "stop") return capsule_stop(req->name, conn);
      if (req->action == "list") {
        control::send_message(conn->native_handle(), nlohmann::json{{"capsules", capsules_json()}}.dump());
        return;
      }
      return reply_error("unknown capsule action \"" + req->action + "\"");
    case Op::start:
    case Op::stop:
    case Op::keep: {
      if (stopping_) return reply_error("shutting down");
      std::string unit_error;
      if (req->op == Op::start)
        unit_error = start_unit(req->name);
      else if (req->op == Op::stop)
        unit_error = stop_unit(req->name);
      else
        keep_unit(req->name);
      control::send_message(
          conn->native_handle(),
          (unit_error.empty() ? nlohmann::json{{"ok", true}} : nlohmann::json{{"error", unit_error}}).dump());
      return;
    }
    case Op::upgrade:
      break;  // handled above
  }
}

// The pool's occupancy: held, free, and what blocks the UIDs that are neither (with a sample).
nlohmann::json Daemon::pool_json() const {
  uid_pool::BlockedSummary b = pool_.blocked_summary();
  nlohmann::json reasons = nlohmann::json::object(), sample = nlohmann::json::array();
  auto names = [](uint8_t bits) {
    nlohmann::json list = nlohmann::json::array();
    for (int k = 0; k < uid_pool::kBlockKinds; ++k)
      if (bits & (1 << k)) list.push_back(uid_pool::block_name(k));
    return list;
  };
  for (int k = 0; k < uid_pool::kBlockKinds; ++k)
    if (b.by_reason[k]) reasons[uid_pool::block_name(k)] = b.by_reason[k];
  for (const auto& [uid, bits] : b.sample) sample.push_back({{"uid", uid}, {"why", names(bits)}});
  return {{"first", pool_.first()},
          {"last", pool_.last()},
          {"size", pool_.size()},
          {"held", pool_.held()},
          {"quarantined", pool_.quarantined()},
          {"blocked", b.unavailable},
          {"free", pool_.size() - pool_.held() - b.unavailable},
          {"blocked_by", reasons},
          {"blocked_sample", sample}};
}

// What `superd status` shows: services and listeners, live instances, pool occupancy.
nlohmann::json Daemon::status_json() const {
  auto now = Clock::now();
  nlohmann::json services = nlohmann::json::array();
  for (const auto& s : services_) {
    nlohmann::json listen = nlohmann::json::array();
    for (const auto& l : s->listeners) listen.push_back((l->datagram ? "udp " : "") + l->spec.to_string());
    services.push_back({{"name", s->cfg->name},
                        {"listen", listen},
                        {"live", s->policy.gate().live()},
                        {"max_connections", s->cfg->socket.limits.max_connections},
                        {"paused", s->state == State::full || s->state == State::held},
                        {"state", state_name(s->state)},
                        {"mode", s->internal ? std::string("internal ") + inloop::internal_name(*s->internal)
                                 : s->cfg->service.redirect ? "redirect " + s->cfg->service.redirect->to_string()
                                 : s->wait_mode             ? std::string("wait")
                                                            : std::string("accept")},
                        {"group", s->group ? nlohmann::json(s->group->uid()) : nlohmann::json(nullptr)},
                        {"accepted", s->counters.accepted},
                        {"refused", s->counters.refused},
                        {"failed", s->counters.failed},
                        {"proxy_health_checks", s->counters.proxy_local},
                        {"uptime_s", std::chrono::duration<double>(now - s->counters.since).count()},
                        {"origin", s->cfg->origin == config::Origin::file   ? "file"
                                   : s->cfg->origin == config::Origin::link ? "link"
                                                                            : "runtime"}});
  }
  // Templates and the instances of each that run now.
  nlohmann::json templates = nlohmann::json::array();
  for (const auto& [name, file] : cfg_.templates) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& s : services_)
      if (s->cfg->name.rfind(name, 0) == 0) names.push_back(s->cfg->name);
    templates.push_back({{"name", name}, {"file", file}, {"instances", names}});
  }
  nlohmann::json instances = nlohmann::json::array();
  for (const auto& [pid, inst] : instances_)
    instances.push_back({{"service", inst->service->cfg->name},
                         {"serial", inst->serial},
                         {"uid", inst->uid},
                         {"pid", pid},
                         {"peer", inst->peer},
                         {"age_s", std::chrono::duration<double>(now - inst->started).count()}});
  for (const auto& [serial, se] : sessions_)
    instances.push_back({{"service", se.service->cfg->name},
                         {"serial", serial},
                         {"uid", 0},
                         {"pid", 0},
                         {"peer", se.peer},
                         {"age_s", std::chrono::duration<double>(now - se.started).count()}});
  nlohmann::json failed = nlohmann::json::array();
  for (const auto& f : cfg_.failed) failed.push_back({{"name", f.name}, {"reason", f.reason}});
  return {{"pid", ::getpid()},
          {"failed", failed},
          {"services", services},
          {"disabled", cfg_.disabled},
          {"templates", templates},
          {"capsules", capsules_json()},
          {"instances", instances},
          {"pool", pool_json()},
          {"idmap",
           {{"namespaces", idmap_cache_.size()},
            {"built_ahead", idmap_cache_.built_ahead()},
            {"built_on_connection", idmap_cache_.built_on_connection()}}}};
}

void Daemon::handle_run(std::shared_ptr<asio::posix::stream_descriptor> conn, const control::Request& req,
                        std::vector<UniqueFd> fds) {
  auto reply = [&](const nlohmann::json& j) { control::send_message(conn->native_handle(), j.dump()); };
  const std::vector<std::string>& argv = req.argv;
  const std::vector<std::string>& props = req.properties;
  const std::string& unit = req.unit;
  if (argv.empty()) return reply({{"error", "no command given"}});
  if (!unit.empty() && live_units_.count(unit)) return reply({{"error", "unit " + unit + " is already running"}});
  uint64_t serial = ++serial_;
  std::string name = unit.empty() ? "run-" + std::to_string(serial) : unit;
  config::Problems problems;
  auto svc_cfg = config::parse_run_service(props, argv, name, problems);
  if (svc_cfg) {
    config::Config one;
    one.services.push_back(*svc_cfg);
    config::validate_system(one, problems);
  }
  if (!problems.empty()) {
    std::string e;
    for (const auto& pr : problems.list()) e += (e.empty() ? "" : "\n") + pr.key + ": " + pr.message;
    return reply({{"error", e}});
  }
  // The config must live as long as the instance: the Service owns it.
  auto holder = std::make_shared<config::Service>(std::move(*svc_cfg));
  auto service_plan = spawn::make_service_plan(*holder, roots_, environ, host_limits_);
  if (!service_plan) return reply({{"error", service_plan.error()}});
  auto owned = std::make_unique<Service>(holder, std::move(*service_plan), admission::Policy({}, {}, {}));
  const auto& sb = holder->service.sandbox;
  auto dirs = sandbox::boundary_dirs(sb, roots_);
  // A unit's user name is the names file's and USER's; a one-off run is superd-UID.
  std::string user = unit.empty() ? std::string() : uid_pool::user_name_for(unit);
  uid_pool::LeaseInfo info{serial, uid_pool::Leases::now_ms(), name, user};
  std::optional<uid_pool::Lease> lease;
  if (!unit.empty()) {
    // A named lease prefers the owner of the unit's existing directory: no chown needed.
    lease = leases_.acquire_named(unit, sandbox::existing_owner(dirs, sandbox::OwnerLookup::any_owner), info);
  } else {
    lease = leases_.acquire(info);
  }
  if (!lease) return reply({{"error", "dynamic UID pool exhausted"}});
  uint32_t uid = lease->uid();
  std::string failed;
  if (auto ec = sandbox::prepare_dirs(sb, roots_, uid, uid, 0, failed))
    return reply({{"error", "cannot prepare " + failed + ": " + ec.message()}});
  spawn::InstancePlan plan;
  spawn::make_run_plan(plan, owned->plan, uid, serial, user.empty() ? uid_pool::connection_user_name(uid) : user);
  plan.stdin_fd = fds[0].get();
  plan.stdout_fd = fds[1].get();
  plan.stderr_fd = fds[2].get();
  plan.null_fd = null_fd_.get();
  spawn::Launch started = spawn::launch(plan);
  fds.clear();
  if (!started) {
    log::error("FAIL {} serial={} peer=run uid={}: {}", name, serial, uid, started.failure);
    return reply({{"error", started.failure}});
  }
  // stderr goes to the caller; the log pipe slot holds a /dev/null duplicate nobody writes.
  UniqueFd no_stderr(::fcntl(null_fd_.get(), F_DUPFD_CLOEXEC, 3));
  pid_t pid = started.child.pid;
  Service& svc = *owned;
  Instance& inst = adopt(svc, std::move(started.child), std::move(no_stderr), serial, std::move(*lease), uid, "run",
                         net::source_key_uid(0));
  inst.owned_service = std::move(owned);
  inst.unit = unit;
  inst.control =
      std::make_unique<asio::posix::stream_descriptor>(io_, ::fcntl(conn->native_handle(), F_DUPFD_CLOEXEC, 3));
  if (!unit.empty()) live_units_.insert(unit);
  reply({{"ok", true}, {"uid", uid}, {"pid", pid}});
  // The caller went away (Ctrl-C, killed): end the instance.
  inst.control->async_wait(asio::posix::descriptor_base::wait_read, [this, pid](boost::system::error_code e) {
    if (e) return;
    auto it = instances_.find(pid);
    if (it == instances_.end()) return;
    log::info("run {} serial={}: caller disconnected, killing", it->second->service->cfg->name, it->second->serial);
    spawn::pidfd_signal(it->second->pidfd.native_handle(), SIGKILL);
  });
}

}  // namespace superd::daemon
