// Configuration parsed from strings: values land in the structs, and every problem names the
// file, line, column and key.
#include <arpa/inet.h>
#include <syslog.h>

#include <catch2/catch.hpp>

#include "admission/access_times.hpp"
#include "admission/admission.hpp"
#include "config/config.hpp"
#include "inloop/internal_service.hpp"
#include "util/sink.hpp"

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
)",
                                   "hello.toml", "hello", p);
  INFO(all(p));
  REQUIRE(svc);
  CHECK(p.empty());
  CHECK(svc->name == "hello");
  CHECK(svc->socket.listen.size() == 3);
  CHECK(svc->socket.limits.max_connections == 1024);
  CHECK(svc->socket.limits.max_per_source == 32);
  CHECK(svc->socket.limits.allow.size() == 2);
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
)",
                                   "bad.toml", "bad", p);
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
)",
                                   "l.toml", "l", p);
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
)",
                                "main.toml", p);
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
  c.services.push_back(*config::parse_service(
      "[socket]\nlisten=[\"127.0.0.1:7001\"]\n[service]\nexec=[\"/bin/true\"]\n", "a.toml", "a", p1));
  c.services.push_back(
      *config::parse_service("[socket]\nlisten=[\"7001\"]\n[service]\nexec=[\"/bin/true\"]\n", "b.toml", "b", p2));
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
  c.services.push_back(
      *config::parse_service("[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/nonexistent/prog\"]\n", "a.toml", "a", p0));
  c.services.push_back(
      *config::parse_service("[socket]\nlisten=[\"2\"]\n[service]\nexec=[\"true\"]\n", "b.toml", "b", p0));
  c.services.push_back(
      *config::parse_service("[socket]\nlisten=[\"3\"]\n[service]\nexec=[\"/etc/passwd\"]\n", "c.toml", "c", p0));
  config::Problems p;
  config::validate_system(c, p);
  std::string s = all(p);
  CHECK_THAT(s, Contains("a.toml:4:6: service.exec[0]: \"/nonexistent/prog\": No such file or directory"));
  CHECK_THAT(s, Contains("b.toml:4:6: service.exec[0]: \"true\" must be an absolute path"));
  CHECK_THAT(s, Contains("c.toml:4:6: service.exec[0]: \"/etc/passwd\" is not an executable file"));
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
)",
                                   "s.toml", "web@eu", p);
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
  CHECK(sb.log_syslog);  // the default
}

TEST_CASE("log_syslog: a boolean, true by default, false turns it off") {
  config::Problems p;
  auto svc = config::parse_service("[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/bin/true\"]\nlog_syslog=false\n",
                                   "s.toml", "s", p);
  INFO(all(p));
  REQUIRE(svc);
  CHECK_FALSE(svc->service.sandbox.log_syslog);
  config::Problems bad;
  config::parse_service("[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/bin/true\"]\nlog_syslog=\"no\"\n", "s.toml", "s",
                        bad);
  CHECK(all(bad).find("s.toml:5:12: service.log_syslog") != std::string::npos);
}

TEST_CASE("a static user gets no implied sandbox") {
  config::Problems p;
  auto svc = config::parse_service(
      "[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/bin/true\"]\ndynamic_user=false\nuser=\"nobody\"\n", "s.toml", "s",
      p);
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
)",
                                   "b.toml", "b", p);
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
stdio = "listen-fds")",
                      p);
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
  CHECK(so.access_times.intervals().size() == 2);
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
limits = { rss = "1G" })",
                      p);
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
  CHECK(internal->service.internal == inloop::Internal::echo);
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
      {R"(listen_datagram = ["7"])", R"(exec = ["/bin/true"])",
       "socket.listen_datagram: a datagram socket is served in wait mode"},
      {R"(listen_datagram = ["/run/x"])", R"(internal = "echo")",
       "socket.listen_datagram: \"/run/x\": a datagram listener takes"},
      {R"(listen = ["7", "8"]
accept = false)",
       R"(exec = ["/bin/true"])", "socket.listen: wait mode with stdio = \"socket\" hands over exactly one"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
internal = "echo")",
       "service.internal: exec, internal and redirect exclude each other"},
      {R"(listen = ["7"])", R"(internal = "qotd")", "service.internal: expected echo, discard"},
      {R"(listen = ["7"])", R"(redirect = "0.0.0.0:80")", "service.redirect: expected ADDR:PORT"},
      {R"(listen = ["7"]
accept = false)",
       R"(redirect = "127.0.0.1:80")", "socket.accept: redirect needs accept = true"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
