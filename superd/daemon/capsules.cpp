// Capsules, the daemon's side (capsule/capsule.hpp has the rest): start one (block, home,
// launch), watch its ready pipe, its output and its exit, stop one (TERM, KILL after 10 s), list
// them, keep a record of each running one so that a superd started after a kill -9 ends what
// PDEATHSIG did not, and start the enabled ones (<config dir>/capsules.enabled/NAME) at start-up.
// Answers to `capsule start` and `capsule stop` wait for the capsule to be ready or gone.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "control/control.hpp"
#include "daemon/hub.hpp"
#include "util/log.hpp"

namespace superd::daemon {
namespace {

namespace fs = std::filesystem;
constexpr auto kCapsuleStopGrace = std::chrono::seconds(10);
constexpr auto kCapsuleReadyTimeout = std::chrono::seconds(30);
constexpr size_t kMaxEarlyOutput = 16384;

void answer(const std::shared_ptr<asio::posix::stream_descriptor>& conn, const nlohmann::json& j) {
  if (conn) control::send_message(conn->native_handle(), j.dump());
}

// The start time of `pid` (field 22 of /proc/PID/stat), to tell a recorded PID from a reused one.
std::string start_time_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  size_t close = text.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  return field;
}

}  // namespace

capsule::Roots Daemon::capsule_roots() const {
  const auto& g = cfg_.global;
  return {g.state_root, g.runtime_root, g.capsule_first, g.capsule_last};
}

std::string Daemon::capsule_records_dir() const {
  return cfg_.global.runtime_root + "/superd/capsules";
}

// A capsule a killed superd left running: PDEATHSIG ended it, unless it had not set it yet.
void Daemon::sweep_capsule_records() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(capsule_records_dir(), ec)) {
    if (handed_ && std::any_of(handed_->capsules.begin(), handed_->capsules.end(),
                               [&](const auto& h) { return h.name == e.path().filename().string(); }))
      continue;  // handed over by an upgrade: restore_capsules() takes it
    std::ifstream in(e.path());
    pid_t pid = 0;
    std::string start;
    if (in >> pid >> start && pid > 0 && start_time_of(pid) == start) {
      int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
      if (fd >= 0) {
        // Its PID namespace dies with it; nothing it started outlives it.
        ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
        pollfd p{fd, POLLIN, 0};
        ::poll(&p, 1, 5000);
        ::close(fd);
      }
      log::warning("capsule {}: killed, left running by a superd that ended without stopping it",
                   e.path().filename().string());
    }
    fs::remove_all(capsule_roots().runtime_dir(e.path().filename().string()), ec);
    fs::remove(e.path(), ec);
  }
  write_capsule_names();  // none runs now: no names from a killed superd's capsules
}

void Daemon::start_enabled_capsules() {
  if (opt_.config_path.empty() || !cfg_.global.capsule.empty()) return;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(opt_.config_path).parent_path() / "capsules.enabled", ec))
    capsule_start(e.path().filename().string(), nullptr);
}

