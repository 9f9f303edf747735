// superd's command line: subcommands parsed with CLI11, each a thin shell over a module.
// Exit codes: 0 fine, 1 a runtime failure (bind, lease table), 2 a configuration error.
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "cli/ask.hpp"
#include "cli/capsule.hpp"
#include "cli/units.hpp"
#include "config/config.hpp"
#include "control/control.hpp"
#include "daemon/daemon.hpp"
#include "daemon/handover.hpp"
#include "util/log.hpp"
#include "xinetd/cli.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/superd/superd.toml";

// Loads and validates (with --xinetd, the converted services too); prints every problem;
// nullopt if there was any. `skip` (serve): a service whose own file is bad is left out with an
// error line, unless strict = true; problems that concern everything still refuse.
std::optional<superd::config::Config> load_checked(const std::string& path, const std::string& xinetd,
                                                   bool skip = false) {
  superd::config::Problems problems;
  superd::config::Config cfg = superd::daemon::load_config(path, xinetd, problems);
  if (skip)
    for (const auto& p : superd::config::skip_failed_services(cfg, problems))
      superd::log::error("{} (service {} is not served)", p.to_string(), p.service);
  for (const auto& p : problems.list()) std::fprintf(stderr, "%s\n", p.to_string().c_str());
  if (!problems.empty()) {
    const std::string& what = path.empty() ? xinetd : path;
    std::fprintf(stderr, "%s: %zu problem%s\n", what.c_str(), problems.list().size(),
                 problems.list().size() == 1 ? "" : "s");
    return std::nullopt;
  }
  return cfg;
}

