// See units.hpp.
#include "cli/units.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/ask.hpp"
#include "config/config.hpp"
#include "config/template.hpp"
#include "control/control.hpp"

namespace superd::cli {
namespace {

int fail(const std::string& verb, const std::string& msg) {
  std::fprintf(stderr, "superd %s: %s\n", verb.c_str(), msg.c_str());
  return 1;
}

// One request to the daemon; "" if it said ok, else its error (or why it could not be asked).
std::string ask_op(const std::string& runtime_root, const std::string& op, const std::string& name) {
  std::string error;
  return ask(runtime_root, {{"op", op}, {"name", name}}, error).is_null() ? error : std::string();
}

}  // namespace

int unit_command(const std::string& verb, const std::string& name, bool now, const std::string& config_path) {
  namespace fs = std::filesystem;
  config::Problems ignored;  // other files' problems are `superd check`'s business
  config::Config cfg;
  if (::access(config_path.c_str(), F_OK) == 0) cfg = config::load(config_path, ignored);
  const std::string& root = cfg.global.runtime_root;
  if (verb == "start" || verb == "stop") {
    std::string error = ask_op(root, verb, name);
    if (!error.empty()) return fail(verb, error);
    return 0;
  }
  // enable / disable: the link beside the template.
  auto unit = config::split_unit_name(name);
  if (!unit || unit->is_template()) return fail(verb, "\"" + name + "\" is not an instance name (NAME@INSTANCE)");
  if (std::string why = config::instance_name_error(unit->instance); !why.empty()) return fail(verb, name + ": " + why);
  auto t = cfg.templates.find(unit->template_name());
  if (t == cfg.templates.end())
    return fail(verb, "no template " + unit->template_name() + " in the files " + config_path + " includes");
  fs::path tmpl(t->second);
  fs::path link = tmpl.parent_path() / (name + ".toml");
  struct stat st {};
  bool exists = ::lstat(link.c_str(), &st) == 0;
  if (verb == "enable") {
    if (exists)
      return fail(verb, link.string() + (S_ISLNK(st.st_mode) ? " exists: already enabled" : " is a file of its own"));
    if (::symlink(tmpl.filename().c_str(), link.c_str()) != 0)
      return fail(verb, link.string() + ": " + std::strerror(errno));
    std::printf("created %s -> %s\n", link.c_str(), tmpl.filename().c_str());
    if (!now) return 0;
    std::string error = ask_op(root, "start", name);
    if (!error.empty()) return fail(verb, "enabled, but not started: " + error);
    return 0;
  }
  if (!exists) return fail(verb, name + " is not enabled (no " + link.string() + ")");
  if (!S_ISLNK(st.st_mode)) return fail(verb, link.string() + " is a file of its own, not a link; remove it yourself");
  if (::unlink(link.c_str()) != 0) return fail(verb, link.string() + ": " + std::strerror(errno));
  std::printf("removed %s\n", link.c_str());
  if (now) {
    std::string error = ask_op(root, "stop", name);
    if (!error.empty() && error != name + " is not running") return fail(verb, "disabled, but not stopped: " + error);
  } else {
    ask_op(root, "keep", name);  // a running instance stays until `stop`; no daemon: nothing to keep
  }
  return 0;
}

}  // namespace superd::cli
