// The daemon's records: a Service (one configured service of one configuration generation),
// its Listeners, and what runs for it — an Instance (a process) or a Session (served in the
// loop). Each record owns its resources: fds, timers, the UID lease, the zygote pool.
//
// A service's polling is one named state machine (State below); its transitions are the
// functions in daemon/services.cpp, and nothing else writes `state`.
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <boost/asio.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "admission/policy.hpp"
#include "config/config.hpp"
#include "daemon/syslog.hpp"
#include "inloop/datagram_guard.hpp"
#include "inloop/inloop.hpp"
#include "spawn/plan.hpp"
#include "spawn/zygote_pool.hpp"
#include "uid_pool/lease.hpp"
#include "util/log.hpp"
#include "util/net.hpp"
#include "util/sink.hpp"

namespace superd::daemon {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct Service;

struct Listener {
  Listener(Service* s, const config::Listen& l, asio::posix::stream_descriptor fd, std::string k)
      : service(s), spec(l.spec), sd(std::move(fd)), datagram(l.datagram), key(std::move(k)) {}
  Service* service;
  net::ListenSpec spec;
  asio::posix::stream_descriptor sd;
  bool armed = false;  // a wait for readability is pending on `sd`
  // Back-off after EMFILE & co.; a member, so that a listener closed by a reload cancels it.
  std::unique_ptr<asio::steady_timer> backoff;
  bool datagram = false;
  std::string key;  // spec and socket options: a reload reuses a listener only if they all match
};

// Whether the service's listeners are polled, and if not, what brings polling back.
//
//   polling -------- max_connections or spawn backlog -----------> full
//   full ----------- an instance ends / a request is answered ----> polling
//   polling -------- max_connection_rate (defer), wait back-off --> held
//   held ----------- its timer ------------------------------------> polling
//   polling -------- a wait-mode instance starts ------------------> wait_running
//   wait_running --- it exits (at once: back-off) -----------------> polling | held
//   any ------------ shutdown -------------------------------------> stopping (final)
enum class State : uint8_t { polling, full, held, wait_running, stopping };
const char* state_name(State s) noexcept;
bool transition_allowed(State from, State to) noexcept;

// Who is on the other end of a connection: the identity for the plan, the log and admission.
// Behind a PROXY header (daemon/proxy.cpp) it is the real client the proxy names.
struct PeerInfo {
  spawn::Peer peer;
  std::string text;  // as log lines show it
  net::SourceKey source;
  const sockaddr* ip() const noexcept {  // the IP peer, nullptr for UNIX
    return peer.is_unix ? nullptr : reinterpret_cast<const sockaddr*>(&peer.remote);
  }
};

// A connection accepted past the rate limit with connection_rate_action = "defer": held until
// the limit lets it through (one at most per service: accepting stops while one waits).
struct Deferred {
  UniqueFd conn;
  PeerInfo who;
};

// What an internal datagram service keeps between datagrams: one buffer (request and reply
// halves), the REFUSE line budget, and the loop guard and reply limits (built at the first one).
struct DatagramState {
  std::vector<char> buf;
  Clock::time_point refusal_window{};  // REFUSE lines for datagrams, bounded per second
  uint32_t refusals_logged = 0, refusals_unlogged = 0;
  std::unique_ptr<inloop::OwnSockets> own_sockets;
  std::unique_ptr<inloop::ReplyLimiter> reply_limit;
};

struct Service {
  Service(std::shared_ptr<const config::Service> c, spawn::ServicePlan p, admission::Policy policy)
      : cfg(c.get()), plan(std::move(p)), policy(std::move(policy)), owned_cfg(std::move(c)) {}
  const config::Service* cfg;
  spawn::ServicePlan plan;
  admission::Policy policy;
  std::shared_ptr<const config::Service> owned_cfg;  // the config this service was built from
  // The shared-directory GID, leased for the service's lifetime; a reloaded service shares it
  // with its successor, and it returns when the last of them goes.
  std::shared_ptr<uid_pool::Lease> group;
  // state_directory_idmap: the directories' stable owner (daemon/idmap_dirs.cpp), shared the same way.
  std::shared_ptr<uid_pool::Lease> owner;
  std::vector<std::unique_ptr<Listener>> listeners;
  State state = State::polling;
  std::unique_ptr<spawn::ZygotePool> zygotes;  // sandboxed accept-mode services spawn through them
  log::Sink sink;                              // where START/EXIT/REFUSE/FAIL and the instances' stderr go
  std::unique_ptr<SyslogSocket> syslog;        // log_syslog: the instances' /dev/log (daemon/syslog.hpp)
  std::optional<inloop::Internal> internal;
  bool wait_mode = false;                          // accept = false: one instance at a time gets the listening sockets
  unsigned quick_exits = 0;                        // wait mode: instances in a row that exited within kQuickExit
  std::unique_ptr<asio::steady_timer> hold_timer;  // ends State::held
  std::optional<Deferred> deferred;
  DatagramState datagrams;
  // What `status` and /metrics show: since the service first started (a reload carries them
  // over). Plain increments on the loop's one thread: no lock, no system call.
  struct Counters {
    uint64_t accepted = 0, refused = 0, failed = 0;  // START, REFUSE and FAIL events
    Clock::time_point since = Clock::now();
    std::map<std::string, uint64_t> refused_by, failed_by;     // by reason class, by step
    uint64_t ended_ok = 0, ended_error = 0, ended_signal = 0;  // exit status 0, other, a signal
    uint64_t zygote_restarts = 0;
    uint64_t proxy_local = 0;  // PROXY LOCAL headers (a balancer's health checks), closed unspawned
    // Accept to a running child (the zygote's answer, or launch()), in seconds.
    static constexpr double kBuckets[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
    uint64_t spawn_buckets[std::size(kBuckets)] = {};
    uint64_t spawn_count = 0;
    double spawn_sum = 0;
    void spawned(Clock::duration took) noexcept;
  };
  mutable Counters counters;

