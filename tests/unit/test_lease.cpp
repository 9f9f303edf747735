// uid_pool::Lease and Leases over a real lease table in a scratch directory, and
// cleanup::Batch: the teardown order the types enforce (a UID returns only after its IPC sweep;
// one with objects left is quarantined before its lease drops).
#include <catch2/catch.hpp>

#include "support.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cleanup/batch.hpp"
#include "uid_pool/lease.hpp"

namespace up = superd::uid_pool;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kFirst = 89100, kLast = 89103;

// A scratch runtime dir outside /tmp, removed with the fixture.
struct Scratch {
  superd::test::ScratchDir dir_{"ut-lease"};
  fs::path root = dir_.path;
  Scratch() { fs::create_directories(root / "superd" / "dynamic-uid"); }
  std::string dir() const { return (root / "superd" / "dynamic-uid").string(); }
};

struct Books {
  Scratch scratch;
  up::Pool pool{kFirst, kLast};
  up::LeaseTable table;
  up::Leases leases{pool, table};
  Books() {
    std::error_code ec;
    table = up::LeaseTable::open(scratch.dir(), kFirst, kLast, ec);
    REQUIRE_FALSE(ec);
  }
  std::optional<up::LeaseRecord> record(uint32_t uid) const {
    for (const auto& r : table.live())
      if (r.uid == uid) return r;
    return std::nullopt;
  }
};

// IPC roots where only a /dev/shm (the scratch's shm/) has anything in it.
superd::ipc::Roots shm_only_roots(const fs::path& root) {
  fs::create_directories(root / "shm");
  superd::ipc::Roots roots;
  roots.sysvipc = (root / "no-sysvipc").string();
  roots.dev_shm = (root / "shm").string();
  roots.mqueue = (root / "no-mqueue").string();
  return roots;
}

up::LeaseInfo info(uint64_t serial, const char* service = "svc") {
  return {serial, 1234, service};
}

}  // namespace

TEST_CASE("a lease records itself, and its destructor clears the record and returns the UID", "[lease]") {
  Books b;
  {
    auto lease = b.leases.acquire(info(7));
    REQUIRE(lease);
    uint32_t uid = lease->uid();
    CHECK(uid == kFirst);
    CHECK(b.pool.is_held(uid));
    auto r = b.record(uid);
    REQUIRE(r);
    CHECK(r->serial == 7);
    CHECK(r->pid == 0);
    CHECK(std::string(r->service) == "svc");
    lease->set_pid(4242);
    REQUIRE(b.record(uid));
    CHECK(b.record(uid)->pid == 4242);
  }
  CHECK(b.pool.held() == 0);
  CHECK(b.table.live().empty());
}

TEST_CASE("a moved lease releases once, from its last owner", "[lease]") {
  Books b;
  up::Lease outer;
  CHECK_FALSE(outer);
  {
    auto lease = b.leases.acquire(info(1));
    REQUIRE(lease);
    up::Lease inner = std::move(*lease);
    CHECK_FALSE(*lease);  // moved from: holds nothing
    outer = std::move(inner);
  }
  CHECK(outer);
  CHECK(b.pool.held() == 1);
  CHECK(b.table.live().size() == 1);
  outer.reset();
  CHECK(b.pool.held() == 0);
  CHECK(b.table.live().empty());
  outer.reset();  // twice: nothing happens
  CHECK(b.pool.held() == 0);
}

TEST_CASE("a quarantined lease clears its record but its UID is never leased again", "[lease]") {
  Books b;
  uint32_t bad;
  {
    auto lease = b.leases.acquire(info(1));
    REQUIRE(lease);
    bad = lease->uid();
    lease->quarantine();
  }
  CHECK(b.table.live().empty());
  CHECK(b.pool.quarantined() == 1);
  std::vector<up::Lease> rest;
  while (auto l = b.leases.acquire(info(2))) rest.push_back(std::move(*l));
  CHECK(rest.size() == kLast - kFirst);  // every other UID, not the quarantined one
  for (const auto& l : rest) CHECK(l.uid() != bad);
}

