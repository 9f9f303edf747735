// A per-service zygote: a process forked once at start-up that already stands where every
// instance of the service would otherwise have to get to on its own — its mount namespace
// with the read-only OS, protected home and boundary directories in place, the bounding set
// dropped, no_new_privs set and the base of the seccomp filter loaded. Per connection the
// daemon sends it one request (UID, environment, the connection's fds); the zygote clones the
// instance with CLONE_PARENT (so the daemon reaps it, as any instance), into fresh mount and
// PID namespaces; the instance mounts its private /tmp, /var/tmp, /dev/shm, /proc and runtime
// directory, switches UID, loads the filter's small tail and execs. Stacked, base and tail
// answer every syscall as the whole filter does. The daemon keeps one zygote per CPU and does
// not wait for them: send() now, receive() when the socket is readable (the clone into fresh
// namespaces is the slowest step of a connection; bench/spawn_parallel.sh measured the gain). Measured reason (bench/):
// loading the whole filter and dropping the bounding set per connection cost ~0.5 ms of CPU each time.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "spawn/plan.hpp"
#include "spawn/spawn.hpp"
#include "util/unique_fd.hpp"

namespace superd::spawn {

// The zygote's own set-up, in order; a failed step comes back as a fixed {step, errno, detail}
// record (detail: the mount op's index for `mounts`), never as text.
enum class SetupStep : int32_t {
  ok = 0,
  socketpair,
  fork,
  unshare_mount_ns,
  mounts,
  bounding_set,
  no_new_privs,
  landlock,
  seccomp_base,
  seccomp_gate,
  died,  // no record came: the zygote exited (err: why the read failed)
};
const char* setup_step_name(SetupStep s) noexcept;

struct SetupError {
  SetupStep step = SetupStep::ok;
  int err = 0;
  int detail = -1;
  std::string describe(const ServicePlan& plan) const;  // "<step or mount op>: <strerror>"
};

class Zygote {
 public:
  // Forks the zygote for `plan` and waits for it to report its set-up (start-up and reload).
  static std::unique_ptr<Zygote> start(const ServicePlan& plan, SetupError& error);
  // Forks it without waiting (the connection path): requests may be sent at once, the socket
  // queues them; read_setup() takes the set-up record when the socket is readable.
  static std::unique_ptr<Zygote> launch(const ServicePlan& plan, SetupError& error);
  enum class SetupState { pending, ready, failed };
  SetupState setup_state() const noexcept { return setup_; }
  // Reads the set-up record: nullopt while it has not come (non-blocking socket) or on success
  // (setup_state() says which); the failure otherwise.
  std::optional<SetupError> read_setup() noexcept;
  ~Zygote();
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  // One instance in two halves, so the daemon need not wait: send() queues a request (the plan
  // and its fds are copied into the message: they may be reused or closed right after), and
  // receive() reads the next answer (once the set-up record is read). The zygote answers its
  // requests in order, once the child has exec'd or failed, as vfork would; on a failed step
  // the child (exited) is the daemon's to reap.
  // `ec` with `lost` set: the zygote is gone (its unanswered requests may or may not have
  // started an instance); without: the clone itself failed.
  std::error_code send(const InstancePlan& plan) noexcept;
  Child receive(ChildError& err, std::error_code& ec, bool& lost) noexcept;

  pid_t pid() const noexcept { return pid_; }
  int socket() const noexcept { return sock_.get(); }  // borrowed: readable when an answer is there

 private:
  Zygote(pid_t pid, UniqueFd sock) : pid_(pid), sock_(std::move(sock)) {}
  pid_t pid_;
  UniqueFd sock_;
  SetupState setup_ = SetupState::pending;
};

}  // namespace superd::spawn
