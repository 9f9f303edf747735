// superd's configuration as plain, validated structs. toml++ stays inside superd/config:
// nothing after start-up sees a TOML node. Every problem carries file, line, column and the
// key it is about, and is printed as "FILE:LINE:COL: key: message".
//
// Values are stored parsed, so no stage parses a string again: the access times, the internal
// service, the log target's sink spec, the syscall filter's seccomp::Settings and the admission
// limits are the types their stages take.
//
// The module: reader.{hpp,cpp} (the TOML reader), socket.cpp, service.cpp and sandbox.cpp
// (the tables of a service file, through tables.hpp), global.cpp (the main file), run.cpp
// (`superd run`), validate.cpp (checks across files and against the system), load.cpp.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "admission/access_times.hpp"
#include "admission/admission.hpp"
#include "inloop/internal_service.hpp"
#include "proxy/header.hpp"
#include "sandbox/seccomp.hpp"
#include "util/net.hpp"
#include "util/sink.hpp"

namespace superd::config {

struct Location {
  std::string file;
  uint32_t line = 0, column = 0;
};

struct Problem {
  Location where;
  std::string key;  // dotted path, e.g. "socket.listen[1]"
  std::string message;
  // The service whose own file this is about ("": the main file, or across services): without
  // `strict`, serve and reload skip that service and serve the others.
  std::string service;
  std::string to_string() const;  // "FILE:LINE:COL: key: message"
};

class Problems {
 public:
  void add(Location where, std::string key, std::string message);
  // The problems added since `from` (list().size() then) are service `name`'s own.
  void mark_service(size_t from, const std::string& name);
  // Removes and returns the problems of single services, leaving those that concern all.
  std::vector<Problem> take_service_problems();
  bool empty() const { return list_.empty(); }
  const std::vector<Problem>& list() const { return list_; }