TEST_CASE("a named lease is stable: the preferred UID first, then the name's hash", "[lease]") {
  Books b;
  uint32_t first;
  {
    auto a = b.leases.acquire_named("wait:echo", std::nullopt, info(1, "echo"));
    REQUIRE(a);
    first = a->uid();
  }
  {
    auto again = b.leases.acquire_named("wait:echo", std::nullopt, info(2, "echo"));
    REQUIRE(again);
    CHECK(again->uid() == first);  // same name, same UID
  }
  uint32_t other = first == kLast ? kFirst : first + 1;
  auto preferred = b.leases.acquire_named("wait:echo", other, info(3, "echo"));
  REQUIRE(preferred);
  CHECK(preferred->uid() == other);
  // The preferred UID is taken: the hash decides, and never a held UID.
  auto second = b.leases.acquire_named("wait:echo", other, info(4, "echo"));
  REQUIRE(second);
  CHECK(second->uid() != other);
}

TEST_CASE("orphans of a previous daemon stay blocked and recorded until swept", "[lease]") {
  Scratch scratch;
  {
    std::error_code ec;
    auto table = up::LeaseTable::open(scratch.dir(), kFirst, kLast, ec);
    REQUIRE_FALSE(ec);
    table.record(kFirst + 1, 555, 9, 1, "crashed");
    table.record(kFirst + 2, 0, 0, 0, "group:crashed");
  }  // the daemon "dies" with both records in place
  up::Pool pool{kFirst, kLast};
  std::error_code ec;
  auto table = up::LeaseTable::open(scratch.dir(), kFirst, kLast, ec);
  REQUIRE_FALSE(ec);
  up::Leases leases{pool, table};
  auto held = leases.hold_orphans();
  REQUIRE(held.size() == 1);  // a group is a GID on directories: free at once
  CHECK(held[0].uid == kFirst + 1);
  CHECK(pool.blocks(kFirst + 1) & up::kOrphan);
  CHECK(table.live().size() == 1);  // recorded again, for a daemon killed once more
  leases.orphan_swept(kFirst + 1);
  CHECK_FALSE(pool.blocks(kFirst + 1));
  CHECK(table.live().empty());
}

TEST_CASE("the cleanup batch returns UIDs only after their IPC is gone, and quarantines the rest", "[lease][cleanup]") {
  Books b;
  fs::path shm = b.scratch.root / "shm";
  superd::ipc::Roots roots = shm_only_roots(b.scratch.root);

  auto clean = b.leases.acquire(info(1));
  auto dirty = b.leases.acquire(info(2));
  REQUIRE(clean);
  REQUIRE(dirty);
  uint32_t clean_uid = clean->uid(), dirty_uid = dirty->uid();
  // The clean UID left a POSIX shm file (removable); the dirty one a directory, which unlink()
  // cannot remove (EISDIR): its cleanup fails.
  fs::path left = shm / "left-behind";
  std::ofstream(left.string()) << "x";
  REQUIRE(::chown(left.c_str(), clean_uid, clean_uid) == 0);
  fs::path stuck = shm / "stuck";
  fs::create_directories(stuck);
  REQUIRE(::chown(stuck.c_str(), dirty_uid, dirty_uid) == 0);

  superd::cleanup::Batch batch;
  batch.add(std::move(*clean), true);
  batch.add(std::move(*dirty), true);
  // In the batch: still held and recorded, nothing returned before the sweep.
  CHECK(b.pool.is_held(clean_uid));
  CHECK(b.pool.is_held(dirty_uid));
  CHECK(b.table.live().size() == 2);

  auto failures = batch.run(roots);
  CHECK(batch.empty());
  CHECK_FALSE(fs::exists(left));
  REQUIRE(failures.size() == 1);
  CHECK(failures[0].owner == dirty_uid);
  CHECK(failures[0].err == EISDIR);
  CHECK(b.table.live().empty());
  CHECK_FALSE(b.pool.is_held(clean_uid));
  CHECK_FALSE(b.pool.is_held(dirty_uid));
  CHECK(b.pool.blocks(dirty_uid) & up::kQuarantined);
  CHECK_FALSE(b.pool.blocks(clean_uid));
}

TEST_CASE("a batch of instances that all had a private /dev/shm does not look at the host's", "[lease][cleanup]") {
  Books b;
  fs::path shm = b.scratch.root / "shm";
  superd::ipc::Roots roots = shm_only_roots(b.scratch.root);
  auto lease = b.leases.acquire(info(1));
  REQUIRE(lease);
  fs::path file = shm / "host-file";
  std::ofstream(file.string()) << "x";
  REQUIRE(::chown(file.c_str(), lease->uid(), lease->uid()) == 0);
  superd::cleanup::Batch batch;
  batch.add(std::move(*lease), false);
  CHECK(batch.run(roots).empty());
  CHECK(fs::exists(file));  // not swept: no instance of the batch could write there
  CHECK(b.pool.held() == 0);
}
