// Instances: a started process joins the books (adopt), the loop watches its pidfd, stderr and
// runtime_max, and reaps it; its lease then goes to the cleanup batch. Also the zygotes'
// answers, which end in adopt() or in a FAIL line.
//
// Each counter one function increments, its mirror decrements: Gate::enter at admission (a
// zygote request in flight counts), Gate::leave in count_out when the instance, session or
// unanswered request is gone.
#include "daemon/hub.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control/control.hpp"
#include "util/log.hpp"

namespace superd::daemon {

spawn::ZygotePool::Events Daemon::zygote_events(Service& s) {
  spawn::ZygotePool::Events ev;
  ev.started = [this, &s](spawn::Pending p, spawn::Child child, std::optional<int> early) {
    uint32_t uid = p.lease.uid();
    Instance& inst = adopt(s, std::move(child), std::move(p.err_read), p.serial, std::move(p.lease), uid,
                           std::move(p.peer), p.source);
    s.counters.spawned(Clock::now() - p.accepted);
    // Started after SIGTERM's round of signals: it gets its own (the deadline's KILL covers it too).
    if (stopping_) spawn::pidfd_signal(inst.pidfd.native_handle(), SIGTERM);
    // Already reaped by the SIGCHLD drain, before the zygote's answer was read: end it now.
    if (early) asio::post(io_, [this, pid = inst.pid, es = ExitStatus::from_wait(*early)] { on_reaped(pid, es); });
  };
  ev.failed = [this, &s](spawn::Pending p, std::string failure) {
    s.log_fail(p.serial, p.peer, p.lease.uid(), failure);
    count_out(s, p.source);  // the lease drops with `p`: the child never ran service code
  };
  ev.lost = [this, &s](std::vector<spawn::Pending> unanswered, pid_t zygote, std::string why) {
    log::error("service {}: its zygote (pid {}) is gone ({}); {} unanswered requests failed", s.cfg->name, zygote, why,
               unanswered.size());
    for (spawn::Pending& p : unanswered) {
      s.log_fail(p.serial, p.peer, p.lease.uid(),
                 "the zygote died before answering; UID blocked until nothing of it is left");
      host_.zygote_lost(p.lease.uid());  // before the lease drops: the UID is never free between
      count_out(s, p.source);
    }
  };
  ev.replacing = [&s] {
    ++s.counters.zygote_restarts;
    log::error("service {}: its zygote is gone; starting a new one", s.cfg->name);
  };
  ev.answered = [this, &s] {
    if (s.state == State::full && s.has_room()) to_polling(s);
    maybe_retire(s);  // last but one: it may destroy `s`
    maybe_finish_shutdown();
  };
  return ev;
}

// A started instance joins the books (admission counted it already): its lease record gets the
// PID, the loop watches its pidfd, stderr and runtime_max.
Instance& Daemon::adopt(Service& s, spawn::Child child, UniqueFd err_read, uint64_t serial, uid_pool::Lease lease,
                        uint32_t uid, std::string peer, const net::SourceKey& source) {
  lease.set_pid(child.pid);
  auto inst = std::make_unique<Instance>(io_, child.pidfd.release(), err_read.release());
  inst->service = &s;
  inst->serial = serial;
  inst->uid = uid;
  inst->pid = child.pid;
  inst->peer = std::move(peer);
  inst->source = source;
  inst->started = Clock::now();
  inst->lease = std::move(lease);
  Instance& ref = *inst;
  instances_.emplace(child.pid, std::move(inst));
  s.log_start(serial, ref.peer, ref.uid, ref.pid);
  watch_instance(ref);
  return ref;
}

void Daemon::watch_instance(Instance& inst) {
  pid_t pid = inst.pid;
  inst.pidfd.async_wait(asio::posix::descriptor_base::wait_read, [this, pid](boost::system::error_code ec) {
    if (ec) return;
    auto it = instances_.find(pid);
    if (it == instances_.end()) return;
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->second->pidfd.native_handle()), &si,
                 WEXITED | WNOHANG) == 0 &&
        si.si_pid != 0)
      on_reaped(pid, ExitStatus{si.si_code != CLD_EXITED, si.si_status});
  });
  read_stderr(inst);
  auto runtime_max = inst.service->cfg->service.runtime_max;
  if (runtime_max.count() > 0) arm_runtime_timer(inst, Clock::now() + runtime_max, false);
}

// runtime_max: SIGTERM at `deadline`, and SIGKILL timeout_stop later (`kill`: SIGKILL at
// `deadline`, the second half; an upgrade's new image resumes either where the old one was).
void Daemon::arm_runtime_timer(Instance& inst, Clock::time_point deadline, bool kill) {
  pid_t pid = inst.pid;
  inst.timer.expires_at(deadline);
  inst.timer.async_wait([this, pid, kill](boost::system::error_code ec) {
    if (ec) return;
    auto it = instances_.find(pid);
    if (it == instances_.end()) return;
    Instance& i = *it->second;
    if (kill) {
      log::warning("KILL {} serial={} uid={} pid={}: still running after timeout_stop", i.service->cfg->name, i.serial,
                   i.uid, pid);
      spawn::pidfd_signal(i.pidfd.native_handle(), SIGKILL);
      return;
    }
    log::warning("TIMEOUT {} serial={} uid={} pid={}: runtime_max reached, sending SIGTERM", i.service->cfg->name,
                 i.serial, i.uid, i.pid);
    spawn::pidfd_signal(i.pidfd.native_handle(), SIGTERM);
    i.term_sent = true;
    // PID 1 of a namespace ignores SIGTERM unless it handles it: KILL follows after timeout_stop.
    arm_runtime_timer(i, Clock::now() + i.service->cfg->service.timeout_stop, true);
  });
}

