// Internal to the importer: what service.cpp and inetd.cpp share — the TOML writer that records
// the source line of every line it writes, and the lookups both input formats need.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "xinetd/xinetd.hpp"

namespace superd::xinetd::detail {

// Internal services superd serves itself (xinetd's and inetd's builtins it has).
bool is_internal_service(const std::string& name);

// A TOML string literal: basic string, escaped; invalid UTF-8 bytes become U+FFFD.
std::string toml_string(const std::string& s);
std::string toml_array(const std::vector<std::string>& items);  // of strings

// Writes a service file line by line; every line remembers the xinetd line it came from.
class TomlWriter {
 public:
  void line(const std::string& text, uint32_t from);
  void comment(const std::string& text, uint32_t from);
  void key(const std::string& k, const std::string& toml_value, uint32_t from) { line(k + " = " + toml_value, from); }
  void blank() { line("", 0); }
  const std::string& text() const { return text_; }
  const std::vector<uint32_t>& origin() const { return origin_; }

 private:
  std::string text_;
  std::vector<uint32_t> origin_;
};

// The parts of a service both formats produce, written in superd's key order.
struct Socket {
  std::vector<std::string> listen, listen_datagram;
  std::optional<std::string> bind_ipv6_only;
  std::optional<bool> accept, no_delay, keep_alive;
  std::optional<uint64_t> max_connections, max_connections_per_source, max_connection_rate;
  std::string rate_interval, rate_comment;
  std::optional<std::vector<std::string>> allow, deny;
  std::string deny_comment;
  std::optional<std::vector<std::string>> access_times;
  std::optional<std::string> banner, banner_success, banner_fail;
  // source lines, by key
  uint32_t l_listen = 0, l_v6 = 0, l_accept = 0, l_nodelay = 0, l_keepalive = 0, l_max = 0, l_per_source = 0,
           l_rate = 0, l_allow = 0, l_deny = 0, l_times = 0, l_banner = 0, l_banner_success = 0, l_banner_fail = 0;
};

struct Limit {
  std::string key;    // as, cpu, data, nofile, rss, stack
  std::string value;  // TOML value: 1024, "512M", "infinity"
  uint32_t line = 0;
};

struct Program {
  std::string disabled_reason;  // non-empty: disabled = true, with this comment
  uint32_t l_disabled = 0;
  std::optional<std::string> internal, redirect;
  std::vector<std::string> exec;
  uint32_t l_program = 0;
  std::optional<std::string> user, group;
  std::optional<std::vector<std::string>> supplementary_groups;
  uint32_t l_user = 0, l_group = 0, l_groups = 0;
  bool dynamic = false;  // dynamic_user = yes (superd's extension): user/group replaced by a dynamic UID
  uint32_t l_dynamic = 0;
  std::optional<std::string> umask;
  std::optional<long> nice;
  std::vector<std::string> environment, pass_environment;
  bool environment_set = false, pass_environment_set = false;
  uint32_t l_umask = 0, l_nice = 0, l_env = 0, l_passenv = 0;
  std::vector<Limit> limits;
  std::optional<std::string> log_target;
  std::optional<std::vector<std::string>> log_on_success, log_on_failure;
  uint32_t l_log_target = 0, l_success = 0, l_failure = 0;
};

// Writes the whole file: header comment, [socket], [service].
std::string write_service(const std::string& header, const std::vector<std::string>& notes, const Socket& s,
                          const Program& p, uint32_t origin_line, std::vector<uint32_t>& line_origin);

// The user's supplementary groups (names; the primary group left out), as getgrouplist sees
// them now; nullopt if the user is unknown here.
std::optional<std::vector<std::string>> supplementary_groups_of(const std::string& user);

// getservbyname(name, proto), as a port; nullopt if /etc/services does not list it.
std::optional<uint16_t> service_port(const std::string& name, const std::string& proto);

// "ADDR:PORT" for a listen / redirect address ("[v6]:PORT" for IPv6).
std::string host_port(const std::string& addr, uint16_t port);

bool all_digits(const std::string& s);

// A converted service and its socket kind ("stream" or "dgram"; names a duplicate's file).
struct Built {
  ServiceFile file;
  std::string kind;
};

struct Entry;
// Converts one inetd.conf line; nullopt (with a warning) when it does not carry over.
std::optional<Built> build_inetd(const Entry& e, std::vector<Warning>& warnings);

}  // namespace superd::xinetd::detail
