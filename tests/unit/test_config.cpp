// Configuration parsed from strings: values land in the structs, and every problem names the
// file, line, column and key.
#include <catch2/catch.hpp>

#include "config/config.hpp"

using namespace superd;
using Catch::Matchers::Contains;

namespace {
std::string all(const config::Problems& p) {
  std::string s;
  for (const auto& x : p.list()) s += x.to_string() + "\n";
  return s;
}
}  // namespace

TEST_CASE("a full service file parses into the structs") {
  config::Problems p;
  auto svc = config::parse_service(R"(
[socket]
listen = ["127.0.0.1:7001", "[::1]:7001", "/run/hello.sock"]
accept = true
max_connections = 1024
max_connections_per_source = 32
allow = ["127.0.0.0/8", "::1/128"]
deny = []
backlog = 64
reuse_port = true
socket_mode = "0660"

[service]
exec = ["/usr/local/libexec/hello", "--greet"]
dynamic_user = true
stdio = "listen-fds"
runtime_max = "30s"
timeout_stop = "2s"
limits = { nofile = 256, nproc = 16, as = "512M", cpu = "1min" }
environment = { GREETING = "hi" }
pass_environment = ["TZ"]
umask = "0027"
nice = 5
)", "hello.toml", "hello", p);
  INFO(all(p));
  REQUIRE(svc);
  CHECK(p.empty());
  CHECK(svc->name == "hello");
  CHECK(svc->socket.listen.size() == 3);
  CHECK(svc->socket.max_connections == 1024);
  CHECK(svc->socket.max_connections_per_source == 32);
  CHECK(svc->socket.allow.size() == 2);
  CHECK(svc->socket.backlog == 64);
  CHECK(svc->socket.reuse_port);
  CHECK(svc->socket.socket_mode == 0660);
  CHECK(svc->service.exec.size() == 2);
  CHECK(svc->service.stdio == config::Stdio::listen_fds);
  CHECK(svc->service.runtime_max == std::chrono::seconds(30));
  CHECK(svc->service.timeout_stop == std::chrono::seconds(2));
  REQUIRE(svc->service.limits.size() == 4);
  CHECK(svc->service.environment.at(0).first == "GREETING");
  CHECK(svc->service.umask == 027);
  CHECK(svc->service.nice == 5);
}

TEST_CASE("unknown keys and wrong types are reported with line, column and key") {
  config::Problems p;
  auto svc = config::parse_service(R"([socket]
listen = ["127.0.0.1:7001"]
max_conections = 5
[service]
exec = "/bin/true"
runtime_max = true
)", "bad.toml", "bad", p);
  CHECK_FALSE(svc);
  std::string s = all(p);
  CHECK_THAT(s, Contains("bad.toml:3:1: socket.max_conections: unknown key"));
  CHECK_THAT(s, Contains("bad.toml:5:8: service.exec: expected an array of strings, got a string"));
  CHECK_THAT(s, Contains("bad.toml:6:15: service.runtime_max: expected a duration"));
}

TEST_CASE("bad listen addresses name the key") {
  config::Problems p;
  auto svc = config::parse_service(R"([socket]
listen = ["127.0.0.1:99999", "1.2.3:80"]
[service]
exec = ["/bin/true"]
)", "l.toml", "l", p);
  CHECK_FALSE(svc);
  std::string s = all(p);
  CHECK_THAT(s, Contains("l.toml:2:11: socket.listen: bad port"));
  CHECK_THAT(s, Contains("l.toml:2:30: socket.listen: bad IPv4 address"));
}

TEST_CASE("a TOML syntax error is reported with its position") {
  config::Problems p;
  auto svc = config::parse_service("[socket]\nlisten = [\"x\"\n", "syn.toml", "syn", p);
  CHECK_FALSE(svc);
  REQUIRE_FALSE(p.empty());
  CHECK_THAT(all(p), Contains("syn.toml:"));
}

