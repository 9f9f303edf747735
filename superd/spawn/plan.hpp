// What a child applies between clone and exec, prepared entirely in the parent: argv/envp
// arrays, fds, identity, limits. The child reads this and nothing else; it allocates nothing.
// Per-service parts (argv, the fixed environment, rlimits) are built once at start-up in a
// ServicePlan; per-connection parts (peer variables, UID, fds) in an InstancePlan.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "sandbox/mounts.hpp"
#include "sandbox/seccomp.hpp"
#include "util/result.hpp"

namespace superd::spawn {

// Steps of the child checklist, in order; a failure is reported as {step, errno}.
enum class Step : int32_t {
  none = 0,
  signals,
  stdio,
  close_fds,
  mounts,
  rlimits,
  umask_nice,
  chdir,
  capability_bounding_set,
  keep_caps,
  setgroups,
  setresgid,
  setresuid,
  ambient_caps,
  parent_death,
  no_new_privs,
  landlock,
  seccomp,
  exec,
  session,  // step 1b, numbered last: a record from a zygote of the binary before an upgrade keeps its meaning
};
const char* step_name(Step s) noexcept;

struct ChildError {
  Step step = Step::none;
  int32_t err = 0;
  int32_t detail = -1;  // Step::mounts: index of the failed mount operation
};

// Per service, built once.
struct ServicePlan {
  std::string path;                       // exec[0]
  std::vector<std::string> argv;          // exec, %n %p %i expanded
  bool per_connection_specifier = false;  // "%c" left in argv or env: expanded per instance
  std::vector<std::string> env;           // environment + pass_environment (values taken at start-up)
  std::vector<config::Rlimit> limits;
  // superd raises its own RLIMIT_NOFILE (two fds per live instance); services get back the
  // limit superd started with, unless `limits.nofile` says otherwise.
  bool reset_nofile = false;
  rlimit nofile{};
  config::Stdio stdio = config::Stdio::socket;
  mode_t umask = 0022;
  bool set_nice = false;
  int nice = 0;
  std::string cwd = "/";

