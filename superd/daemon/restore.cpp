// Zero-downtime upgrade, the new image's half (the old one's is daemon/upgrade.cpp): the daemon
// starts as it always does, except that what the state names is taken over instead of made:
//
//   restore_begin ...... before anything changes: the state read and checked against the
//                        configuration (range and roots as before, units that still fit); if
//                        not, rollback() re-executes the old binary, which resumes.
//   prepare_runtime .... the lease table from its fd (the lock never let go); the handed leases
//                        taken again as they were; every other record is an orphan, swept as
//                        after a crash.
//   open_listeners ..... a listener whose key (address and options) matches a handed socket
//                        takes it; a service's group lease is the one it had.
//   restore_instances .. each instance joins the books of its service (of the same name; a
//                        service that is gone gets a placeholder, retired, that cleans as much
//                        as any), with its runtime_max deadline where it was; the old zygotes
//                        are reaped.
//   restore_finish ..... after READY=1: the `superd upgrade` that asked gets its answer.
#include "daemon/hub.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "control/control.hpp"
#include "util/log.hpp"

extern char** environ;

namespace superd::daemon {

namespace {
Clock::time_point from_ns(int64_t ns) {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

[[noreturn]] void exec_back(handover::State st, const std::string& why) {
  st.rollback = why;
  std::error_code ec;
  UniqueFd mem = handover::write(st, ec);
  if (mem && !handover::keep_across_exec(handover::fds_of(st), true)) {
    std::vector<char*> argv;
    for (auto& a : st.argv) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::setenv(handover::kStateEnv, std::to_string(mem.get()).c_str(), 1);
    ::fexecve(st.exe_fd, argv.data(), environ);
    ec = {errno, std::generic_category()};
  }
  log::error("upgrade: cannot go back to the image before ({}): exiting; a restarted superd sweeps what is left",
             ec.message());
  ::_exit(1);
}
}  // namespace

void rollback_upgrade(int handover_fd, const std::string& why) {
  std::string error;
  auto st = handover::read(handover_fd, error);
  if (!st) return log::error("upgrade: {}", error);
  if (!st->rollback.empty()) return;  // this is the image gone back to: nothing older to go to
  log::error("upgrade: the new image cannot start ({}); going back to the image before", why);
  exec_back(std::move(*st), why);
}

void Daemon::rollback(const std::string& why) {
  log::error("upgrade: the new image cannot take the hand-over ({}); going back to the image before", why);
  exec_back(std::move(*handed_), why);
}

// The state, checked before anything of it is used.
bool Daemon::restore_begin() {
  std::string error;
  auto st = handover::read(opt_.handover_fd, error);
  if (!st) {
    log::error("upgrade: {}", error);
    return false;  // nothing to go back with: the caller exits, a restart sweeps
  }
  handed_ = std::make_unique<handover::State>(std::move(*st));
  const auto& g = cfg_.global;
  if (handed_->rollback.empty()) {
    if (g.uid_min != handed_->uid_min || g.uid_max != handed_->uid_max || g.runtime_root != handed_->runtime_root)
      rollback("dynamic_uid_range and runtime_root cannot change in an upgrade; restart superd to change them");
  }
  for (const auto& n : handed_->started_units) started_.insert(n);
  for (const auto& n : handed_->stopped_units) stopped_[n] = config::Service{};
  if (std::string report = apply_runtime(cfg_); !report.empty()) {
    if (handed_->rollback.empty()) rollback("the services started at run time do not fit: " + report);
    log::error("upgrade: {}", report);
  }
  serial_ = handed_->serial;
  return true;
}

Service& Daemon::placeholder_service(const std::string& name) {
  for (auto& s : retired_)
    if (s->cfg->name == name && s->listeners.empty() && !s->zygotes) return *s;
  auto sc = std::make_shared<config::Service>();
  sc->name = name;
  auto svc = std::make_unique<Service>(sc, spawn::ServicePlan{},
                                       admission::Policy(sc->socket.limits, sc->socket.access_times, {}));
  retired_.push_back(std::move(svc));
  return *retired_.back();
}

void Daemon::restore_instances() {
  // The old zygotes: our children, their sockets closed by the exec; reaped here, never used.
  for (pid_t z : handed_->zygotes) {
    siginfo_t si{};
    if (::waitid(P_PID, static_cast<id_t>(z), &si, WEXITED | WNOHANG | WNOWAIT) != 0) continue;  // not ours
    ::kill(z, SIGKILL);
    int st;
    while (::waitpid(z, &st, 0) < 0 && errno == EINTR) {
    }
  }
  for (auto& h : handed_->instances) {
    // An instance of a service a reload replaced keeps to itself: the current service's
    // settings (its sandbox, and so which IPC its cleanup sweeps) need not be its own.
    Service* s = h.retired ? &placeholder_service(h.service) : find_service(h.service);
    if (!s) {
      log::warning("upgrade: service {} is no longer configured; its instance pid {} runs on to its end", h.service,
                   h.pid);
      s = &placeholder_service(h.service);
    }
    ::fcntl(h.pidfd, F_SETFD, FD_CLOEXEC);
    ::fcntl(h.err, F_SETFD, FD_CLOEXEC);
    auto inst = std::make_unique<Instance>(io_, h.pidfd, h.err);
    inst->service = s;
    inst->serial = h.serial;
    inst->uid = h.uid;
    inst->pid = h.pid;
    inst->peer = h.peer;
    inst->source = h.source;
    inst->started = from_ns(h.started_ns);
    inst->term_sent = h.term_sent;
    inst->err_line = h.err_line;
    if (h.leased) {
      if (auto it = handed_leases_.find(h.uid); it != handed_leases_.end()) {
        inst->lease = std::move(it->second);
        handed_leases_.erase(it);
      } else {
        log::error("upgrade: instance pid {} came without its lease of UID {}", h.pid, h.uid);
      }
    }
    s->policy.gate().enter(h.source);
    Instance& ref = *inst;
    instances_.emplace(h.pid, std::move(inst));
    watch_instance(ref);
    if (h.deadline_ns) arm_runtime_timer(ref, from_ns(h.deadline_ns), h.term_sent);
  }
  for (const auto& name : handed_->wait_running)
    if (Service* s = find_service(name); s && s->wait_mode && s->state == State::polling) to_wait_running(*s);
  for (const auto& c : handed_->counters)
    if (Service* s = find_service(c.service)) {
      auto& k = s->counters;
      k.accepted = c.accepted;
      k.refused = c.refused;
      k.failed = c.failed;
      k.ended_ok = c.ended_ok;
      k.ended_error = c.ended_error;
      k.ended_signal = c.ended_signal;
      k.zygote_restarts = c.zygote_restarts;
      k.proxy_local = c.proxy_local;
      k.since = from_ns(c.since_ns);
    }
  restore_capsules();
  // Requests that came in just before the exec: answered here (a reload runs in this image).
  for (int fd : handed_->control_pending) control_.adopt(fd);
  // Leases the state named that nothing claimed (a group of a service gone): they return now.
  handed_leases_.clear();
}

void Daemon::restore_finish() {
  if (!handed_) return;
  const auto& st = *handed_;
  auto now = Clock::now();
  double ms = std::chrono::duration<double, std::milli>(now - from_ns(st.requested_ns)).count();
  double paused_ms = std::chrono::duration<double, std::milli>(now - from_ns(st.paused_ns)).count();
  if (!st.rollback.empty()) {
    log::error("upgrade failed: the new image gave up ({}); this image keeps serving", st.rollback);
    if (st.reply_fd >= 0) control::send_message(st.reply_fd, nlohmann::json{{"error", st.rollback}}.dump());
  } else {
    log::info(
        "upgraded from superd {} in {:.1f} ms (listeners paused {:.1f} ms): {} instances, {} listeners, {} capsules "
        "taken over",
        st.version, ms, paused_ms, st.instances.size(), st.listener_count, st.capsules.size());
    if (st.reply_fd >= 0)
      control::send_message(st.reply_fd, nlohmann::json{{"ok", true},
                                                        {"pid", ::getpid()},
                                                        {"from", st.version},
                                                        {"version", SUPERD_VERSION},
                                                        {"ms", ms},
                                                        {"paused_ms", paused_ms},
                                                        {"instances", static_cast<uint64_t>(st.instances.size())}}
                                             .dump());
  }
  if (st.reply_fd >= 0) ::close(st.reply_fd);
  if (st.exe_fd >= 0) ::close(st.exe_fd);
  handed_.reset();
}

}  // namespace superd::daemon
