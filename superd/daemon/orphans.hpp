// The loop's side of the orphan sweep (cleanup/sweep.hpp): leases a previous daemon left behind
// (it crashed or was killed; their PID namespaces outlive it) are swept by a forked sweeper
// while the daemon serves. This reads the sweeper's results from the loop and says, per UID,
// whether it came back clean (`returned`) or must be quarantined; it logs each outcome. The
// daemon keeps the UIDs blocked and recorded until then (a daemon killed again finds them).
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "cleanup/ipc.hpp"
#include "cleanup/sweep.hpp"
#include "uid_pool/lease_table.hpp"

namespace superd::daemon {

class OrphanSweep {
 public:
  struct Hooks {
    std::function<void(uint32_t uid)> returned;     // swept: clear the record, unblock
    std::function<void(uint32_t uid)> quarantined;  // something survived: never reuse
  };
  explicit OrphanSweep(boost::asio::io_context& io) : io_(io) {}
  // Starts the sweeper for `orphans` (each already blocked in the pool). False if it could not.
  bool start(const std::vector<uid_pool::LeaseRecord>& orphans, const ipc::Roots& roots, Hooks hooks);
  // UIDs whose result has not come yet: a shutdown waits for them (the sweeper is bounded by
  // its deadline), so that a clean stop leaves no record of a UID already swept.
  bool busy() const noexcept { return !pending_.empty(); }

 private:
  void read();
  void on_result(const sweep::Result& r);

  boost::asio::io_context& io_;
  Hooks hooks_;
  std::unordered_map<uint32_t, uid_pool::LeaseRecord> pending_;  // not reported yet
  std::unique_ptr<boost::asio::posix::stream_descriptor> results_;
  char buf_[sizeof(sweep::Result) * 64];
  size_t have_ = 0;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace superd::daemon
