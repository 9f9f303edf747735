// `superd run`: a transient service from "-p KEY=VALUE" properties and an argv, written as the
// TOML of a service file and read like one, so the same keys mean the same everywhere.
#include <toml++/toml.h>

#include "config/tables.hpp"

namespace superd::config {
namespace {

std::string toml_quote(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out.push_back(c);
  }
  return out + "\"";
}

}  // namespace

std::optional<Service> parse_run_service(const std::vector<std::string>& properties,
                                         const std::vector<std::string>& argv, const std::string& name, Problems& p) {
  std::string text = "[socket]\n[service]\nexec = [";
  for (size_t i = 0; i < argv.size(); ++i) text += (i ? ", " : "") + toml_quote(argv[i]);
  text += "]\n";
  for (const std::string& prop : properties) {
    auto eq = prop.find('=');
    if (eq == std::string::npos || eq == 0) {
      p.add({"-p", 0, 0}, prop, "expected KEY=VALUE");
      continue;
    }
    std::string key = prop.substr(0, eq), value = prop.substr(eq + 1);
    // The value as TOML if it parses as such (true, 5, ["a"], {nofile=8}), else as a string.
    std::string line = key + " = " + value + "\n";
    try {
      (void)toml::parse(line);
    } catch (const toml::parse_error&) {
      line = key + " = " + toml_quote(value) + "\n";
    }
    text += line;
  }
  if (!p.empty()) return std::nullopt;
  auto svc = detail::parse_service_file(text, "-p", name, p, true);
  // A run's lease is its own directories' owner already (a unit's named UID), or it has none
  // to share: nothing to map.
  if (svc && svc->service.sandbox.idmap_dirs)
    p.add({"-p", 0, 0}, "state_directory_idmap", "is for per-connection services, not superd run");
  return svc;
}

}  // namespace superd::config
