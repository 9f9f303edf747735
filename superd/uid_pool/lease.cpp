// uid_pool::Lease and Leases: see lease.hpp for the release order and the named-lease strategy.
#include "uid_pool/lease.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace superd::uid_pool {

Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    reset();
    owner_ = o.owner_;
    uid_ = o.uid_;
    o.owner_ = nullptr;
  }
  return *this;
}

void Lease::set_pid(pid_t pid) noexcept {
  if (owner_) owner_->table_.set_pid(uid_, pid);
}

void Lease::quarantine() noexcept {
  if (owner_) owner_->pool_.block(uid_, kQuarantined);
}

void Lease::reset() noexcept {
  if (!owner_) return;
  Leases* o = owner_;
  owner_ = nullptr;
  o->release(uid_);
}

int64_t Leases::now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Lease Leases::take(uint32_t uid, const LeaseInfo& info) noexcept {
  table_.record(uid, 0, info.serial, info.started_ms, info.service, info.user, info.kind);
  return Lease(this, uid);
}

// Record first gone, then the UID: a UID is never free while a record still names it.
void Leases::release(uint32_t uid) noexcept {
  table_.clear(uid);
  pool_.release(uid);
}

std::optional<Lease> Leases::acquire(const LeaseInfo& info) noexcept {
  auto uid = pool_.lease();
  if (!uid) return std::nullopt;
  return take(*uid, info);
}

std::optional<Lease> Leases::acquire_named(std::string_view name, std::optional<uint32_t> prefer,
                                           const LeaseInfo& info) noexcept {
  // Phase 1: the owner of the existing directory.
  if (prefer && pool_.lease_exact(*prefer)) return take(*prefer, info);
  // Phase 2 and 3: the name's FNV-1a hash, then the UIDs after it.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  uint32_t size = pool_.size();
  for (uint32_t i = 0; i < std::min(size, kMaxNamedProbes); ++i) {
    uint32_t uid = pool_.first() + static_cast<uint32_t>((h + i) % size);
    if (pool_.lease_exact(uid)) return take(uid, info);
  }
  return std::nullopt;
}

std::map<uint32_t, Lease> Leases::readopt(const std::vector<Handed>& handed) {
  std::map<uint32_t, Lease> out;
  std::vector<LeaseRecord> rest = table_.take_orphans();
  for (const Handed& h : handed) {
    auto r = std::find_if(rest.begin(), rest.end(), [&](const LeaseRecord& x) { return x.uid == h.uid; });
    if (!pool_.lease_exact(h.uid)) continue;
    LeaseRecord rec = r != rest.end() ? *r : LeaseRecord{h.uid, 0, 0, now_ms(), {}};
    table_.record(h.uid, rec.pid, rec.serial, rec.started_ms,
                  std::string_view(rec.service, ::strnlen(rec.service, sizeof rec.service)), h.user, h.kind);
    if (r != rest.end()) rest.erase(r);
    out.emplace(h.uid, Lease(this, h.uid));
  }
  table_.set_orphans(std::move(rest));
  return out;
}

std::vector<LeaseRecord> Leases::hold_orphans() {
  std::vector<LeaseRecord> held;
  for (const auto& r : table_.take_orphans()) {
    // Shared-directory groups are GIDs on directories; no process runs as them: free at once.
    if (std::string_view(r.service).rfind("group:", 0) == 0) continue;
    // Idmapped directories' owners (daemon/idmap_dirs.cpp) likewise: files on disk, no process.
    if (std::string_view(r.service).rfind("owner:", 0) == 0) continue;
    pool_.block(r.uid, kOrphan);
    // Named "superd-UID" until swept: the old names file is started anew with the table.
    table_.record(r.uid, r.pid, r.serial, r.started_ms, r.service);
    held.push_back(r);
  }
  return held;
}

void Leases::orphan_swept(uint32_t uid) noexcept {
  table_.clear(uid);
  pool_.unblock(uid, kOrphan);
}

void Leases::orphan_quarantined(uint32_t uid) noexcept {
  pool_.block(uid, kQuarantined);
}

}  // namespace superd::uid_pool