TEST_CASE("the main file: range, roots, unknown keys") {
  config::Problems p;
  auto g = config::parse_global(R"([superd]
dynamic_uid_range = [70000, 70099]
runtime_root = "/srv/x/run"
state_root = "/srv/x/lib"
cache_root = "/srv/x/cache"
logs_root = "/srv/x/log"
log_level = "debug"
)", "main.toml", p);
  INFO(all(p));
  CHECK(p.empty());
  CHECK(g.uid_min == 70000);
  CHECK(g.uid_max == 70099);
  CHECK(g.runtime_root == "/srv/x/run");
  CHECK(g.log_level == "debug");

  config::Problems q;
  config::parse_global("[superd]\ndynamic_uid_range = [5, 1]\nfoo = 1\nruntime_root = \"rel\"\n", "m.toml", q);
  std::string s = all(q);
  CHECK_THAT(s, Contains("m.toml:2:21: superd.dynamic_uid_range: expected 1 <= FIRST <= LAST"));
  CHECK_THAT(s, Contains("m.toml:3:1: superd.foo: unknown key"));
  CHECK_THAT(s, Contains("superd.runtime_root: must be an absolute path"));

  config::Problems r;
  config::parse_global("[superd]\ndynamic_uid_range = [0, 10]\n", "m.toml", r);
  CHECK_THAT(all(r), Contains("dynamic_uid_range"));
  config::Problems t;
  config::parse_global("[superd]\ndynamic_uid_range = [60000, 70000]\n", "m.toml", t);
  CHECK_THAT(all(t), Contains("65535"));
  config::Problems u;
  config::parse_global("[superd]\ndynamic_uid_range = [1, 100000000]\n", "m.toml", u);
  CHECK_THAT(all(u), Contains("at most"));
}

TEST_CASE("validate: the same address twice across services, and a range over system users") {
  config::Config c;
  c.global.file = "main.toml";
  c.global.uid_min = 0 + 1;  // contains root's groups and daemon users on any system
  c.global.uid_max = 100;
  config::Problems p1, p2;
  c.services.push_back(*config::parse_service("[socket]\nlisten=[\"127.0.0.1:7001\"]\n[service]\nexec=[\"/bin/true\"]\n",
                                              "a.toml", "a", p1));
  c.services.push_back(*config::parse_service("[socket]\nlisten=[\"7001\"]\n[service]\nexec=[\"/bin/true\"]\n",
                                              "b.toml", "b", p2));
  config::Problems p;
  config::validate(c, p);
  std::string s = all(p);
  CHECK_THAT(s, Contains("b.toml:2:9: socket.listen: \"*:7001\" overlaps \"127.0.0.1:7001\" of service a"));
  CHECK_THAT(s, Contains("superd.dynamic_uid_range"));
  CHECK_THAT(s, Contains("overlaps the system database"));
}

TEST_CASE("validate_system: exec[0] missing, relative, or not executable") {
  config::Config c;
  config::Problems p0;
  c.services.push_back(*config::parse_service("[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/nonexistent/prog\"]\n", "a.toml", "a", p0));
  c.services.push_back(*config::parse_service("[socket]\nlisten=[\"2\"]\n[service]\nexec=[\"true\"]\n", "b.toml", "b", p0));
  c.services.push_back(*config::parse_service("[socket]\nlisten=[\"3\"]\n[service]\nexec=[\"/etc/passwd\"]\n", "c.toml", "c", p0));
  config::Problems p;
  config::validate_system(c, p);
  std::string s = all(p);
  CHECK_THAT(s, Contains("a.toml:1:1: service.exec[0]: \"/nonexistent/prog\": No such file or directory"));
  CHECK_THAT(s, Contains("b.toml:1:1: service.exec[0]: \"true\" must be an absolute path"));
  CHECK_THAT(s, Contains("c.toml:1:1: service.exec[0]: \"/etc/passwd\" is not an executable file"));
}

