// Zero-downtime upgrade, the old image's half: `superd upgrade` (or SIGUSR2) re-executes the
// binary on disk in the same PID, and hands it everything that is live (daemon/handover.hpp).
//
//   1. check ..... the new binary runs `superd handover-check`: it loads the configuration and
//                  says whether it takes this hand-over format. A missing or non-executable
//                  binary, a bad configuration or another format ends the upgrade here, and
//                  this image keeps serving.
//   2. sessions .. the in-loop services' listeners pause, and their sessions (echo, chargen,
//                  redirect relays, ...) finish in this image, for at most kSessionWait: their
//                  state is Asio operations in flight (a relay's buffers, a read that completed
//                  but whose handler has not run), which no fd can carry exactly. The other
//                  services accept on.
//   3. quiet ..... every listener pauses (connections wait in the kernel's backlog: none is
//                  refused) until no zygote request is unanswered and no cleanup is queued,
//                  for at most kQuietWait.
//   4. exec ...... the state goes into a memfd, the fds it names lose close-on-exec, and
//                  execve(2). The listening sockets, the control socket, the lease table with
//                  its lock, every instance's pidfd and stderr pipe, and every capsule's pipes
//                  cross it; the instances stay this PID's children. The zygotes do not: they
//                  run this image's code, see their sockets close, and the new image reaps
//                  them and starts its own.
// A failed execve resumes serving here. The new image's half is daemon/restore.cpp.
#include "daemon/hub.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "control/control.hpp"
#include "listener/listener.hpp"
#include "util/log.hpp"

extern char** environ;

namespace superd::daemon {

namespace {
constexpr auto kCheckTimeout = std::chrono::seconds(10);
constexpr auto kSessionWait = std::chrono::seconds(10);
constexpr auto kQuietWait = std::chrono::seconds(5);
constexpr auto kStepPeriod = std::chrono::milliseconds(1);
constexpr size_t kMaxCheckOutput = 8192;

int64_t steady_ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

void answer(const std::shared_ptr<asio::posix::stream_descriptor>& conn, const nlohmann::json& j) {
  if (conn) control::send_message(conn->native_handle(), j.dump());
}
}  // namespace

// Why an upgrade cannot start now ("" if it can).
std::string Daemon::upgrade_refusal() const {
  if (stopping_) return "shutting down";
  if (upgrade_) return "an upgrade is in progress";
  if (!cfg_.global.capsule.empty()) return "a capsule's superd is upgraded by restarting the capsule";
  for (const auto& [pid, inst] : instances_)
    if (inst->control)
      return fmt::format(
          "`superd run` unit {} (pid {}) is live: its caller's connection and terminal stay with this image; "
          "upgrade when it has ended",
          inst->unit.empty() ? inst->service->cfg->name : inst->unit, pid);
  for (const auto& [name, c] : capsules_)
    if (!c->ready_seen || c->stopping)
      return fmt::format("capsule {} is {}; upgrade when it is running or stopped", name,
                         c->stopping ? "stopping" : "starting");
  return {};
}

void Daemon::upgrade(std::shared_ptr<asio::posix::stream_descriptor> conn, const std::string& binary) {
  auto refuse = [&](const std::string& why) {
    log::error("upgrade refused: {}", why);
    answer(conn, {{"error", why}});
  };
  if (std::string why = upgrade_refusal(); !why.empty()) return refuse(why);
  std::string bin = binary.empty() ? exe_path_ : binary;
  struct stat st {};
  if (::stat(bin.c_str(), &st) != 0) return refuse(fmt::format("{}: {}", bin, std::strerror(errno)));
  if (!S_ISREG(st.st_mode) || ::access(bin.c_str(), X_OK) != 0)
    return refuse(fmt::format("{}: not an executable file", bin));
  int out[2];
  if (::pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0) return refuse(fmt::format("pipe2: {}", std::strerror(errno)));
  UniqueFd out_r(out[0]), out_w(out[1]);
  std::vector<std::string> args = {bin, "handover-check", "--format", std::to_string(handover::kFormat)};
  if (!opt_.config_path.empty()) args.insert(args.end(), {"-c", opt_.config_path});
  if (!opt_.xinetd_path.empty()) args.insert(args.end(), {"--xinetd", opt_.xinetd_path});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, bin.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return refuse(fmt::format("{}: {}", bin, std::strerror(rc)));
  out_w.reset();
  upgrade_ = std::make_unique<Upgrade>(io_);
  Upgrade& u = *upgrade_;
  u.conn = std::move(conn);
  u.binary = bin;
  u.requested = Clock::now();
  u.check_pid = pid;
  u.check_out = std::make_unique<asio::posix::stream_descriptor>(io_, out_r.release());
  log::info("upgrade: checking {} (pid {})", bin, pid);
  upgrade_read_check();
  u.timer.expires_after(kCheckTimeout);
  u.timer.async_wait([this, &u](boost::system::error_code ec) {
    if (ec || u.stage != Upgrade::Stage::checking) return;
    ::kill(u.check_pid, SIGKILL);  // our unreaped child: the PID is still its own
    u.output += "(no answer within 10 s: killed)\n";
  });
}

void Daemon::upgrade_read_check() {
  Upgrade& u = *upgrade_;
  u.check_out->async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec || !upgrade_) return;
    Upgrade& v = *upgrade_;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(v.check_out->native_handle(), buf, sizeof buf)) > 0)
      if (v.output.size() < kMaxCheckOutput) v.output.append(buf, static_cast<size_t>(n));
    if (n == 0) {
      v.check_eof = true;
      return upgrade_checked();
    }
    upgrade_read_check();
  });
}

