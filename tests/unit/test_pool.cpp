// uid_pool::Pool bookkeeping: distinct UIDs, FIFO recycling, blocks and quarantine, exhaustion.
#include <catch2/catch.hpp>
#include <set>
#include <vector>

#include "uid_pool/pool.hpp"

using superd::uid_pool::Pool;
namespace up = superd::uid_pool;

TEST_CASE("fresh UIDs go out in ascending order, all distinct, then the pool is exhausted") {
  Pool p(1000, 1003);
  std::vector<uint32_t> got;
  while (auto u = p.lease()) got.push_back(*u);
  CHECK(got == std::vector<uint32_t>{1000, 1001, 1002, 1003});
  CHECK(p.held() == 4);
  CHECK_FALSE(p.lease().has_value());
}

TEST_CASE("recycling is FIFO: the UID released longest ago comes back first") {
  Pool p(10, 13);
  for (int i = 0; i < 4; ++i) REQUIRE(p.lease());
  p.release(12);
  p.release(10);
  p.release(13);
  CHECK(*p.lease() == 12);
  CHECK(*p.lease() == 10);
  p.release(11);
  CHECK(*p.lease() == 13);
  CHECK(*p.lease() == 11);
  CHECK_FALSE(p.lease());
}

TEST_CASE("never-used UIDs are preferred over recycled ones") {
  Pool p(1, 5);
  auto a = *p.lease();
  p.release(a);
  CHECK(*p.lease() == 2);
  CHECK(*p.lease() == 3);
  CHECK(*p.lease() == 4);
  CHECK(*p.lease() == 5);
  CHECK(*p.lease() == 1);
}

TEST_CASE("blocked UIDs are skipped and come back at the tail when unblocked") {
  Pool p(100, 104);
  p.block(101, up::kStaticUser);
  p.block(103, up::kForeignProcess);
  std::set<uint32_t> got;
  while (auto u = p.lease()) got.insert(*u);
  CHECK(got == std::set<uint32_t>{100, 102, 104});
  p.unblock(103, up::kForeignProcess);
  CHECK(*p.lease() == 103);
  CHECK_FALSE(p.lease());  // 101 is still a static user
}

TEST_CASE("a quarantined UID is never leased again after release") {
  Pool p(1, 2);
  auto a = *p.lease();
  p.block(a, up::kQuarantined);
  p.release(a);
  CHECK(p.quarantined() == 1);
  CHECK(*p.lease() == 2);
  p.release(2);
  CHECK(*p.lease() == 2);
  CHECK_FALSE(p.lease());
}

TEST_CASE("set_blocked_exactly sets and clears one reason") {
  Pool p(1, 6);
  p.set_blocked_exactly(up::kForeignIpc, std::vector<uint32_t>{2, 4, 99});
  CHECK(p.blocks(2) == up::kForeignIpc);
  CHECK(p.blocks(3) == 0);
  p.set_blocked_exactly(up::kForeignIpc, std::vector<uint32_t>{4});
  CHECK(p.blocks(2) == 0);
  CHECK(p.blocks(4) == up::kForeignIpc);
  std::set<uint32_t> got;
  while (auto u = p.lease()) got.insert(*u);
  CHECK(got == std::set<uint32_t>{1, 2, 3, 5, 6});
}

TEST_CASE("lease_exact takes a queued UID without duplicating it in the ring") {
  Pool p(1, 3);
  for (int i = 0; i < 3; ++i) p.lease();
  p.release(1);
  p.release(2);
  REQUIRE(p.lease_exact(2));
  CHECK_FALSE(p.lease_exact(2));
  CHECK(*p.lease() == 1);
  CHECK_FALSE(p.lease());  // 2's stale ring entry is skipped while held
  p.release(2);
  CHECK(*p.lease() == 2);
  CHECK_FALSE(p.lease());
}

TEST_CASE("lease_exact from the fresh region is not handed out twice") {
  Pool p(1, 3);
  REQUIRE(p.lease_exact(2));
  CHECK(*p.lease() == 1);
  CHECK(*p.lease() == 3);
  CHECK_FALSE(p.lease());
  p.release(2);
  CHECK(*p.lease() == 2);
}

TEST_CASE("a full cycle at high occupancy keeps every UID unique") {
  Pool p(50000, 50999);
  std::vector<uint32_t> held;
  for (int i = 0; i < 990; ++i) held.push_back(*p.lease());
  for (int round = 0; round < 5000; ++round) {
    uint32_t u = held[static_cast<size_t>(round * 7919) % held.size()];
    p.release(u);
    auto n = p.lease();
    REQUIRE(n);
    held[static_cast<size_t>(round * 7919) % held.size()] = *n;
  }
  std::set<uint32_t> uniq(held.begin(), held.end());
  CHECK(uniq.size() == held.size());
  CHECK(p.held() == 990);
}

TEST_CASE("upcoming() names exactly the UIDs the next leases return, through a mixed history") {
  // A fixed pseudo-random history of leases, releases, exact leases and blocks; after every step
  // the prediction of the next 6 leases must equal what a copy of the pool then hands out.
  Pool p(500, 539);
  std::vector<uint32_t> held;
  uint32_t x = 12345;
  auto next = [&] { return x = x * 1103515245u + 12345u, (x >> 16) & 0x7fff; };
  for (int step = 0; step < 400; ++step) {
    switch (next() % 5) {
      case 0:
      case 1:
        if (auto u = p.lease()) held.push_back(*u);
        break;
      case 2:
        if (!held.empty()) {
          size_t i = next() % held.size();
          p.release(held[i]);
          held.erase(held.begin() + static_cast<long>(i));
        }
        break;
      case 3:
        if (uint32_t u = 500 + next() % 40; p.lease_exact(u)) held.push_back(u);
        break;
      default: {
        uint32_t u = 500 + next() % 40;
        if (p.blocks(u))
          p.unblock(u, up::kForeignIpc);
        else
          p.block(u, up::kForeignIpc);
      }
    }
    uint32_t predicted[6];
    size_t n = p.upcoming(predicted, 6);
    Pool copy = p.copy();
    std::vector<uint32_t> actual;
    while (actual.size() < 6)
      if (auto u = copy.lease())
        actual.push_back(*u);
      else
        break;
    REQUIRE(std::vector<uint32_t>(predicted, predicted + n) == actual);
  }
}
