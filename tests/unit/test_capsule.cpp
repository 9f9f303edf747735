// Capsules' host side without a daemon: names, the choice of a block, the home and runtime
// directories in a scratch root, capsule_uid_range, and the capsule's own configuration.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "capsule/capsule.hpp"
#include "config/config.hpp"
#include "support.hpp"

using namespace superd;
using Catch::Matchers::Contains;
using superd::test::ScratchDir;
namespace fs = std::filesystem;

namespace {
constexpr uint32_t kFirst = 0x71000000, kLast = 0x7107FFFF;  // eight blocks

capsule::Roots roots_in(const ScratchDir& d) {
  return {(d.path / "lib").string(), (d.path / "run").string(), kFirst, kLast};
}

struct stat stat_of(const std::string& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st;
}

std::string all(const config::Problems& p) {
  std::string s;
  for (const auto& x : p.list()) s += x.to_string() + "\n";
  return s;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}
}  // namespace

TEST_CASE("capsule names", "[capsule]") {
  CHECK(capsule::name_error("acme").empty());
  CHECK(capsule::name_error("a-b_c.d").empty());
  CHECK_THAT(capsule::name_error("a/b"), Contains("\"/\""));
  CHECK_THAT(capsule::name_error(".."), Contains("\"..\""));
  CHECK_THAT(capsule::name_error(""), Contains("empty"));
  CHECK(capsule::name_error(std::string(16, 'a')).empty());
  CHECK_THAT(capsule::name_error(std::string(17, 'a')), Contains("longer than 16"));
  CHECK_THAT(capsule::name_error("a b"), Contains("' '"));
}

TEST_CASE("a capsule's block: stable, its home's, never another's", "[capsule]") {
  ScratchDir d;
  auto roots = roots_in(d);
  auto a = capsule::choose_block(roots, "acme", {});
  REQUIRE(a);
  CHECK((*a - kFirst) % capsule::kBlockSize == 0);
  CHECK(*a <= kLast);
  CHECK(capsule::choose_block(roots, "acme", {}) == a);  // the hash: the same every time
  // Running capsules' blocks and other homes' blocks are taken.
  auto b = capsule::choose_block(roots, "globex", {{"acme", *a}});
  REQUIRE(b);
  CHECK(*b != *a);
  CHECK(capsule::choose_block(roots, "acme", {{"other", *a}}) != a);
  std::string failed;
  REQUIRE_FALSE(capsule::prepare_dirs(roots, "acme", *a, failed));
  CHECK(capsule::homes_by_block(roots) == std::map<std::string, uint32_t>{{"acme", *a}});
  CHECK(capsule::choose_block(roots, "zzz-collides", {}) != a);  // whatever its hash, acme's is taken
  // A home that some block owns keeps that block, even if it is not the hash's.
  uint32_t other = kFirst + ((*a - kFirst) / capsule::kBlockSize + 3) % 8 * capsule::kBlockSize;
  REQUIRE(::chown(roots.home("acme").c_str(), other + 5, other + 5) == 0);  // any UID of the block
  CHECK(capsule::choose_block(roots, "acme", {}) == other);
  // All eight blocks taken: none left.
  std::map<std::string, uint32_t> running;
  for (int i = 0; i < 8; ++i) running["c" + std::to_string(i)] = kFirst + i * capsule::kBlockSize;
  CHECK_FALSE(capsule::choose_block(roots, "ninth", running));
}