// "3d4h", "2h5m", "4m10s", "12s": a service's uptime in status.
std::string uptime(double seconds) {
  auto s = static_cast<unsigned long>(seconds);
  if (s >= 86400) return fmt::format("{}d{}h", s / 86400, s % 86400 / 3600);
  if (s >= 3600) return fmt::format("{}h{}m", s / 3600, s % 3600 / 60);
  if (s >= 60) return fmt::format("{}m{}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// The commands that talk to the running daemon: its control socket is root's, so say so first
// rather than "cannot reach superd".
bool needs_root(const char* what) {
  if (::geteuid() == 0) return false;
  std::fprintf(stderr, "superd %s: needs root (superd's control socket is root's)\n", what);
  return true;
}

// superd may be started with fds 0-2 closed; the spawn path relies on them being taken.
void ensure_std_fds() {
  for (int fd = 0; fd < 3; ++fd)
    if (::fcntl(fd, F_GETFD) < 0) {
      int n = ::open("/dev/null", O_RDWR);
      if (n >= 0 && n != fd) {
        ::dup2(n, fd);
        ::close(n);
      }
    }
}

}  // namespace

int main(int argc, char** argv) {
  ensure_std_fds();
  // An upgrade's new image (daemon/upgrade.cpp): the old image's state, in a memfd.
  int handover_fd = -1;
  if (const char* h = std::getenv(superd::daemon::handover::kStateEnv)) {
    handover_fd = std::atoi(h);
    ::unsetenv(superd::daemon::handover::kStateEnv);
  }
  CLI::App app{"superd: a socket-activated super-server with a fresh dynamic UID per connection"};
  app.require_subcommand(1);

  std::string config_path = kDefaultConfig;
  std::string xinetd_path;
  int ready_fd = -1;
  auto* serve = app.add_subcommand("serve", "run the daemon in the foreground");
  auto* serve_c = serve->add_option("-c,--config", config_path, "main configuration file")->capture_default_str();
  serve->add_option("--ready-fd", ready_fd, "write READY\\n to this fd once every listener is bound");
  serve->add_option("--xinetd", xinetd_path,
                    "also serve the services of this xinetd.conf (and its includes), converted in memory; "
                    "without -c the global settings are the defaults");

  // Set by the host superd when it starts a capsule's superd (capsule/launch.hpp); not for people.
  std::string capsule_name, capsule_home, capsule_runtime;
  serve->add_option("--capsule", capsule_name)->group("");
  serve->add_option("--capsule-home", capsule_home)->group("");
  serve->add_option("--capsule-runtime", capsule_runtime)->group("");

  auto* check = app.add_subcommand("check", "validate the configuration; one line per problem");
  auto* check_c = check->add_option("-c,--config", config_path, "main configuration file")->capture_default_str();
  check->add_option("--xinetd", xinetd_path, "check the services converted from this xinetd.conf too");

  std::string import_file = "/etc/xinetd.conf", import_dir;
  auto* import =
      app.add_subcommand("import-xinetd", "convert xinetd.conf (+ includes) or inetd.conf lines to superd TOML");
  import->add_option("file", import_file, "xinetd.conf or inetd.conf")->capture_default_str();
  import->add_option("-o,--output", import_dir, "write DIR/NAME.toml per service (default: print them all)");

  std::vector<std::string> run_props, run_argv;
  std::string run_unit;
  auto* run = app.add_subcommand("run", "run one command under a fresh dynamic UID in the sandbox (via the daemon)");
  run->add_option("-c,--config", config_path, "main configuration file (for runtime_root)")->capture_default_str();
  run->add_option("-p,--property", run_props, "KEY=VALUE: any [service] key, e.g. -p state_directory=wuff")
      ->allow_extra_args(false);
  run->add_option("--unit", run_unit, "a named lease: stable UID and directories across runs");
  run->add_option("command", run_argv, "-- CMD ARGS...")->required();
  run->prefix_command(false);

  auto* upgrade = app.add_subcommand(
      "upgrade", "re-execute the binary on disk in the same PID (as SIGUSR2): sockets and live instances are kept");
  upgrade->add_option("-c,--config", config_path, "main configuration file (for runtime_root)")->capture_default_str();
  std::string upgrade_binary;
  upgrade->add_option("--binary", upgrade_binary, "execute this binary instead of the one superd runs from");
  int handover_format = 0;
  auto* handover_check = app.add_subcommand("handover-check", "(for upgrade) can this binary take the hand-over?");
  handover_check->group("");
  handover_check->add_option("--format", handover_format)->required();
  handover_check->add_option("-c,--config", config_path);
  handover_check->add_option("--xinetd", xinetd_path);
  auto* reload = app.add_subcommand("reload", "re-read the configuration (as SIGHUP); unchanged sockets stay open");
  reload->add_option("-c,--config", config_path, "main configuration file (for runtime_root)")->capture_default_str();

  bool status_json = false;
  auto* status = app.add_subcommand("status", "services, listeners, live instances and pool occupancy");
  status->add_option("-c,--config", config_path, "main configuration file (for runtime_root)")->capture_default_str();
  status->add_flag("--json", status_json, "print the daemon's JSON answer");

  // Services at run time and template instances' links: one subcommand each, same options.
  std::string unit_name;
  bool unit_now = false;
  std::vector<CLI::App*> unit_cmds;
  for (auto [verb, help] : {std::pair{"start", "start a service or a template instance (until superd restarts)"},
                            {"stop", "stop a service or an instance (until superd restarts)"},
                            {"enable", "link NAME@INSTANCE.toml to its template, so it runs whenever superd does"},
                            {"disable", "remove the link enable made"}}) {
    auto* c = app.add_subcommand(verb, help);
    c->add_option("-c,--config", config_path, "main configuration file")->capture_default_str();
    c->add_option("name", unit_name, "NAME or NAME@INSTANCE")->required();
    if (std::string(verb) == "enable" || std::string(verb) == "disable")
      c->add_flag("--now", unit_now, std::string(verb) == "enable" ? "start it too" : "stop it too");
    unit_cmds.push_back(c);
  }

  auto* capsule = app.add_subcommand("capsule", "capsules: a superd of their own, as a dynamic user with a home");
  capsule->require_subcommand(1);
  std::string capsule_arg;
  bool capsule_json = false;
  std::vector<CLI::App*> capsule_cmds;
  for (auto [verb, help] : {std::pair{"start", "start capsule NAME (its home is created on first start)"},
                            {"stop", "stop capsule NAME: every process of its UIDs ends; the home stays"},
                            {"list", "capsules: running, stopped (a home), enabled"},
                            {"status", "one capsule, with its own superd's services and instances"},
                            {"enable", "start capsule NAME whenever superd starts"},
                            {"disable", "undo enable"}}) {
    auto* c = capsule->add_subcommand(verb, help);
    c->add_option("-c,--config", config_path, "main configuration file")->capture_default_str();
    if (std::string(verb) != "list") c->add_option("name", capsule_arg, "the capsule's name")->required();
    if (std::string(verb) == "list" || std::string(verb) == "status") c->add_flag("--json", capsule_json, "JSON");
    capsule_cmds.push_back(c);
  }
  std::string run_capsule;
  run->add_option("--capsule", run_capsule, "run inside capsule NAME (under one of its UIDs)");

  app.set_version_flag("--version", std::string("superd ") + SUPERD_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // the message and "Run with --help for more information."
    return 2;     // a usage error is a configuration error, as documented
  }
  if (upgrade->parsed() && needs_root("upgrade")) return 1;
  if ((reload->parsed() && needs_root("reload")) || (status->parsed() && needs_root("status"))) return 1;
  if (run->parsed() && needs_root("run")) return 125;
  for (auto* c : unit_cmds)  // enable and disable write the config: root's too
    if (c->parsed() && needs_root(c->get_name().c_str())) return 1;
  for (auto* c : capsule_cmds)
    if (c->parsed() && c->get_name() != "enable" && c->get_name() != "disable" && needs_root("capsule")) return 1;
  for (auto* c : capsule_cmds)
    if (c->parsed()) return superd::cli::capsule_command(c->get_name(), capsule_arg, capsule_json, config_path);
  for (auto* c : unit_cmds)
    if (c->parsed()) return superd::cli::unit_command(c->get_name(), unit_name, unit_now, config_path);
  // With --xinetd and no -c, the global settings are the defaults rather than a missing file.
  if (!xinetd_path.empty() && !serve_c->count() && !check_c->count() && ::access(config_path.c_str(), F_OK) != 0)
    config_path.clear();
  if (import->parsed()) return superd::xinetd::import_main(import_file, import_dir);

  auto runtime_root_of = [&]() {
    std::string root = "/run";
    if (::access(config_path.c_str(), F_OK) == 0) {
      superd::config::Problems ignored;
      root = superd::config::load(config_path, ignored).global.runtime_root;
    }
    return root;
  };

  if (handover_check->parsed()) {
    if (handover_format != superd::daemon::handover::kFormat) {
      std::fprintf(stderr, "superd %s takes hand-over format %d, not %d\n", SUPERD_VERSION,
                   superd::daemon::handover::kFormat, handover_format);
      return 2;
    }
    auto cfg = load_checked(config_path, xinetd_path, true);
    if (!cfg) return 2;
    std::printf("superd %s: takes hand-over format %d; %zu services\n", SUPERD_VERSION, handover_format,
                cfg->services.size());
    return 0;
  }
  if (upgrade->parsed()) {
    std::string error;
    nlohmann::json req = {{"op", "upgrade"}};
    if (!upgrade_binary.empty()) req["binary"] = upgrade_binary;
    auto j = superd::cli::ask(runtime_root_of(), req, error);
    if (j.is_null()) {
      if (error.empty() || error.back() != '\n') error += '\n';
      std::fprintf(stderr, "superd upgrade: %s", error.c_str());
      return 1;
    }
    std::printf("upgraded: superd %s -> %s, pid %d, %zu live instances kept, %.1f ms (listeners paused %.1f ms)\n",
                j.value("from", std::string("?")).c_str(), j.value("version", std::string("?")).c_str(),
                j.value("pid", 0), j.value("instances", size_t{0}), j.value("ms", 0.0), j.value("paused_ms", 0.0));
    return 0;
  }
  if (reload->parsed()) {
    std::string error;
    if (superd::cli::ask(runtime_root_of(), {{"op", "reload"}}, error).is_null()) {
      if (error.empty() || error.back() != '\n') error += '\n';
      std::fprintf(stderr, "superd reload: %s", error.c_str());
      return 2;
    }
    std::printf("reloaded\n");
    return 0;
  }
  if (status->parsed()) {
    std::string error;
    std::string text = superd::control::status_client(runtime_root_of(), error);
    if (text.empty()) {
      std::fprintf(stderr, "superd status: %s\n", error.c_str());
      return 1;
    }
    if (status_json) {
      std::printf("%s\n", text.c_str());
      return 0;
    }
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return 1;
    const auto& pool = j["pool"];
    std::string why;
    for (const auto& [reason, count] : pool["blocked_by"].items())
      why += fmt::format("{}{} {}", why.empty() ? "" : ", ", reason, count.get<unsigned>());
    std::printf("superd pid %d; UIDs %u..%u: %u held, %u free, %u blocked%s\n", j["pid"].get<int>(),
                pool["first"].get<unsigned>(), pool["last"].get<unsigned>(), pool["held"].get<unsigned>(),
                pool["free"].get<unsigned>(), pool["blocked"].get<unsigned>(),
                why.empty() ? "" : (" (" + why + ")").c_str());
    for (const auto& s : j["services"]) {
      std::string listen;
      for (const auto& l : s["listen"]) listen += (listen.empty() ? "" : " ") + l.get<std::string>();
      std::string origin = s.value("origin", std::string("file"));
      std::printf("service %-20s %-8s live %u/%u%s  accepted %lu refused %lu failed %lu  up %s  %s%s\n",
                  s["name"].get<std::string>().c_str(), s.value("mode", std::string("accept")).c_str(),
                  s["live"].get<unsigned>(), s["max_connections"].get<unsigned>(),
                  s["paused"].get<bool>() ? " (deferring)" : "", s.value("accepted", 0ul), s.value("refused", 0ul),
                  s.value("failed", 0ul), uptime(s.value("uptime_s", 0.0)).c_str(), listen.c_str(),
                  origin == "file" ? "" : ("  (" + origin + ")").c_str());
    }
    for (const auto& t : j.value("templates", nlohmann::json::array())) {
      std::string names;
      for (const auto& n : t["instances"]) names += (names.empty() ? "" : " ") + n.get<std::string>();
      std::printf("template %-19s %zu running%s%s\n", t["name"].get<std::string>().c_str(), t["instances"].size(),
                  names.empty() ? "" : ": ", names.c_str());
    }
    for (const auto& c : j.value("capsules", nlohmann::json::array()))
      if (c["state"] != "stopped")
        std::printf("capsule %-19s %-8s pid %d\n", c["name"].get<std::string>().c_str(),
                    c["state"].get<std::string>().c_str(), c["pid"].get<int>());
    for (const auto& f : j.value("failed", nlohmann::json::array()))
      std::printf("service %-20s failed   %s\n", f["name"].get<std::string>().c_str(),
                  f["reason"].get<std::string>().c_str());
    for (const auto& d : j.value("disabled", nlohmann::json::array()))
      std::printf("service %-20s disabled\n", d.get<std::string>().c_str());
    for (const auto& i : j["instances"])
      std::printf("  %s[%lu] uid=%u pid=%d peer=%s age=%.1fs\n", i["service"].get<std::string>().c_str(),
                  i["serial"].get<unsigned long>(), i["uid"].get<unsigned>(), i["pid"].get<int>(),
                  i["peer"].get<std::string>().c_str(), i["age_s"].get<double>());
    return 0;
  }

  if (run->parsed()) {
    // Only runtime_root is needed from the config; a missing file means the defaults.
    std::string runtime_root = runtime_root_of();
    if (!run_capsule.empty()) {
      std::string error;
      runtime_root = superd::cli::capsule_runtime_root(run_capsule, config_path, error);
      if (runtime_root.empty()) {
        std::fprintf(stderr, "superd run: %s\n", error.c_str());
        return 125;
      }
    }
    // Resolve the command on the caller's PATH, as systemd-run does.
    if (run_argv[0].find('/') == std::string::npos) {
      const char* path = ::getenv("PATH");
      std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
      size_t start = 0;
      while (start <= dirs.size()) {
        size_t end = dirs.find(':', start);
        std::string d = dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
        std::string cand = (d.empty() ? "." : d) + "/" + run_argv[0];
        if (::access(cand.c_str(), X_OK) == 0) {
          run_argv[0] = cand;
          break;
        }
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
    std::string error;
    int rc = superd::control::run_client(runtime_root, run_argv, run_props, run_unit, error);
    if (rc < 0) {
      std::fprintf(stderr, "superd run: %s\n", error.c_str());
      return 125;
    }
    return rc;
  }

  if (check->parsed()) {
    auto cfg = load_checked(config_path, xinetd_path);
    if (!cfg) return 2;
    std::printf("%s: OK, %zu service%s%s\n", config_path.empty() ? xinetd_path.c_str() : config_path.c_str(),
                cfg->services.size(), cfg->services.size() == 1 ? "" : "s",
                cfg->disabled.empty() ? "" : fmt::format(" ({} disabled)", cfg->disabled.size()).c_str());
    return 0;
  }
  if (serve->parsed() && !capsule_name.empty()) {
    superd::config::Problems problems;
    auto cfg = superd::config::load_capsule(capsule_name, capsule_home, capsule_runtime, problems);
    for (const auto& p : problems.list()) std::fprintf(stderr, "%s\n", p.to_string().c_str());
    if (!problems.empty()) return 2;
    superd::log::Level level;
    if (superd::log::parse_level(cfg.global.log_level, level)) superd::log::set_level(level);
    if (ready_fd >= 0) ::fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
    return superd::daemon::serve(cfg, superd::daemon::Options{ready_fd, "", "", {}, -1});
  }
  if (serve->parsed()) {
    auto cfg = load_checked(config_path, xinetd_path, true);
    if (!cfg && handover_fd >= 0) superd::daemon::rollback_upgrade(handover_fd, "its configuration does not load");
    if (!cfg) return 2;
    superd::log::Level level;
    if (superd::log::parse_level(cfg->global.log_level, level)) superd::log::set_level(level);
    if (::geteuid() != 0) {
      superd::log::error("superd serve needs root (it switches to dynamic UIDs and builds namespaces)");
      return 1;
    }
    if (handover_fd >= 0) ready_fd = -1;  // told once, by the first image
    if (ready_fd >= 0) ::fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
    return superd::daemon::serve(
        *cfg, superd::daemon::Options{ready_fd, config_path, xinetd_path, std::vector<std::string>(argv, argv + argc),
                                      handover_fd});
  }
  return 0;
}
