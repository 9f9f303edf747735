#include "uid_pool/userdb.hpp"

#include <grp.h>
#include <pwd.h>

namespace superd::uid_pool::userdb {
namespace {

// Walks passwd and group once; fn(kind, name, id) for entries inside [lo, hi].
template <typename Fn>
void each_in_range(uint32_t lo, uint32_t hi, Fn fn) {
  setpwent();
  while (passwd* pw = getpwent())
    if (pw->pw_uid >= lo && pw->pw_uid <= hi) fn("user", pw->pw_name, pw->pw_uid);
  endpwent();
  setgrent();
  while (group* gr = getgrent())
    if (gr->gr_gid >= lo && gr->gr_gid <= hi) fn("group", gr->gr_name, gr->gr_gid);
  endgrent();
}

}  // namespace

std::vector<uint32_t> ids_in_range(uint32_t lo, uint32_t hi) {
  std::vector<uint32_t> out;
  each_in_range(lo, hi, [&](const char*, const char*, uint32_t id) { out.push_back(id); });
  return out;
}

std::vector<std::string> first_clashes(uint32_t lo, uint32_t hi, size_t max) {
  std::vector<std::string> out;
  each_in_range(lo, hi, [&](const char* kind, const char* name, uint32_t id) {
    if (out.size() < max) out.push_back(std::string(kind) + " " + name + " (" + std::to_string(id) + ")");
  });
  return out;
}

}  // namespace superd::uid_pool::userdb
