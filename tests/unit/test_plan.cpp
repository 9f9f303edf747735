// spawn/plan: what make_service_plan prepares from a parsed service and the daemon's inputs
// (HostLimits, the shared-directory group, the zygote choice), and what the per-connection,
// wait-mode and `superd run` plans put in the child's identity, environment, argv and fds.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "spawn/plan.hpp"

using namespace superd;
using Strings = std::vector<std::string>;

namespace {
using superd::test::sa;
using superd::test::v4;
using superd::test::v6;

const sandbox::Roots kRoots{"/run", "/var/lib", "/var/cache", "/var/log"};

config::Service parse(const std::string& service_keys,
                      const std::string& socket_keys = "listen = [\"127.0.0.1:7000\"]\n") {
  config::Problems p;
  auto svc = config::parse_service("[socket]\n" + socket_keys + "[service]\n" + service_keys, "s.toml", "s", p);
  std::string all;
  for (const auto& x : p.list()) all += x.to_string() + "\n";
  INFO(all);
  REQUIRE(svc);
  REQUIRE(p.empty());
  return *svc;
}

spawn::ServicePlan plan_of(const config::Service& svc, const spawn::HostLimits& host = {},
                           std::optional<gid_t> group = std::nullopt, bool use_zygote = false, char** env = nullptr) {
  auto plan = spawn::make_service_plan(svc, kRoots, env, host, group, use_zygote);
  REQUIRE(plan);
  return std::move(*plan);
}

std::optional<rlim_t> limit_of(const spawn::ServicePlan& p, int resource) {
  for (const auto& l : p.limits)
    if (l.resource == resource) return l.value;
  return std::nullopt;
}

Strings strings(const std::vector<char*>& v) {
  Strings out;
  for (char* s : v)
    if (s) out.emplace_back(s);
  return out;
}

}  // namespace

TEST_CASE("argv and the fixed environment: specifiers, pass_environment, PATH, directories", "[plan]") {
  auto svc = parse(R"(exec = ["/bin/echo", "%n", "conn-%c"]
environment = { A = "x-%n" }
pass_environment = ["TZ", "GONE"]
state_directory = "st"
runtime_directory = ["r1", "r2"]
)");
  char tz[] = "TZ=UTC", tzx[] = "TZX=no", path[] = "PATH=/superd/own";
  char* environ_[] = {tzx, tz, path, nullptr};
  auto p = plan_of(svc, {}, std::nullopt, false, environ_);
  CHECK(p.path == "/bin/echo");
  CHECK(p.argv == Strings{"/bin/echo", "s", "conn-%c"});
  CHECK(p.per_connection_specifier);
  // Only the named variables of superd's own environment; its PATH never, the fixed one instead.
  CHECK(p.env == Strings{"TZ=UTC", "A=x-s", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
                         "STATE_DIRECTORY=/var/lib/st", "RUNTIME_DIRECTORY=/run/r1:/run/r2"});
  CHECK(p.listen_fdnames == "s");

  auto own_path = plan_of(parse("exec = [\"/bin/true\"]\nenvironment = { PATH = \"/mine\" }\n"));
  CHECK(own_path.env == Strings{"PATH=/mine"});
  CHECK_FALSE(own_path.per_connection_specifier);
}

