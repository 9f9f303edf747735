// Template and instance names, systemd's unescaping for %I, and an instance parsed from its
// template with every string value expanded before any key is read.
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "config/template.hpp"

using namespace superd;
using Catch::Matchers::Contains;

TEST_CASE("unit names split into prefix and instance; templates have none", "[template]") {
  auto a = config::split_unit_name("foobard@acme");
  REQUIRE(a);
  CHECK(a->prefix == "foobard");
  CHECK(a->instance == "acme");
  CHECK_FALSE(a->is_template());
  CHECK(a->template_name() == "foobard@");
  auto t = config::split_unit_name("foobard@");
  REQUIRE(t);
  CHECK(t->is_template());
  CHECK_FALSE(config::split_unit_name("echo"));
  CHECK_FALSE(config::split_unit_name("@acme"));
  CHECK(config::split_unit_name("a@b@c")->instance == "b@c");  // then refused as an instance name
}

TEST_CASE("bad instance names say why", "[template]") {
  CHECK(config::instance_name_error("acme").empty());
  CHECK(config::instance_name_error("a\\x2db:c_d.e-f").empty());
  CHECK(config::instance_name_error(std::string(200, 'x')).empty());
  CHECK_THAT(config::instance_name_error(""), Contains("empty"));
  CHECK_THAT(config::instance_name_error(std::string(201, 'x')), Contains("longer than 200"));
  CHECK_THAT(config::instance_name_error("a/b"), Contains("\"/\""));
  CHECK_THAT(config::instance_name_error(".."), Contains("\"..\""));
  CHECK_THAT(config::instance_name_error("a..b"), Contains("\"..\""));
  CHECK_THAT(config::instance_name_error("b@c"), Contains("'@'"));
  CHECK_THAT(config::instance_name_error("a b"), Contains("\\x20"));
  CHECK_THAT(config::instance_name_error("tab\there"), Contains("\\x09"));
}

TEST_CASE("%I unescapes as systemd does; %i %p %n expand; %% and %c are left", "[template]") {
  CHECK(config::unescape_instance("a\\x2db") == "a-b");
  CHECK(config::unescape_instance("dev-sda1") == "dev/sda1");
  CHECK(config::unescape_instance("x\\x41\\x2f") == "xA/");
  CHECK(config::unescape_instance("bad\\x4") == "bad\\x4");  // not an escape: as written
  config::UnitName n{"foobard", "a\\x2db-c"};
  CHECK(config::expand_instance("%p:%i:%I:%n", n) == "foobard:a\\x2db-c:a-b/c:foobard@a\\x2db-c");
  CHECK(config::expand_instance("100%% %c %s %", n) == "100%% %c %s %");
}

TEST_CASE("an instance's every string value is expanded before it is read", "[template]") {
  const char* text = R"([socket]
listen = ["127.0.0.1:%i", "/run/%p/%i.sock"]
[service]
exec = ["/bin/echo", "%n", "%%i", "%c"]
state_directory = "%p/%i"
environment = { T = "%I" }
)";
  config::Problems p;
  auto svc = config::parse_service(text, "t@.toml", "t@7001", p);
  REQUIRE(p.empty());
  REQUIRE(svc);
  REQUIRE(svc->socket.listen.size() == 2);
  CHECK(svc->socket.listen[0].spec.to_string() == "127.0.0.1:7001");
  CHECK(svc->socket.listen[1].spec.to_string() == "/run/t/7001.sock");
  CHECK(svc->service.exec == std::vector<std::string>{"/bin/echo", "t@7001", "%%i", "%c"});
  REQUIRE(svc->service.environment.size() == 1);
  CHECK(svc->service.environment[0].second == "7001");
  // The expansion that makes a bad address: the template's line, column and key.
  config::Problems bad;
  CHECK_FALSE(config::parse_service(text, "t@.toml", "t@abc", bad));
  REQUIRE(bad.list().size() == 1);
  CHECK(bad.list()[0].to_string() == "t@.toml:2:11: socket.listen: bad port \"abc\" (1..65535)");
  // A bad instance name is refused before anything is parsed.
  config::Problems name;
  CHECK_FALSE(config::parse_service(text, "t@.toml", "t@a..b", name));
  CHECK_THAT(name.list().at(0).message, Contains("\"..\""));
}