void Daemon::capsule_start(const std::string& name, std::shared_ptr<asio::posix::stream_descriptor> conn) {
  auto fail = [&](const std::string& e) {
    log::error("capsule {}: {}", name, e);
    answer(conn, {{"error", e}});
  };
  if (std::string why = capsule::name_error(name); !why.empty()) return fail(why);
  if (!cfg_.global.capsule.empty()) return fail("a capsule cannot start capsules");
  if (auto it = capsules_.find(name); it != capsules_.end())
    return fail(it->second->stopping ? "capsule " + name + " is stopping" : "capsule " + name + " is already running");
  capsule::Roots roots = capsule_roots();
  std::map<std::string, uint32_t> running;
  for (const auto& [n, c] : capsules_) running[n] = c->block;
  auto block = capsule::choose_block(roots, name, running);
  if (!block) return fail("no free block of 65536 UIDs left in capsule_uid_range");
  std::string failed;
  if (auto e = capsule::prepare_dirs(roots, name, *block, failed))
    return fail("cannot prepare " + failed + ": " + e.message());
  int ready[2], out[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return fail(std::string("pipe2: ") + std::strerror(errno));
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);
  if (::pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0) return fail(std::string("pipe2: ") + std::strerror(errno));
  UniqueFd out_r(out[0]), out_w(out[1]);
  int alive[2];
  if (::pipe2(alive, O_CLOEXEC) != 0) return fail(std::string("pipe2: ") + std::strerror(errno));
  UniqueFd alive_r(alive[0]), alive_w(alive[1]);
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return fail(std::string("readlink /proc/self/exe: ") + std::strerror(errno));
  capsule::LaunchSpec spec;
  spec.name = name;
  spec.home = roots.home(name);
  spec.runtime_dir = roots.runtime_dir(name);
  spec.exe.assign(exe, static_cast<size_t>(n));
  spec.block = *block;
  const auto& g = cfg_.global;
  spec.hide = {g.state_root + "/capsules", g.runtime_root + "/capsules", g.runtime_root + "/superd",
               g.state_root + "/private",  g.cache_root + "/private",    g.logs_root + "/private"};
  spec.ready_fd = ready_w.get();
  spec.log_fd = out_w.get();
  spec.alive_fd = alive_r.get();
  std::string error;
  capsule::Launched l = capsule::launch(spec, error);
  if (l.pid < 0) return fail(error);
  ready_w.reset();
  out_w.reset();
  auto c = std::make_unique<CapsuleRun>(io_, l.pidfd.release(), ready_r.release(), out_r.release());
  c->name = name;
  c->block = *block;
  c->pid = l.pid;
  c->home = spec.home;
  c->alive = std::move(alive_w);
  c->started = Clock::now();
  if (conn) c->start_waiters.push_back(conn);
  fs::create_directories(capsule_records_dir());
  std::ofstream(capsule_records_dir() + "/" + name) << l.pid << " " << start_time_of(l.pid) << " " << *block << "\n";
  log::info("capsule {}: starting, pid {}, UIDs {}..{}, home {}", name, l.pid, *block, *block + capsule::kBlockSize - 1,
            spec.home);
  CapsuleRun& ref = *c;
  capsules_[name] = std::move(c);
  write_capsule_names();
  watch_capsule(ref);
}

// Its ready pipe (until ready), its output and its exit.
void Daemon::watch_capsule(CapsuleRun& ref) {
  read_capsule_output(ref);
  ref.pidfd.async_wait(asio::posix::descriptor_base::wait_read, [this, &ref](boost::system::error_code ec) {
    if (!ec) capsule_exited(ref);
  });
  if (ref.ready_seen) return;
  ref.timer.expires_after(kCapsuleReadyTimeout);
  ref.timer.async_wait([this, &ref](boost::system::error_code ec) {
    if (ec || ref.ready_seen || ref.stopping) return;
    ref.early += "not ready within 30 s\n";
    spawn::pidfd_signal(ref.pidfd.native_handle(), SIGKILL);
  });
  ref.ready.async_wait(asio::posix::descriptor_base::wait_read, [this, &ref](boost::system::error_code ec) {
    if (ec) return;
    char buf[16];
    if (::read(ref.ready.native_handle(), buf, sizeof buf) > 0 && !ref.ready_seen) {
      ref.ready_seen = true;
      ref.ready_ms = std::chrono::duration<double, std::milli>(Clock::now() - ref.started).count();
      log::info("capsule {}: ready in {:.1f} ms", ref.name, ref.ready_ms);
      for (auto& w : ref.start_waiters)
        answer(w, {{"ok", true}, {"pid", ref.pid}, {"block", ref.block}, {"ready_ms", ref.ready_ms}});
      ref.start_waiters.clear();
    }
  });
}

// An upgrade's new image: the capsules the old one ran, each still PID 1 of its namespaces,
// its pipes handed over.
void Daemon::restore_capsules() {
  for (const auto& h : handed_->capsules) {
    for (int fd : {h.pidfd, h.out, h.alive}) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    auto c = std::make_unique<CapsuleRun>(io_, h.pidfd, ::open("/dev/null", O_RDONLY | O_CLOEXEC), h.out);
    c->name = h.name;
    c->home = h.home;
    c->block = h.block;
    c->pid = h.pid;
    c->alive.reset(h.alive);
    c->ready_seen = h.ready_seen;
    c->started = Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(h.started_ns)));
    CapsuleRun& ref = *c;
    capsules_[h.name] = std::move(c);
    watch_capsule(ref);
  }
  if (!handed_->capsules.empty()) write_capsule_names();
}

void Daemon::read_capsule_output(CapsuleRun& c) {
  c.out.async_wait(asio::posix::descriptor_base::wait_read, [this, &c](boost::system::error_code ec) {
    if (ec) return;
    if (drain_capsule_output(c)) read_capsule_output(c);
  });
}

// Its lines go to superd's log; until it is ready they are also kept for the start's answer.
bool Daemon::drain_capsule_output(CapsuleRun& c) {
  char buf[4096];
  ssize_t n;
  while ((n = ::read(c.out.native_handle(), buf, sizeof buf)) > 0) {
    c.line.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = c.line.find('\n')) != std::string::npos; c.line.erase(0, nl + 1)) {
      std::string l = c.line.substr(0, nl);
      log::info("capsule {}: {}", c.name, l);
      if (!c.ready_seen && c.early.size() < kMaxEarlyOutput) c.early += l + "\n";
    }
  }
  return n < 0 && errno == EAGAIN;  // 0: the capsule and all it started are gone
}