// The check's exit (from the SIGCHLD drain) and its output's end: both, then go on or give up.
void Daemon::upgrade_checked() {
  Upgrade& u = *upgrade_;
  if (u.stage != Upgrade::Stage::checking || !u.check_reaped || !u.check_eof) return;
  u.timer.cancel();
  u.check_out.reset();
  if (!WIFEXITED(u.check_status) || WEXITSTATUS(u.check_status) != 0) {
    std::string out = u.output;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return upgrade_abort(fmt::format("{} refuses the hand-over ({}): {}", u.binary,
                                     ExitStatus::from_wait(u.check_status).to_string(),
                                     out.empty() ? "no output" : out));
  }
  u.stage = Upgrade::Stage::sessions;
  pause_listeners(true);
  u.timer.expires_after(kSessionWait);
  upgrade_step();
}

// The drain: polled every millisecond, bounded by the stage's deadline.
void Daemon::upgrade_step() {
  if (!upgrade_) return;
  Upgrade& u = *upgrade_;
  bool deferred = false;
  for (const auto& s : services_) deferred |= s->deferred.has_value();
  if (u.stage == Upgrade::Stage::sessions && sessions_.empty() && proxy_waits_.empty() && !deferred) {
    u.stage = Upgrade::Stage::quiet;
    u.paused = Clock::now();
    pause_listeners(false);
    u.timer.expires_after(kQuietWait);
  }
  if (u.stage == Upgrade::Stage::quiet && !spawns_in_flight() && cleanup_.empty() && !cleanup_posted_)
    return upgrade_exec();
  if (u.timer.expiry() <= Clock::now()) {
    if (u.stage == Upgrade::Stage::sessions)
      return upgrade_abort(fmt::format(
          "{} in-loop sessions (internal services, redirects), PROXY headers or rate-deferred connections still open "
          "after {} s; they finish in this image, so upgrade again later",
          sessions_.size() + proxy_waits_.size() + (deferred ? 1 : 0), kSessionWait.count()));
    return upgrade_abort(fmt::format("{} spawns still unanswered after {} s", spawns_in_flight(), kQuietWait.count()));
  }
  auto step = std::make_shared<asio::steady_timer>(io_, kStepPeriod);
  step->async_wait([this, step](boost::system::error_code ec) {
    if (!ec) upgrade_step();
  });
}

bool Daemon::upgrade_holds(const Service& s) const {
  if (!upgrade_ || upgrade_->stage == Upgrade::Stage::checking) return false;
  // In the first stage: services served in the loop, and those that read a PROXY header there.
  return upgrade_->stage == Upgrade::Stage::quiet || s.cfg->service.exec.empty() || s.deferred.has_value() ||
         s.cfg->socket.proxy_protocol.has_value();
}

void Daemon::pause_listeners(bool in_loop_only) {
  for (auto& s : services_) {
    if (in_loop_only && !upgrade_holds(*s)) continue;
    for (auto& l : s->listeners)
      if (l->armed) {
        boost::system::error_code ignored;
        l->sd.cancel(ignored);
        l->armed = false;
      }
  }
}

void Daemon::upgrade_abort(const std::string& why) {
  log::error("upgrade failed: {}; this image keeps serving", why);
  answer(upgrade_->conn, {{"error", why}});
  if (upgrade_->check_pid > 0 && !upgrade_->check_reaped) ::kill(upgrade_->check_pid, SIGKILL);  // reaped by the drain
  upgrade_.reset();
  for (auto& s : services_)
    for (auto& l : s->listeners) arm(*l);
}

