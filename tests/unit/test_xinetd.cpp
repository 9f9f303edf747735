// The xinetd / inetd.conf importer: a fixture tree converted byte for byte against expected
// files, one case per warning kind (file, line, attribute), the address forms, inetd.conf lines,
// and every converted file parsed back as TOML and as a superd service.
// Fixtures: tests/unit/xinetd/ (XINETD_FIXTURES). Set XINETD_REGENERATE=1 to rewrite the
// expected files from the current output (then review the diff).
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "config/config.hpp"
#include "xinetd/addr.hpp"
#include "xinetd/cli.hpp"
#include "xinetd/xinetd.hpp"

using namespace superd;
using Catch::Matchers::Contains;

namespace {

const std::string kFixtures = XINETD_FIXTURES;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

std::string all_warnings(const xinetd::Result& r) {
  std::string s;
  for (const auto& w : r.warnings) s += w.to_string() + "\n";
  for (const auto& e : r.errors) s += "ERROR " + e + "\n";
  return s;
}

// The first warning at (file, line, attribute) whose message contains `text`, or nullptr.
const xinetd::Warning* find_warning(const xinetd::Result& r, const std::string& file, uint32_t line,
                                    const std::string& attribute, const std::string& text = "") {
  for (const auto& w : r.warnings)
    if (w.file == file && w.line == line && w.attribute == attribute && w.message.find(text) != std::string::npos)
      return &w;
  return nullptr;
}

const xinetd::ServiceFile* find_service(const xinetd::Result& r, const std::string& name) {
  for (const auto& s : r.services)
    if (s.name == name) return &s;
  return nullptr;
}

bool services_known() {
  return ::getservbyname("echo", "tcp") && ::getservbyname("tftp", "udp");
}

size_t count_lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

// Every converted file is TOML, and a superd service (the keys are the lead's config module's).
void check_parses(const xinetd::ServiceFile& s) {
  INFO(s.name << ":\n" << s.toml);
  CHECK(s.line_origin.size() == count_lines(s.toml));
  CHECK_NOTHROW(toml::parse(s.toml, s.name + ".toml"));
  config::Problems p;
  auto svc = config::parse_service(s.toml, s.name + ".toml", s.name, p);
  std::string problems;
  for (const auto& x : p.list()) problems += x.to_string() + "\n";
  INFO(problems);
  CHECK(svc);
  CHECK(p.empty());
}

xinetd::Result convert(const std::string& text) {
  return xinetd::convert_text(text, "t.conf");
}

const char* kHead = R"(service x
{
	type        = UNLISTED
	socket_type = stream
	wait        = no
	port        = 7777
	user        = nobody
	server      = /bin/cat
)";

// A minimal valid service with `extra` lines; the extra lines start on line 9.
xinetd::Result with(const std::string& extra) {
  return convert(std::string(kHead) + extra + "}\n");
}

}  // namespace

TEST_CASE("xinetd: the fixture tree converts byte for byte", "[xinetd]") {
  if (!services_known()) {
    WARN("no /etc/services entries for echo/tftp here; skipped");
    return;
  }
  const std::string dir = kFixtures + "/main";
  auto r = xinetd::convert_file(dir + "/xinetd.conf");
  INFO(all_warnings(r));
  REQUIRE(r.errors.empty());

  std::set<std::string> names;
  for (const auto& s : r.services) {
    names.insert(s.name);
    std::string text = replace_all(s.toml, kFixtures, "FIXTURES");
    const std::string expected_path = dir + "/expected/" + s.name + ".toml";
    if (std::getenv("XINETD_REGENERATE")) std::ofstream(expected_path, std::ios::binary) << text;
    INFO(s.name);
    CHECK(text == slurp(expected_path));
    check_parses(s);
  }
  std::set<std::string> expected;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/expected"))
    expected.insert(e.path().stem().string());
  CHECK(names == expected);
  // Parse order, as xinetd reads them: the includedir's files (sorted) before the main file's
  // services.
  std::vector<std::string> order;
  for (const auto& s : r.services) order.push_back(s.name);
  CHECK(order == std::vector<std::string>{"echo-stream", "echo-dgram", "ftp", "tftp", "webproxy", "git"});

  // Skipped by includedir, each with a warning on the includedir line.
  const std::string main = dir + "/xinetd.conf";
  CHECK(find_warning(r, main, 17, "includedir", "chargen~"));
  CHECK(find_warning(r, main, 17, "includedir", "rsync.rpmsave"));
  CHECK_FALSE(find_service(r, "rsync"));
  CHECK_FALSE(find_service(r, "chargen"));
  // `disable= no`: the whole service is dropped, as xinetd drops it.
  CHECK_FALSE(find_service(r, "daytime"));
  CHECK(find_warning(r, main, 37, "disable", "xinetd drops the whole service daytime"));
  // Disabled: disable = yes, and git, which xinetd disables for lack of a user.
  CHECK(find_service(r, "echo-stream")->disabled);
  CHECK(find_service(r, "git")->disabled);
  CHECK_FALSE(find_service(r, "tftp")->disabled);
  CHECK(find_warning(r, main, 25, "user", "probable inline comment \"# unprivileged\""));
  CHECK(find_warning(r, main, 25, "user", "expects 1 value but 3 were given"));
  CHECK(find_warning(r, dir + "/xinetd.d/tftp", 10, "server_args", "probable inline comment \"# chroot dir\""));

  // Origins: the service line, and each key's attribute line (0 for values from defaults{}).
  const auto* tftp = find_service(r, "tftp");
  CHECK(tftp->origin_file == dir + "/xinetd.d/tftp");
  CHECK(tftp->origin_line == 3);
  CHECK(tftp->line_origin.at(0) == 3);
  std::vector<std::string> lines;
  std::stringstream ss(tftp->toml);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("exec", 0) == 0) CHECK(tftp->line_origin[i] == 9);  // the server line
    if (lines[i].rfind("max_connections_per_source", 0) == 0) CHECK(tftp->line_origin[i] == 11);
    if (lines[i].rfind("max_connections =", 0) == 0) CHECK(tftp->line_origin[i] == 0);
    if (lines[i].rfind("listen_datagram", 0) == 0) CHECK(tftp->line_origin[i] == 13);
  }
}

