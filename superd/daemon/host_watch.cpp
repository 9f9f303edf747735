// daemon::HostWatch and the start-up notices: see host_watch.hpp.
#include "daemon/host_watch.hpp"

#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/ranges.h>

#include "cleanup/proc.hpp"
#include "sandbox/cgroup.hpp"
#include "uid_pool/userdb.hpp"
#include "util/log.hpp"
#include "util/unique_fd.hpp"

namespace superd::daemon {

namespace asio = boost::asio;

void HostWatch::start() {
  refresh_userdb();
  census();
  watch_userdb();
}

void HostWatch::stop() {
  stopped_ = true;
  census_timer_.cancel();
  if (inotify_.is_open()) inotify_.close();
}

void HostWatch::refresh_userdb() {
  auto ids = userdb::ids_in_range(pool_.first(), pool_.last());
  pool_.set_blocked_exactly(uid_pool::kStaticUser, ids);
  if (!ids.empty())
    log::info("user database: {} IDs in the dynamic range are taken by static users/groups", ids.size());
}

// Watches /etc for a new passwd or group (written in place or renamed over, as useradd does).
void HostWatch::watch_userdb() {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0 || ::inotify_add_watch(fd, "/etc", IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
    log::warning("cannot watch /etc for user database changes: {}", std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return;
  }
  inotify_.assign(fd);
  arm_userdb_watch();
}

void HostWatch::arm_userdb_watch() {
  inotify_.async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec || stopped_) return;
    bool changed = false;
    ssize_t n;
    while ((n = ::read(inotify_.native_handle(), inotify_buf_, sizeof inotify_buf_)) > 0) {
      for (char* p = inotify_buf_; p < inotify_buf_ + n;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        if (ev->len && (!std::strcmp(ev->name, "passwd") || !std::strcmp(ev->name, "group"))) changed = true;
        p += sizeof(inotify_event) + ev->len;
      }
    }
    if (changed) refresh_userdb();
    arm_userdb_watch();
  });
}

// The slow eligibility checks, off the connection path. Our own live (held) UIDs are left out:
// their processes are expected.
void HostWatch::census() {
  std::vector<uint32_t> procs, ipcs;
  for (uint32_t u : proc::uids_in_range(pool_.first(), pool_.last()))
    if (!pool_.is_held(u)) procs.push_back(u);
  // A lost zygote's UID with no process left, looked at kSettle after the loss: nothing of it
  // runs, so what it owns is left behind and goes (as an ended instance's would).
  auto now = std::chrono::steady_clock::now();
  std::unordered_set<uint32_t> clear;
  for (const auto& [uid, since] : lost_)
    if (now - since >= kSettle && std::find(procs.begin(), procs.end(), uid) == procs.end()) clear.insert(uid);
  size_t given_away = 0;
  for (const auto& o : ipc::owned_in_range(pool_.first(), pool_.last(), roots_)) {
    if (pool_.is_held(o.owner)) continue;  // a live instance's own: removed when it ends
    if (clear.count(o.owner) && ipc::remove(o, roots_) == 0) continue;
    if (o.creator != o.owner) {
      // Someone handed an object to a UID of our range (IPC_SET can set any owner): left alone,
      // such objects would block that UID, and 10,000 of them the whole pool. The range is
      // superd's: remove it, and name the creator once.
      int err = ipc::remove(o, roots_);
      if (err == 0) ++given_away;
      if (err == 0 && attackers_logged_.size() < kMaxAttackersLogged && attackers_logged_.insert(o.creator).second)
        log::warning(
            "census: uid {} gave {} {} to uid {} of the dynamic range; removed (further objects from uid {} "
            "are removed without a line)",
            o.creator, ipc::kind_name(o.kind), o.id, o.owner, o.creator);
      if (err == 0) continue;
    }
    ipcs.push_back(o.owner);
  }
  pool_.set_blocked_exactly(uid_pool::kForeignProcess, procs);
  pool_.set_blocked_exactly(uid_pool::kForeignIpc, ipcs);
  for (uint32_t uid : clear) {
    if (std::find(ipcs.begin(), ipcs.end(), uid) != ipcs.end()) continue;  // an object would not go
    lost_.erase(uid);
    pool_.unblock(uid, uid_pool::kZygoteLost);
    log::info("uid {}: nothing of the request its zygote died with is left; back in the pool", uid);
  }
  if (!procs.empty() || !ipcs.empty() || given_away)
    log::debug("census: {} foreign process UIDs, {} foreign IPC owners in range, {} given-away objects removed",
               procs.size(), ipcs.size(), given_away);
  arm_census(kCensusPeriod);
}

void HostWatch::arm_census(std::chrono::steady_clock::duration after) {
  census_timer_.expires_after(after);  // cancels a wait already armed
  census_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec && !stopped_) census();
  });
}

void HostWatch::zygote_lost(uint32_t uid) {
  pool_.block(uid, uid_pool::kZygoteLost);
  lost_[uid] = std::chrono::steady_clock::now();
  if (!stopped_ && census_timer_.expiry() > std::chrono::steady_clock::now() + kSettle) arm_census(kSettle);
}

void notify_ready(int& ready_fd) {
  if (ready_fd >= 0) {
    static const char kReady[] = "READY\n";
    if (::write(ready_fd, kReady, sizeof kReady - 1) < 0) log::warning("--ready-fd: {}", std::strerror(errno));
    ::close(ready_fd);
    ready_fd = -1;
  }
}

void report_cgroup_support(const config::Config& cfg) {
  auto cg = sandbox::cgroup::detect();
  std::vector<std::string> asking;
  for (const auto& sc : cfg.services)
    if (sc.service.memory_max || sc.service.tasks_max || sc.service.cpu_weight) asking.push_back(sc.name);
  std::string fallback = fmt::format(
      "instances are bounded by their rlimits (limits.nproc defaults to {}) and "
      "private_tmp_size (default {}M)",
      config::kDefaultNproc, config::kDefaultPrivateTmpSize >> 20);
  std::string why = cg.usable ? fmt::format(
                                    "the controllers are there ([{}]) but superd does not create per-instance "
                                    "cgroups yet",
                                    cg.controllers)
                              : cg.why;
  if (asking.empty()) {
    log::info("cgroup v2 bounds not applied: {}; {}", why, fallback);
  } else {
    log::warning("cgroup v2 bounds not applied: {}; memory_max, tasks_max and cpu_weight of {} have no effect; {}", why,
                 fmt::join(asking, ", "), fallback);
  }
}

}  // namespace superd::daemon
