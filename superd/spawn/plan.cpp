#include "spawn/plan.hpp"

#include <cstdlib>
#include <cstring>

#include "util/net.hpp"

namespace superd::spawn {

const char* step_name(Step s) noexcept {
  switch (s) {
    case Step::none: return "none";
    case Step::signals: return "signals";
    case Step::stdio: return "stdio";
    case Step::close_fds: return "close_fds";
    case Step::rlimits: return "rlimits";
    case Step::umask_nice: return "umask_nice";
    case Step::chdir: return "chdir";
    case Step::setgroups: return "setgroups";
    case Step::setresgid: return "setresgid";
    case Step::setresuid: return "setresuid";
    case Step::exec: return "exec";
  }
  return "?";
}

ServicePlan make_service_plan(const config::Service& svc, char** superd_environ) {
  ServicePlan p;
  const auto& s = svc.service;
  p.path = s.exec.front();
  p.argv = s.exec;
  // pass_environment copies values from superd's own environment as it was at start-up;
  // nothing else of that environment reaches a service.
  for (const std::string& name : s.pass_environment) {
    for (char** e = superd_environ; e && *e; ++e)
      if (std::strncmp(*e, name.c_str(), name.size()) == 0 && (*e)[name.size()] == '=') p.env.emplace_back(*e);
  }
  for (const auto& [k, v] : s.environment) p.env.push_back(k + "=" + v);
  p.limits = s.limits;
  p.stdio = s.stdio;
  p.umask = s.umask;
  if (s.nice) {
    p.set_nice = true;
    p.nice = *s.nice;
  }
  if (!s.working_directory.empty()) p.cwd = s.working_directory;
  return p;
}

void make_instance_plan(InstancePlan& out, const ServicePlan& svc, const Peer& peer, uid_t uid) {
  out.service = &svc;
  out.uid = uid;
  out.gid = uid;
  auto& env = out.env_storage;
  env.clear();
  env.reserve(16 + svc.env.size());
  auto add = [&](const char* k, const std::string& v) { env.push_back(std::string(k) + "=" + v); };
  if (peer.is_unix) {
    // UCSPI-unix names for the peer's credentials (SO_PEERCRED).
    add("PROTO", "UNIX");
    add("UNIXREMOTEPID", std::to_string(peer.unix_pid));
    add("UNIXREMOTEEUID", std::to_string(peer.unix_uid));
    add("UNIXREMOTEEGID", std::to_string(peer.unix_gid));
  } else {
    auto* r = reinterpret_cast<const sockaddr*>(&peer.remote);
    auto* l = reinterpret_cast<const sockaddr*>(&peer.local);
    std::string rip = net::address_string(r), rport = std::to_string(net::address_port(r));
    bool v6 = r->sa_family == AF_INET6 && rip.find(':') != std::string::npos;
    add("PROTO", v6 ? "TCP6" : "TCP");
    add("REMOTE_ADDR", rip);
    add("REMOTE_PORT", rport);
    add("TCPREMOTEIP", rip);
    add("TCPREMOTEPORT", rport);
    add("TCPLOCALIP", net::address_string(l));
    add("TCPLOCALPORT", std::to_string(net::address_port(l)));
  }
  // A dynamic user has no passwd entry and no home: HOME=/ as systemd does for DynamicUser=.
  std::string user = "superd-" + std::to_string(uid);
  add("USER", user);
  add("LOGNAME", user);
  add("HOME", "/");
  if (svc.stdio == config::Stdio::listen_fds) {
    // The service is PID 1 of its own PID namespace (see spawn.cpp), so LISTEN_PID is 1.
    add("LISTEN_FDS", "1");
    add("LISTEN_PID", "1");
    add("LISTEN_FDNAMES", "connection");
  }
  for (const std::string& e : svc.env) env.push_back(e);
  out.envp.clear();
  for (std::string& e : env) out.envp.push_back(e.data());
  out.envp.push_back(nullptr);
  out.argv.clear();
  for (const std::string& a : svc.argv) out.argv.push_back(const_cast<char*>(a.c_str()));
  out.argv.push_back(nullptr);
}

}  // namespace superd::spawn