TEST_CASE("xinetd: warnings name file, line and attribute", "[xinetd]") {
  SECTION("inline comment in a multi-value attribute: the words count") {
    auto r = with("\tserver_args = -v # verbose\n");
    CHECK(find_warning(r, "t.conf", 9, "server_args", "probable inline comment \"# verbose\""));
    CHECK_THAT(r.services.at(0).toml, Contains(R"(exec = ["/bin/cat", "-v", "#", "verbose"])"));
  }
  SECTION("a single-value attribute given several values is ignored") {
    auto r = with("\tnice = 5 # be nice\n");
    CHECK(find_warning(r, "t.conf", 9, "nice", "expects 1 value but 4 were given: xinetd ignores the attribute"));
    CHECK_THAT(r.services.at(0).toml, !Contains("nice"));
  }
  SECTION("no blank before the operator drops the service") {
    auto r = with("\tdisable= no\n");
    CHECK(r.services.empty());
    CHECK(find_warning(r, "t.conf", 9, "disable", "write \"disable = no\""));
  }
  SECTION("no blank after the operator drops the service too") {
    auto r = with("\tnice =5\n");
    CHECK(r.services.empty());
    CHECK(find_warning(r, "t.conf", 9, "nice", "xinetd drops the whole service x"));
  }
  SECTION("+= on a single-value attribute: converted as =") {
    auto r = with("\tnice += 5\n");
    CHECK(find_warning(r, "t.conf", 9, "nice", "operator '+='"));
    CHECK_THAT(r.services.at(0).toml, Contains("nice = 5"));
  }
  SECTION("an attribute set twice keeps the first value") {
    auto r = with("\tnice = 5\n\tnice = 6\n");
    CHECK(find_warning(r, "t.conf", 10, "nice", "already set on line 9"));
    CHECK_THAT(r.services.at(0).toml, Contains("nice = 5"));
  }
  SECTION("unknown attribute") {
    auto r = with("\tfrobnicate = yes\n");
    CHECK(find_warning(r, "t.conf", 9, "frobnicate", "unknown attribute"));
    CHECK(r.services.size() == 1);
  }
  SECTION("attributes that do not carry over") {
    auto r = with("\tmax_load = 2.5\n\tlibwrap = foo\n\tdeny_time = 60\n\tmdns = yes\n");
    CHECK(find_warning(r, "t.conf", 9, "max_load", "not carried over"));
    CHECK(find_warning(r, "t.conf", 10, "libwrap", "not carried over"));
    CHECK(find_warning(r, "t.conf", 11, "deny_time", "not carried over"));
    CHECK(find_warning(r, "t.conf", 12, "mdns", "not supported"));
    CHECK(r.services.size() == 1);
  }
  SECTION("flags without an equivalent") {
    auto r = with("\tflags = NORETRY IDONLY REUSE NOLIBWRAP\n");
    CHECK(find_warning(r, "t.conf", 9, "flags", "NORETRY is not carried over"));
    CHECK(find_warning(r, "t.conf", 9, "flags", "IDONLY is not carried over"));
    CHECK_FALSE(find_warning(r, "t.conf", 9, "flags", "REUSE"));
    CHECK_FALSE(find_warning(r, "t.conf", 9, "flags", "NOLIBWRAP"));
  }
  SECTION("a bad flag disables the service, as in xinetd") {
    auto r = with("\tflags = IPv4 # v4 only\n");
    CHECK(find_warning(r, "t.conf", 9, "flags", "bad service flag \"#\": xinetd disables the service"));
    REQUIRE(r.services.size() == 1);
    CHECK(r.services[0].disabled);
    CHECK_THAT(r.services[0].toml, Contains("disabled = true"));
  }
  SECTION("a bad value disables the service") {
    auto r = with("\tumask = 999\n");
    CHECK(find_warning(r, "t.conf", 9, "umask", "bad umask"));
    CHECK(r.services.at(0).disabled);
  }
  SECTION("RPC, TCPMUX and SENSOR services are skipped") {
    auto r = convert(
        "service rstatd\n{\n\ttype = RPC UNLISTED\n\tsocket_type = dgram\n\twait = yes\n"
        "\trpc_number = 100001\n\tuser = root\n\tserver = /x\n}\n"
        "service mux\n{\n\ttype = TCPMUX\n\tsocket_type = stream\n\twait = no\n\tuser = "
        "root\n\tserver = /x\n}\n");
    CHECK(r.services.empty());
    CHECK(find_warning(r, "t.conf", 3, "type", "RPC services are not supported"));
    CHECK(find_warning(r, "t.conf", 6, "rpc_number", "not carried over"));
    CHECK(find_warning(r, "t.conf", 12, "type", "TCPMUX services are not supported"));
    auto s = with("\tflags = SENSOR\n");
    CHECK(s.services.empty());
    CHECK(find_warning(s, "t.conf", 9, "flags", "SENSOR"));
  }
  SECTION("raw sockets are skipped") {
    auto r = convert(
        "service x\n{\n\ttype = UNLISTED\n\tsocket_type = raw\n\tprotocol = icmp\n\twait = no\n"
        "\tport = 1\n\tuser = root\n\tserver = /x\n}\n");
    CHECK(r.services.empty());
    CHECK(find_warning(r, "t.conf", 4, "socket_type", "raw is not supported"));
  }
  SECTION("protocol that does not go with socket_type") {
    auto r = with("\tprotocol = udp\n");
    CHECK(find_warning(r, "t.conf", 9, "protocol", "does not go with socket_type stream"));
    CHECK_THAT(r.services.at(0).toml, Contains(R"(listen = ["7777"])"));
  }
  SECTION("no port: /etc/services, or skipped") {
    auto r = convert(
        "service no-such-service-here\n{\n\tsocket_type = stream\n\twait = no\n\tuser = "
        "root\n\tserver = /x\n}\n"
        "service y\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n\tuser = "
        "root\n\tserver = /x\n}\n");
    CHECK(r.services.empty());
    CHECK(find_warning(r, "t.conf", 1, "port", "not in /etc/services"));
    CHECK(find_warning(r, "t.conf", 10, "port", "UNLISTED service needs a port"));
  }
  SECTION("a listed service on another port: xinetd refuses it") {
    if (!services_known()) return;
    auto r = convert(
        "service echo\n{\n\tsocket_type = stream\n\twait = no\n\tuser = root\n\tserver = "
        "/x\n\tport = 8\n}\n");
    CHECK(find_warning(r, "t.conf", 7, "port", "add type = UNLISTED"));
    CHECK(r.services.at(0).disabled);
  }
  SECTION("rlimit_rss, FILE log limits, RECORD") {
    auto r = with(
        "\trlimit_rss = 10M\n\tlog_type = FILE /var/log/x.log 5M 6M\n\tlog_on_failure = HOST "
        "RECORD\n");
    CHECK(find_warning(r, "t.conf", 9, "rlimit_rss", "Linux ignores RLIMIT_RSS"));
    CHECK(find_warning(r, "t.conf", 10, "log_type", "soft/hard size limits"));
    CHECK(find_warning(r, "t.conf", 11, "log_on_failure", "RECORD is not carried over"));
    const auto& t = r.services.at(0).toml;
    CHECK_THAT(t, Contains(R"(limits = { rss = "10M" })"));
    CHECK_THAT(t, Contains(R"(log_target = "file:/var/log/x.log")"));
    CHECK_THAT(t, Contains(R"(log_on_failure = ["HOST"])"));
  }
  SECTION("only_from: host names resolved now, domains left out") {
    auto r = with("\tonly_from = localhost .example.com\n");
    CHECK(find_warning(r, "t.conf", 9, "only_from", "host name \"localhost\" resolved now"));
    CHECK(find_warning(r, "t.conf", 9, "only_from", "domain \".example.com\" is not supported"));
    CHECK_THAT(r.services.at(0).toml, Contains("127.0.0.1/32"));
  }
  SECTION("no_access: a domain left out widens access, and says so") {
    auto r = with("\tno_access = .example.com\n");
    CHECK(find_warning(r, "t.conf", 9, "no_access", "admits more than intended"));
  }
  SECTION("factorized address with something after the braces: xinetd rejects it") {
    auto r = with("\tonly_from = 128.138.{193,194}.0\n");
    CHECK(find_warning(r, "t.conf", 9, "only_from", "xinetd wants the braces at the end"));
    REQUIRE(r.services.size() == 1);
    CHECK(r.services[0].disabled);
    CHECK_THAT(r.services[0].toml, Contains(R"(allow = ["128.138.193.0/24", "128.138.194.0/24"])"));
  }
  SECTION("empty only_from admits nobody") {
    auto r = with("\tonly_from =\n");
    CHECK_THAT(r.services.at(0).toml, Contains(R"(deny = ["0.0.0.0/0", "::/0"])"));
  }
  SECTION("bind to an interface name or a host name") {
    auto r = with("\tbind = lo\n");
    CHECK(find_warning(r, "t.conf", 9, "bind", "interface name"));
    CHECK_THAT(r.services.at(0).toml, Contains(R"(listen = ["127.0.0.1:7777"])"));
    CHECK(r.services.at(0).disabled);
    auto h = with("\tinterface = localhost\n\tflags = IPv4\n");
    CHECK(find_warning(h, "t.conf", 9, "interface", "resolved now to 127.0.0.1"));
    CHECK_THAT(h.services.at(0).toml, Contains(R"(listen = ["127.0.0.1:7777"])"));
    auto bad = with("\tbind = no-such-host.invalid\n");
    CHECK(bad.services.empty());
    CHECK(find_warning(bad, "t.conf", 9, "bind", "cannot resolve"));
  }
  SECTION("redirect to a host name") {
    auto r = with("\tredirect = localhost 8080\n\tflags = IPv4\n");
    CHECK(find_warning(r, "t.conf", 9, "redirect", "resolved now to 127.0.0.1"));
    CHECK_THAT(r.services.at(0).toml, Contains(R"(redirect = "127.0.0.1:8080")"));
    CHECK_THAT(r.services.at(0).toml, !Contains("exec"));
    CHECK_THAT(r.services.at(0).toml, !Contains("user"));
  }
  SECTION("datagram nowait becomes wait mode") {
    auto r = convert(
        "service x\n{\n\ttype = UNLISTED\n\tsocket_type = dgram\n\twait = no\n\tport = 7777\n"
        "\tuser = nobody\n\tserver = /bin/cat\n}\n");
    CHECK(find_warning(r, "t.conf", 5, "wait", "wait mode only"));
    CHECK_THAT(r.services.at(0).toml, Contains("accept = false"));
  }
  SECTION("missing wait or user: written disabled") {
    auto r = convert(
        "service x\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n\tport = 7777\n\tserver = "
        "/bin/cat\n}\n");
    CHECK(find_warning(r, "t.conf", 1, "wait", "missing"));
    CHECK(find_warning(r, "t.conf", 1, "user", "missing"));
    CHECK(r.services.at(0).disabled);
  }
  SECTION("instances = 0 and per_source = 0 serve nobody") {
    auto r = with("\tinstances = 0\n\tper_source = 0\n");
    CHECK(find_warning(r, "t.conf", 9, "instances", "0 lets no connection in"));
    CHECK(find_warning(r, "t.conf", 10, "per_source", "0 lets no connection in"));
    CHECK(r.services.at(0).disabled);
  }
  SECTION("'{' on the service line drops the service") {
    auto r = convert(
        "service x {\n\ttype = UNLISTED\n}\nservice y\n{\n\ttype = UNLISTED\n\tsocket_type = "
        "stream\n"
        "\twait = no\n\tport = 7\n\tuser = nobody\n\tserver = /bin/cat\n}\n");
    CHECK(find_warning(r, "t.conf", 1, "x", "move the '{' to the next line"));
    REQUIRE(r.services.size() == 1);
    CHECK(r.services[0].name == "y");
  }
  SECTION("a block without '}'") {
    auto r = convert("service x\n{\n\ttype = UNLISTED\n");
    CHECK(r.services.empty());
    CHECK(find_warning(r, "t.conf", 1, "x", "no closing '}'"));
  }
  SECTION("a stray line") {
    auto r = convert("hello world\n");
    CHECK(find_warning(r, "t.conf", 1, "hello", "ignored"));
  }
  SECTION("defaults: service-only attributes, a second defaults, enabled/disabled lists") {
    auto r = convert(
        "defaults\n{\n\tserver = /bin/sh\n\tdisabled = a\n\tenabled = a b ghost\n}\n"
        "defaults\n{\n\tinstances = 5\n}\n" +
        replace_all(kHead, "service x", "service a") + "}\n" + replace_all(kHead, "service x", "service b") + "}\n");
    CHECK(find_warning(r, "t.conf", 3, "server", "not allowed in the defaults section"));
    CHECK(find_warning(r, "t.conf", 7, "defaults", "only one defaults section per file"));
    CHECK(find_warning(r, "t.conf", 1, "enabled", "\"ghost\" names no converted service"));
    REQUIRE(r.services.size() == 2);
    CHECK(r.services[0].disabled);        // a: in disabled
    CHECK_FALSE(r.services[1].disabled);  // b: in enabled
    CHECK_THAT(r.services[0].toml, Contains("# listed in the defaults' disabled list"));
  }
  SECTION("a bad line in defaults: the lines before it stay") {
    auto r = convert("defaults\n{\n\tinstances = 7\n\tper_source=3\n\tcps = 5 5\n}\n" + std::string(kHead) + "}\n");
    CHECK(find_warning(r, "t.conf", 4, "per_source", "the lines before it stay in force"));
    CHECK_THAT(r.services.at(0).toml, Contains("max_connections = 7\n"));
    CHECK_THAT(r.services.at(0).toml, !Contains("max_connection_rate"));
  }
  SECTION("an enabled list leaves the others disabled") {
    auto r = convert("defaults\n{\n\tenabled = b\n}\n" + std::string(kHead) + "}\n");
    CHECK(r.services.at(0).disabled);
    CHECK_THAT(r.services[0].toml, Contains("not in the defaults' enabled list"));
  }
  SECTION("two services with the same id get distinct files") {
    auto r = convert(std::string(kHead) + "}\n" + kHead + "}\n");
    REQUIRE(r.services.size() == 2);
    CHECK(r.services[1].name == "x-stream");
    CHECK(find_warning(r, "t.conf", 10, "x", "written as x-stream.toml"));
  }
  SECTION("an id that is not a superd name") {
    auto r = with("\tid = my/service\n");
    CHECK(r.services.at(0).name == "my_service");
    CHECK(find_warning(r, "t.conf", 1, "my/service", "not a valid superd service name"));
  }
}

TEST_CASE("xinetd: includes, loops and unreadable files", "[xinetd]") {
  namespace fs = std::filesystem;
  fs::path dir = fs::path("/srv") / ("superd-unit-xinetd-" + std::to_string(::getpid()));  // a scratch root, not /tmp
  fs::create_directories(dir / "d");
  std::ofstream(dir / "a.conf") << "include b.conf\n";
  std::ofstream(dir / "b.conf") << "include a.conf\nincludedir d\n";
  std::ofstream(dir / "d" / "svc") << kHead << "}\n";
  fs::create_directories(dir / "d" / "subdir");
  auto r = xinetd::convert_file((dir / "a.conf").string());
  INFO(all_warnings(r));
  CHECK(find_warning(r, (dir / "b.conf").string(), 1, "include", "include loop"));
  CHECK(find_warning(r, (dir / "b.conf").string(), 2, "includedir", "not a regular file"));
  CHECK(r.services.size() == 1);
  CHECK(r.errors.empty());

  auto missing = xinetd::convert_text("include nope.conf\n", (dir / "main.conf").string());
  REQUIRE(missing.errors.size() == 1);
  CHECK_THAT(missing.errors[0], Contains("nope.conf"));
  CHECK(xinetd::import_main((dir / "nope.conf").string(), "") == 2);

  // Too big.
  std::ofstream(dir / "big.conf") << std::string(xinetd::kMaxFileBytes + 1, '#');
  auto big = xinetd::convert_file((dir / "big.conf").string());
  REQUIRE(big.errors.size() == 1);
  CHECK_THAT(big.errors[0], Contains("larger than"));

  // Nesting deeper than the bound.
  for (int i = 0; i < 12; ++i) std::ofstream(dir / ("n" + std::to_string(i))) << "include n" << i + 1 << "\n";
  auto deep = xinetd::convert_file((dir / "n0").string());
  CHECK_THAT(all_warnings(deep), Contains("nest deeper than 8"));

  // -o DIR writes one file per service.
  CHECK(xinetd::import_main((dir / "a.conf").string(), (dir / "out").string()) == 0);
  CHECK(fs::exists(dir / "out" / "x.toml"));
  fs::remove_all(dir);
}

TEST_CASE("xinetd: address forms", "[xinetd]") {
  using xinetd::detail::parse_access_address;
  using S = xinetd::detail::AddrResult::Status;
  auto cidrs = [](const std::string& s) { return parse_access_address(s).cidrs; };
  using V = std::vector<std::string>;
  CHECK(cidrs("10.0.0.1") == V{"10.0.0.1/32"});
  CHECK(cidrs("128.138.0.0") == V{"128.138.0.0/16"});
  CHECK(cidrs("128.138.12.0") == V{"128.138.12.0/24"});
  CHECK(cidrs("0.0.0.0") == V{"0.0.0.0/0"});
  CHECK(cidrs("0") == V{"0.0.0.0/0"});
  CHECK(cidrs("10.1.2.3/8") == V{"10.0.0.0/8"});
  CHECK(cidrs("192.168.1.0/24") == V{"192.168.1.0/24"});
  CHECK(cidrs("128.138.{193,194}") == V{"128.138.193.0/24", "128.138.194.0/24"});
  CHECK(cidrs("10.{1,2}") == V{"10.1.0.0/16", "10.2.0.0/16"});
  CHECK(cidrs("::1") == V{"::1/128"});
  CHECK(cidrs("::") == V{"::/0"});
  CHECK(cidrs("2001:db8::/32") == V{"2001:db8::/32"});
  CHECK(cidrs("2001:db8::1/64") == V{"2001:db8::/64"});
  CHECK(parse_access_address("a,b").status == S::error);
  CHECK(parse_access_address("1.2.{3,}").status == S::error);
  CHECK(parse_access_address(".example.com").status == S::ignored);
  CHECK(parse_access_address("no-such-host.invalid").status == S::ignored);
  auto local = parse_access_address("localhost");
  CHECK(local.status == S::ok);
  CHECK(std::find(local.cidrs.begin(), local.cidrs.end(), "127.0.0.1/32") != local.cidrs.end());

  // Through a service: defaults += and a service's own = / += / -=.
  auto r = convert("defaults\n{\n\tonly_from = 10.0.0.0/8\n\tonly_from += 127.0.0.1\n}\n" + std::string(kHead) +
                   "\tonly_from += 192.168.0.0\n\tonly_from -= 127.0.0.1\n}\n" +
                   replace_all(kHead, "service x", "service y") + "\tonly_from = ::1\n}\n");
  REQUIRE(r.services.size() == 2);
  CHECK_THAT(r.services[0].toml, Contains(R"(allow = ["10.0.0.0/8", "192.168.0.0/16"])"));
  CHECK_THAT(r.services[1].toml, Contains(R"(allow = ["::1/128"])"));
}

TEST_CASE("xinetd: instances, per_source and cps", "[xinetd]") {
  auto r = with("\tinstances = UNLIMITED\n\tper_source = UNLIMITED\n\tcps = 50 10\n");
  const auto& t = r.services.at(0).toml;
  CHECK_THAT(t, Contains("max_connections = 1048576\n"));
  CHECK_THAT(t, !Contains("max_connections_per_source"));
  CHECK_THAT(t, Contains("max_connection_rate = 50\nconnection_rate_interval = "
                         "\"1s\"\nconnection_rate_action = \"defer\"\n"
                         "# xinetd's cps = 50 10 disabled the service for 10 s when exceeded; "
                         "superd defers accepting instead\n"));
  CHECK(find_warning(r, "t.conf", 11, "cps", "the second value (10 s"));
  auto n = with("\tinstances = 30\n\tper_source = 4\n");
  CHECK_THAT(n.services.at(0).toml, Contains("max_connections = 30\nmax_connections_per_source = 4\n"));
  // No cps: no rate limit (xinetd's implicit 50 10 is not added).
  CHECK_THAT(n.services.at(0).toml, !Contains("max_connection_rate"));
  check_parses(r.services.at(0));
  check_parses(n.services.at(0));
}

TEST_CASE("xinetd: identity, environment and limits", "[xinetd]") {
  auto r = with(
      "\tgroup = nogroup\n\tgroups = yes\n\tenv = A=1 B=x=y\n\tpassenv = PATH\n\tumask = 27\n"
      "\trlimit_as = UNLIMITED\n\trlimit_files = 2K\n\trlimit_stack = 8M\n\trlimit_data = 4096\n"
      "\tlog_type = SYSLOG authpriv\n\tlog_on_success = PID HOST USERID EXIT DURATION\n");
  INFO(all_warnings(r));
  const auto& t = r.services.at(0).toml;
  CHECK_THAT(t, Contains("dynamic_user = false\n# dynamic_user = true"));
  CHECK_THAT(t, Contains("user = \"nobody\"\ngroup = \"nogroup\"\nsupplementary_groups = "));
  CHECK_THAT(t, Contains(R"(environment = ["A=1", "B=x=y"])"));
  CHECK_THAT(t, Contains(R"(pass_environment = ["PATH"])"));
  CHECK_THAT(t, Contains(R"(umask = "0027")"));
  CHECK_THAT(t, Contains(R"(limits = { as = "infinity", data = 4096, nofile = 2048, stack = "8M" })"));
  CHECK_THAT(t, Contains(R"(log_target = "syslog:authpriv")"));
  CHECK_THAT(t, Contains(R"(log_on_success = ["PID", "HOST", "USERID", "EXIT", "DURATION"])"));
  check_parses(r.services.at(0));
  auto root = convert(replace_all(kHead, "nobody", "root") + "}\n");
  CHECK_THAT(root.services.at(0).toml, Contains("# runs as root without a sandbox, as under xinetd"));
  // Why superd's default would break it, and what confines it instead; the file still parses.
  CHECK_THAT(root.services.at(0).toml, Contains("dynamic_user = true (superd's default) would\n# likely break it"));
  CHECK_THAT(root.services.at(0).toml, Contains("/etc/shadow"));
  CHECK_THAT(root.services.at(0).toml, Contains("(telnetd, sshd, ftpd, cvs pserver)"));
  CHECK_THAT(root.services.at(0).toml, Contains("protect_system = \"strict\""));
  check_parses(root.services.at(0));
  // NAMEINARGS: exec[0] is "@path", argv from server_args.
  auto nia = with("\tserver_args = tcpd-name -x\n\tflags = NAMEINARGS\n");
  CHECK_THAT(nia.services.at(0).toml, Contains(R"(exec = ["@/bin/cat", "tcpd-name", "-x"])"));
  // Strings are escaped.
  auto q = with("\tserver_args = a\"b c\\d\n");
  CHECK_THAT(q.services.at(0).toml, Contains(R"(exec = ["/bin/cat", "a\"b", "c\\d"])"));
  CHECK_NOTHROW(toml::parse(q.services.at(0).toml));
  // Control characters and bad UTF-8 stay out of comments; strings escape them.
  auto ctl = convert(replace_all(kHead, "nobody",
                                 "nob\x01"
                                 "dy\xff") +
                     "}\n");
  CHECK_THAT(ctl.services.at(0).toml, Contains("instead of user nob?dy?\n"));
  CHECK_THAT(ctl.services.at(0).toml, Contains(R"(user = "nob\u0001dy\uFFFD")"));
  CHECK_NOTHROW(toml::parse(ctl.services.at(0).toml));
  // A limit TOML cannot hold is a bad value (xinetd's parser rejects the overflow too).
  auto big = with("\trlimit_as = 99999999999999999M\n");
  CHECK(find_warning(big, "t.conf", 9, "rlimit_as", "bad limit"));
  CHECK(big.services.at(0).disabled);
}

TEST_CASE("xinetd: dynamic_user = yes, superd's extension, in a service or in defaults", "[xinetd]") {
  auto r = with("\tgroup = nogroup\n\tgroups = yes\n\tdynamic_user = yes\n");
  INFO(all_warnings(r));
  REQUIRE(r.services.size() == 1);
  const auto& t = r.services.at(0).toml;
  CHECK_THAT(t, Contains("# dynamic_user = yes: a fresh UID per connection, in the sandbox (instead of xinetd's "
                         "user = nobody)"));
  CHECK_THAT(t, !Contains("user = \"nobody\""));
  CHECK_THAT(t, !Contains("group"));
  CHECK_THAT(t, !Contains("dynamic_user = false"));
  CHECK(r.warnings.empty());
  check_parses(r.services.at(0));
  config::Problems p;
  auto svc = config::parse_service(t, "x.toml", "x", p);
  REQUIRE(svc);
  CHECK(svc->service.dynamic_user);
  // In defaults{} it applies to every service, even one without a user (xinetd would refuse it).
  auto d =
      convert("defaults\n{\n\tdynamic_user = yes\n}\n" + replace_all(kHead, "\tuser        = nobody\n", "") + "}\n");
  INFO(all_warnings(d));
  REQUIRE(d.services.size() == 1);
  CHECK_FALSE(d.services.at(0).disabled);
  check_parses(d.services.at(0));
  auto bad = with("\tdynamic_user = perhaps\n");
  CHECK(find_warning(bad, "t.conf", 9, "dynamic_user", "expected yes or no"));
}

TEST_CASE("xinetd: banners and access times, from the service or from defaults", "[xinetd]") {
  auto r =
      convert("defaults\n{\n\tbanner = /etc/hostname\n\tbanner_fail = /etc/hostname\n}\n" + std::string(kHead) +
              "\tbanner_success = /etc/hostname\n\tbanner_fail = /etc/passwd\n" + "\taccess_times = 7:05-9:00\n}\n");
  INFO(all_warnings(r));
  const auto& t = r.services.at(0).toml;
  CHECK_THAT(t, Contains("access_times = [\"07:05-09:00\"]\nbanner = \"/etc/hostname\"\n"
                         "banner_success = \"/etc/hostname\"\nbanner_fail = \"/etc/passwd\"\n"));
  auto bad = with("\taccess_times = 25:00-26:00\n");
  CHECK(find_warning(bad, "t.conf", 9, "access_times", "bad time interval"));
  CHECK(bad.services.at(0).disabled);
}

TEST_CASE("xinetd: listen addresses from flags, bind and v6only", "[xinetd]") {
  auto listen = [](const std::string& extra) { return with(extra).services.at(0).toml; };
  CHECK_THAT(listen(""), Contains("listen = [\"7777\"]"));
  CHECK_THAT(listen("\tflags = IPv4\n"), Contains(R"(listen = ["0.0.0.0:7777"])"));
  CHECK_THAT(listen("\tflags = IPv6\n"), Contains("listen = [\"[::]:7777\"]\nbind_ipv6_only = \"both\""));
  CHECK_THAT(listen("\tflags = IPv6\n\tv6only = yes\n"), !Contains("bind_ipv6_only"));
  CHECK_THAT(listen("\tv6only = yes\n"), Contains(R"(listen = ["[::]:7777"])"));
  CHECK_THAT(listen("\tbind = ::1\n"), Contains(R"(listen = ["[::1]:7777"])"));
  CHECK_THAT(listen("\tbind = 127.0.0.1\n"), Contains(R"(listen = ["127.0.0.1:7777"])"));
  CHECK_THAT(listen("\tflags = NODELAY KEEPALIVE\n"), Contains("no_delay = true\nkeep_alive = true"));
  CHECK_THAT(listen("\twait = yes\n"),
             !Contains("accept = false"));  // a second wait is ignored: already set
}

TEST_CASE("xinetd: inetd.conf lines", "[xinetd]") {
  if (!services_known()) {
    WARN("no /etc/services entries here; skipped");
    return;
  }
  auto r = convert(
      "# inetd.conf, alone or among xinetd entries\n"
      "echo\tstream\ttcp\tnowait\troot\tinternal\n"
      "echo\tdgram\tudp\twait\troot\tinternal\n"
      "ftp\tstream\ttcp6\tnowait.40\troot\t/usr/sbin/tcpd\tin.ftpd -l\n"
      "127.0.0.1:7777\tstream\ttcp\tnowait\tnobody:nogroup\t/usr/bin/prog\tprog -x\n"
      "tftp\tdgram\tudp\twait\tnobody.nogroup\t/usr/sbin/in.tftpd\tin.tftpd -s /srv # tftp root\n"
      "rstatd/1-5\tdgram\trpc/udp\twait\troot\t/usr/sbin/rpc.rstatd\trpc.rstatd\n"
      "chargen\tstream\ttcp4\tnowait\troot\tinternal\n" +
      std::string(kHead) + "}\n");
  INFO(all_warnings(r));
  REQUIRE(r.services.size() == 7);
  const auto* echo = find_service(r, "echo");
  REQUIRE(echo);
  CHECK_THAT(echo->toml, Contains("listen = [\"0.0.0.0:7\"]"));
  CHECK_THAT(echo->toml, Contains("internal = \"echo\""));
  const auto* echo_dgram = find_service(r, "echo-dgram");
  REQUIRE(echo_dgram);
  CHECK_THAT(echo_dgram->toml, Contains("listen_datagram = [\"0.0.0.0:7\"]"));
  const auto* ftp = find_service(r, "ftp");
  REQUIRE(ftp);
  CHECK_THAT(ftp->toml, Contains("listen = [\"[::]:21\"]"));
  CHECK_THAT(ftp->toml, Contains("exec = [\"@/usr/sbin/tcpd\", \"in.ftpd\", \"-l\"]"));
  CHECK_THAT(ftp->toml, Contains("max_connection_rate = 40\nconnection_rate_interval = \"1min\""));
  CHECK(ftp->origin_line == 4);
  const auto* prog = find_service(r, "7777");
  REQUIRE(prog);
  CHECK_THAT(prog->toml, Contains("listen = [\"127.0.0.1:7777\"]"));
  CHECK_THAT(prog->toml, Contains("exec = [\"/usr/bin/prog\", \"-x\"]"));
  CHECK_THAT(prog->toml, Contains("user = \"nobody\"\ngroup = \"nogroup\""));
  const auto* tftp = find_service(r, "tftp");
  REQUIRE(tftp);
  CHECK_THAT(tftp->toml, Contains("accept = false"));
  CHECK_THAT(tftp->toml, Contains("group = \"nogroup\""));
  CHECK(find_warning(r, "t.conf", 6, "tftp", "probable inline comment"));
  CHECK(find_warning(r, "t.conf", 7, "rstatd/1-5", "RPC services are not supported"));
  CHECK(find_service(r, "chargen"));
  CHECK(find_service(r, "x"));  // the xinetd entry in the same file
  for (const auto& s : r.services) check_parses(s);
}

namespace {

// Runs convert_file(path) in a child process and returns its warnings and errors as text
// (all_warnings), or nullopt if it has not finished within `timeout`: the child is then killed,
// so a hang fails the test instead of stopping the run.
std::optional<std::string> convert_bounded(const std::string& path, std::chrono::milliseconds timeout) {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    auto result = xinetd::convert_file(path);
    std::string text = all_warnings(result) + "services=" + std::to_string(result.services.size()) + "\n";
    for (size_t off = 0; off < text.size();) {
      ssize_t n = ::write(p[1], text.data() + off, text.size() - off);
      if (n <= 0) ::_exit(1);
      off += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(p[1]);
  std::string out;
  bool done = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pf{p[0], POLLIN, 0};
    if (::poll(&pf, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0)
      done = true;
    else
      out.append(buf, static_cast<size_t>(n));
  }
  ::close(p[0]);
  if (!done) ::kill(pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (!done) return std::nullopt;
  CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
  return out;
}

// /srv/superd-test/unit-xinetd-PID (not /tmp), removed with everything in it.
struct Scratch {
  std::filesystem::path path;
  Scratch() {
    namespace fs = std::filesystem;
    path = fs::path("/srv/superd-test") / ("unit-xinetd-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path / "d");
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

TEST_CASE("xinetd: a FIFO or /proc in the includes is refused, never read (no hang)", "[xinetd]") {
  constexpr std::chrono::seconds kLimit(20);
  Scratch dir;
  const std::string fifo = (dir.path / "fifo").string(), dfifo = (dir.path / "d" / "pipe").string();
  // No writer ever opens these: an open() without O_NONBLOCK blocks for good.
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE(::mkfifo(dfifo.c_str(), 0600) == 0);
  std::ofstream(dir.path / "d" / "svc") << kHead << "}\n";

  SECTION("include FIFO is an error, includedir skips a FIFO with a warning") {
    const std::string main_conf = (dir.path / "main.conf").string();
    std::ofstream(main_conf) << "include fifo\nincludedir d\n";
    auto text = convert_bounded(main_conf, kLimit);
    REQUIRE(text);  // finished: no hang on the FIFO
    CHECK_THAT(*text, Contains("ERROR " + fifo + ": not a regular file"));
    CHECK_THAT(*text, Contains(main_conf + ":2: includedir: warning: skipped " + dfifo + ": not a regular file"));
    // The regular file next to it is still read.
    auto r = xinetd::convert_text("includedir d\n", main_conf);
    CHECK(r.services.size() == 1);
  }

  SECTION("the main file named on the command line may be a pipe: it is read from its writer") {
    // `superd import-xinetd /dev/stdin`: the operator chose to wait for the writer.
    std::thread writer([&] { std::ofstream(fifo) << kHead << "}\n"; });
    auto text = convert_bounded(fifo, kLimit);
    writer.join();
    REQUIRE(text);
    CHECK_THAT(*text, !Contains("not a regular file"));
    CHECK_THAT(*text, Contains("services=1"));
  }

  SECTION("includedir /proc and include /proc/kmsg are refused unread") {
    const std::string main_conf = (dir.path / "proc.conf").string();
    std::ofstream(main_conf) << "includedir /proc\ninclude /proc/kmsg\n";
    auto text = convert_bounded(main_conf, kLimit);
    REQUIRE(text);
    CHECK_THAT(*text, Contains("ERROR /proc: on procfs or sysfs, not a configuration directory"));
    CHECK_THAT(*text, Contains("ERROR /proc/kmsg: on procfs or sysfs, not a configuration file"));
  }
}

TEST_CASE("xinetd: Includes::skip reads no include or includedir, and says so", "[xinetd]") {
  // The fuzz target converts with includes off: a fuzzed `includedir /` must not walk the disk.
  Scratch dir;
  const std::string main_conf = (dir.path / "main.conf").string();
  std::ofstream((dir.path / "inc").string()) << kHead << "}\n";
  const std::string text = "include inc\nincludedir /proc\n";
  CHECK(xinetd::convert_text(text, main_conf).services.size() == 1);  // read by default
  auto r = xinetd::convert_text(text, main_conf, xinetd::Includes::skip);
  CHECK(r.services.empty());
  CHECK(r.errors.empty());
  REQUIRE(r.warnings.size() == 2);
  CHECK(r.warnings[0].to_string() ==
        main_conf + ":1: include: warning: \"" + (dir.path / "inc").string() + "\" not read: includes are off");
  CHECK(r.warnings[1].attribute == "includedir");
}

TEST_CASE("xinetd: a 70,000-address only_from converts whole, deduplicated, in order", "[xinetd]") {
  // Distinct addresses with a non-zero last byte (a trailing zero byte would be a wildcard).
  auto addr = [](int i) {
    return "10." + std::to_string(i / 62500) + "." + std::to_string((i / 250) % 250 + 1) + "." +
           std::to_string(i % 250 + 1);
  };
  constexpr int kCount = 70000;
  std::string line = "\tonly_from   =";
  for (int i = 0; i < kCount; ++i) line += " " + addr(i);
  // Repeats, in the same line and in a += line, are kept once; -= takes out what it names (and
  // only that), += after it brings a value back at the end.
  line += " " + addr(0) + " " + addr(kCount - 1) + "\n";
  line += "\tonly_from  += " + addr(5) + " " + addr(69999) + " 192.0.2.1\n";
  line += "\tonly_from  -= " + addr(1) + " " + addr(2) + " 198.51.100.7\n";
  line += "\tonly_from  += " + addr(2) + "\n";
  auto r = with(line);
  INFO(all_warnings(r).substr(0, 2000));
  REQUIRE(r.services.size() == 1);
  toml::table t = toml::parse(std::string_view(r.services[0].toml), std::string_view("x.toml"));
  const toml::array* allow = t["socket"]["allow"].as_array();
  REQUIRE(allow);
  std::vector<std::string> got;
  for (const auto& e : *allow) got.push_back(*e.value<std::string>());
  REQUIRE(got.size() == static_cast<size_t>(kCount) - 2 + 2);  // -2 removed, +1 new, +1 back
  CHECK(got.front() == "10.0.1.1/32");
  CHECK(got[1] == addr(3) + "/32");
  CHECK(got[kCount - 3] == "10.1.30.250/32");  // addr(69999), the last of the long line
  CHECK(got[kCount - 3] == addr(kCount - 1) + "/32");
  CHECK(got[kCount - 2] == "192.0.2.1/32");
  CHECK(got.back() == addr(2) + "/32");
  CHECK(std::set<std::string>(got.begin(), got.end()).size() == got.size());
  CHECK(std::find(got.begin(), got.end(), addr(1) + "/32") == got.end());
}