  bool spawn_backlog_full() const noexcept { return zygotes && zygotes->backlog_full(); }
  // Room for one more: neither at max_connections nor at the zygotes' backlog.
  bool has_room() const noexcept { return !policy.gate().full() && !spawn_backlog_full(); }

  // The service's log lines, with the fields its log_on_success / log_on_failure select.
  void log_start(uint64_t serial, const std::string& peer, uint32_t uid, pid_t pid) const;
  void log_exit(uint64_t serial, const std::string& peer, uint32_t uid, pid_t pid, Clock::time_point started,
                const std::string& status, const inloop::Traffic* traffic) const;
  void log_refuse(const std::string& peer, const std::string& reason) const;
  void log_fail(uint64_t serial, const std::string& peer, uint32_t uid, const std::string& why) const;
  void log_stderr(uint64_t serial, uint32_t uid, std::string_view line) const;
  // A message on the service's /dev/log, at the level its severity maps to; nullopt: "?".
  void log_syslog(std::optional<uint64_t> serial, std::optional<uint32_t> uid, const syslog::Message& m) const;
  void log_syslog_dropped(uint64_t dropped) const;

 private:
  void log_line(log::Level level, const std::string& line) const;
};

struct Instance {
  Service* service;
  uint64_t serial;
  uint32_t uid;
  pid_t pid;
  std::string peer;
  net::SourceKey source;
  Clock::time_point started;
  uid_pool::Lease lease;  // empty for a static user: nothing to return
  asio::posix::stream_descriptor pidfd;
  asio::posix::stream_descriptor err;
  std::string err_line;
  char err_buf[2048];
  asio::steady_timer timer;
  bool term_sent = false;
  // superd run: the transient service it owns, the caller's control connection, its unit.
  std::unique_ptr<Service> owned_service;
  std::unique_ptr<asio::posix::stream_descriptor> control;
  std::string unit;

  Instance(asio::io_context& io, int pidfd_raw, int err_raw) : pidfd(io, pidfd_raw), err(io, err_raw), timer(io) {}
};

// A connection served inside the loop (internal service or redirect) rather than by a process.
struct Session {
  Service* service;
  uint64_t serial;
  std::string peer;
  net::SourceKey source;
  Clock::time_point started;
  std::unique_ptr<inloop::Session> io;
  std::unique_ptr<asio::steady_timer> timer;  // runtime_max
};

}  // namespace superd::daemon
