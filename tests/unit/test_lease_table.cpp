// uid_pool/lease_table: the mapped record of who holds which UID, in a scratch runtime root of
// its own (/srv/ut-XXXXXX, removed at the end). What a restarted daemon relies on: records left
// without a clear come back once as orphans, a second daemon is locked out without touching the
// first one's file, the modes are 0600 (table) and 0644 (names), a file that is not a table is
// reset rather than read, and UIDs outside the range write nothing.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "uid_pool/lease_table.hpp"
#include "util/unique_fd.hpp"

using namespace superd;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kFirst = 89000, kLast = 89009;
constexpr size_t kHeader = 64;  // one slot-sized header block before the slots

// <root>/superd/dynamic-uid, as the daemon lays it out: the names file lands beside the table.
struct Scratch {
  superd::test::ScratchDir dir_{"ut"};
  fs::path root = dir_.path;
  fs::path dir;
  Scratch() {
    dir = root / "superd" / "dynamic-uid";
    fs::create_directories(dir);
  }
  std::string table() const { return (dir / "leases").string(); }
  std::string names() const { return (dir / "names").string(); }
};

uid_pool::LeaseTable open_ok(const Scratch& s, uint32_t first = kFirst, uint32_t last = kLast) {
  std::error_code ec;
  auto t = uid_pool::LeaseTable::open(s.dir.string(), first, last, ec);
  REQUIRE_FALSE(ec);
  REQUIRE(t.valid());
  return t;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// The names file's slot of `uid`, read from the file (what an NSS module sees).
uid_pool::NameRecord name_slot(const Scratch& s, uint32_t uid) {
  std::string blob = slurp(s.names());
  uid_pool::NameRecord r{};
  size_t at = kHeader + size_t(uid - kFirst) * sizeof r;
  REQUIRE(blob.size() >= at + sizeof r);
  std::memcpy(&r, blob.data() + at, sizeof r);
  return r;
}

// The bytes of the file's last page beyond its end, as a shared mapping sees them: the page
// cache's page, where the table's own mapping would have put a slot past the last one.
std::string past_end(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  struct stat st {};
  REQUIRE(::fstat(fd.get(), &st) == 0);
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE)), size = static_cast<size_t>(st.st_size);
  size_t len = (size + page - 1) / page * page;
  REQUIRE(len > size);  // the file does not end on a page boundary
  void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd.get(), 0);
  REQUIRE(m != MAP_FAILED);
  std::string tail(static_cast<const char*>(m) + size, len - size);
  ::munmap(m, len);
  return tail;
}

}  // namespace

TEST_CASE("record, set_pid and clear are seen by live() and by a read-only reader", "[lease_table]") {
  Scratch s;
  auto t = open_ok(s);
  CHECK(t.first() == kFirst);
  CHECK(t.size() == kLast - kFirst + 1);
  CHECK(t.live().empty());
  CHECK(t.take_orphans().empty());  // a fresh file has none

  t.record(89001, 0, 11, 1700000000123, "echo");
  t.record(89005, 505, 12, 1700000000456, "daytime");
  t.set_pid(89001, 4242);  // the zygote's answer came: 0 while spawning, then the PID
  auto live = t.live();
  REQUIRE(live.size() == 2);
  CHECK(live[0].uid == 89001);  // slot order: by UID
  CHECK(live[0].pid == 4242);
  CHECK(live[0].serial == 11);
  CHECK(live[0].started_ms == 1700000000123);
  CHECK(std::string(live[0].service) == "echo");
  CHECK(live[1].uid == 89005);
  CHECK(live[1].pid == 505);

  // `superd status` reads the same mapping without the lock.
  std::error_code ec;
  auto ro = uid_pool::LeaseTable::open_readonly(s.dir.string(), ec);
  REQUIRE_FALSE(ec);
  CHECK(ro.first() == kFirst);
  CHECK(ro.size() == kLast - kFirst + 1);
  REQUIRE(ro.live().size() == 2);
  CHECK(ro.live()[0].pid == 4242);

  t.clear(89001);
  live = t.live();
  REQUIRE(live.size() == 1);
  CHECK(live[0].uid == 89005);
  REQUIRE(ro.live().size() == 1);  // shared mapping: the reader sees the clear at once
  CHECK(ro.live()[0].uid == 89005);
  t.clear(89001);  // twice is harmless
  CHECK(t.live().size() == 1);
}

