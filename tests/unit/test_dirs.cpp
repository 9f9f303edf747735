// sandbox/dirs: the owner and group a named lease prefers, read from real directories in a
// scratch tree (the two owner lookups differ: lstat and any owner, or stat and not root).
#include <catch2/catch.hpp>

#include "support.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "sandbox/dirs.hpp"

using namespace superd;
namespace fs = std::filesystem;
using sandbox::OwnerLookup;

namespace {
struct ScratchDir : superd::test::ScratchDir {
  ScratchDir() : superd::test::ScratchDir("ut-dirs") {}
};
}  // namespace

TEST_CASE("existing_owner: lstat and any owner, or stat and the first not owned by root", "[dirs]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root to chown");  // Catch2 v2 has no SKIP
    return;
  }
  ScratchDir s;
  const std::string root_dir = (s.path / "root").string(), user_dir = (s.path / "user").string(),
                    link = (s.path / "link").string(), missing = (s.path / "missing").string();
  fs::create_directory(root_dir);
  fs::create_directory(user_dir);
  REQUIRE(::chown(user_dir.c_str(), 61001, 61002) == 0);
  fs::create_directory_symlink(user_dir, link);
  REQUIRE(::lchown(link.c_str(), 61003, 61003) == 0);

  using V = std::vector<std::string>;
  CHECK(sandbox::existing_owner(V{missing, root_dir, user_dir}, OwnerLookup::any_owner) == uid_t{0});
  CHECK(sandbox::existing_owner(V{missing, root_dir, user_dir}, OwnerLookup::non_root) == uid_t{61001});
  // A symlink: its own owner for lstat, its target's for stat.
  CHECK(sandbox::existing_owner(V{link}, OwnerLookup::any_owner) == uid_t{61003});
  CHECK(sandbox::existing_owner(V{link}, OwnerLookup::non_root) == uid_t{61001});
  CHECK_FALSE(sandbox::existing_owner(V{missing}, OwnerLookup::any_owner));
  CHECK_FALSE(sandbox::existing_owner(V{missing, root_dir}, OwnerLookup::non_root));
  CHECK_FALSE(sandbox::existing_owner(V{}, OwnerLookup::any_owner));
  // The group a service's lease prefers: the first existing directory's (not a symlink's).
  CHECK(sandbox::existing_group(V{missing, user_dir, root_dir}) == gid_t{61002});
}