TEST_CASE("sandbox keys parse, with the dynamic-user defaults") {
  config::Problems p;
  auto svc = config::parse_service(R"([socket]
listen = ["1"]
[service]
exec = ["/bin/true"]
state_directory = ["%n", "%n/sub"]
runtime_directory = "rt-%p"
state_directory_mode = "0750"
read_write_paths = ["-/srv/maybe"]
bind_read_only_paths = ["/etc/hosts:/etc/hosts2"]
capability_bounding_set = ["CAP_NET_BIND_SERVICE"]
ambient_capabilities = ["cap_net_bind_service"]
system_call_filter = ["~@mount", "ptrace"]
system_call_error_number = "EACCES"
private_network = true
)", "s.toml", "web@eu", p);
  INFO(all(p));
  REQUIRE(svc);
  const auto& sb = svc->service.sandbox;
  CHECK(sb.protect_system == config::ProtectSystem::strict);
  CHECK(sb.protect_home == config::ProtectHome::read_only);
  CHECK(sb.private_tmp);
  CHECK(sb.no_new_privileges);
  CHECK(sb.state.names == std::vector<std::string>{"web@eu", "web@eu/sub"});
  CHECK(sb.state.mode == 0750);
  CHECK(sb.runtime.names == std::vector<std::string>{"rt-web"});
  CHECK(sb.read_write_paths.at(0).optional);
  CHECK(sb.bind_read_only_paths.at(0).target == "/etc/hosts2");
  CHECK(sb.capability_bounding_set.size() == 1);
  CHECK(sb.ambient_capabilities == sb.capability_bounding_set);
  CHECK(sb.private_network);
}

TEST_CASE("a static user gets no implied sandbox") {
  config::Problems p;
  auto svc = config::parse_service(
      "[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/bin/true\"]\ndynamic_user=false\nuser=\"nobody\"\n", "s.toml", "s", p);
  INFO(all(p));
  REQUIRE(svc);
  CHECK(svc->service.sandbox.protect_system == config::ProtectSystem::no);
  CHECK_FALSE(svc->service.sandbox.private_tmp);
  CHECK_FALSE(svc->service.sandbox.no_new_privileges);
}

TEST_CASE("bad sandbox input is a config error naming the key") {
  config::Problems p;
  auto svc = config::parse_service(R"([socket]
listen = ["1"]
[service]
exec = ["/bin/true"]
state_directory = "/var/lib/abs"
cache_directory = "a/../b"
logs_directory = ".."
runtime_directory = "r-%c"
system_call_filter = ["@nonsense"]
capability_bounding_set = ["CAP_FLY"]
ambient_capabilities = ["CAP_NET_RAW"]
no_new_privileges = false
read_only_paths = ["relative/path"]
bind_paths = ["/a:relative"]
protect_system = "sometimes"
restrict_address_families = ["AF_CARRIER_PIGEON"]
)", "b.toml", "b", p);
  CHECK_FALSE(svc);
  std::string s = all(p);
  CHECK_THAT(s, Contains("b.toml:5:19: service.state_directory: \"/var/lib/abs\" must be a relative path"));
  CHECK_THAT(s, Contains("b.toml:6:19: service.cache_directory: \"a/../b\""));
  CHECK_THAT(s, Contains("b.toml:7:18: service.logs_directory"));
  CHECK_THAT(s, Contains("service.runtime_directory: \"%c\" is not allowed"));
  CHECK_THAT(s, Contains("service.system_call_filter: "));
  CHECK_THAT(s, Contains("@nonsense"));
  CHECK_THAT(s, Contains("service.capability_bounding_set: unknown capability \"CAP_FLY\""));
  CHECK_THAT(s, Contains("service.ambient_capabilities: cap_net_raw is not in capability_bounding_set"));
  CHECK_THAT(s, Contains("service.no_new_privileges: cannot be false with dynamic_user = true"));
  CHECK_THAT(s, Contains("service.read_only_paths: \"relative/path\" must be an absolute path"));
  CHECK_THAT(s, Contains("service.bind_paths: \"/a:relative\""));
  CHECK_THAT(s, Contains("service.protect_system: expected \"strict\", \"full\", true or false"));
  CHECK_THAT(s, Contains("service.restrict_address_families: "));
}

TEST_CASE("superd run properties become [service] keys") {
  config::Problems p;
  auto svc = config::parse_run_service({"state_directory=wuff", "private_network=true", "limits={nofile=16}"},
                                       {"/bin/sh", "-c", "echo \"hi\""}, "wuff", p);
  INFO(all(p));
  REQUIRE(svc);
  CHECK(svc->service.exec.at(2) == "echo \"hi\"");
  CHECK(svc->service.sandbox.state.names == std::vector<std::string>{"wuff"});
  CHECK(svc->service.sandbox.private_network);
  CHECK(svc->service.limits.size() == 1);
  config::Problems q;
  CHECK_FALSE(config::parse_run_service({"state_directory=../x"}, {"/bin/true"}, "r", q));
  CHECK_THAT(all(q), Contains("service.state_directory"));
  config::Problems r;
  CHECK_FALSE(config::parse_run_service({"no_such_key=1"}, {"/bin/true"}, "r", r));
  CHECK_THAT(all(r), Contains("service.no_such_key: unknown key"));
}

