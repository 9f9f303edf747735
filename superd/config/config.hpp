// superd's configuration as plain, validated structs. toml++ stays inside superd/config:
// nothing after start-up sees a TOML node. Every problem carries file, line, column and the
// key it is about, and is printed as "FILE:LINE:COL: key: message".
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "util/net.hpp"

namespace superd::config {

struct Location {
  std::string file;
  uint32_t line = 0, column = 0;
};

struct Problem {
  Location where;
  std::string key;      // dotted path, e.g. "socket.listen[1]"
  std::string message;
  std::string to_string() const;  // "FILE:LINE:COL: key: message"
};

class Problems {
 public:
  void add(Location where, std::string key, std::string message);
  bool empty() const { return list_.empty(); }
  const std::vector<Problem>& list() const { return list_; }

 private:
  std::vector<Problem> list_;
};

// Hard caps, so a config cannot make superd allocate without bound.
inline constexpr uint32_t kMaxPoolSize = 1u << 24;          // 16.7M UIDs
inline constexpr uint32_t kMaxConnectionsCap = 1u << 20;
inline constexpr size_t kMaxConfigFileBytes = 1u << 20;     // per TOML file
inline constexpr size_t kMaxServices = 4096;

struct Listen {
  net::ListenSpec spec;
  Location where;
};

struct SocketConfig {
  std::vector<Listen> listen;
  bool accept = true;
  uint32_t max_connections = 64;            // systemd's MaxConnections= default
  uint32_t max_connections_per_source = 0;  // 0: only max_connections bounds it
  std::vector<net::Cidr> allow;             // empty: everybody (subject to deny)
  std::vector<net::Cidr> deny;
  int backlog = 256;
  bool reuse_port = false;
  mode_t socket_mode = 0666;
  std::optional<uid_t> socket_user;
  std::optional<gid_t> socket_group;
};

enum class Stdio { socket, listen_fds };

struct Rlimit {
  int resource;
  rlim_t value;
};

struct ServiceConfig {
  std::vector<std::string> exec;
  bool dynamic_user = true;
  Stdio stdio = Stdio::socket;
  std::chrono::milliseconds runtime_max{0};      // 0: unlimited
  std::chrono::milliseconds timeout_stop{5000};  // TERM -> KILL grace
  std::vector<Rlimit> limits;
  std::vector<std::pair<std::string, std::string>> environment;
  std::vector<std::string> pass_environment;
  std::string working_directory;  // empty: "/"
  mode_t umask = 0022;
  std::optional<int> nice;
};

struct Service {
  std::string name;  // the file stem
  Location where;    // the file
  SocketConfig socket;
  ServiceConfig service;
};

struct Global {
  std::string file;
  uint32_t uid_min = 61184, uid_max = 65519;  // systemd's dynamic range, inclusive
  Location uid_range_where;
  std::vector<std::string> include{"conf.d/*.toml"};
  std::string log_level = "info";
  std::string runtime_root = "/run";
  std::string state_root = "/var/lib";
  std::string cache_root = "/var/cache";
  std::string logs_root = "/var/log";
};

struct Config {
  Global global;
  std::vector<Service> services;
};

// Parses the main file from text; `file` names it in problems.
Global parse_global(std::string_view text, const std::string& file, Problems& problems);
// Parses one service file from text; the service is named `name`.
std::optional<Service> parse_service(std::string_view text, const std::string& file,
                                     const std::string& name, Problems& problems);
// Checks that need the whole config: listeners used twice, the range against the user database.
void validate(const Config& config, Problems& problems);
// Checks against the running system: exec[0] exists and is executable (by a dynamic user).
void validate_system(const Config& config, Problems& problems);

// Reads the main file and every included service file, then runs all validations.
Config load(const std::string& path, Problems& problems);

}  // namespace superd::config