dynamic_user = false)",
       "service.user: dynamic_user = false needs user"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
user = "nobody")",
       "service.user: needs dynamic_user = false"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
dynamic_user = false
user = "no-such-user-here")",
       "service.user: no such user"},
      // A number past any UID (fuzz_xinetd: std::stoul threw out_of_range through the loader).
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
dynamic_user = false
user = "99999999999999999999999")",
       "service.user: no such user"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
dynamic_user = false
user = "root"
group = "4294967295")",
       "service.group: no such group"},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
log_on_failure = ["PID"])",
       "service.log_on_failure: unknown field \"PID\""},
      {R"(listen = ["7"])", R"(exec = ["/bin/true"]
log_target = "syslog:nosuch")",
       "service.log_target"},
      {R"(listen = ["7"])", R"(exec = ["@/bin/true"])", "service.exec: \"@PATH\" must be followed by argv[0]"},
      {R"(listen = ["7"]
access_times = ["25:00-26:00"])",
       R"(exec = ["/bin/true"])", "socket.access_times"},
      {R"(listen = ["7"]
banner = "/nonexistent/banner")",
       R"(exec = ["/bin/true"])", "socket.banner: \"/nonexistent/banner\": No such file"},
      {R"(listen = ["7"]
connection_rate_action = "drop")",
       R"(exec = ["/bin/true"])", "socket.connection_rate_action: expected"},
      {R"(listen = ["7"]
bind_ipv6_only = "yes")",
       R"(exec = ["/bin/true"])", "socket.bind_ipv6_only: expected"},
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
      {"on",
       "[socket]\nlisten = [\"127.0.0.1:7\"]\n[service]\ninternal = \"echo\"\n",
       "/etc/xinetd.d/on",
       {3, 4, 5, 6}},
      {"off",
       "[socket]\nlisten = [\"127.0.0.1:9\"]\n[service]\ninternal = \"discard\"\ndisabled = true\n",
       "/etc/xinetd.d/off",
       {1, 2, 3, 4, 5}},
      {"bad",
       "[socket]\nlisten = [\"127.0.0.1:13\"]\n[service]\ninternal = \"qotd\"\n",
       "/etc/xinetd.d/bad",
       {10, 11, 12, 17}},
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

// The stages get parsed values from the config module, never strings they parse again
// (issue 10, "Parse once"): each case checks the stored value itself.

TEST_CASE("config: access_times is parsed once, at load", "[config]") {
  config::Problems p;
  auto svc = svc_from(R"(listen = ["7"]
access_times = ["08:00-12:00", "22:00-06:00"])",
                      R"(exec = ["/bin/true"])", p);
  INFO(all(p));
  REQUIRE(svc);
  const admission::AccessTimes& at = svc->socket.access_times;
  CHECK(at.to_string() == "08:00-12:00 22:00-06:00");
  CHECK(at.allows(8 * 60));
  CHECK(at.allows(12 * 60));  // inclusive, to the minute
  CHECK_FALSE(at.allows(12 * 60 + 1));
  CHECK_FALSE(at.allows(7 * 60 + 59));
  CHECK(at.allows(23 * 60 + 30));  // wraps over midnight
  CHECK(at.allows(3 * 60));
  CHECK_FALSE(at.allows(21 * 60 + 59));

  auto always = svc_from(R"(listen = ["7"])", R"(exec = ["/bin/true"])", p);
  REQUIRE(always);
  CHECK(always->socket.access_times.empty());
  CHECK(always->socket.access_times.allows(0));

  config::Problems q;
  CHECK_FALSE(svc_from(R"(listen = ["7"]
access_times = ["08:00-12:00", "25:00-26:00"])",
                       R"(exec = ["/bin/true"])", q));
  REQUIRE(q.list().size() == 1);
  CHECK(q.list()[0].to_string() ==
        "x.toml:3:16: socket.access_times: access time \"25:00-26:00\": hour 25 is out of range 0..23");
}