TEST_CASE("the home and runtime directory: created, owned by the capsule's root, moved with its block", "[capsule]") {
  ScratchDir d;
  auto roots = roots_in(d);
  uint32_t block = kFirst + 2 * capsule::kBlockSize;
  std::string failed;
  REQUIRE_FALSE(capsule::prepare_dirs(roots, "acme", block, failed));
  auto home = stat_of(roots.home("acme"));
  CHECK(home.st_uid == block);
  CHECK(home.st_gid == block);
  CHECK((home.st_mode & 07777) == 0711);
  CHECK(stat_of(roots.home("acme") + "/.config/superd").st_uid == block);
  CHECK(stat_of(roots.runtime_dir("acme")).st_uid == block);
  CHECK(stat_of(roots.state_root + "/capsules").st_uid == 0);
  CHECK((stat_of(roots.state_root + "/capsules").st_mode & 07777) == 0755);
  // Data of the capsule (its root's and a UID of its block), then the block changes.
  std::string file = roots.home("acme") + "/data", inner = roots.home("acme") + "/.local";
  write(file, "x");
  fs::create_directories(inner);
  REQUIRE(::chown(file.c_str(), block, block) == 0);
  REQUIRE(::chown(inner.c_str(), block + 61184, block + 61184) == 0);
  uint32_t moved = kFirst + 5 * capsule::kBlockSize;
  REQUIRE_FALSE(capsule::prepare_dirs(roots, "acme", moved, failed));
  CHECK(stat_of(roots.home("acme")).st_uid == moved);
  CHECK(stat_of(file).st_uid == moved);
  CHECK(stat_of(inner).st_uid == moved + 61184);  // UID for UID
  // Again with the same block: nothing to do, nothing changes.
  REQUIRE_FALSE(capsule::prepare_dirs(roots, "acme", moved, failed));
  CHECK(stat_of(inner).st_uid == moved + 61184);
}

TEST_CASE("capsule_uid_range: whole blocks, apart from the dynamic range", "[capsule][config]") {
  config::Problems p;
  auto g = config::parse_global("[superd]\ncapsule_uid_range = [0x71000000, 0x7100FFFF]\n", "s.toml", p);
  CHECK(p.empty());
  CHECK(g.capsule_first == 0x71000000u);
  CHECK(g.capsule_last == 0x7100FFFFu);
  config::Problems bad;
  config::parse_global("[superd]\ncapsule_uid_range = [0x71000001, 0x7100FFFF]\n", "s.toml", bad);
  CHECK_THAT(all(bad), Contains("s.toml:2:21: superd.capsule_uid_range: expected [FIRST, LAST] of whole blocks"));
  config::Problems overlap;
  config::parse_global("[superd]\ndynamic_uid_range = [0x70000010, 0x70000020]\n", "s.toml", overlap);
  CHECK_THAT(all(overlap), Contains("superd.capsule_uid_range: [1879048192, 2147483647] overlaps dynamic_uid_range"));
}

TEST_CASE("a capsule's configuration: its roots, only log_level, its listeners", "[capsule][config]") {
  ScratchDir d;
  std::string home = (d.path / "home").string(), run = (d.path / "run" / "capsules" / "acme").string();
  fs::path conf = fs::path(home) / ".config" / "superd";
  config::Problems none;
  auto empty = config::load_capsule("acme", home, run, none);
  CHECK(none.empty());
  CHECK(empty.services.empty());
  CHECK(empty.global.runtime_root == run);
  CHECK(empty.global.state_root == home + "/.local/state");
  CHECK(empty.global.cache_root == home + "/.cache");
  CHECK(empty.global.capsule == "acme");
  write(conf / "superd.toml", "[superd]\nlog_level = \"debug\"\n");
  write(conf / "web.toml",
        "[socket]\nlisten = [\"127.0.0.1:8080\", \"" + run + "/web.sock\"]\n[service]\nexec = [\"/bin/true\"]\n");
  config::Problems p;
  auto c = config::load_capsule("acme", home, run, p);
  CHECK(all(p).empty());
  REQUIRE(c.services.size() == 1);  // superd.toml is not a service
  CHECK(c.services[0].name == "web");
  CHECK(c.global.log_level == "debug");
  write(conf / "superd.toml",
        "[superd]\nlog_level = \"info\"\nstate_root = \"/var/lib\"\ninclude = [\"/etc/*.toml\"]\n");
  config::Problems keys;
  config::load_capsule("acme", home, run, keys);
  CHECK_THAT(all(keys), Contains("superd.toml:3:14: superd.state_root: not allowed in a capsule"));
  CHECK_THAT(all(keys), Contains("superd.toml:4:11: superd.include: not allowed in a capsule"));
  fs::remove(conf / "superd.toml");
  write(conf / "web.toml",
        "[socket]\nlisten = [\"127.0.0.1:80\", \"/run/x.sock\", \"@abs\"]\n[service]\nexec = [\"/bin/true\"]\n");
  config::Problems listen;
  config::load_capsule("acme", home, run, listen);
  CHECK_THAT(all(listen), Contains("ports 1024 and above only"));
  CHECK_THAT(all(listen), Contains("UNIX sockets live under " + run + "/"));
  CHECK_THAT(all(listen), Contains("no abstract sockets"));
}
