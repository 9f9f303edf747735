// Capsule names, blocks, homes and runtime directories (capsule.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <set>

#include "capsule/capsule.hpp"

namespace superd::capsule {
namespace {

std::error_code last_error() {
  return {errno, std::generic_category()};
}

// A directory `path` with `mode` and owner, made if missing; never through a symlink.
std::error_code make_dir(const std::string& path, mode_t mode, uid_t uid, std::string& failed) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return failed = path, last_error();
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return failed = path, last_error();
  if (!S_ISDIR(st.st_mode)) return failed = path, std::make_error_code(std::errc::not_a_directory);
  if ((st.st_uid != uid || st.st_gid != uid) && ::lchown(path.c_str(), uid, uid) != 0)
    return failed = path, last_error();
  if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0) return failed = path, last_error();
  return {};
}

}  // namespace

std::string name_error(const std::string& name) {
  if (name.empty()) return "the capsule name is empty";
  // "capsule-NAME-65535", the longest of its user names, stays within 31 characters.
  if (name.size() > kMaxName) return "the capsule name is longer than " + std::to_string(kMaxName) + " characters";
  if (name.find('/') != std::string::npos) return "the capsule name contains \"/\"";
  if (name == "." || name == "..") return "the capsule name is \"" + name + "\"";
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return std::string("the capsule name contains '") + c + "' (letters, digits, - _ . only)";
  return {};
}

std::map<std::string, uint32_t> homes_by_block(const Roots& roots) {
  namespace fs = std::filesystem;
  std::map<std::string, uint32_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(roots.state_root + "/capsules", ec)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (st.st_uid < roots.first || st.st_uid > roots.last) continue;
    out[e.path().filename().string()] = roots.first + (st.st_uid - roots.first) / kBlockSize * kBlockSize;
  }
  return out;
}

std::optional<uint32_t> choose_block(const Roots& roots, const std::string& name,
                                     const std::map<std::string, uint32_t>& running) {
  std::set<uint32_t> taken;
  auto homes = homes_by_block(roots);
  for (const auto& [n, b] : homes)
    if (n != name) taken.insert(b);
  for (const auto& [n, b] : running)
    if (n != name) taken.insert(b);
  // The block that owns the home already: no chown.
  if (auto own = homes.find(name); own != homes.end() && !taken.count(own->second)) return own->second;
  uint64_t count = (uint64_t(roots.last) - roots.first + 1) / kBlockSize;
  if (count == 0) return std::nullopt;
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : "capsule:" + name) h = (h ^ c) * 1099511628211ULL;
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t block = roots.first + static_cast<uint32_t>((h + i) % count) * kBlockSize;
    if (!taken.count(block)) return block;
  }
  return std::nullopt;
}

std::error_code prepare_dirs(const Roots& roots, const std::string& name, uint32_t block, std::string& failed) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const std::string& parent : {roots.state_root, roots.runtime_root}) {
    fs::create_directories(parent + "/capsules", ec);
    if (ec) return failed = parent + "/capsules", ec;
    if (auto e = make_dir(parent + "/capsules", 0755, 0, failed)) return e;
  }
  std::string home = roots.home(name);
  struct stat st {};
  bool existed = ::lstat(home.c_str(), &st) == 0;
  // 0711: the capsule's own users pass through to their state directories (behind the 0700
  // boundary its superd keeps); nobody else may list it.
  if (auto e = make_dir(home, 0711, existed ? st.st_uid : block, failed)) return e;
  // A home of another owner (the capsule_uid_range moved): everything of its old root and block
  // moves to the new block, UID for UID.
  if (existed && st.st_uid != block) {
    uint32_t old = st.st_uid;
    auto move = [&](const fs::path& p) {
      struct stat s {};
      if (::lstat(p.c_str(), &s) != 0) return;
      auto map = [&](uint32_t id) { return id >= old && id - old < kBlockSize ? block + (id - old) : id; };
      if (::lchown(p.c_str(), map(s.st_uid), map(s.st_gid)) != 0) failed = p.string();
    };
    for (auto it = fs::recursive_directory_iterator(home, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      move(it->path());
    move(home);
    if (!failed.empty()) return last_error();
  }
  for (const std::string& d : {home + "/.config", home + "/.config/superd"})
    if (auto e = make_dir(d, 0755, block, failed)) return e;
  if (auto e = make_dir(roots.runtime_dir(name), 0755, block, failed)) return e;
  return {};
}

}  // namespace superd::capsule