TEST_CASE("config: internal names the service as a value, from inloop's one list", "[config]") {
  for (const auto& [which, name] : inloop::kInternalNames) {
    config::Problems p;
    auto svc = svc_from(R"(listen = ["7"])", std::string("internal = \"") + name + "\"", p);
    INFO(name << ": " << all(p));
    REQUIRE(svc);
    REQUIRE(svc->service.internal);
    CHECK(*svc->service.internal == which);
  }
  config::Problems p;
  auto exec = svc_from(R"(listen = ["7"])", R"(exec = ["/bin/true"])", p);
  REQUIRE(exec);
  CHECK_FALSE(exec->service.internal);

  config::Problems q;
  CHECK_FALSE(svc_from(R"(listen = ["7"])", R"(internal = "qotd")", q));
  REQUIRE(q.list().size() == 1);
  CHECK(q.list()[0].to_string() ==
        "x.toml:4:12: service.internal: expected echo, discard, daytime, chargen or time, got \"qotd\"");
  // A bad name still counts as set: no "missing exec", but "exclude each other" with exec.
  config::Problems r;
  CHECK_FALSE(svc_from(R"(listen = ["7"])", R"(exec = ["/bin/true"]
internal = "qotd")",
                       r));
  CHECK(all(r) ==
        "x.toml:5:12: service.internal: expected echo, discard, daytime, chargen or time, got \"qotd\"\n"
        "x.toml:5:12: service.internal: exec, internal and redirect exclude each other\n");
  // An empty name is unset: exec is missing too.
  config::Problems e;
  CHECK_FALSE(svc_from(R"(listen = ["7"])", R"(internal = "")", e));
  CHECK(all(e) ==
        "x.toml:4:12: service.internal: expected echo, discard, daytime, chargen or time, got \"\"\n"
        "x.toml:3:1: service.exec: missing or empty (or set internal or redirect)\n");
}

TEST_CASE("config: log_target is parsed into a sink spec; nothing is opened", "[config]") {
  struct Case {
    const char* target;
    log::SinkSpec::Kind kind;
    const char* path;
    int priority;
  };
  const Case cases[] = {
      {"stderr", log::SinkSpec::Kind::standard_error, "", 0},
      {"file:/nonexistent-superd-dir/x.log", log::SinkSpec::Kind::file, "/nonexistent-superd-dir/x.log", 0},
      {"syslog:authpriv.warning", log::SinkSpec::Kind::syslog, "", LOG_AUTHPRIV | LOG_WARNING},
      {"syslog:daemon", log::SinkSpec::Kind::syslog, "", LOG_DAEMON | LOG_INFO},
  };
  for (const Case& c : cases) {
    config::Problems p;
    auto svc = svc_from(R"(listen = ["7"])", std::string("internal = \"echo\"\nlog_target = \"") + c.target + "\"", p);
    INFO(c.target << ": " << all(p));
    REQUIRE(svc);
    CHECK(svc->service.log_target == c.target);  // as written, for messages
    CHECK(svc->service.log_sink.kind == c.kind);
    CHECK(svc->service.log_sink.path == c.path);
    CHECK(svc->service.log_sink.priority == c.priority);
    log::Sink sink(svc->service.log_sink);
    CHECK(sink.to_string() == svc->service.log_sink.to_string());
    CHECK(sink.fd() == -1);  // the daemon opens it, not the config
  }
  config::Problems p;
  auto dflt = svc_from(R"(listen = ["7"])", R"(internal = "echo")", p);
  REQUIRE(dflt);
  CHECK(dflt->service.log_target.empty());
  CHECK(dflt->service.log_sink.kind == log::SinkSpec::Kind::standard_error);

  config::Problems q;
  CHECK_FALSE(svc_from(R"(listen = ["7"])", R"(internal = "echo"
log_target = "syslog:nosuch")",
                       q));
  REQUIRE(q.list().size() == 1);
  CHECK_THAT(q.list()[0].to_string(),
             Catch::StartsWith("x.toml:5:14: service.log_target: log target \"syslog:nosuch\": unknown syslog facility "
                               "\"nosuch\" (daemon auth"));
}