TEST_CASE("rlimits: nproc for a dynamic user, nofile given back from the HostLimits input", "[plan]") {
  const spawn::HostLimits raised{rlimit{1024, 4096}};
  auto dyn = plan_of(parse("exec = [\"/bin/true\"]\nlimits = { as = \"512M\" }\n"), raised);
  CHECK(limit_of(dyn, RLIMIT_AS) == rlim_t(512) << 20);
  CHECK(limit_of(dyn, RLIMIT_NPROC) == config::kDefaultNproc);
  CHECK(dyn.reset_nofile);
  CHECK(dyn.nofile.rlim_cur == 1024);
  CHECK(dyn.nofile.rlim_max == 4096);

  // superd did not raise its own: nothing to give back.
  auto not_raised = plan_of(parse("exec = [\"/bin/true\"]\n"), spawn::HostLimits{});
  CHECK_FALSE(not_raised.reset_nofile);

  // The service's own nofile and nproc win.
  auto own = plan_of(parse("exec = [\"/bin/true\"]\nlimits = { nofile = 256, nproc = 16 }\n"), raised);
  CHECK_FALSE(own.reset_nofile);
  CHECK(limit_of(own, RLIMIT_NOFILE) == 256u);
  CHECK(limit_of(own, RLIMIT_NPROC) == 16u);

  // A static user's nproc would count all of that user's processes: none by default.
  auto st = plan_of(parse("exec = [\"/bin/true\"]\ndynamic_user = false\nuser = \"nobody\"\n"), raised);
  CHECK_FALSE(limit_of(st, RLIMIT_NPROC));
  CHECK(st.reset_nofile);
}