TEST_CASE("records left without a clear come back once as orphans after a reopen", "[lease_table]") {
  Scratch s;
  {
    auto t = open_ok(s);
    t.record(89002, 222, 7, 1000, "echo");
    t.record(89007, 777, 8, 2000, "group:web", "web");
    t.record(89003, 333, 9, 3000, "cleared");
    t.clear(89003);
  }  // the daemon "crashes": the file keeps two records nobody cleared
  auto t = open_ok(s);
  auto orphans = t.take_orphans();
  REQUIRE(orphans.size() == 2);
  CHECK(orphans[0].uid == 89002);
  CHECK(orphans[0].pid == 222);
  CHECK(orphans[0].serial == 7);
  CHECK(orphans[0].started_ms == 1000);
  CHECK(std::string(orphans[0].service) == "echo");
  CHECK(orphans[1].uid == 89007);
  CHECK(std::string(orphans[1].service) == "group:web");
  CHECK(t.take_orphans().empty());  // handed out once
  CHECK(t.live().empty());          // the file starts anew
  CHECK(name_slot(s, 89007).uid == 0);

  // A daemon restarted with another range still learns the old range's orphans.
  t.record(89009, 999, 10, 4000, "last");
  t = uid_pool::LeaseTable();  // unlocks
  auto wider = open_ok(s, 88990, 89019);
  orphans = wider.take_orphans();
  REQUIRE(orphans.size() == 1);
  CHECK(orphans[0].uid == 89009);
  CHECK(wider.first() == 88990);
  CHECK(wider.size() == 30);
}

TEST_CASE("a second open of the same directory is refused and leaves the first one's file alone", "[lease_table]") {
  Scratch s;
  auto t = open_ok(s);
  t.record(89004, 44, 1, 0, "held");
  std::error_code ec;
  auto second = uid_pool::LeaseTable::open(s.dir.string(), kFirst, kLast, ec);
  CHECK(ec == std::make_error_code(std::errc::device_or_resource_busy));
  CHECK_FALSE(second.valid());
  CHECK(second.take_orphans().empty());
  REQUIRE(t.live().size() == 1);  // not truncated nor reset by the refused open
  CHECK(t.live()[0].uid == 89004);
  CHECK(name_slot(s, 89004).uid == 89004);

  // The lock moves with the table and ends with it.
  uid_pool::LeaseTable moved = std::move(t);
  CHECK_FALSE(t.valid());
  CHECK(moved.valid());
  uid_pool::LeaseTable::open(s.dir.string(), kFirst, kLast, ec);
  CHECK(ec == std::make_error_code(std::errc::device_or_resource_busy));
  moved = uid_pool::LeaseTable();
  ec.clear();
  auto third = uid_pool::LeaseTable::open(s.dir.string(), kFirst, kLast, ec);
  CHECK_FALSE(ec);
  CHECK(third.valid());
  CHECK(third.take_orphans().size() == 1);
}

TEST_CASE("a child of the daemon does not keep the table locked after the daemon lets go", "[lease_table]") {
  // A zygote or the sweeper is forked from the daemon; a mapping of the table holds its file and
  // so its flock. A child that outlives a killed daemon for a moment must not keep a restarted
  // daemon out ("leases is locked"): the mappings are not inherited.
  Scratch s;
  int ready[2];
  REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);
  pid_t child;
  {
    auto t = open_ok(s);
    t.record(89006, 66, 1, 0, "held");
    child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // As the zygote: no fd of the table left (only what was mapped), then say so.
      int w = ready_w.get();
      ::syscall(SYS_close_range, 3, w - 1, 0);
      ::syscall(SYS_close_range, w + 1, ~0U, 0);
      (void)!::write(w, "x", 1);
      ::close(w);
      ::pause();
      _exit(0);
    }
  }  // the daemon's table is gone; the child lives on
  ready_w.reset();
  char c;
  REQUIRE(::read(ready_r.get(), &c, 1) == 1);
  std::error_code ec;
  auto again = uid_pool::LeaseTable::open(s.dir.string(), kFirst, kLast, ec);
  ::kill(child, SIGKILL);  // ours, forked above
  int st;
  ::waitpid(child, &st, 0);
  CHECK_FALSE(ec);
  CHECK(again.valid());
}