TEST_CASE("config: one seccomp::Settings, filled from the keys", "[config]") {
  auto sandbox_of = [](const std::string& service) {
    config::Problems p;
    auto svc = config::parse_service("[socket]\nlisten=[\"1\"]\n[service]\nexec=[\"/bin/true\"]\n" + service, "s.toml",
                                     "s", p);
    INFO(all(p));
    REQUIRE(svc);
    return svc->service.sandbox;
  };
  using V = std::vector<std::string>;
  auto set = sandbox_of(R"(system_call_filter = ["~@mount", "ptrace"]
system_call_error_number = "EACCES"
system_call_architectures = ["native", "x86"]
restrict_address_families = ["AF_UNIX"]
restrict_suid_sgid = false
)");
  CHECK(set.filter_syscalls);
  CHECK(set.seccomp.system_call_filter == V{"~@mount", "ptrace"});
  CHECK(set.seccomp.system_call_error_number == "EACCES");
  CHECK(set.seccomp.system_call_architectures == V{"native", "x86"});
  CHECK(set.seccomp.restrict_address_families == V{"AF_UNIX"});
  CHECK_FALSE(set.seccomp.restrict_suid_sgid);
  CHECK(set.seccomp.default_deny_list);
  CHECK(set.seccomp.part == seccomp::Settings::Part::whole);
  CHECK(sandbox_of("system_call_error_number = 13\n").seccomp.system_call_error_number == "13");

  // A dynamic user's defaults; the native ABI when the key is absent or empty.
  auto dflt = sandbox_of("");
  CHECK(dflt.filter_syscalls);
  CHECK(dflt.seccomp.system_call_filter.empty());
  CHECK(dflt.seccomp.system_call_error_number.empty());
  CHECK(dflt.seccomp.system_call_architectures == V{"native"});
  CHECK(dflt.seccomp.restrict_suid_sgid);
  CHECK(dflt.seccomp.default_deny_list);
  CHECK(sandbox_of("system_call_architectures = []\n").seccomp.system_call_architectures == V{"native"});

  // A static user asks for no filter, unless a key does (even only the native ABI: foreign
  // ABIs are then killed).
  auto stat = sandbox_of("dynamic_user = false\nuser = \"nobody\"\n");
  CHECK_FALSE(stat.filter_syscalls);
  CHECK_FALSE(stat.seccomp.default_deny_list);
  CHECK_FALSE(stat.seccomp.restrict_suid_sgid);
  CHECK(sandbox_of("dynamic_user = false\nuser = \"nobody\"\nsystem_call_architectures = [\"native\"]\n")
            .filter_syscalls);
  CHECK(sandbox_of("sandbox = false\nrestrict_suid_sgid = true\n").filter_syscalls);
  CHECK_FALSE(sandbox_of("sandbox = false\nsystem_call_error_number = \"EPERM\"\n").filter_syscalls);

  // Each bad key is reported under its own name, with its position.
  config::Problems p;
  CHECK_FALSE(config::parse_service(R"([socket]
listen = ["1"]
[service]
exec = ["/bin/true"]
system_call_architectures = ["native", "sparc"]
)",
                                    "s.toml", "s", p));
  REQUIRE(p.list().size() == 1);
  CHECK_THAT(p.list()[0].to_string(), Catch::StartsWith("s.toml:5:29: service.system_call_architectures: "));
  CHECK_THAT(p.list()[0].to_string(), Contains("sparc"));
}

TEST_CASE("config: the admission limits are stored as admission::Limits", "[config]") {
  config::Problems p;
  auto svc = svc_from(R"(listen = ["7"]
allow = ["127.0.0.0/8"]
deny = ["127.0.0.66"]
max_connections = 3
max_connections_per_source = 2)",
                      R"(exec = ["/bin/true"])", p);
  INFO(all(p));
  REQUIRE(svc);
  const admission::Limits& l = svc->socket.limits;
  CHECK(l.allow.size() == 1);
  CHECK(l.deny.size() == 1);
  CHECK(l.max_connections == 3);
  CHECK(l.max_per_source == 2);
  // The gate enforces exactly these.
  auto addr = [](const char* ip) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
  };
  admission::Gate gate(l);
  sockaddr_in ok = addr("127.0.0.1"), denied = addr("127.0.0.66"), outside = addr("10.0.0.1");
  const net::SourceKey a = net::source_key(reinterpret_cast<const sockaddr*>(&ok));
  CHECK(gate.check(reinterpret_cast<const sockaddr*>(&denied), a) == admission::Verdict::denied);
  CHECK(gate.check(reinterpret_cast<const sockaddr*>(&outside), a) == admission::Verdict::not_allowed);
  gate.enter(a);
  gate.enter(a);
  CHECK(gate.check(reinterpret_cast<const sockaddr*>(&ok), a) == admission::Verdict::per_source_limit);

  auto dflt = svc_from(R"(listen = ["7"])", R"(exec = ["/bin/true"])", p);
  REQUIRE(dflt);
  CHECK(dflt->socket.limits.max_connections == 64);
  CHECK(dflt->socket.limits.max_per_source == 0);
  CHECK(dflt->socket.limits.allow.empty());
  CHECK(dflt->socket.limits.deny.empty());

  config::Problems q;
  CHECK_FALSE(svc_from(R"(listen = ["7"]
max_connections = 0)",
                       R"(exec = ["/bin/true"])", q));
  REQUIRE(q.list().size() == 1);
  CHECK(q.list()[0].to_string() == "x.toml:3:19: socket.max_connections: must be in 1..1048576");
}
