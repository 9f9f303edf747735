// state_directory_idmap on the daemon's side (sandbox/idmap.hpp has the mechanism and the
// security argument): the service's stable owner, its directories, the filesystem check, and
// per connection the instance's idmapped trees.
//
// The owner is a named lease, hashed from the service name and preferring the current owner of
// an existing directory — as `superd run --unit` does — held for the service's lifetime and
// handed to a reloaded successor (as the shared group is). No process runs as it: it only owns
// the files on disk, which every instance sees as its own through the mapping.
//
// Existing directories, by owner:
//   the owner ......................... used as they are;
//   another UID of the dynamic range .. an earlier owner (taken by now): re-owned, as any named
//                                       lease's directory is (sandbox::prepare_dirs);
//   root, setgid, group in the range .. superd's own shared-group layout (the key was off):
//                                       re-owned the same way;
//   anything else (root, a UID outside the range) .. refused, naming the path and the owner.
// Why refuse rather than map: the mapping makes every instance the *owner* of what it maps, and
// the re-owning chown gives the tree to a dynamic UID. Doing that silently to a tree root or a
// real user owns would hand their files to a network service; an operator who means it says so
// with one `chown -R`. (No `state_directory_owner` key: refusing is the whole contract.)
//
// A reload that turns the key on or off while instances of the service are live is refused
// (the running configuration stays, the log says why): either direction re-owns the tree under
// the live instances, whose view (an idmapped mount, or the shared group) would stop matching
// and leave them without write access. Reload again once they ended.
#include <sys/stat.h>

#include <algorithm>

#include "daemon/hub.hpp"
#include "sandbox/idmap.hpp"
#include "util/log.hpp"