void Daemon::read_stderr(Instance& inst) {
  pid_t pid = inst.pid;
  inst.err.async_read_some(asio::buffer(inst.err_buf), [this, pid](boost::system::error_code ec, size_t n) {
    auto it = instances_.find(pid);
    if (it == instances_.end()) return;
    Instance& i = *it->second;
    if (n > 0) {
      i.err_line.append(i.err_buf, n);
      flush_stderr(i, false);
    }
    if (!ec) read_stderr(i);
  });
}

// Logs complete lines of the instance's stderr (all of it with `all`), prefixed with the
// service, serial and UID; a line over 4 KiB is cut so one instance cannot grow our memory.
void Daemon::flush_stderr(Instance& i, bool all) {
  size_t start = 0, nl;
  while ((nl = i.err_line.find('\n', start)) != std::string::npos) {
    i.service->log_stderr(i.serial, i.uid, std::string_view(i.err_line).substr(start, nl - start));
    start = nl + 1;
  }
  i.err_line.erase(0, start);
  if ((all && !i.err_line.empty()) || i.err_line.size() > 4096) {
    i.service->log_stderr(i.serial, i.uid, i.err_line);
    i.err_line.clear();
  }
}

// SIGCHLD backstop: reaps whatever exited, in case a pidfd wake-up was missed. An exit no
// instance claims may be one whose zygote answer has not been read yet: the pools keep it.
void Daemon::drain_children() {
  int st = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) {
    if (upgrade_ && pid == upgrade_->check_pid) {
      upgrade_->check_reaped = true;
      upgrade_->check_status = st;
      upgrade_checked();
      continue;
    }
    if (instances_.count(pid)) {
      on_reaped(pid, ExitStatus::from_wait(st));
      continue;
    }
    for (const auto* list : {&services_, &retired_})
      for (const auto& s : *list)
        if (s->zygotes) s->zygotes->note_exit(pid, st);
  }
}

void Daemon::on_reaped(pid_t pid, ExitStatus st) {
  auto it = instances_.find(pid);
  if (it == instances_.end()) return;
  // Its processes are gone, so whatever they sent to /dev/log is queued: read it while the
  // instance still names its lines (a refusal logged just before exit is the usual case).
  if (Service& svc = *it->second->service; svc.syslog) read_syslog(svc, SyslogSocket::kDrainOnExit);
  std::unique_ptr<Instance> inst = std::move(it->second);
  instances_.erase(it);
  // The main process was PID 1 of its namespace: its death killed and reaped every other
  // process there, so the stderr pipe has no writer left and can be drained to the end.
  ssize_t n;
  while ((n = ::read(inst->err.native_handle(), inst->err_buf, sizeof inst->err_buf)) > 0)
    inst->err_line.append(inst->err_buf, static_cast<size_t>(n));
  flush_stderr(*inst, true);
  Service& s = *inst->service;
  s.log_exit(inst->serial, inst->peer, inst->uid, inst->pid, inst->started, st.to_string(), nullptr);
  if (inst->control) {
    nlohmann::json msg = {{"exit", {{"signaled", st.signaled}, {"code", st.code}}}};
    control::send_message(inst->control->native_handle(), msg.dump());
    live_units_.erase(inst->unit);
  }
  const auto& sb = s.cfg->service.sandbox;
  // A static user's processes and IPC are not superd's to sweep (its lease is empty); its PID
  // namespace is gone.
  if (inst->lease)
    queue_cleanup(std::move(inst->lease), !(sb.enabled && s.plan.mount_ns && (sb.private_tmp || sb.private_ipc)));
  std::unique_ptr<Service> transient = std::move(inst->owned_service);  // superd run: goes with it
  net::SourceKey source = inst->source;
  Clock::time_point started = inst->started;
  inst.reset();  // cancels its waits; their handlers find no instance and return
  if (transient) return maybe_finish_shutdown();
  if (s.wait_mode) wait_instance_ended(s, started, st);
  instance_ended(s, source);
  maybe_finish_shutdown();  // nothing queued for cleanup when the UID was a static one
}

void Daemon::queue_cleanup(uid_pool::Lease lease, bool host_shm) {
  cleanup_.add(std::move(lease), host_shm);
  if (cleanup_posted_) return;
  cleanup_posted_ = true;
  // Batched: every UID released within one turn of the loop shares one IPC scan.
  asio::post(io_, [this] { run_cleanup(); });
}

void Daemon::run_cleanup() {
  cleanup_posted_ = false;
  auto t0 = Clock::now();
  auto failures = cleanup_.run(ipc_roots_);
  ++cleanup_batches_;
  cleanup_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  for (const auto& f : failures)
    log::error("uid={}: cannot remove {} {}{}: {}; UID quarantined", f.owner, ipc::kind_name(f.object.kind),
               f.object.id, f.object.name, log::errno_text(f.err));
  maybe_finish_shutdown();
}

}  // namespace superd::daemon