TEST_CASE("the table is 0600 and the names file 0644, whatever they were; symlinks are refused", "[lease_table]") {
  Scratch s;
  {
    auto t = open_ok(s);
    CHECK(mode_of(s.table()) == 0600);
    CHECK(mode_of(s.names()) == 0644);
    struct stat st {};
    REQUIRE(::stat(s.table().c_str(), &st) == 0);
    CHECK(st.st_size == static_cast<off_t>(kHeader + 10 * sizeof(uid_pool::LeaseRecord)));
    REQUIRE(::stat(s.names().c_str(), &st) == 0);
    CHECK(st.st_size == static_cast<off_t>(kHeader + 10 * sizeof(uid_pool::NameRecord)));
  }
  // An older superd made the table 0644; someone made the names file private.
  REQUIRE(::chmod(s.table().c_str(), 0644) == 0);
  REQUIRE(::chmod(s.names().c_str(), 0600) == 0);
  {
    auto t = open_ok(s);
    CHECK(mode_of(s.table()) == 0600);
    CHECK(mode_of(s.names()) == 0644);
  }
  // A symlink planted where the table goes is not followed (O_NOFOLLOW).
  fs::remove(s.table());
  std::string target = (s.root / "elsewhere").string();
  spit(target, "x");
  fs::create_symlink(target, s.table());
  std::error_code ec;
  auto t = uid_pool::LeaseTable::open(s.dir.string(), kFirst, kLast, ec);
  CHECK(ec == std::error_code(ELOOP, std::generic_category()));
  CHECK_FALSE(t.valid());
  CHECK(slurp(target) == "x");
}

TEST_CASE("the names file: beside the table, superd-UID or the lease's user name, and its kind", "[lease_table]") {
  CHECK(uid_pool::names_path_for("/srv/r/superd/dynamic-uid") == "/srv/r/superd/dynamic-uid/names");
  CHECK(uid_pool::names_path_for("/srv/r/superd/dynamic-uid//") == "/srv/r/superd/dynamic-uid/names");
  CHECK(uid_pool::names_path_for("dynamic-uid") == "dynamic-uid/names");

  Scratch s;
  auto t = open_ok(s);
  std::string blob = slurp(s.names());
  CHECK(blob.compare(0, 8, "SUPERDN2") == 0);
  t.record(89000, 1, 1, 0, "svc");                                          // a per-connection lease
  t.record(89009, 2, 2, 0, "group:web", "web", uid_pool::NameKind::group);  // a shared-directory group
  t.record(89007, 5, 5, 0, "echo", "echo");                                 // a named lease
  t.record(89006, 3, 3, 0, "svc", std::string(60, 'u'));                    // truncated to fit
  t.record(89008, 4, 4, 0, std::string(60, 's'));                           // the service name too
  auto first = name_slot(s, 89000);
  CHECK(first.uid == 89000);
  CHECK(std::string(first.name) == "superd-89000");
  CHECK(first.seq % 2 == 0);  // complete, not being written
  CHECK(first.seq > 0);
  CHECK(first.kind == uid_pool::NameKind::user);
  auto named = name_slot(s, 89009);
  CHECK(named.uid == 89009);
  CHECK(std::string(named.name) == "web");
  CHECK(named.kind == uid_pool::NameKind::group);
  CHECK(name_slot(s, 89007).kind == uid_pool::NameKind::user);
  CHECK(std::string(name_slot(s, 89006).name) == std::string(38, 'u'));
  auto live = t.live();
  REQUIRE(live.size() == 5);
  CHECK(std::string(live[3].service) == std::string(39, 's'));  // 89008
  // The names file holds UIDs and names only: no service, serial or PID.
  blob = slurp(s.names());
  CHECK(blob.find("group:web") == std::string::npos);
  CHECK(blob.find("svc") == std::string::npos);

  uint32_t seq = name_slot(s, 89009).seq;
  t.clear(89009);
  auto cleared = name_slot(s, 89009);
  CHECK(cleared.uid == 0);
  CHECK(cleared.name[0] == '\0');
  CHECK(cleared.seq == seq + 2);  // one more complete write
}

TEST_CASE("user names for named leases are made valid and short, as systemd's are", "[lease_table]") {
  using uid_pool::user_name_for;
  CHECK(user_name_for("wait:wuff") == "wuff");
  CHECK(user_name_for("group:web") == "web");
  CHECK(user_name_for("foobard@acme") == "foobard-acme");
  CHECK(user_name_for("capsule:NAME") == "capsule-NAME");
  CHECK(user_name_for("wait:a.b c/d") == "a-b-c-d");
  CHECK(user_name_for("9lives") == "_9lives");  // a name starts with a letter or '_'
  CHECK(user_name_for("-x") == "_-x");
  CHECK(user_name_for("") == "_");
  CHECK(user_name_for("x_y-Z09") == "x_y-Z09");  // already valid: unchanged
  // Long names: 31 characters, the head kept, a hash of the whole name at the end.
  std::string a = user_name_for("foobard@" + std::string(40, 'a')),
              b = user_name_for("foobard@" + std::string(41, 'a'));
  CHECK(a.size() == uid_pool::kMaxUserName);
  CHECK(b.size() == uid_pool::kMaxUserName);
  CHECK(a != b);
  CHECK(a.rfind("foobard-aaaaaaaaaaaaaa-", 0) == 0);
  CHECK(user_name_for(std::string(31, 'q')) == std::string(31, 'q'));  // exactly the limit: unchanged
  CHECK(user_name_for(std::string(32, 'q')).size() == 31);
}

