// What an upgrade hands from the old image to the new one (daemon/upgrade.cpp): a versioned
// JSON document in a sealed memfd, whose fd the new image finds in SUPERD_UPGRADE_STATE, and the
// fds it names, kept open across execve(2) (their close-on-exec flag cleared for it). Pure data
// and its encoding; nothing here touches the daemon.
//
// The format is versioned as a whole: an image that does not know `format` refuses the hand-over
// before it changes anything (`superd handover-check` says so in advance, and the new image
// falls back to the old one if it finds out only after the exec).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "uid_pool/lease_table.hpp"
#include "util/net.hpp"
#include "util/unique_fd.hpp"

namespace superd::daemon::handover {

inline constexpr int kFormat = 1;
inline constexpr const char* kStateEnv = "SUPERD_UPGRADE_STATE";        // the memfd's number
inline constexpr const char* kRollbackEnv = "SUPERD_UPGRADE_ROLLBACK";  // why the new image gave up

struct Listener {
  int fd = -1;
  std::string key;  // the listener's key (address and socket options): matched exactly
  std::string service;
};

// A lease of the old image: the new one takes it again, record and name unchanged.
struct Lease {
  uint32_t uid = 0;
  std::string user;  // the names file's name
  uint8_t kind = 1;  // uid_pool::NameKind
};

struct Instance {
  std::string service;
  pid_t pid = 0;
  int pidfd = -1, err = -1;  // the pidfd, and the read end of its stderr pipe
  uint64_t serial = 0;
  uint32_t uid = 0;
  bool leased = false;  // `uid` is a lease (else a static user's)
  std::string peer;
  net::SourceKey source;
  int64_t started_ns = 0;   // steady clock (CLOCK_MONOTONIC survives the exec)
  int64_t deadline_ns = 0;  // runtime_max or the KILL after it; 0: none
  bool term_sent = false;
  std::string err_line;  // stderr read but not logged yet (an incomplete line)
  bool retired = false;  // of a service a reload replaced: its settings are not the current ones
};

struct Counters {
  std::string service;
  uint64_t accepted = 0, refused = 0, failed = 0, ended_ok = 0, ended_error = 0, ended_signal = 0, zygote_restarts = 0;
  int64_t since_ns = 0;
  uint64_t proxy_local = 0;  // absent from an image before PROXY support: 0
};

struct Capsule {
  std::string name, home;
  uint32_t block = 0;
  pid_t pid = 0;
  int pidfd = -1, out = -1, alive = -1;
  bool ready_seen = false;
  int64_t started_ns = 0;
};

// A service's /dev/log socket (daemon/syslog.hpp): its live instances' namespaces bind its path,
// so the new image keeps socket and path for the service of the same name.
struct Syslog {
  std::string service, path;
  int fd = -1;
};

struct State {
  int format = kFormat;
  std::string version;  // the old image's SUPERD_VERSION, for the log
  std::vector<std::string> argv;
  int exe_fd = -1;                          // the old image's binary: where the new image falls back to
  int table_fd = -1;                        // the lease table, with its lock
  int control_fd = -1;                      // the control socket (listening)
  std::vector<int> control_pending;         // its connections whose request was not served yet
  int reply_fd = -1;                        // the `superd upgrade` that asked, answered by the new image (-1: SIGUSR2)
  int64_t requested_ns = 0, paused_ns = 0;  // the request, and when the listeners paused
  size_t listener_count = 0;                // as handed over (the new image takes them out of `listeners`)
  uint32_t uid_min = 0, uid_max = 0;
  std::string runtime_root;
  uint64_t serial = 0;
  std::vector<Listener> listeners;
  std::vector<Lease> leases;
  std::vector<Instance> instances;
  std::vector<Counters> counters;
  std::vector<Capsule> capsules;
  std::vector<Syslog> syslogs;
  std::vector<pid_t> zygotes;  // the old image's zygotes: children to reap, never to use
  std::vector<std::string> started_units, stopped_units, wait_running;
  std::string rollback;  // set by the new image when it falls back
};

std::string encode(const State& s);
// nullopt with `error` for a document this image cannot take (malformed, another format).
std::optional<State> decode(const std::string& text, std::string& error);

// The state into a sealed memfd that survives execve (no close-on-exec).
UniqueFd write(const State& s, std::error_code& ec);
// Reads it back from `fd` (from the start), and closes it.
std::optional<State> read(int fd, std::string& error);

// Every fd the state names, for clearing (or setting back) close-on-exec.
std::vector<int> fds_of(const State& s);
std::error_code keep_across_exec(const std::vector<int>& fds, bool keep);

}  // namespace superd::daemon::handover