void Daemon::capsule_exited(CapsuleRun& c) {
  siginfo_t si{};
  ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(c.pidfd.native_handle()), &si, WEXITED | WNOHANG);
  drain_capsule_output(c);
  if (!c.line.empty()) log::info("capsule {}: {}", c.name, c.line);
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - c.stop_asked).count();
  std::string how = si.si_code == CLD_EXITED ? "status=" + std::to_string(si.si_status)
                                             : std::string("signal=") + (sigabbrev_np(si.si_status) ?: "?");
  log::info("capsule {}: stopped ({}){}", c.name, how, c.stopping ? fmt::format(", {:.1f} ms after stop", ms) : "");
  for (auto& w : c.start_waiters)
    answer(w, {{"error", "capsule " + c.name + " did not start (" + how + "):\n" + c.early}});
  for (auto& w : c.stop_waiters) answer(w, {{"ok", true}, {"stop_ms", ms}});
  std::error_code ec;
  fs::remove(capsule_records_dir() + "/" + c.name, ec);
  fs::remove_all(capsule_roots().runtime_dir(c.name), ec);
  capsules_.erase(c.name);  // `c` is gone
  write_capsule_names();
  maybe_finish_shutdown();
}

void Daemon::capsule_stop(const std::string& name, std::shared_ptr<asio::posix::stream_descriptor> conn) {
  auto it = capsules_.find(name);
  if (it == capsules_.end()) return answer(conn, {{"error", "capsule " + name + " is not running"}});
  CapsuleRun& c = *it->second;
  if (conn) c.stop_waiters.push_back(conn);
  if (c.stopping) return;
  c.stopping = true;
  c.stop_asked = Clock::now();
  spawn::pidfd_signal(c.pidfd.native_handle(), SIGTERM);
  c.timer.cancel();
  c.timer.expires_after(kCapsuleStopGrace);
  c.timer.async_wait([&c](boost::system::error_code ec) {
    if (ec) return;
    log::warning("capsule {}: still running {} s after TERM; killing it", c.name, kCapsuleStopGrace.count());
    spawn::pidfd_signal(c.pidfd.native_handle(), SIGKILL);
  });
}

nlohmann::json Daemon::capsules_json() const {
  nlohmann::json list = nlohmann::json::array();
  capsule::Roots roots = capsule_roots();
  std::map<std::string, uint32_t> known = capsule::homes_by_block(roots);
  for (const auto& [n, c] : capsules_) known[n] = c->block;
  std::error_code ec;
  fs::path enabled_dir = fs::path(opt_.config_path).parent_path() / "capsules.enabled";
  for (const auto& e : fs::directory_iterator(enabled_dir, ec)) known.emplace(e.path().filename().string(), 0);
  for (const auto& [n, block] : known) {
    auto it = capsules_.find(n);
    const CapsuleRun* c = it == capsules_.end() ? nullptr : it->second.get();
    list.push_back({{"name", n},
                    {"state", !c              ? "stopped"
                              : c->stopping   ? "stopping"
                              : c->ready_seen ? "running"
                                              : "starting"},
                    {"pid", c ? c->pid : 0},
                    {"uids", block ? nlohmann::json{block, block + capsule::kBlockSize - 1} : nlohmann::json(nullptr)},
                    {"home", roots.home(n)},
                    {"runtime", roots.runtime_dir(n)},
                    {"enabled", !opt_.config_path.empty() && fs::exists(enabled_dir / n, ec)},
                    {"ready_ms", c ? c->ready_ms : 0.0}});
  }
  return list;
}

// The names NSS gives capsule UIDs (capsule-NAME, capsule-NAME-N): one line per running
// capsule, "BLOCK NAME HOME", replaced whole (rename), so a reader sees one version or the other.
void Daemon::write_capsule_names() const {
  std::string dir = cfg_.global.runtime_root + "/superd/dynamic-uid";
  std::string tmp = dir + "/capsules.tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    for (const auto& [n, c] : capsules_) f << c->block << " " << n << " " << c->home << "\n";
  }
  ::chmod(tmp.c_str(), 0644);
  if (::rename(tmp.c_str(), (dir + "/capsules").c_str()) != 0)
    log::warning("cannot write {}/capsules: {}", dir, std::strerror(errno));
}

}  // namespace superd::daemon