TEST_CASE("a file that is not a lease table is reset on open and refused read-only", "[lease_table]") {
  Scratch s;
  std::error_code ec;
  SECTION("missing") {
    uid_pool::LeaseTable::open_readonly(s.dir.string(), ec);
    CHECK(ec == std::make_error_code(std::errc::no_such_file_or_directory));
  }
  SECTION("foreign bytes") {
    spit(s.table(), std::string(4096, '\x5a'));
    auto ro = uid_pool::LeaseTable::open_readonly(s.dir.string(), ec);
    CHECK(ec == std::make_error_code(std::errc::invalid_argument));
    CHECK_FALSE(ro.valid());
    ec.clear();
    auto t = open_ok(s);
    CHECK(t.take_orphans().empty());  // 0x5a5a5a5a UIDs are not read as orphans
    CHECK(t.live().empty());
    CHECK(slurp(s.table()).compare(0, 8, "SUPERDL1") == 0);
  }
  SECTION("shorter than a header") {
    spit(s.table(), "SUPERDL1");
    uid_pool::LeaseTable::open_readonly(s.dir.string(), ec);
    CHECK(ec == std::make_error_code(std::errc::invalid_argument));
    auto t = open_ok(s);
    CHECK(t.take_orphans().empty());
  }
  SECTION("a header whose range runs past the end of the file") {
    {
      auto t = open_ok(s);
      t.record(89001, 1, 1, 0, "echo");
    }
    std::string blob = slurp(s.table());
    uint32_t huge = 1u << 20;
    std::memcpy(blob.data() + 12, &huge, sizeof huge);  // Header::size
    spit(s.table(), blob);
    auto t = open_ok(s);
    CHECK(t.take_orphans().empty());  // not read beyond the file
    CHECK(t.live().empty());
    uint32_t size = 0;
    std::memcpy(&size, slurp(s.table()).data() + 12, sizeof size);
    CHECK(size == kLast - kFirst + 1);  // rewritten for this range
  }
  SECTION("another format's magic over a well-formed table") {
    {
      auto t = open_ok(s);
      t.record(89001, 1, 1, 0, "echo");
    }
    std::string blob = slurp(s.table());
    blob[7] = '0';  // "SUPERDL0": same layout, not ours
    spit(s.table(), blob);
    uid_pool::LeaseTable::open_readonly(s.dir.string(), ec);
    CHECK(ec == std::make_error_code(std::errc::invalid_argument));
    auto t = open_ok(s);
    CHECK(t.take_orphans().empty());
    CHECK(slurp(s.table()).compare(0, 8, "SUPERDL1") == 0);
  }
}

TEST_CASE("UIDs outside the range are ignored; both ends of the range are slots", "[lease_table]") {
  Scratch s;
  auto t = open_ok(s);
  for (uint32_t uid : {0u, kFirst - 1, kLast + 1, 0xffffffffu}) {
    t.record(uid, 1, 1, 0, "outside");
    t.set_pid(uid, 2);
    t.clear(uid);
  }
  CHECK(t.live().empty());
  std::string blob = slurp(s.names());
  CHECK(blob.find("superd-") == std::string::npos);
  t.record(kFirst, 1, 1, 0, "low");
  t.record(kLast, 2, 2, 0, "high");
  t.record(kLast + 1, 3, 3, 0, "past");  // would land right after the last slot
  auto live = t.live();
  REQUIRE(live.size() == 2);
  CHECK(live[0].uid == kFirst);
  CHECK(live[1].uid == kLast);
  CHECK(std::string(live[1].service) == "high");
  CHECK(std::string(name_slot(s, kLast).name) == "superd-89009");
  // A slot past the last one would sit in the mapped page beyond the file's end: still zero.
  CHECK(past_end(s.table()) == std::string(past_end(s.table()).size(), '\0'));
  CHECK(past_end(s.names()) == std::string(past_end(s.names()).size(), '\0'));

  // A moved-from or never-opened table is inert.
  uid_pool::LeaseTable none;
  none.record(kFirst, 1, 1, 0, "x");
  none.set_pid(kFirst, 1);
  none.clear(kFirst);
  CHECK_FALSE(none.valid());
  CHECK(none.live().empty());
}
