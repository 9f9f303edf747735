// Listen specs and CIDRs parsed from strings.
#include <catch2/catch.hpp>

#include "util/net.hpp"
#include "util/units.hpp"

using namespace superd;

TEST_CASE("listen specs") {
  std::string why;
  auto a = net::parse_listen("127.0.0.1:7001", why);
  REQUIRE(a);
  CHECK(a->kind == net::Kind::inet4);
  CHECK(a->port == 7001);
  CHECK(a->to_string() == "127.0.0.1:7001");
  auto b = net::parse_listen("[::1]:7001", why);
  REQUIRE(b);
  CHECK(b->kind == net::Kind::inet6);
  CHECK(b->to_string() == "[::1]:7001");
  auto c = net::parse_listen("7001", why);
  REQUIRE(c);
  CHECK(c->kind == net::Kind::dual);
  auto d = net::parse_listen("/run/x.sock", why);
  REQUIRE(d);
  CHECK(d->kind == net::Kind::unix_path);
  auto e = net::parse_listen("@abs", why);
  REQUIRE(e);
  CHECK(e->kind == net::Kind::unix_abstract);
  CHECK(e->path == "abs");
}

TEST_CASE("bad listen specs say why") {
  std::string why;
  CHECK_FALSE(net::parse_listen("127.0.0.1:0", why));
  CHECK(why.find("bad port") != std::string::npos);
  CHECK_FALSE(net::parse_listen("127.0.0.1:70000", why));
  CHECK_FALSE(net::parse_listen("300.1.1.1:80", why));
  CHECK(why.find("bad IPv4") != std::string::npos);
  CHECK_FALSE(net::parse_listen("::1:80", why));
  CHECK(why.find("brackets") != std::string::npos);
  CHECK_FALSE(net::parse_listen("[::1]80", why));
  CHECK_FALSE(net::parse_listen("/" + std::string(200, 'x'), why));
  CHECK_FALSE(net::parse_listen("", why));
}

TEST_CASE("conflicting listeners") {
  std::string why;
  auto p = [&](const char* s) { return *net::parse_listen(s, why); };
  CHECK(p("127.0.0.1:80").conflicts_with(p("127.0.0.1:80")));
  CHECK_FALSE(p("127.0.0.1:80").conflicts_with(p("127.0.0.2:80")));
  CHECK(p("0.0.0.0:80").conflicts_with(p("127.0.0.2:80")));
  CHECK(p("80").conflicts_with(p("[::1]:80")));
  CHECK(p("80").conflicts_with(p("127.0.0.1:80")));
  CHECK_FALSE(p("[::1]:80").conflicts_with(p("127.0.0.1:80")));
  CHECK_FALSE(p("80").conflicts_with(p("81")));
  CHECK(p("/a").conflicts_with(p("/a")));
  CHECK_FALSE(p("/a").conflicts_with(p("@a")));
}

TEST_CASE("CIDRs") {
  std::string why;
  auto c = net::parse_cidr("10.1.0.0/16", why);
  REQUIRE(c);
  CHECK(c->prefix == 16);
  CHECK_FALSE(net::parse_cidr("10.1.0.0/33", why));
  CHECK_FALSE(net::parse_cidr("nonsense", why));
  CHECK(net::parse_cidr("fe80::/10", why));
}

TEST_CASE("durations and sizes") {
  using namespace std::chrono;
  CHECK(*units::parse_duration("30s") == seconds(30));
  CHECK(*units::parse_duration("5min") == minutes(5));
  CHECK(*units::parse_duration("1h 30min") == minutes(90));
  CHECK(*units::parse_duration("250ms") == milliseconds(250));
  CHECK(*units::parse_duration("7") == seconds(7));
  CHECK_FALSE(units::parse_duration("5 parsecs"));
  CHECK_FALSE(units::parse_duration(""));
  CHECK(*units::parse_size("512M") == 512ULL << 20);
  CHECK(*units::parse_size("4K") == 4096);
  CHECK(*units::parse_size("1GiB") == 1ULL << 30);
  CHECK(*units::parse_size("100") == 100);
  CHECK(*units::parse_size("infinity") == units::kInfinity);
  CHECK_FALSE(units::parse_size("12Q"));
}
