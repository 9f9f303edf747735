// What a child applies between clone and exec, prepared entirely in the parent: argv/envp
// arrays, fds, identity, limits. The child reads this and nothing else; it allocates nothing.
// Per-service parts (argv, the fixed environment, rlimits) are built once at start-up in a
// ServicePlan; per-connection parts (peer variables, UID, fds) in an InstancePlan.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace superd::spawn {

// Steps of the child checklist, in order; a failure is reported as {step, errno}.
enum class Step : int32_t {
  none = 0,
  signals,
  stdio,
  close_fds,
  rlimits,
  umask_nice,
  chdir,
  setgroups,
  setresgid,
  setresuid,
  exec,
};
const char* step_name(Step s) noexcept;

struct ChildError {
  Step step = Step::none;
  int32_t err = 0;
};

// Per service, built once.
struct ServicePlan {
  std::string path;                  // exec[0]
  std::vector<std::string> argv;     // exec
  std::vector<std::string> env;      // environment + pass_environment (values taken at start-up)
  std::vector<config::Rlimit> limits;
  config::Stdio stdio = config::Stdio::socket;
  mode_t umask = 0022;
  bool set_nice = false;
  int nice = 0;
  std::string cwd = "/";
};
ServicePlan make_service_plan(const config::Service& svc, char** superd_environ);

// Facts about one connection that end up in the child's environment.
struct Peer {
  sockaddr_storage remote{};
  sockaddr_storage local{};
  bool is_unix = false;
  pid_t unix_pid = 0;
  uid_t unix_uid = 0;
  gid_t unix_gid = 0;
};

// Per connection: owns the strings the envp array points into.
struct InstancePlan {
  const ServicePlan* service = nullptr;
  uid_t uid = 0;
  gid_t gid = 0;
  int conn_fd = -1;    // borrowed
  int stderr_fd = -1;  // borrowed: write end of the log pipe
  int null_fd = -1;    // borrowed: /dev/null, stdin/stdout in listen-fds mode
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
};
void make_instance_plan(InstancePlan& out, const ServicePlan& svc, const Peer& peer, uid_t uid);

}  // namespace superd::spawn
