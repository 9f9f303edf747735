// admission::Gate: allow/deny lists, total and per-source limits.
#include <arpa/inet.h>

#include <catch2/catch.hpp>

#include "support.hpp"

#include "admission/admission.hpp"

using namespace superd;

namespace {
using superd::test::cidr;
using superd::test::sa;
using superd::test::v4;
using superd::test::v6;
}  // namespace

TEST_CASE("allow and deny lists; deny wins; v4-mapped peers match IPv4 ranges") {
  admission::Limits l;
  l.allow = {cidr("127.0.0.0/8"), cidr("::1/128")};
  l.deny = {cidr("127.0.0.66")};
  admission::Gate g(l);
  auto a = v4("127.0.0.1"), b = v4("127.0.0.66"), c = v4("10.0.0.1"), d = v6("::1"), e = v6("::ffff:127.0.0.5"),
       f = v6("::ffff:127.0.0.66");
  CHECK(g.check(sa(a), net::source_key(sa(a))) == admission::Verdict::admit);
  CHECK(g.check(sa(b), net::source_key(sa(b))) == admission::Verdict::denied);
  CHECK(g.check(sa(c), net::source_key(sa(c))) == admission::Verdict::not_allowed);
  CHECK(g.check(sa(d), net::source_key(sa(d))) == admission::Verdict::admit);
  CHECK(g.check(sa(e), net::source_key(sa(e))) == admission::Verdict::admit);
  CHECK(g.check(sa(f), net::source_key(sa(f))) == admission::Verdict::denied);
}

TEST_CASE("max_connections and per-source limits count live instances") {
  admission::Limits l;
  l.max_connections = 3;
  l.max_per_source = 2;
  admission::Gate g(l);
  auto a = v4("127.0.0.1"), b = v4("127.0.0.2");
  auto ka = net::source_key(sa(a)), kb = net::source_key(sa(b));
  REQUIRE(g.check(sa(a), ka) == admission::Verdict::admit);
  g.enter(ka);
  g.enter(ka);
  CHECK(g.check(sa(a), ka) == admission::Verdict::per_source_limit);
  CHECK(g.check(sa(b), kb) == admission::Verdict::admit);
  g.enter(kb);
  CHECK(g.full());
  CHECK(g.check(sa(b), kb) == admission::Verdict::total_limit);
  g.leave(ka);
  CHECK_FALSE(g.full());
  CHECK(g.live_from(ka) == 1);
  CHECK(g.check(sa(a), ka) == admission::Verdict::admit);
}

TEST_CASE("a v4-mapped peer and its IPv4 form are one source") {
  auto a = v4("127.0.0.9"), b = v6("::ffff:127.0.0.9");
  CHECK(net::source_key(sa(a)) == net::source_key(sa(b)));
  CHECK_FALSE(net::source_key_uid(5) == net::source_key_uid(6));
}

TEST_CASE("UNIX peers are limited by peer UID") {
  admission::Limits l;
  l.max_per_source = 1;
  admission::Gate g(l);
  auto k = net::source_key_uid(1000);
  g.enter(k);
  CHECK(g.check(nullptr, k) == admission::Verdict::per_source_limit);
  CHECK(g.check(nullptr, net::source_key_uid(1001)) == admission::Verdict::admit);
}