namespace superd::daemon {

namespace {
std::string owner_lease_name(const std::string& service) {
  return "owner:" + service;
}
}  // namespace

bool Daemon::idmap_toggle_allowed(const config::Service& sc) const {
  bool want = sc.service.sandbox.idmap_dirs;
  auto check = [&](const Service& old) {
    if (old.cfg->name != sc.name || old.cfg->service.sandbox.idmap_dirs == want) return true;
    size_t live = old.policy.gate().live();
    if (live == 0) return true;
    log::error(
        "reload: service {}: state_directory_idmap turns {} while {} instance(s) run: their directories would "
        "change owner under them; reload again when they ended",
        sc.name, want ? "on" : "off", live);
    return false;
  };
  for (const auto& s : services_)
    if (!check(*s)) return false;
  for (const auto& s : retired_)
    if (!check(*s)) return false;
  return true;
}

bool Daemon::prepare_idmap(Service& s, Service* previous) {
  const auto& sb = s.cfg->service.sandbox;
  const std::string& name = s.cfg->name;
  const auto dirs = sandbox::boundary_dirs(sb, roots_);
  const uint32_t first = pool_.first(), last = pool_.first() + pool_.size() - 1;
  auto in_range = [&](uint32_t id) { return id >= first && id <= last; };
  if (previous && previous->owner) {
    s.owner = previous->owner;
  } else {
    const std::string lease_name = owner_lease_name(name), user = uid_pool::user_name_for(name);
    if (handed_)  // an upgrade: the owner the old image had
      for (const auto& l : handed_->leases)
        if (l.user == user && l.kind == static_cast<uint8_t>(uid_pool::NameKind::user))
          if (auto it = handed_leases_.find(l.uid); it != handed_leases_.end()) {
            s.owner = std::make_shared<uid_pool::Lease>(std::move(it->second));
            handed_leases_.erase(it);
            break;
          }
    if (!s.owner) {
      std::optional<uint32_t> prefer;
      for (const std::string& d : dirs) {
        struct stat st {};
        if (::lstat(d.c_str(), &st) == 0) {
          if (in_range(st.st_uid)) prefer = st.st_uid;
          break;
        }
      }
      auto lease = leases_.acquire_named(name, prefer,
                                         {0, uid_pool::Leases::now_ms(), lease_name, user, uid_pool::NameKind::user});
      if (!lease) {
        log::error("service {}: no UID left in the dynamic range to own its idmapped directories", name);
        return false;
      }
      s.owner = std::make_shared<uid_pool::Lease>(std::move(*lease));
    }
  }
  const uid_t owner = s.owner->uid();
  for (const std::string& d : dirs) {
    struct stat st {};
    if (::lstat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid == owner) continue;
    bool shared_layout = st.st_uid == 0 && (st.st_mode & S_ISGID) && in_range(st.st_gid);
    if (!in_range(st.st_uid) && !shared_layout) {
      log::error(
          "{}: service {}: state_directory_idmap: {} is owned by UID {}, outside the dynamic range {}-{}: "
          "refused (the mapping would hand that owner's files to the service; chown -R {}:{} {} if you mean it)",
          s.cfg->where.file, name, d, st.st_uid, first, last, owner, owner, d);
      return false;
    }
  }
  std::string failed;
  if (auto ec = sandbox::prepare_dirs(sb, roots_, owner, owner, 0, failed)) {
    log::error("service {}: cannot prepare {}: {}", name, failed, ec.message());
    return false;
  }
  for (const std::string& d : dirs)
    if (std::string why = sandbox::idmap::check_support(d); !why.empty()) {
      log::error("{}: service {}: state_directory_idmap: {}", s.cfg->where.file, name, why);
      return false;
    }
  kick_idmap_prefill();
  return true;
}

std::string Daemon::add_idmap_trees(const Service& s, uid_t uid, sandbox::idmap::Trees& trees) {
  const auto& idmapped = s.plan.mounts.idmapped;
  if (idmapped.empty()) return {};
  if (!s.owner) return "no owner for the idmapped directories";
  std::string why = sandbox::idmap::make_trees(idmap_cache_, idmapped, uid, s.owner->uid(), trees);
  if (!why.empty()) return why;
  plan_.n_idmap_fds = static_cast<unsigned>(trees.fds.size());
  for (size_t i = 0; i < trees.fds.size(); ++i) plan_.idmap_fds[i] = trees.fds[i].get();
  kick_idmap_prefill();
  return {};
}

// Work ahead of the connections: posted, so it runs after the handlers already queued, and one
// namespace per turn, so accepts and answers that become ready meanwhile come first. It looks
// at the next kLookahead UIDs of the pool (fewer with several idmapped services); more than the
// connections that arrive together (c=64 in the bench), few enough to build in ~3 ms after a
// start or a burst.
void Daemon::kick_idmap_prefill() {
  if (idmap_prefill_posted_) return;
  idmap_prefill_posted_ = true;
  asio::post(io_, [this] {
    idmap_prefill_posted_ = false;
    prefill_idmap();
  });
}

void Daemon::prefill_idmap() {
  // What all services look ahead at together stays within half the cache: more would evict
  // the namespaces it just built and build them again, round after round.
  constexpr size_t kLookahead = 96, kShare = sandbox::idmap::Cache::kMaxEntries / 2;
  size_t services = 0;
  for (const auto& s : services_) services += !s->plan.mounts.idmapped.empty() && s->owner;
  if (services == 0 || services > kShare) return;  // past 128 such services: built on the connection's path
  uint32_t next[kLookahead];
  const size_t n = pool_.upcoming(next, std::min(kLookahead, kShare / services));
  for (const auto& s : services_) {
    if (s->plan.mounts.idmapped.empty() || !s->owner) continue;
    const uid_t owner = s->owner->uid();
    for (size_t i = 0; i < n; ++i)
      if (!idmap_cache_.has(next[i], owner)) {
        // A failure stops the turn; the next connection kicks it again (and get() then says why).
        if (idmap_cache_.build_ahead(next[i], owner)) kick_idmap_prefill();
        return;
      }
  }
}

}  // namespace superd::daemon
