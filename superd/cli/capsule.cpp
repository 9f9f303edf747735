// See capsule.hpp.
#include "cli/capsule.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "capsule/capsule.hpp"
#include "cli/ask.hpp"
#include "config/config.hpp"
#include "control/control.hpp"

namespace superd::cli {
namespace {

config::Global global_of(const std::string& config_path) {
  config::Problems ignored;
  if (::access(config_path.c_str(), F_OK) != 0) return {};
  return config::load(config_path, ignored).global;
}

int fail(const std::string& verb, const std::string& msg) {
  std::fprintf(stderr, "superd capsule %s: %s\n", verb.c_str(), msg.c_str());
  return 1;
}

}  // namespace

std::string capsule_runtime_root(const std::string& name, const std::string& config_path, std::string& error) {
  if (std::string why = capsule::name_error(name); !why.empty()) {
    error = why;
    return {};
  }
  capsule::Roots roots{"", global_of(config_path).runtime_root};
  return roots.runtime_dir(name);
}

int capsule_command(const std::string& verb, const std::string& name, bool json, const std::string& config_path) {
  namespace fs = std::filesystem;
  config::Global g = global_of(config_path);
  if (verb != "list")
    if (std::string why = capsule::name_error(name); !why.empty()) return fail(verb, why);
  std::string error;
  if (verb == "enable" || verb == "disable") {
    fs::path marker = fs::path(config_path).parent_path() / "capsules.enabled" / name;
    std::error_code ec;
    if (verb == "enable") {
      if (fs::exists(marker, ec)) return fail(verb, name + " is already enabled");
      fs::create_directories(marker.parent_path(), ec);
      std::ofstream(marker) << "";
      if (!fs::exists(marker, ec)) return fail(verb, marker.string() + ": " + std::strerror(errno));
      std::printf("created %s\n", marker.c_str());
    } else {
      if (!fs::remove(marker, ec)) return fail(verb, name + " is not enabled (no " + marker.string() + ")");
      std::printf("removed %s\n", marker.c_str());
    }
    return 0;
  }
  nlohmann::json req{{"op", "capsule"}, {"action", verb == "status" ? "list" : verb}, {"name", name}};
  auto j = ask(g.runtime_root, req, error);
  if (j.is_null()) return fail(verb, error);
  if (verb == "start") {
    std::printf("capsule %s: running, pid %d, UIDs from %u, ready in %.1f ms\n", name.c_str(), j["pid"].get<int>(),
                j["block"].get<unsigned>(), j["ready_ms"].get<double>());
    return 0;
  }
  if (verb == "stop") {
    std::printf("capsule %s: stopped in %.1f ms\n", name.c_str(), j["stop_ms"].get<double>());
    return 0;
  }
  const auto& list = j["capsules"];
  if (verb == "list") {
    if (json) return std::printf("%s\n", list.dump().c_str()) < 0;
    for (const auto& c : list) {
      std::string uids = c["uids"].is_null() ? "-"
                                             : std::to_string(c["uids"][0].get<unsigned>()) + ".." +
                                                   std::to_string(c["uids"][1].get<unsigned>());
      std::printf("capsule %-20s %-9s pid %-7d UIDs %-23s %s%s\n", c["name"].get<std::string>().c_str(),
                  c["state"].get<std::string>().c_str(), c["pid"].get<int>(), uids.c_str(),
                  c["home"].get<std::string>().c_str(), c["enabled"].get<bool>() ? "  (enabled)" : "");
    }
    return 0;
  }
  // status NAME: the host's view and the capsule's own superd's.
  nlohmann::json entry;
  for (const auto& c : list)
    if (c["name"] == name) entry = c;
  if (entry.is_null()) return fail(verb, "no capsule " + name + " (no home, not running, not enabled)");
  nlohmann::json inner;
  if (entry["state"] == "running") {
    std::string text = control::status_client(entry["runtime"].get<std::string>(), error);
    inner = nlohmann::json::parse(text, nullptr, false);
    if (inner.is_discarded()) inner = nullptr;
  }
  if (json) return std::printf("%s\n", nlohmann::json{{"capsule", entry}, {"status", inner}}.dump().c_str()) < 0;
  std::printf("capsule %s: %s, pid %d, home %s%s\n", name.c_str(), entry["state"].get<std::string>().c_str(),
              entry["pid"].get<int>(), entry["home"].get<std::string>().c_str(),
              entry["enabled"].get<bool>() ? ", enabled" : "");
  if (inner.is_object()) {
    for (const auto& s : inner["services"]) {
      std::string listen;
      for (const auto& l : s["listen"]) listen += (listen.empty() ? "" : " ") + l.get<std::string>();
      std::printf("  service %-20s live %u  %s\n", s["name"].get<std::string>().c_str(), s["live"].get<unsigned>(),
                  listen.c_str());
    }
    for (const auto& i : inner["instances"])
      std::printf("    %s[%lu] uid=%u pid=%d peer=%s\n", i["service"].get<std::string>().c_str(),
                  i["serial"].get<unsigned long>(), i["uid"].get<unsigned>(), i["pid"].get<int>(),
                  i["peer"].get<std::string>().c_str());
  }
  return 0;
}

}  // namespace superd::cli
