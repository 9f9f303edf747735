// The upgrade's hand-over state (daemon/handover.hpp): what the old image writes the new one
// reads back whole; another format or a torn document is refused with a reason. And the lease
// side of the hand-over (Leases::readopt): the new image opens the table through the old one's
// fd, takes the handed leases again with their records and names, and finds the rest orphaned.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "daemon/handover.hpp"
#include "uid_pool/lease.hpp"

namespace ho = superd::daemon::handover;
namespace up = superd::uid_pool;
namespace fs = std::filesystem;

TEST_CASE("handover: a state survives the memfd round trip whole") {
  ho::State s;
  s.version = "9.9";
  s.argv = {"superd", "serve", "-c", "/etc/superd/superd.toml"};
  s.table_fd = 7;
  s.serial = 123456789012345ULL;
  s.listeners.push_back({5, "stream 127.0.0.1:7 0 0 0 0 64", "echo"});
  s.leases.push_back({89001, "superd-89001", 1});
  ho::Instance i;
  i.service = "echo";
  i.pid = 4242;
  i.pidfd = 9;
  i.err = 10;
  i.uid = 89001;
  i.leased = true;
  i.peer = "[::1]:5";
  i.source.bytes[0] = 6;
  i.source.bytes[16] = 0xff;
  i.started_ns = -5;
  i.err_line = std::string("half a line\0with a NUL", 22);
  s.instances.push_back(i);
  s.capsules.push_back({"web", "/var/lib/capsules/web", 0x71000000, 77, 11, 12, 13, true, 99});
  s.stopped_units = {"old"};
  std::error_code ec;
  superd::UniqueFd fd = ho::write(s, ec);
  REQUIRE(fd);
  // Sealed: nothing can change it between the two images.
  CHECK(::write(fd.get(), "x", 1) < 0);
  std::string error;
  auto back = ho::read(fd.release(), error);
  REQUIRE(back);
  CHECK(back->version == "9.9");
  CHECK(back->argv == s.argv);
  CHECK(back->serial == s.serial);
  REQUIRE(back->instances.size() == 1);
  CHECK(back->instances[0].source == i.source);
  CHECK(back->instances[0].err_line == i.err_line);
  CHECK(back->instances[0].started_ns == -5);
  CHECK(back->listener_count == 1);
  CHECK(back->capsules[0].block == 0x71000000u);
  CHECK(back->stopped_units == s.stopped_units);
  CHECK(ho::fds_of(*back) == std::vector<int>{7, 5, 9, 10, 11, 12, 13});
}

TEST_CASE("handover: another format and a torn document are refused, with the reason") {
  ho::State s;
  s.format = ho::kFormat + 1;
  std::string error;
  CHECK_FALSE(ho::decode(ho::encode(s), error));
  CHECK(error.find("this superd takes format " + std::to_string(ho::kFormat)) != std::string::npos);
  std::string torn = ho::encode(ho::State{});
  torn.resize(torn.size() / 2);
  CHECK_FALSE(ho::decode(torn, error));
  CHECK(error.find("not a CBOR object") != std::string::npos);
}

TEST_CASE("handover: the new image takes the handed leases again; the rest are orphans") {
  superd::test::ScratchDir scratch{"ut-handover"};
  std::string dir = (fs::path(scratch.path) / "dynamic-uid").string();
  fs::create_directories(dir);
  std::error_code ec;
  up::Pool pool(89500, 89503);
  up::LeaseTable table = up::LeaseTable::open(dir, 89500, 89503, ec);
  REQUIRE_FALSE(ec);
  up::Leases leases(pool, table);
  auto a = leases.acquire({1, 1000, "svc"});
  auto b = leases.acquire({2, 1000, "svc"});
  auto g = leases.acquire_named("group:svc", std::nullopt, {0, 0, "group:svc", "svc", up::NameKind::group});
  REQUIRE((a && b && g));
  a->set_pid(111);
  // The old image execs: its fd (and lock) goes on, its memory does not.
  int fd = ::dup(table.fd());
  uint32_t ua = a->uid(), ub = b->uid(), ug = g->uid();
  auto [gname, gkind] = table.name_of(ug);
  CHECK(gname == "svc");
  CHECK(gkind == up::NameKind::group);
  up::Pool pool2(89500, 89503);
  up::LeaseTable table2 = up::LeaseTable::open(dir, 89500, 89503, ec, superd::UniqueFd(fd));
  REQUIRE_FALSE(ec);
  // A third opener is still locked out: the lock never let go.
  std::error_code busy;
  up::LeaseTable::open(dir, 89500, 89503, busy);
  CHECK(busy == std::errc::device_or_resource_busy);
  up::Leases leases2(pool2, table2);
  auto got = leases2.readopt({{ua, "", up::NameKind::user}, {ug, "svc", up::NameKind::group}});
  CHECK(got.size() == 2);
  CHECK(pool2.is_held(ua));
  CHECK(pool2.is_held(ug));
  auto live = table2.live();
  auto rec = std::find_if(live.begin(), live.end(), [&](const up::LeaseRecord& r) { return r.uid == ua; });
  REQUIRE(rec != live.end());
  CHECK(rec->pid == 111);
  CHECK(rec->serial == 1);
  CHECK(table2.name_of(ug).first == "svc");
  auto orphans = table2.take_orphans();
  REQUIRE(orphans.size() == 1);
  CHECK(orphans[0].uid == ub);
  // The old image's objects must not release into the new books (its process image is gone).
  a->quarantine();
  b->quarantine();
  g->quarantine();
}