TEST_CASE("raise_nofile_limit returns the limit superd started with", "[plan]") {
  // It changes this process's limit: in a child, which reports through its exit code.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // A soft limit below the hard one, so that the original and the raised limit differ even
    // where superd may not go past the hard limit (no CAP_SYS_RESOURCE).
    rlimit before{}, after{};
    if (::getrlimit(RLIMIT_NOFILE, &before) != 0) ::_exit(10);
    before.rlim_cur = std::min<rlim_t>(before.rlim_max, 64);
    if (::setrlimit(RLIMIT_NOFILE, &before) != 0) ::_exit(16);
    spawn::HostLimits host = spawn::raise_nofile_limit();
    if (::getrlimit(RLIMIT_NOFILE, &after) != 0) ::_exit(11);
    if (!host.original_nofile) ::_exit(after.rlim_cur == before.rlim_cur ? 12 : 13);  // not raised: unchanged
    if (host.original_nofile->rlim_cur != before.rlim_cur || host.original_nofile->rlim_max != before.rlim_max)
      ::_exit(14);
    if (after.rlim_cur < before.rlim_max || after.rlim_cur != after.rlim_max) ::_exit(15);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("umask and groups: the shared-directory group input sets both", "[plan]") {
  auto plain = parse("exec = [\"/bin/true\"]\nstate_directory = \"st\"\n");
  auto none = plan_of(plain);
  CHECK(none.umask == 0022);
  CHECK(none.groups.empty());

  auto shared = plan_of(plain, {}, gid_t{61234});
  CHECK(shared.groups == std::vector<gid_t>{61234});
  CHECK(shared.umask == 0007);  // group-writable among the service's instances

  auto own_umask =
      plan_of(parse("exec = [\"/bin/true\"]\nstate_directory = \"st\"\numask = \"0027\"\n"), {}, gid_t{61234});
  CHECK(own_umask.groups == std::vector<gid_t>{61234});
  CHECK(own_umask.umask == 0027);
}

TEST_CASE("static user vs dynamic user: identity, groups, bounding set", "[plan]") {
  auto dyn = plan_of(parse("exec = [\"/bin/true\"]\n"));
  CHECK_FALSE(dyn.static_identity);
  CHECK(dyn.drop_bounding_set);
  CHECK(dyn.no_new_privs);
  CHECK(dyn.mount_ns);
  CHECK((dyn.clone_flags & CLONE_NEWNS));
  CHECK_FALSE(dyn.mounts.ops.empty());

  auto st = plan_of(
      parse("exec = [\"/bin/true\"]\ndynamic_user = false\nuser = \"nobody\"\nsupplementary_groups = [\"nogroup\"]\n"));
  CHECK(st.static_identity);
  CHECK(st.static_uid == 65534u);
  CHECK(st.static_gid == 65534u);
  CHECK(st.user_name == "nobody");
  CHECK(st.home == "/nonexistent");
  CHECK(st.groups == std::vector<gid_t>{65534});
  CHECK_FALSE(st.drop_bounding_set);
  CHECK_FALSE(st.mount_ns);  // a static user gets no implied sandbox
  CHECK(st.clone_flags == 0);
  CHECK(st.mounts.ops.empty());
}

TEST_CASE("use_zygote: only sandboxed dynamic users whose filter allows it, when the daemon asks", "[plan]") {
  auto svc = parse("exec = [\"/bin/true\"]\nprivate_network = true\nprivate_ipc = true\n");
  auto z = plan_of(svc, {}, std::nullopt, true);
  CHECK(z.use_zygote);
  CHECK(z.clone_flags == (CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET));
  CHECK(z.zygote_clone_flags == (CLONE_VM | CLONE_VFORK | CLONE_PARENT | CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID |
                                 CLONE_NEWIPC | CLONE_NEWNET));
  CHECK(z.gate_filter);
  CHECK(z.filter);

  auto asked_not = plan_of(svc, {}, std::nullopt, false);
  CHECK_FALSE(asked_not.use_zygote);
  CHECK_FALSE(asked_not.gate_filter);
  CHECK(asked_not.zygote_clone_flags == 0);

  CHECK_FALSE(plan_of(parse("exec = [\"/bin/true\"]\nsandbox = false\n"), {}, std::nullopt, true).use_zygote);
  // A static user with a mount namespace and a filter still spawns directly.
  auto st =
      plan_of(parse("exec = [\"/bin/true\"]\ndynamic_user = false\nuser = \"nobody\"\nprotect_system = \"strict\"\n"
                    "system_call_filter = [\"@system-service\"]\n"),
              {}, std::nullopt, true);
  CHECK(st.mount_ns);
  CHECK(st.filter);
  CHECK_FALSE(st.use_zygote);
}

TEST_CASE("instance plan: identity, the peer's variables, %c, arrays", "[plan]") {
  auto svc = plan_of(parse("exec = [\"/bin/echo\", \"%c\"]\nenvironment = { A = \"c=%c\" }\n"));
  spawn::Peer peer;
  peer.remote = v4("192.0.2.7", 4242);
  peer.local = v4("127.0.0.1", 7000);
  spawn::InstancePlan ip;
  spawn::make_instance_plan(ip, svc, peer, 70001, 42);
  CHECK(ip.service == &svc);
  CHECK(ip.uid == 70001u);
  CHECK(ip.gid == 70001u);
  CHECK_FALSE(ip.passthrough);
  CHECK(ip.serial == 42u);
  CHECK(strings(ip.envp) == Strings{"PROTO=TCP", "REMOTE_ADDR=192.0.2.7", "REMOTE_PORT=4242", "REMOTE_HOST=192.0.2.7",
                                    "TCPREMOTEIP=192.0.2.7", "TCPREMOTEPORT=4242", "TCPLOCALIP=127.0.0.1",
                                    "TCPLOCALPORT=7000", "USER=superd-70001", "LOGNAME=superd-70001", "HOME=/",
                                    "A=c=42", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"});
  CHECK(strings(ip.argv) == Strings{"/bin/echo", "42"});
  REQUIRE_FALSE(ip.argv.empty());
  CHECK(ip.argv.back() == nullptr);
  CHECK(ip.envp.back() == nullptr);

  peer.remote = v6("2001:db8::1", 5);
  peer.local = v6("::1", 6);
  spawn::make_instance_plan(ip, svc, peer, 70002, 43);
  CHECK(strings(ip.envp).at(0) == "PROTO=TCP6");
  CHECK(strings(ip.envp).at(1) == "REMOTE_ADDR=2001:db8::1");
  CHECK(strings(ip.envp).at(6) == "TCPLOCALIP=::1");
  // A v4-mapped peer on a dual-stack socket is an IPv4 client.
  peer.remote = v6("::ffff:192.0.2.9", 5);
  spawn::make_instance_plan(ip, svc, peer, 70002, 44);
  CHECK(strings(ip.envp).at(0) == "PROTO=TCP");
  CHECK(strings(ip.envp).at(1) == "REMOTE_ADDR=192.0.2.9");

  spawn::Peer unix_peer;
  unix_peer.is_unix = true;
  unix_peer.unix_pid = 321;
  unix_peer.unix_uid = 1000;
  unix_peer.unix_gid = 1001;
  spawn::make_instance_plan(ip, svc, unix_peer, 70003, 45);
  CHECK(strings(ip.envp) == Strings{"PROTO=UNIX", "UNIXREMOTEPID=321", "UNIXREMOTEEUID=1000", "UNIXREMOTEEGID=1001",
                                    "USER=superd-70003", "LOGNAME=superd-70003", "HOME=/", "A=c=45",
                                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"});
}

TEST_CASE("instance plan: listen-fds and a static user", "[plan]") {
  auto svc =
      plan_of(parse("exec = [\"/bin/true\"]\nstdio = \"listen-fds\"\ndynamic_user = false\nuser = \"nobody\"\n"));
  spawn::Peer peer;
  peer.remote = v4("192.0.2.7", 1);
  peer.local = v4("127.0.0.1", 2);
  spawn::InstancePlan ip;
  spawn::make_instance_plan(ip, svc, peer, 70001, 1);
  CHECK(ip.uid == 65534u);  // the static user, not the offered UID
  CHECK(ip.gid == 65534u);
  Strings env = strings(ip.envp);
  REQUIRE(env.size() == 15);
  CHECK(Strings(env.begin() + 8, env.end()) == Strings{"USER=nobody", "LOGNAME=nobody", "HOME=/nonexistent",
                                                       "LISTEN_FDS=1", "LISTEN_PID=1", "LISTEN_FDNAMES=connection",
                                                       "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"});
}

TEST_CASE("wait plan: the listening sockets as conn_fd or as fd 3... with LISTEN_FDS", "[plan]") {
  const std::string two = "listen = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\naccept = false\n";
  int fds[] = {11, 12};
  auto fdmode = plan_of(parse("exec = [\"/bin/true\"]\nstdio = \"listen-fds\"\n", two));
  CHECK(fdmode.listen_fdnames == "s:s");
  spawn::InstancePlan ip;
  spawn::make_wait_plan(ip, fdmode, 70010, "foobard-acme", 7, fds, 2);
  CHECK(ip.uid == 70010u);
  CHECK(ip.n_listen_fds == 2u);
  CHECK(ip.listen_fds[0] == 11);
  CHECK(ip.listen_fds[1] == 12);
  CHECK(strings(ip.envp) == Strings{"USER=foobard-acme", "LOGNAME=foobard-acme", "HOME=/", "LISTEN_FDS=2",
                                    "LISTEN_PID=1", "LISTEN_FDNAMES=s:s",
                                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"});

  // stdio = "socket" takes exactly one listening socket (the config says so).
  auto sock = plan_of(parse("exec = [\"/bin/true\"]\n", "listen = [\"127.0.0.1:7001\"]\naccept = false\n"));
  spawn::InstancePlan ws;
  spawn::make_wait_plan(ws, sock, 70011, "echo", 8, fds, 1);
  CHECK(ws.conn_fd == 11);
  CHECK(ws.n_listen_fds == 0u);
  CHECK(strings(ws.envp) ==
        Strings{"USER=echo", "LOGNAME=echo", "HOME=/", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"});
}

TEST_CASE("run plan: passthrough, the unit's name, no peer variables", "[plan]") {
  auto svc = plan_of(parse("exec = [\"/bin/true\", \"%c\"]\n"));
  spawn::InstancePlan ip;
  spawn::make_run_plan(ip, svc, 70020, 9, "myunit");
  CHECK(ip.passthrough);
  CHECK(ip.uid == 70020u);
  CHECK(ip.gid == 70020u);
  CHECK(strings(ip.argv) == Strings{"/bin/true", "9"});
  CHECK(strings(ip.envp) ==
        Strings{"USER=myunit", "LOGNAME=myunit", "HOME=/", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"});
}
