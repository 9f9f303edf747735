// admission::Policy: the one admission order for streams and datagrams
// (allow/deny -> connection limits -> access_times -> guard -> rate), and the rate's two actions.
#include <arpa/inet.h>

#include <catch2/catch.hpp>

#include "support.hpp"

#include "admission/policy.hpp"

using namespace superd;
using admission::Decision;
using admission::Path;
using Clock = admission::Policy::Clock;

namespace {
using superd::test::cidr;
using superd::test::sa;
using superd::test::v4;
using superd::test::v6;
admission::AccessTimes office() {
  std::string why;
  return *admission::AccessTimes::parse({"08:00-12:00"}, why);
}
constexpr int k9am = 9 * 60, k1pm = 13 * 60;
const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1);

std::string never_guard(const void*, const sockaddr*) {
  return {};
}
std::string always_guard(const void* ctx, const sockaddr*) {
  return static_cast<const char*>(ctx);
}
}  // namespace

TEST_CASE("the order: deny before access_times before the rate, and a refusal takes no token", "[policy]") {
  admission::Limits l;
  l.deny = {cidr("10.0.0.0/8")};
  admission::Policy p(l, office(), {1, std::chrono::milliseconds(1000), false});
  auto bad = v4("10.1.2.3"), good = v4("127.0.0.1");
  auto src = net::source_key(sa(good));
  // Denied and outside the hours: the deny is named.
  Decision d = p.decide(Path::stream, sa(bad), net::source_key(sa(bad)), t0, k1pm);
  CHECK(d.kind == Decision::Kind::refuse);
  CHECK(d.reason == admission::verdict_reason(admission::Verdict::denied));
  // Allowed but outside the hours: access_times, and the one rate token stays.
  d = p.decide(Path::stream, sa(good), src, t0, k1pm);
  CHECK(d.kind == Decision::Kind::refuse);
  CHECK(d.reason == "outside access_times 08:00-12:00");
  CHECK(p.decide(Path::stream, sa(good), src, t0, k9am).admitted());
  // The bucket (1 per second) is empty now: the rate refuses, naming the configured values.
  d = p.decide(Path::stream, sa(good), src, t0, k9am);
  CHECK(d.kind == Decision::Kind::refuse);
  CHECK(d.reason == "max_connection_rate=1 per 1000ms");
  CHECK(p.decide(Path::stream, sa(good), src, t0 + std::chrono::seconds(1), k9am).admitted());
}

TEST_CASE("over the rate, a stream connection is deferred until the bucket has room; a datagram is refused",
          "[policy]") {
  admission::Policy p({}, {}, {2, std::chrono::milliseconds(1000), true});
  auto peer = v4("127.0.0.1");
  auto src = net::source_key(sa(peer));
  CHECK(p.decide(Path::stream, sa(peer), src, t0).admitted());
  CHECK(p.decide(Path::stream, sa(peer), src, t0).admitted());
  CHECK(p.rate_deferred(t0));
  Decision d = p.decide(Path::stream, sa(peer), src, t0);
  CHECK(d.kind == Decision::Kind::defer);
  CHECK(d.until == t0 + std::chrono::milliseconds(500));  // one token every interval/max
  CHECK(d.until == p.rate_room_at(t0));
  d = p.decide(Path::datagram, sa(peer), src, t0);
  CHECK(d.kind == Decision::Kind::refuse);
  CHECK(d.reason == "max_connection_rate=2 per 1000ms");
  // A deferred connection let through by its timer holds a token already.
  CHECK(p.decide(Path::stream, sa(peer), src, t0, -1, true).admitted());
  CHECK_FALSE(p.rate_deferred(t0 + std::chrono::milliseconds(500)));
}

TEST_CASE("connection limits apply to streams, not to datagrams", "[policy]") {
  admission::Limits l;
  l.max_connections = 1;
  admission::Policy p(l, {}, {});
  auto peer = v4("127.0.0.1");
  auto src = net::source_key(sa(peer));
  REQUIRE(p.decide(Path::stream, sa(peer), src, t0).admitted());
  p.gate().enter(src);
  Decision d = p.decide(Path::stream, sa(peer), src, t0);
  CHECK(d.kind == Decision::Kind::refuse);
  CHECK(d.reason == admission::verdict_reason(admission::Verdict::total_limit));
  CHECK(p.decide(Path::datagram, sa(peer), src, t0).admitted());
  p.gate().leave(src);
  CHECK(p.decide(Path::stream, sa(peer), src, t0).admitted());
}

TEST_CASE("the caller's guard runs after access_times and before the rate, and takes no token", "[policy]") {
  admission::Policy p({}, office(), {1, std::chrono::milliseconds(1000), false});
  auto peer = v4("127.0.0.1");
  auto src = net::source_key(sa(peer));
  static const char kWhy[] = "loop guard";
  admission::Guard refuse{always_guard, kWhy}, pass{never_guard, nullptr};
  Decision d = p.decide(Path::datagram, sa(peer), src, t0, k1pm, false, refuse);
  CHECK(d.reason == "outside access_times 08:00-12:00");  // access_times first
  d = p.decide(Path::datagram, sa(peer), src, t0, k9am, false, refuse);
  CHECK(d.kind == Decision::Kind::refuse);
  CHECK(d.reason == "loop guard");
  CHECK(p.decide(Path::datagram, sa(peer), src, t0, k9am, false, pass).admitted());  // the token was still there
}
