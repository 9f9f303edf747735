// What the daemon learns from the host, off the connection path, and what it tells it:
//   - the user database: UIDs of the dynamic range that static users or groups took (read at
//     start and again when /etc/passwd or /etc/group changes, by an inotify watch on /etc);
//   - the census, every kCensusPeriod: UIDs that a process we do not own runs with, or that own
//     IPC objects we did not create, are blocked in the pool until a later census finds them clear;
//   - UIDs a dying zygote left unanswered (zygote_lost): an instance may run with one unseen, so
//     it stays blocked until a census at least kSettle later finds no process of it; then its
//     IPC objects are removed and it returns (a census is brought forward to kSettle for it).
//     Before, such UIDs stayed quarantined until superd restarted;
//   - readiness: --ready-fd and sd_notify(3) READY=1;
//   - cgroup v2 support, said once at start-up.
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <boost/asio.hpp>
#include <chrono>
#include <unordered_map>
#include <unordered_set>

#include "cleanup/ipc.hpp"
#include "config/config.hpp"
#include "uid_pool/pool.hpp"

namespace superd::daemon {

class HostWatch {
 public:
  static constexpr auto kCensusPeriod = std::chrono::seconds(10);
  static constexpr size_t kMaxAttackersLogged = 1024;  // distinct creators of given-away IPC objects

  HostWatch(boost::asio::io_context& io, uid_pool::Pool& pool, const ipc::Roots& roots)
      : pool_(pool), roots_(roots), census_timer_(io), inotify_(io) {}

  // A zygote's child between clone and exec is still root; after this it has taken its UID.
  static constexpr auto kSettle = std::chrono::seconds(2);

  void start();  // user database, first census, the /etc watch
  void stop();   // shutdown: no more census or watch
  // Blocks `uid` (held by a request its zygote died with, about to drop) until it is found clear.
  void zygote_lost(uint32_t uid);

 private:
  void refresh_userdb();
  void watch_userdb();
  void arm_userdb_watch();
  void census();
  void arm_census(std::chrono::steady_clock::duration after);

  uid_pool::Pool& pool_;
  const ipc::Roots& roots_;
  boost::asio::steady_timer census_timer_;
  boost::asio::posix::stream_descriptor inotify_;
  char inotify_buf_[4096];
  std::unordered_set<uint32_t> attackers_logged_;
  std::unordered_map<uint32_t, std::chrono::steady_clock::time_point> lost_;  // zygote_lost: since when
  bool stopped_ = false;
};

// --ready-fd (written once, then closed; `ready_fd` becomes -1); $NOTIFY_SOCKET is notify.hpp's.
void notify_ready(int& ready_fd);

// cgroup v2 bounds: said once at start-up, with what bounds instances instead.
void report_cgroup_support(const config::Config& cfg);

}  // namespace superd::daemon
