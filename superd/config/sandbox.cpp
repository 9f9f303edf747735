// The sandbox keys of [service]: the dynamic-user defaults, the filesystem (protect_*,
// private_*, paths, binds, the state/cache/logs/runtime directories), capabilities, and the one
// seccomp::Settings that spawn/plan compiles as it is. Syscall and family names are checked
// here, so a typo is a config error naming its key, not a start-up failure.
#include <sys/capability.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "config/tables.hpp"
#include "sandbox/seccomp.hpp"
#include "util/units.hpp"

namespace superd::config::detail {
namespace {

bool valid_relative_dir(const std::string& d) {
  if (d.empty() || d.front() == '/' || d.size() > 255) return false;
  std::string_view v(d);
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find('/', start);
    std::string_view part = v.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return true;
}

bool valid_absolute_path(std::string_view p) {
  return !p.empty() && p.front() == '/' && p.find("/../") == std::string_view::npos &&
         !(p.size() >= 3 && p.substr(p.size() - 3) == "/..") && p.find('\0') == std::string_view::npos;
}

std::optional<mode_t> parse_mode(TableReader& r, const std::string& key, mode_t max) {
  auto* n = r.get(key);
  if (!n) return std::nullopt;
  std::string v = n->is_string() ? *n->value<std::string>() : "";
  char* end = nullptr;
  unsigned long m = std::strtoul(v.c_str(), &end, 8);
  if (v.empty() || *end || m > max) {
    r.bad(*n, key, "expected an octal string such as \"0750\"");
    return std::nullopt;
  }
  return static_cast<mode_t>(m);
}

void read_dirs(TableReader& r, const std::string& key, const std::string& service, ExecDirs& out, bool runtime) {
  for (auto& [name, node] : r.read_strings(key, true)) {
    std::string expanded = expand_specifiers(name, service);
    if (runtime && name.find("%c") != std::string::npos)
      r.bad(*node, key, "\"%c\" is not allowed here: the runtime directory is already private to each instance");
    else if (!valid_relative_dir(expanded))
      r.bad(*node, key, "\"" + name + "\" must be a relative path without \"..\" or \".\" components");
    else
      out.names.push_back(expanded);
  }
  if (auto m = parse_mode(r, key + "_mode", 07777)) out.mode = *m;
}

void read_paths(TableReader& r, const std::string& key, std::vector<Path>& out) {
  for (auto& [text, node] : r.read_strings(key, true)) {
    Path p;
    p.optional = !text.empty() && text.front() == '-';
    p.path = p.optional ? text.substr(1) : text;
    if (!valid_absolute_path(p.path))
      r.bad(*node, key, "\"" + text + "\" must be an absolute path without \"..\"");
    else
      out.push_back(p);
  }
}

void read_binds(TableReader& r, const std::string& key, std::vector<BindPath>& out) {
  for (auto& [text, node] : r.read_strings(key, true)) {
    BindPath b;
    b.optional = !text.empty() && text.front() == '-';
    std::string v = b.optional ? text.substr(1) : text;
    auto colon = v.find(':');
    b.source = v.substr(0, colon);
    b.target = colon == std::string::npos ? b.source : v.substr(colon + 1);
    if (!valid_absolute_path(b.source) || !valid_absolute_path(b.target))
      r.bad(*node, key, "\"" + text + "\": expected \"/source[:/target]\", both absolute, without \"..\"");
    else
      out.push_back(b);
  }
}

void read_caps(TableReader& r, const std::string& key, std::vector<int>& out) {
  for (auto& [name, node] : r.read_strings(key, true)) {
    std::string lower;
    for (char c : name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    if (lower.rfind("cap_", 0) != 0) lower = "cap_" + lower;
    cap_value_t v;
    if (cap_from_name(lower.c_str(), &v) != 0)
      r.bad(*node, key, "unknown capability \"" + name + "\"");
    else
      out.push_back(v);
  }
}

// The syscall filter's keys, into the Settings that already hold the defaults. Returns whether
// system_call_architectures named any ABI (a filter is installed for that alone).
bool read_syscall_filter(TableReader& r, seccomp::Settings& sc) {
  r.read_bool("restrict_suid_sgid", sc.restrict_suid_sgid);
  for (auto& [v, node] : r.read_strings("system_call_filter", true)) sc.system_call_filter.push_back(v);
  if (auto* n = r.get("system_call_error_number")) {
    if (n->is_integer())
      sc.system_call_error_number = std::to_string(*n->value<int64_t>());
    else if (n->is_string())
      sc.system_call_error_number = *n->value<std::string>();
    else
      r.wrong_type(*n, "system_call_error_number", "an errno name such as \"EPERM\" or a number");
  }
  std::vector<std::string> architectures;
  for (auto& [v, node] : r.read_strings("system_call_architectures", true)) architectures.push_back(v);
  if (!architectures.empty()) sc.system_call_architectures = architectures;  // else the default, native
  if (r.get("restrict_address_families")) {
    sc.restrict_address_families.clear();  // the key replaces the default
    for (auto& [v, node] : r.read_strings("restrict_address_families", true)) sc.restrict_address_families.push_back(v);
  } else if (!sc.restrict_address_families.empty()) {
    // The default cannot hold where socketcall() hides the family (system_call_architectures
    // with "x86"): there it is dropped, as an explicit setting would be refused.
    seccomp::Settings probe;
    probe.system_call_architectures = sc.system_call_architectures;
    probe.restrict_address_families = sc.restrict_address_families;
    std::string why;
    if (!seccomp::validate(probe, why)) sc.restrict_address_families.clear();
  }
  return !architectures.empty();
}

// Names are checked now, so a typo is a config error naming its key, not a start-up failure:
// each key alone, as seccomp::validate() stops at the first bad entry.
void check_syscall_filter(TableReader& r, const seccomp::Settings& sc) {
  struct Check {
    const char* key;
    seccomp::Settings st;
  };
  std::vector<Check> checks;
  checks.push_back({"system_call_filter", {}});
  checks.back().st.system_call_filter = sc.system_call_filter;
  checks.push_back({"system_call_error_number", {}});
  checks.back().st.system_call_error_number = sc.system_call_error_number;
  checks.push_back({"system_call_architectures", {}});
  checks.back().st.system_call_architectures = sc.system_call_architectures;
  checks.push_back({"restrict_address_families", {}});
  checks.back().st.restrict_address_families = sc.restrict_address_families;
  for (Check& c : checks) {
    std::string why;
    const toml::node* at = r.get(c.key);
    if (!seccomp::validate(c.st, why))
      at ? r.bad(*at, c.key, why) : r.problems().add({r.file(), 1, 1}, r.name(c.key), why);
  }
}

}  // namespace

// protect_system / protect_home take a word or a boolean: either, as the word to compare.
std::string word_or_bool(const toml::node& n) {
  if (n.is_string()) return *n.value<std::string>();
  if (n.is_boolean()) return *n.value<bool>() ? "true" : "false";
  return "?";
}

void read_sandbox(TableReader& r, ServiceConfig& svc, const std::string& name) {
  SandboxConfig& sb = svc.sandbox;
  r.read_bool("sandbox", sb.enabled);
  if (!svc.dynamic_user || !sb.enabled) {
    // A static user gets no implied sandbox, as in systemd; every knob can still be turned on.
    sb.protect_system = ProtectSystem::no;
    sb.protect_home = ProtectHome::no;
    sb.private_tmp = false;
    sb.private_ipc = false;
    sb.no_new_privileges = false;
    sb.seccomp.restrict_suid_sgid = false;
    sb.seccomp.default_deny_list = false;
    sb.seccomp.restrict_address_families.clear();
    sb.restrict_abstract_sockets = false;
    sb.restrict_signals = false;
  }
  if (auto* n = r.get("protect_system")) {
    std::string v = word_or_bool(*n);
    if (v == "strict")
      sb.protect_system = ProtectSystem::strict;
    else if (v == "full")
      sb.protect_system = ProtectSystem::full;
    else if (v == "true" || v == "yes")
      sb.protect_system = ProtectSystem::yes;
    else if (v == "false" || v == "no")
      sb.protect_system = ProtectSystem::no;
    else
      r.bad(*n, "protect_system", "expected \"strict\", \"full\", true or false");
  }
  if (auto* n = r.get("protect_home")) {
    std::string v = word_or_bool(*n);
    if (v == "read-only")
      sb.protect_home = ProtectHome::read_only;
    else if (v == "tmpfs")
      sb.protect_home = ProtectHome::tmpfs;
    else if (v == "true" || v == "yes")
      sb.protect_home = ProtectHome::yes;
    else if (v == "false" || v == "no")
      sb.protect_home = ProtectHome::no;
    else
      r.bad(*n, "protect_home", "expected \"read-only\", \"tmpfs\", true or false");
  }
  r.read_bool("private_tmp", sb.private_tmp);
  if (auto* n = r.get("private_tmp_size")) {
    std::optional<uint64_t> v = size_value(*n);
    if (!v || *v < 4096 || *v == units::kInfinity)
      r.bad(*n, "private_tmp_size", "expected a size of at least 4K, e.g. \"64M\"");
    else
      sb.private_tmp_size = *v;
  }
  r.read_bool("private_devices", sb.private_devices);
  r.read_bool("log_syslog", sb.log_syslog);
  r.read_bool("private_network", sb.private_network);
  r.read_bool("private_ipc", sb.private_ipc);
  read_paths(r, "read_write_paths", sb.read_write_paths);
  read_paths(r, "read_only_paths", sb.read_only_paths);
  read_paths(r, "inaccessible_paths", sb.inaccessible_paths);
  read_binds(r, "bind_paths", sb.bind_paths);
  read_binds(r, "bind_read_only_paths", sb.bind_read_only_paths);
  read_dirs(r, "state_directory", name, sb.state, false);
  read_dirs(r, "cache_directory", name, sb.cache, false);
  read_dirs(r, "logs_directory", name, sb.logs, false);
  read_dirs(r, "runtime_directory", name, sb.runtime, true);
  if (auto* n = r.get("state_directory_idmap")) {
    bool v = false;
    r.read_bool("state_directory_idmap", v);
    const size_t dirs = sb.state.names.size() + sb.cache.names.size() + sb.logs.names.size();
    if (v && (!svc.dynamic_user || !sb.enabled))
      r.bad(*n, "state_directory_idmap", "needs dynamic_user = true and the sandbox (it maps the instance's own UID)");
    else if (v && dirs == 0)
      r.bad(*n, "state_directory_idmap", "needs a state_directory, cache_directory or logs_directory");
    else if (v && dirs > kMaxIdmapDirs)
      r.bad(*n, "state_directory_idmap",
            "at most " + std::to_string(kMaxIdmapDirs) + " state, cache and logs directories together");
    else
      sb.idmap_dirs = v;
  }
  if (auto* n = r.get("no_new_privileges")) {
    bool v = sb.no_new_privileges;
    r.read_bool("no_new_privileges", v);
    if (!v && svc.dynamic_user && sb.enabled)
      r.bad(*n, "no_new_privileges", "cannot be false with dynamic_user = true (unless sandbox = false)");
    else
      sb.no_new_privileges = v;
  }
  if (r.get("capability_bounding_set")) read_caps(r, "capability_bounding_set", sb.capability_bounding_set);
  if (auto* n = r.get("ambient_capabilities")) {
    read_caps(r, "ambient_capabilities", sb.ambient_capabilities);
    for (int c : sb.ambient_capabilities)
      if (std::find(sb.capability_bounding_set.begin(), sb.capability_bounding_set.end(), c) ==
          sb.capability_bounding_set.end()) {
        char* cn = cap_to_name(c);
        r.bad(*n, "ambient_capabilities", std::string(cn ? cn : "?") + " is not in capability_bounding_set");
        cap_free(cn);
      }
  }
  const bool architectures_given = read_syscall_filter(r, sb.seccomp);
  r.read_bool("restrict_abstract_sockets", sb.restrict_abstract_sockets);
  r.read_bool("restrict_signals", sb.restrict_signals);
  check_syscall_filter(r, sb.seccomp);
  // No filter at all only when nothing asks for one (a static user, or sandbox = false, with
  // none of the filter's keys).
  const seccomp::Settings& sc = sb.seccomp;
  sb.filter_syscalls = sc.default_deny_list || !sc.system_call_filter.empty() ||
                       !sc.restrict_address_families.empty() || sc.restrict_suid_sgid || architectures_given;
}

}  // namespace superd::config::detail