TEST_CASE("specifiers") {
  std::string serial = "42";
  CHECK(config::expand_specifiers("%n|%p|%i|%c|%%|%x", "web@eu", &serial) == "web@eu|web|eu|42|%|%x");
  CHECK(config::expand_specifiers("%c", "a") == "%c");
}

namespace {
std::optional<config::Service> svc_from(const std::string& socket, const std::string& service, config::Problems& p) {
  return config::parse_service("[socket]\n" + socket + "\n[service]\n" + service + "\n", "x.toml", "x", p);
}
}  // namespace

TEST_CASE("xinetd-era socket keys: datagram, wait mode, flags, rate, access times, banners") {
  config::Problems p;
  auto svc = svc_from(R"(listen_datagram = ["127.0.0.1:6969", "[::]:6969"]
accept = false
bind_ipv6_only = "both"
no_delay = true
keep_alive = true
max_connection_rate = 5
connection_rate_interval = "2s"
connection_rate_action = "refuse"
access_times = ["08:00-12:00", "22:00-06:00"]
banner = "/etc/hostname")",
                      R"(exec = ["/usr/sbin/in.tftpd", "-s", "/srv"]
stdio = "listen-fds")", p);
  INFO(all(p));
  REQUIRE(svc);
  const auto& so = svc->socket;
  REQUIRE(so.listen.size() == 2);
  CHECK(so.listen[0].datagram);
  CHECK_FALSE(so.accept);
  CHECK(so.bind_ipv6_only == config::BindIpv6Only::both);
  CHECK(so.no_delay);
  CHECK(so.keep_alive);
  CHECK(so.max_connection_rate == 5);
  CHECK(so.connection_rate_interval == std::chrono::seconds(2));
  CHECK(so.connection_rate_action == config::RateAction::refuse);
  CHECK(so.access_times.size() == 2);
  CHECK(so.banner.path == "/etc/hostname");
  CHECK_FALSE(so.banner.text.empty());
}

TEST_CASE("service kinds: @exec, internal, redirect, static identity, log fields") {
  config::Problems p;
  auto svc = svc_from(R"(listen = ["7"])", R"(exec = ["@/usr/sbin/tcpd", "in.ftpd", "-l"]
dynamic_user = false
user = "nobody"
group = "nogroup"
supplementary_groups = ["0"]
log_target = "syslog:daemon.notice"
log_on_success = ["PID", "HOST", "TRAFFIC"]
log_on_failure = []
limits = { rss = "1G" })", p);
  INFO(all(p));
  REQUIRE(svc);
  const auto& se = svc->service;
  CHECK(se.exec_path == "/usr/sbin/tcpd");
  CHECK(se.exec == std::vector<std::string>{"in.ftpd", "-l"});
  CHECK_FALSE(se.dynamic_user);
  CHECK(se.user == "nobody");
  CHECK(se.uid == 65534);
  CHECK(se.supplementary_groups == std::vector<gid_t>{0});
  CHECK(se.log_on_success == (config::kLogPid | config::kLogHost | config::kLogTraffic));
  CHECK(se.log_on_failure == 0);
  CHECK(se.sandbox.private_tmp == false);  // a static user: no implied sandbox

  auto internal = svc_from(R"(listen_datagram = ["7"])", R"(internal = "echo")", p);
  REQUIRE(internal);
  CHECK(internal->service.internal == "echo");
  CHECK(internal->service.exec.empty());
  auto relay = svc_from(R"(listen = ["7"])", R"(redirect = "127.0.0.1:8")", p);
  REQUIRE(relay);
  REQUIRE(relay->service.redirect);
  CHECK(relay->service.redirect->port == 8);
  CHECK(p.empty());
}