handover::State Daemon::handover_state(int exe_fd, int reply_fd) const {
  handover::State st;
  st.version = SUPERD_VERSION;
  st.argv = opt_.argv;
  st.exe_fd = exe_fd;
  st.table_fd = table_.fd();
  st.control_fd = const_cast<ControlServer&>(control_).native();
  st.control_pending = control_.pending_fds();
  st.reply_fd = reply_fd;
  st.requested_ns = steady_ns(upgrade_->requested);
  st.paused_ns = steady_ns(upgrade_->paused);
  st.uid_min = cfg_.global.uid_min;
  st.uid_max = cfg_.global.uid_max;
  st.runtime_root = cfg_.global.runtime_root;
  st.serial = serial_;
  auto lease_of = [&](uint32_t uid) {
    auto [user, kind] = table_.name_of(uid);
    st.leases.push_back({uid, user, static_cast<uint8_t>(kind)});
  };
  for (const auto* list : {&services_, &retired_})
    for (const auto& s : *list) {
      for (const auto& l : s->listeners) st.listeners.push_back({l->sd.native_handle(), l->key, s->cfg->name});
      if (s->group && std::none_of(st.leases.begin(), st.leases.end(),
                                   [&](const handover::Lease& l) { return l.uid == s->group->uid(); }))
        lease_of(s->group->uid());
      if (s->zygotes)
        for (pid_t z : s->zygotes->pids()) st.zygotes.push_back(z);
      if (list == &services_) {
        const auto& c = s->counters;
        st.counters.push_back({s->cfg->name, c.accepted, c.refused, c.failed, c.ended_ok, c.ended_error, c.ended_signal,
                               c.zygote_restarts, steady_ns(c.since), c.proxy_local});
        if (s->state == State::wait_running) st.wait_running.push_back(s->cfg->name);
        if (s->syslog) st.syslogs.push_back({s->cfg->name, s->syslog->path, s->syslog->sd.native_handle()});
      }
    }
  for (const auto& [pid, inst] : instances_) {
    handover::Instance h;
    h.service = inst->service->cfg->name;
    h.pid = pid;
    h.pidfd = inst->pidfd.native_handle();
    h.err = inst->err.native_handle();
    h.serial = inst->serial;
    h.uid = inst->uid;
    h.leased = static_cast<bool>(inst->lease);
    h.peer = inst->peer;
    h.source = inst->source;
    h.started_ns = steady_ns(inst->started);
    if (inst->service->cfg->service.runtime_max.count() > 0) h.deadline_ns = steady_ns(inst->timer.expiry());
    h.term_sent = inst->term_sent;
    h.err_line = inst->err_line;
    h.retired = std::any_of(retired_.begin(), retired_.end(), [&](const auto& r) { return r.get() == inst->service; });
    if (h.leased) lease_of(inst->uid);
    st.instances.push_back(std::move(h));
  }
  for (const auto& [name, c] : capsules_)
    st.capsules.push_back({name, c->home, c->block, c->pid, c->pidfd.native_handle(), c->out.native_handle(),
                           c->alive.get(), c->ready_seen, steady_ns(c->started)});
  for (const auto& n : started_) st.started_units.push_back(n);
  for (const auto& [n, sc] : stopped_) st.stopped_units.push_back(n);
  return st;
}

void Daemon::upgrade_exec() {
  Upgrade& u = *upgrade_;
  u.timer.cancel();
  UniqueFd exe(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!exe) return upgrade_abort(fmt::format("cannot open /proc/self/exe: {}", std::strerror(errno)));
  handover::State st = handover_state(exe.get(), u.conn ? u.conn->native_handle() : -1);
  std::error_code ec;
  UniqueFd mem = handover::write(st, ec);
  if (!mem) return upgrade_abort(fmt::format("cannot write the hand-over state: {}", ec.message()));
  auto fds = handover::fds_of(st);
  if (auto e = handover::keep_across_exec(fds, true)) {
    handover::keep_across_exec(fds, false);
    return upgrade_abort(fmt::format("cannot keep the fds across exec: {}", e.message()));
  }
  std::vector<char*> argv;
  for (auto& a : st.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::setenv(handover::kStateEnv, std::to_string(mem.get()).c_str(), 1);
  notify_.reloading();
  log::info("upgrade: {} instances, {} listeners, {} capsules to {}; listeners paused {:.1f} ms ago", instances_.size(),
            st.listeners.size(), st.capsules.size(), u.binary,
            std::chrono::duration<double, std::milli>(Clock::now() - u.paused).count());
  ::execve(u.binary.c_str(), argv.data(), environ);
  int err = errno;
  ::unsetenv(handover::kStateEnv);
  handover::keep_across_exec(fds, false);
  notify_.send("READY=1");
  upgrade_abort(fmt::format("execve {}: {}", u.binary, std::strerror(err)));
}

}  // namespace superd::daemon
