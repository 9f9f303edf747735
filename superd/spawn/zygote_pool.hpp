// spawn::ZygotePool: a sandboxed service's zygotes (one per CPU superd may run on, or [superd]
// zygotes; at most kMaxZygotes) and the
// requests they have not answered yet. It owns the slots, the choice of slot, the pending FIFO
// per slot, the exits reaped before their answer came, and what a lost zygote's requests
// become: returned to the daemon as values (their leases inside), for it to block.
//
// Strategy: a request goes to the zygote with the fewest unanswered ones; the connection's fds
// travel with it, so the caller closes its copies at once. Answers (the instance's pidfd, or
// the step that failed) are read when a zygote's socket becomes readable, in request order.
// A zygote that died is replaced by the next request without waiting: launch() forks it and
// the request queues in its socket; its set-up record is read with the answers. If that set-up
// fails, the requests queued to it never ran, and fail with their leases intact.
//
// Never blocks the loop on the connection path: only start() (service build: start-up and
// reload) waits for the zygotes' set-up.
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "spawn/zygote.hpp"
#include "uid_pool/lease.hpp"
#include "util/net.hpp"
#include "util/unique_fd.hpp"

namespace superd::spawn {

// A connection handed to a zygote, with what the daemon needs back when the answer comes.
struct Pending {
  uint64_t serial = 0;
  std::chrono::steady_clock::time_point accepted{};  // for the spawn-latency metric
  uid_pool::Lease lease;
  std::string peer;
  net::SourceKey source;
  UniqueFd err_read;
  // A descriptor slot kept for the answer: the stderr pipe's write end (the zygote has its own
  // copy), closed just before the answer is read, so that a daemon at its RLIMIT_NOFILE still
  // has room for the pidfd the answer carries. Without it the kernel drops the pidfd
  // (MSG_CTRUNC), the zygote counts as lost, and the instance runs outside the books.
  UniqueFd answer_room;
};

// How many zygotes a pool starts: `configured`, or one per CPU of the affinity mask; 1..kMaxZygotes.
size_t zygotes_for(size_t configured) noexcept;

class ZygotePool {
 public:
  static constexpr size_t kMaxZygotes = 256;          // the config key's bound
  static constexpr size_t kMaxPendingPerZygote = 64;  // past that, accepting pauses

  struct Events {
    // An instance runs. `early_status`: it was reaped before its answer came (a wait status).
    std::function<void(Pending, Child, std::optional<int> early_status)> started;
    // Its clone or a step of its checklist failed (the child, if any, is reaped): nothing of
    // the UID can remain, so the lease may simply drop.
    std::function<void(Pending, std::string failure)> failed;
    // The zygote died with these unanswered: they may run unseen, so their UIDs must not be
    // reused while anything of them is left (the daemon blocks them: HostWatch::zygote_lost).
    std::function<void(std::vector<Pending>, pid_t zygote, std::string why)> lost;
    // A dead zygote is being replaced (for the log).
    std::function<void()> replacing;
    // After each batch of answers: room may have come back (resume, retire, shutdown).
    std::function<void()> answered;
  };

  // `count`: how many zygotes; 0: one per CPU in superd's affinity mask (sched_getaffinity).
  ZygotePool(boost::asio::io_context& io, const ServicePlan& plan, std::string service, Events events,
             size_t count = 0);
  ~ZygotePool();
  ZygotePool(const ZygotePool&) = delete;
  ZygotePool& operator=(const ZygotePool&) = delete;

  // Starts the zygotes and waits for their set-up.
  std::optional<SetupError> start();

  // Sends a request to the least loaded zygote, replacing a dead one first. nullopt: sent
  // (`p` is moved from); otherwise why not (`p` is untouched: the caller still owns it).
  std::optional<std::string> send(const InstancePlan& plan, Pending&& p);

  // An exit the SIGCHLD drain reaped that no instance claims: it may be an instance whose
  // answer has not come yet. Kept only while requests are in flight, bounded.
  void note_exit(pid_t pid, int wait_status);

  bool backlog_full() const noexcept;  // every zygote has kMaxPendingPerZygote in flight
  // The request in flight whose lease is `uid`, if any: an instance may run (and log) before
  // its zygote's answer is read.
  const Pending* pending_for(uint32_t uid) const noexcept;
  size_t in_flight() const noexcept { return in_flight_; }
  std::vector<pid_t> pids() const;  // the zygotes' processes (an upgrade's new image reaps them)

 private:
  struct Slot;
  void arm(Slot& slot);
  void on_readable(Slot& slot);
  std::optional<std::string> relaunch(Slot& slot);
  void lose(Slot& slot, const std::string& why);
  void fail_all(Slot& slot, const std::string& why);

  boost::asio::io_context& io_;
  const ServicePlan& plan_;
  std::string service_;
  Events events_;
  std::vector<std::unique_ptr<Slot>> slots_;
  size_t in_flight_ = 0;
  std::vector<std::pair<pid_t, int>> early_exits_;
  size_t count_;
};

}  // namespace superd::spawn
