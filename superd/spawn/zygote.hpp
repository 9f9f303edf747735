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
// namespaces is the slowest step of a connection; bench/spawn_parallel.sh measured the gain). Measured reason (bench/): loading the whole
// filter and dropping the bounding set per connection cost ~0.5 ms of CPU each time.
#pragma once

#include <sys/types.h>

#include <memory>
#include <system_error>

#include "spawn/plan.hpp"
#include "spawn/spawn.hpp"
#include "util/unique_fd.hpp"

namespace superd::spawn {

class Zygote {
 public:
  // Forks the zygote for `plan` and waits for it to report its set-up; on failure says which
  // step failed in `failure`.
  static std::unique_ptr<Zygote> start(const ServicePlan& plan, std::string& failure);
  ~Zygote();
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  // One instance: a blocking round trip (the zygote answers once the child has exec'd or
  // failed, as vfork would). On a failed step returns the child (exited, the daemon's to reap).
  Child spawn(const InstancePlan& plan, ChildError& err, std::error_code& ec) noexcept;

  // The same in two halves, so the daemon need not wait: send() queues a request (the plan and
  // its fds are copied into the message: they may be reused or closed right after), and
  // receive() reads the next answer. The zygote answers its requests in order.
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
};

}  // namespace superd::spawn