  // Sandbox, all prepared here; the child only applies it.
  int clone_flags = 0;  // CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET as configured
  bool mount_ns = false;
  sandbox::MountPlan mounts;
  bool drop_bounding_set = false;
  uint64_t cap_keep = 0;     // bounding set kept (bit per capability)
  uint64_t cap_ambient = 0;  // raised into the ambient set after the UID switch
  int cap_last = 40;         // /proc/sys/kernel/cap_last_cap
  bool no_new_privs = false;
  std::unique_ptr<seccomp::Program> filter;  // compiled once; loaded last
  // With a zygote (spawn/zygote.hpp): `filter` is the zygote's base part, `gate_filter` its
  // narrowing of mount/clone; both, the bounding set and no_new_privs are the zygote's. An
  // instance loads only `tail_filter`, when the policy has one (seccomp::needs_instance_tail:
  // an allow list leaving out calls of the set-up); the built-in deny list and
  // "@system-service" have none.
  bool use_zygote = false;
  std::unique_ptr<seccomp::Program> gate_filter;
  std::unique_ptr<seccomp::Program> tail_filter;
  // Landlock scopes (sandbox/landlock.hpp), those this kernel offers: the zygote restricts
  // itself, and every instance again (its own domain). `landlock_missing`: asked for, not
  // offered; the daemon warns once.
  uint64_t landlock_scopes = 0;
  uint64_t landlock_missing = 0;
  int zygote_clone_flags = 0;
  std::vector<gid_t> groups;  // supplementary groups (the service's shared-directory group)
  // dynamic_user = false: every instance runs as this user, USER/LOGNAME/HOME from passwd.
  bool static_identity = false;
  uid_t static_uid = 0;
  gid_t static_gid = 0;
  std::string user_name, home = "/";
  std::string listen_fdnames;  // wait mode, listen-fds: the service name once per socket
};
// What superd changed in its own process at start that a service must not inherit.
struct HostLimits {
  // RLIMIT_NOFILE as superd started with it, when superd raised its own (see
  // ServicePlan::nofile); empty when it did not.
  std::optional<rlimit> original_nofile;
};

// The plan, or why it cannot be built (a syscall filter that does not compile).
// `host`: from raise_nofile_limit(). `shared_group`: the service's shared-directory group
// (sandbox/dirs.hpp), leased by the daemon: the instances' supplementary group, and umask 0007
// unless the service sets its own. `use_zygote`: the daemon may spawn this service through zygotes.
// `syslog_socket`: the service's syslog socket, for the mount plan's /dev/log (log_syslog).
Result<ServicePlan> make_service_plan(const config::Service& svc, const sandbox::Roots& roots, char** superd_environ,
                                      const HostLimits& host, std::optional<gid_t> shared_group = std::nullopt,
                                      bool use_zygote = false, const std::string& syslog_socket = {});
// Drops every capability the plan does not keep from this process's bounding set; false with
// errno set on failure. Allocation-free: the child checklist and the zygote both call it.
bool drop_bounding_set(const ServicePlan& plan) noexcept;

// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (as root, to 512Ki); returns
// the original for services (see ServicePlan::nofile). Called once, at daemon start.
HostLimits raise_nofile_limit() noexcept;

// Facts about one connection that end up in the child's environment.
struct Peer {
  sockaddr_storage remote{};
  sockaddr_storage local{};
  bool is_unix = false;
  pid_t unix_pid = 0;
  uid_t unix_uid = 0;
  gid_t unix_gid = 0;
  // Behind a PROXY header: PROXY_ADDR, PROXY_PORT and the TLVs' variables, as "KEY=value".
  std::vector<std::string> proxy_env;
};

// Per connection: owns the strings the envp array points into.
struct InstancePlan {
  const ServicePlan* service = nullptr;
  uid_t uid = 0;
  gid_t gid = 0;
  int conn_fd = -1;    // borrowed
  int stderr_fd = -1;  // borrowed: write end of the log pipe
  int null_fd = -1;    // borrowed: /dev/null, stdin/stdout in listen-fds mode
  // superd run: the caller's own stdin/stdout/stderr (borrowed), instead of a connection.
  bool passthrough = false;
  int stdin_fd = -1, stdout_fd = -1;
  // Wait mode with stdio = "listen-fds": the listening sockets (borrowed), moved to fd 3...
  int listen_fds[config::kMaxListenFds] = {};
  unsigned n_listen_fds = 0;
  // state_directory_idmap: the detached idmapped trees (borrowed; sandbox/idmap.hpp), one per
  // entry of the mount plan's `idmapped`, in its order; they fill those slots before the clone.
  int idmap_fds[config::kMaxIdmapDirs] = {};
  unsigned n_idmap_fds = 0;
  std::vector<std::string> env_storage;
  std::vector<std::string> argv_storage;  // only when argv needs "%c" expanded
  uint64_t serial = 0;
  std::vector<char*> argv;
  std::vector<char*> envp;
};
void make_instance_plan(InstancePlan& out, const ServicePlan& svc, const Peer& peer, uid_t uid, uint64_t serial);
// Wait mode: no peer; the listening socket is conn_fd (stdio = "socket") or the `n` sockets of
// `fds` become fd 3... with LISTEN_FDS=n (stdio = "listen-fds").
void make_wait_plan(InstancePlan& out, const ServicePlan& svc, uid_t uid, const std::string& user, uint64_t serial,
                    const int* fds, unsigned n);
// For superd run: no peer variables; USER/LOGNAME name the unit (or superd-UID).
void make_run_plan(InstancePlan& out, const ServicePlan& svc, uid_t uid, uint64_t serial, const std::string& user);
// The argv/envp arrays of `out` (env_storage filled), with %c expanded to `serial`.
void finish_arrays(InstancePlan& out, const ServicePlan& svc, uint64_t serial);

}  // namespace superd::spawn
