// Services started and stopped at run time (`superd start`/`stop`, and `--now` of `enable` and
// `disable`): template instances that have no file, and services of the configuration stopped
// until superd restarts. The two sets survive reloads: reload() calls apply_runtime() on what
// it read. Starting builds and arms one service and stopping retires one, like a reload does
// for a service that changed, without touching the others.
#include "daemon/hub.hpp"

#include "config/template.hpp"
#include "util/log.hpp"

namespace superd::daemon {

Service* Daemon::find_service(const std::string& name) const {
  for (const auto& s : services_)
    if (s->cfg->name == name) return s.get();
  return nullptr;
}

std::string Daemon::apply_runtime(config::Config& next) {
  std::string report;
  for (auto it = started_.begin(); it != started_.end();) {
    bool has_file = false;
    for (const auto& s : next.services) has_file |= s.name == *it;
    config::Problems problems;
    auto inst = has_file ? std::nullopt : config::load_instance(next, *it, problems);
    if (inst) {
      next.services.push_back(std::move(*inst));
    } else if (!has_file) {
      for (const auto& p : problems.list()) report += p.to_string() + "\n";
    }
    // A file for it now exists (enable): the file's instance from now on.
    it = has_file ? started_.erase(it) : std::next(it);
  }
  for (auto it = stopped_.begin(); it != stopped_.end();) {
    auto at = std::find_if(next.services.begin(), next.services.end(), [&](auto& s) { return s.name == it->first; });
    if (at == next.services.end()) {
      it = stopped_.erase(it);  // its file is gone: nothing left to stop
      continue;
    }
    it->second = std::move(*at);
    next.services.erase(at);
    ++it;
  }
  config::Problems problems;
  config::validate(next, problems);
  for (const auto& p : problems.list()) report += p.to_string() + "\n";
  return report;
}

std::string Daemon::start_unit(const std::string& name) {
  if (find_service(name)) return name + " is already running";
  std::optional<config::Service> sc;
  config::Problems problems;
  if (auto st = stopped_.find(name); st != stopped_.end()) {
    sc = st->second;
  } else {
    sc = config::load_instance(cfg_, name, problems);
    if (!sc && problems.empty()) problems.add({}, "", "unknown service " + name);
  }
  if (sc) {
    config::Config next;
    next.global = cfg_.global;
    for (const auto& s : services_) next.services.push_back(*s->cfg);
    next.services.push_back(*sc);
    config::validate(next, problems);
    next.services = {*sc};
    config::validate_system(next, problems);
  }
  if (!problems.empty()) {
    std::string report;
    for (const auto& p : problems.list()) report += (report.empty() ? "" : "\n") + p.to_string();
    return report;
  }
  std::vector<Listener*> reuse;
  auto svc = build_service(std::make_shared<const config::Service>(*sc), nullptr, reuse);
  if (!svc || !reuse.empty()) return "cannot start " + name + " (see superd's log)";
  Service& s = *svc;
  services_.push_back(std::move(svc));
  cfg_.services.push_back(*sc);
  if (!stopped_.erase(name)) started_.insert(name);
  to_polling(s);
  log::info("started {}", name);
  return {};
}

std::string Daemon::stop_unit(const std::string& name) {
  Service* s = find_service(name);
  if (!s) return name + " is not running";
  auto it = std::find_if(services_.begin(), services_.end(), [&](auto& p) { return p.get() == s; });
  to_stopping(*s);
  // Its instances end as at shutdown: TERM, then KILL after its timeout_stop.
  std::vector<pid_t> pids;
  for (auto& [pid, inst] : instances_)
    if (inst->service == s) {
      spawn::pidfd_signal(inst->pidfd.native_handle(), SIGTERM);
      pids.push_back(pid);
    }
  if (!pids.empty()) {
    auto timer = std::make_shared<asio::steady_timer>(io_, s->cfg->service.timeout_stop);
    timer->async_wait([this, timer, pids, s](boost::system::error_code ec) {
      if (ec) return;
      for (pid_t pid : pids)
        if (auto i = instances_.find(pid); i != instances_.end() && i->second->service == s)
          spawn::pidfd_signal(i->second->pidfd.native_handle(), SIGKILL);
    });
  }
  auto cfg = std::find_if(cfg_.services.begin(), cfg_.services.end(), [&](auto& c) { return c.name == name; });
  if (!started_.erase(name) && cfg != cfg_.services.end()) stopped_.emplace(name, *cfg);
  if (cfg != cfg_.services.end()) cfg_.services.erase(cfg);
  if (s->policy.gate().live() > 0) retired_.push_back(std::move(*it));
  services_.erase(it);  // without instances it goes now, with its group lease
  log::info("stopped {}", name);
  return {};
}

// `disable` without --now: the link goes, the running instance stays until `stop` (a reload
// would otherwise drop it), as systemctl's does.
void Daemon::keep_unit(const std::string& name) {
  if (find_service(name)) started_.insert(name);
}

}  // namespace superd::daemon