 private:
  std::vector<Problem> list_;
};

// Hard caps, so a config cannot make superd allocate without bound.
inline constexpr uint32_t kMaxPoolSize = 1u << 24;  // 16.7M UIDs
inline constexpr uint32_t kMaxConnectionsCap = 1u << 20;
inline constexpr size_t kMaxConfigFileBytes = 1u << 20;  // per TOML file
inline constexpr size_t kMaxServices = 4096;
inline constexpr size_t kMaxListenFds = 16;  // sockets handed to one wait-mode instance
inline constexpr size_t kMaxIdmapDirs = 16;  // idmapped state/cache/logs directories of one service

struct Listen {
  net::ListenSpec spec;
  Location where;
  bool datagram = false;  // from listen_datagram: a UDP socket
};

// What IPV6_V6ONLY a "[::]:PORT" listener gets (systemd's BindIPv6Only=); a bare "PORT" is
// always dual-stack.
enum class BindIpv6Only { default_, both, ipv6_only };
// Past max_connection_rate: stop accepting until the window has room, or accept and close.
enum class RateAction { defer, refuse };

// A file sent to clients (xinetd's banner, banner_success, banner_fail), read at load time.
struct Banner {
  std::string path;
  std::string text;
  bool empty() const { return path.empty(); }
};
inline constexpr size_t kMaxBannerBytes = 64 * 1024;

struct SocketConfig {
  std::vector<Listen> listen;
  bool accept = true;
  // allow, deny, max_connections, max_connections_per_source: what admission::Gate enforces.
  admission::Limits limits;
  int backlog = 256;
  bool reuse_port = false;
  mode_t socket_mode = 0666;
  std::optional<uid_t> socket_user;
  std::optional<gid_t> socket_group;
  BindIpv6Only bind_ipv6_only = BindIpv6Only::default_;
  bool no_delay = false;             // TCP_NODELAY, set on the listener and inherited by connections
  bool keep_alive = false;           // SO_KEEPALIVE, likewise
  uint32_t max_connection_rate = 0;  // per connection_rate_interval; 0: no limit
  std::chrono::milliseconds connection_rate_interval{1000};
  RateAction connection_rate_action = RateAction::defer;
  admission::AccessTimes access_times;  // parsed "HH:MM-HH:MM" intervals, local time; empty: always
  Banner banner, banner_success, banner_fail;
  // Internal datagram services: replies per interval for all sources together, and per source
  // address (bursts of the max, then max per interval); 0: no limit. See inloop/datagram_guard.hpp.
  uint32_t datagram_reply_rate = 1000;
  std::chrono::milliseconds datagram_reply_interval{1000};
  uint32_t datagram_reply_rate_per_source = 20;
  std::chrono::milliseconds datagram_reply_interval_per_source{2000};
  // PROXY protocol from trusted load balancers (proxy/header.hpp); off without proxy_protocol.
  std::optional<proxy::Versions> proxy_protocol;
  std::vector<net::Cidr> proxy_allow;   // IP proxies trusted to send a header
  bool proxy_allow_unix = false;        // "unix": any peer of a UNIX listener (its mode decides)
  std::vector<uid_t> proxy_allow_uids;  // "uid:N": UNIX peers with that UID
  std::chrono::milliseconds proxy_timeout{3000};
  uint32_t proxy_max_tlv = 4096;
  proxy::Limits proxy_limits() const noexcept { return {proxy_protocol.value_or(proxy::Versions::any), proxy_max_tlv}; }
};

enum class Stdio { socket, listen_fds };

struct Rlimit {
  int resource;
  rlim_t value;
};

enum class ProtectSystem { no, yes, full, strict };

constexpr uint64_t kDefaultPrivateTmpSize = 64ULL << 20;  // private_tmp_size
constexpr rlim_t kDefaultNproc = 512;                     // limits.nproc of a dynamic user
enum class ProtectHome { no, read_only, tmpfs, yes };

struct Path {
  std::string path;
  bool optional = false;  // "-/path": a missing path is ignored, as in systemd
};
struct BindPath {
  std::string source, target;
  bool optional = false;
};
struct ExecDirs {
  std::vector<std::string> names;  // relative, specifiers expanded, no ".."
  mode_t mode = 0755;
};

// A dynamic user's syscall filter before any key: the Settings defaults (the built-in deny list,
// restrict_suid_sgid, the native ABI) and the address families AF_UNIX, AF_INET, AF_INET6.
inline seccomp::Settings default_seccomp() {
  seccomp::Settings s;
  s.restrict_address_families = {"AF_UNIX", "AF_INET", "AF_INET6"};
  return s;
}

// The sandbox as configured. Defaults follow systemd's DynamicUser= implications when
// dynamic_user is on (resolved after parsing; see resolve_sandbox_defaults()).
struct SandboxConfig {
  bool enabled = true;  // `sandbox = false`: only the UID switch (benchmarks, trusted services)
  ProtectSystem protect_system = ProtectSystem::strict;
  ProtectHome protect_home = ProtectHome::read_only;
  bool private_tmp = true;
  // One size budget for all of an instance's private tmpfs mounts together (/tmp, /var/tmp,
  // /dev/shm and its runtime directories share one tmpfs), so one connection cannot fill RAM.
  uint64_t private_tmp_size = kDefaultPrivateTmpSize;
  bool private_devices = false;
  // The instances' /dev/log is a socket superd reads (daemon/syslog.hpp): their syslog(3)
  // messages go to the service's log. Needs a mount namespace; see sandbox/mounts.hpp step 14.
  bool log_syslog = true;
  bool private_network = false;
  // An IPC namespace per instance: SysV objects and mqueues die with it. Off by default, as in
  // systemd (PrivateIPC= is not implied by DynamicUser=): it costs ~150 us of CPU per
  // connection here, and RemoveIPC-style cleanup removes the UID's objects anyway.
  bool private_ipc = false;
  std::vector<Path> read_write_paths, read_only_paths, inaccessible_paths;
  std::vector<BindPath> bind_paths, bind_read_only_paths;
  ExecDirs state, cache, logs, runtime;
  // state_directory_idmap: every instance sees its state, cache and logs directories through an
  // idmapped mount (sandbox/idmap.hpp) as owned by its own UID and GID, while the files live on
  // disk under the service's stable owner (a named lease). Per-connection services only.
  bool idmap_dirs = false;
  bool no_new_privileges = true;
  std::vector<int> capability_bounding_set;  // capabilities kept; default none
  std::vector<int> ambient_capabilities;
  // The syscall filter (keys system_call_filter, system_call_error_number,
  // system_call_architectures, restrict_address_families, restrict_suid_sgid and the built-in
  // deny list), validated at load; spawn/plan compiles it as it is. restrict_address_families is
  // systemd's RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 by default (netlink, vsock,
  // packet sockets... answer EAFNOSUPPORT); the key, when present, replaces it ([] = none).
  seccomp::Settings seccomp = default_seccomp();
  // Whether an instance loads the filter at all: false when no key and no default asks for one
  // (a static user, or sandbox = false, without any of the keys above).
  bool filter_syscalls = true;
  // Landlock scopes (sandbox/landlock.hpp): an instance reaches only its own abstract UNIX
  // sockets and signals only its own processes. Not enforced, with a warning, before ABI 6.
  bool restrict_abstract_sockets = true;
  bool restrict_signals = true;
};

// Fields of START/EXIT (log_on_success) and REFUSE/FAIL (log_on_failure) lines, as xinetd's.
enum LogField : uint32_t {
  kLogPid = 1,
  kLogHost = 2,
  kLogUserid = 4,
  kLogExit = 8,
  kLogDuration = 16,
  kLogTraffic = 32,
  kLogAttempt = 64,
  kLogAll = 127,
};

struct ServiceConfig {
  std::vector<std::string> exec;             // argv; exec[0] is also the program unless exec_path says otherwise
  std::string exec_path;                     // the program: exec[0], or for ["@/path", "argv0", ...] "/path"
  Location exec_where;                       // the exec key's value (for problems with the program)
  std::optional<inloop::Internal> internal;  // echo, discard, ...: served by superd itself
  std::optional<net::ListenSpec> redirect;   // relay each connection to this TCP address
  bool disabled = false;                     // parsed, not served
  bool dynamic_user = true;
  // Static identity (dynamic_user = false): resolved at load time.
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home = "/";
  std::vector<gid_t> supplementary_groups;
  // log_target as written ("" when absent: superd's own log), for messages, and parsed: where
  // the lines go ("stderr", "file:/path", "syslog:FACILITY[.LEVEL]"). The daemon opens it.
  std::string log_target;
  log::SinkSpec log_sink;
  uint32_t log_on_success = kLogAll;
  uint32_t log_on_failure = kLogAll;
  Stdio stdio = Stdio::socket;
  std::chrono::milliseconds runtime_max{0};  // 0: unlimited
  // cgroup v2 bounds (systemd's MemoryMax=, TasksMax=, CPUWeight=); see sandbox/cgroup.hpp for
  // where they apply.
  std::optional<uint64_t> memory_max, tasks_max;
  std::optional<uint32_t> cpu_weight;
  std::chrono::milliseconds timeout_stop{5000};  // TERM -> KILL grace
  std::vector<Rlimit> limits;
  std::vector<std::pair<std::string, std::string>> environment;
  std::vector<std::string> pass_environment;
  std::string working_directory;  // empty: "/"
  mode_t umask = 0022;
  bool umask_set = false;
  std::optional<int> nice;
  SandboxConfig sandbox;
};

// Where a service comes from: its own file, a link to a template (`enable`), or a template
// instance started at run time (`superd start`).
enum class Origin { file, link, runtime };

struct Service {
  std::string name;  // the file stem ("echo", "foobard@acme")
  Location where;    // the file (a link's template)
  Origin origin = Origin::file;
  SocketConfig socket;
  ServiceConfig service;
};

struct Global {
  std::string file;
  uint32_t uid_min = 61184, uid_max = 65519;  // systemd's dynamic range, inclusive
  Location uid_range_where;
  std::vector<std::string> include{"conf.d/*.toml"};
  std::string log_level = "info";
  // superd's own log: "stderr" (the default), "file:/PATH" or "syslog:FACILITY", as a service's.
  std::string log_target;
  log::SinkSpec log_sink;
  std::string runtime_root = "/run";
  std::string state_root = "/var/lib";
  std::string cache_root = "/var/cache";
  std::string logs_root = "/var/log";
  // Blocks of 65,536 UIDs for capsules (capsule/block.hpp), never overlapping the dynamic range.
  uint32_t capsule_first = 0x70000000, capsule_last = 0x7FFFFFFF;
  Location capsule_range_where;
  // GET /metrics (Prometheus text format) on this address, for the peers metrics_allow lets in
  // (default: loopback only; UNIX peers are the socket file's business).
  std::optional<net::ListenSpec> metrics_listen;
  Location metrics_where;
  std::vector<net::Cidr> metrics_allow;
  // All or nothing: a bad service file makes serve and reload refuse (as before this key).
  bool strict = false;
  // Zygotes per sandboxed service; 0: one per CPU superd may run on (its affinity mask).
  uint32_t zygotes = 0;
  // Set when this superd runs inside a capsule (load_capsule): its roots are the capsule's.
  std::string capsule, capsule_home;
};

struct Config {
  Global global;
  std::vector<Service> services;      // the enabled ones
  std::vector<std::string> disabled;  // names of services with disabled = true
  // Templates by name ("foobard@") -> their file: not served themselves.
  std::map<std::string, std::string> templates;
  // Services left out because their own file is bad (see skip_failed_services), with the reason.
  struct Failed {
    std::string name, reason;
  };
  std::vector<Failed> failed;
};

// Without global.strict: the services whose own files have problems are taken out of `config`
// (into config.failed, with their first problem as the reason) and their problems out of
// `problems`, which keeps only those that concern everything. Returns the problems taken.
std::vector<Problem> skip_failed_services(Config& config, Problems& problems);

// Parses the main file from text; `file` names it in problems.
Global parse_global(std::string_view text, const std::string& file, Problems& problems);
// Parses one service file from text; the service is named `name`.
std::optional<Service> parse_service(std::string_view text, const std::string& file, const std::string& name,
                                     Problems& problems);
// A transient service for `superd run`: [service] keys from "-p key=value" (value as TOML, e.g.
// true or ["a","b"], or else taken as a plain string) and exec = argv. Named `name`.
std::optional<Service> parse_run_service(const std::vector<std::string>& properties,
                                         const std::vector<std::string>& argv, const std::string& name,
                                         Problems& problems);
// Expands %n %p %i (and %c when `serial` is given) in `s`; "%%" is a literal '%'.
std::string expand_specifiers(std::string_view s, const std::string& name, const std::string* serial = nullptr);
// Checks that need the whole config: listeners used twice, the range against the user database.
void validate(const Config& config, Problems& problems);
// Inside a capsule: listeners on TCP/UDP ports >= 1024 or UNIX paths under the runtime root.
void validate_capsule(const Config& config, Problems& problems);
// Checks against the running system: exec[0] exists and is executable (by a dynamic user).
void validate_system(const Config& config, Problems& problems);

// An instance of a template in `config` (a run-time start): parsed from the template's file as
// it is now. nullopt with a problem for an unknown template or a bad instance name.
std::optional<Service> load_instance(const Config& config, const std::string& name, Problems& problems);

// The configuration of the superd inside capsule `name`: `<home>/.config/superd/` holds its
// service files and an optional superd.toml, in which only log_level may be set (roots, ranges
// and includes could reach outside the capsule: they are refused, with their position). The
// roots are the capsule's: runtime `runtime_dir`, state `<home>/.local/state`, cache
// `<home>/.cache`, logs `<home>/.local/state/log`. Listeners must be TCP/UDP ports >= 1024 or
// UNIX paths under `runtime_dir`.
Config load_capsule(const std::string& name, const std::string& home, const std::string& runtime_dir,
                    Problems& problems);

// Reads the main file and every included service file, then runs all validations.
Config load(const std::string& path, Problems& problems);

// A service file that did not come from disk (superd serve --xinetd converts in memory):
// `file` names it in problems, `line_origin[i]` maps TOML line i+1 back to a line of `file`.
struct MemoryService {
  std::string name, toml, file;
  std::vector<uint32_t> line_origin;
  uint32_t origin_line = 0;  // where the service starts in `file`
};
// As load(), plus in-memory services; `path` may be empty (defaults for every global key).
Config load(const std::string& path, const std::vector<MemoryService>& extra, Problems& problems);

}  // namespace superd::config