TEST_CASE("bad xinetd-era input names the key") {
  struct Case {
    const char* socket;
    const char* service;
    const char* expect;
  };
  const Case cases[] = {
      {R"(listen_datagram = ["7"])", R"(exec = ["/bin/true"])", "socket.listen_datagram: a datagram socket is served in wait mode"},
      {R"(listen_datagram = ["/run/x"])", R"(internal = "echo")", "socket.listen_datagram: \"/run/x\": a datagram listener takes"},
      {R"(listen = ["7", "8"]
accept = false)", R"(exec = ["/bin/true"])", "socket.listen: wait mode with stdio = \"socket\" hands over exactly one"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
internal = "echo")", "service.internal: exec, internal and redirect exclude each other"},
      {R"(listen = ["7"])", R"(internal = "qotd")", "service.internal: expected echo, discard"},
      {R"(listen = ["7"])", R"(redirect = "0.0.0.0:80")", "service.redirect: expected ADDR:PORT"},
      {R"(listen = ["7"]
accept = false)", R"(redirect = "127.0.0.1:80")", "socket.accept: redirect needs accept = true"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
dynamic_user = false)", "service.user: dynamic_user = false needs user"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
user = "nobody")", "service.user: needs dynamic_user = false"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
dynamic_user = false
user = "no-such-user-here")", "service.user: no such user"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
log_on_failure = ["PID"])", "service.log_on_failure: unknown field \"PID\""},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
log_target = "syslog:nosuch")", "service.log_target"},
      {R"(listen = ["7"])", R"(exec = ["@/bin/true"])", "service.exec: \"@PATH\" must be followed by argv[0]"},
      {R"(listen = ["7"]
access_times = ["25:00-26:00"])", R"(exec = ["/bin/true"])", "socket.access_times"},
      {R"(listen = ["7"]
banner = "/nonexistent/banner")", R"(exec = ["/bin/true"])", "socket.banner: \"/nonexistent/banner\": No such file"},
      {R"(listen = ["7"]
connection_rate_action = "drop")", R"(exec = ["/bin/true"])", "socket.connection_rate_action: expected"},
      {R"(listen = ["7"]
bind_ipv6_only = "yes")", R"(exec = ["/bin/true"])", "socket.bind_ipv6_only: expected"},
  };
  for (const Case& c : cases) {
    config::Problems p;
    auto svc = svc_from(c.socket, c.service, p);
    INFO(c.socket << " / " << c.service);
    CHECK_FALSE(svc);
    CHECK_THAT(all(p), Contains(c.expect));
  }
}

TEST_CASE("a UDP and a TCP listener on one port do not overlap; two UDP ones do") {
  config::Config c;
  config::Problems p;
  c.services.push_back(*svc_from(R"(listen = ["127.0.0.1:7"])", R"(internal = "echo")", p));
  c.services.back().name = "tcp";
  c.services.push_back(*svc_from(R"(listen_datagram = ["127.0.0.1:7"])", R"(internal = "echo")", p));
  c.services.back().name = "udp";
  REQUIRE(p.empty());
  config::validate(c, p);
  CHECK_THAT(all(p), !Contains("overlaps \"127.0.0.1:7\""));
  c.services.push_back(c.services.back());
  c.services.back().name = "udp2";
  config::Problems q;
  config::validate(c, q);
  CHECK_THAT(all(q), Contains("overlaps \"127.0.0.1:7\" of service udp"));
}

TEST_CASE("in-memory services: disabled ones are set aside, problems point at the source line") {
  config::Problems p;
  std::vector<config::MemoryService> extra = {
      {"on", "[socket]\nlisten = [\"127.0.0.1:7\"]\n[service]\ninternal = \"echo\"\n", "/etc/xinetd.d/on", {3, 4, 5, 6}},
      {"off", "[socket]\nlisten = [\"127.0.0.1:9\"]\n[service]\ninternal = \"discard\"\ndisabled = true\n",
       "/etc/xinetd.d/off", {1, 2, 3, 4, 5}},
      {"bad", "[socket]\nlisten = [\"127.0.0.1:13\"]\n[service]\ninternal = \"qotd\"\n", "/etc/xinetd.d/bad", {10, 11, 12, 17}},
  };
  config::Config c = config::load("", extra, p);
  REQUIRE(c.services.size() == 1);
  CHECK(c.services[0].name == "on");
  CHECK(c.disabled == std::vector<std::string>{"off"});
  REQUIRE(p.list().size() == 1);
  CHECK(p.list()[0].where.file == "/etc/xinetd.d/bad");
  CHECK(p.list()[0].where.line == 17);
  CHECK_THAT(p.list()[0].message, Contains("(in the converted service bad)"));
}
