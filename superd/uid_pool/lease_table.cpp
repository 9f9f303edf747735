#include "uid_pool/lease_table.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <utility>

namespace superd::uid_pool {
namespace {

using Header = FileHeader;
constexpr const char (&kMagic)[8] = kTableMagic;

std::error_code last_error() {
  return {errno, std::generic_category()};
}

}  // namespace

std::string names_path_for(const std::string& dir) {
  size_t end = dir.find_last_not_of('/');
  return (end == std::string::npos ? std::string(dir.empty() ? "." : "") : dir.substr(0, end + 1)) + "/names";
}

std::string user_name_for(std::string_view lease_name) {
  for (std::string_view prefix : {"wait:", "group:"})
    if (lease_name.substr(0, prefix.size()) == prefix) lease_name.remove_prefix(prefix.size());
  std::string out;
  auto word = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (lease_name.empty() || !word(lease_name[0])) out.push_back('_');
  for (char c : lease_name) out += word(c) || (c >= '0' && c <= '9') || c == '-' ? c : '-';
  if (out.size() > kMaxUserName) {
    uint32_t h = 2166136261u;
    for (unsigned char c : lease_name) h = (h ^ c) * 16777619u;
    char tail[10];
    std::snprintf(tail, sizeof tail, "-%08x", h);
    out.resize(kMaxUserName - 9);
    out += tail;
  }
  return out;
}

LeaseTable::LeaseTable(LeaseTable&& o) noexcept {
  *this = std::move(o);
}
LeaseTable& LeaseTable::operator=(LeaseTable&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(map_, map_len_);
    if (names_map_) ::munmap(names_map_, names_len_);
    fd_ = std::move(o.fd_);
    names_fd_ = std::move(o.names_fd_);
    slots_ = std::exchange(o.slots_, nullptr);
    names_ = std::exchange(o.names_, nullptr);
    map_ = std::exchange(o.map_, nullptr);
    map_len_ = std::exchange(o.map_len_, 0);
    names_map_ = std::exchange(o.names_map_, nullptr);
    names_len_ = std::exchange(o.names_len_, 0);
    first_ = o.first_;
    size_ = o.size_;
    orphans_ = std::move(o.orphans_);
  }
  return *this;
}
LeaseTable::~LeaseTable() {
  if (map_) ::munmap(map_, map_len_);
  if (names_map_) ::munmap(names_map_, names_len_);
}

namespace {
// A file's first slot: its magic and the range, so a reader needs nothing else.
Header* init_header(void* map, const char (&magic)[8], uint32_t first, uint32_t size) noexcept {
  auto* h = static_cast<Header*>(map);
  std::memcpy(h->magic, magic, 8);
  h->first = first;
  h->size = size;
  return h;
}

// Sizes the file to `len` bytes, every block allocated, and maps it shared.
void* allocate_and_map(int fd, size_t len, std::error_code& ec) {
  if (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, static_cast<off_t>(len)) != 0) {
    ec = last_error();
    return nullptr;
  }
  if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(len))) {
    ec = {err, std::generic_category()};
    return nullptr;
  }
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    ec = last_error();
    return nullptr;
  }
  // Not into children (zygotes, the sweeper, instances before exec): a mapping holds the file,
  // and with it the flock, so a child that outlives a killed daemon for a moment would keep a
  // restarted one from opening the table ("leases is locked"). No child needs the table.
  if (::madvise(m, len, MADV_DONTFORK) != 0) {
    ec = last_error();
    ::munmap(m, len);
    return nullptr;
  }
  return m;
}
}  // namespace

LeaseTable LeaseTable::open(const std::string& dir, uint32_t first, uint32_t last, std::error_code& ec,
                            UniqueFd inherited) {
  LeaseTable t;
  std::string path = dir + "/leases";
  // An upgrade's new image gets the table's fd (and with it the lock) from the old image: the
  // lock is never let go, so no other superd can take the runtime root in between.
  bool handed = static_cast<bool>(inherited);
  UniqueFd fd =
      handed ? std::move(inherited) : UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (handed && ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) {
    ec = last_error();
    return t;
  }
  if (!fd) {
    ec = last_error();
    return t;
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    ec = (errno == EWOULDBLOCK) ? std::make_error_code(std::errc::device_or_resource_busy) : last_error();
    return t;
  }
  if (::fchmod(fd.get(), 0600) != 0) {
    ec = last_error();
    return t;
  }  // an older superd made it 0644
  uint32_t size = last - first + 1;
  size_t len = sizeof(Header) + size_t(size) * sizeof(LeaseRecord);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    ec = last_error();
    return t;
  }
  // Records left by a previous daemon (crashed or killed) are orphans: read them out, whatever
  // range that daemon had, then start the file anew. The caller cleans every orphan's UID.
  Header old{};
  if (st.st_size >= static_cast<off_t>(sizeof(Header)) && ::pread(fd.get(), &old, sizeof old, 0) == sizeof old &&
      std::memcmp(old.magic, kMagic, 8) == 0 && old.size > 0 &&
      static_cast<off_t>(sizeof(Header) + size_t(old.size) * sizeof(LeaseRecord)) <= st.st_size) {
    size_t old_len = sizeof(Header) + size_t(old.size) * sizeof(LeaseRecord);
    void* om = ::mmap(nullptr, old_len, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (om != MAP_FAILED) {
      auto* recs = reinterpret_cast<const LeaseRecord*>(static_cast<const Header*>(om) + 1);
      for (uint32_t i = 0; i < old.size; ++i)
        if (recs[i].uid != 0) t.orphans_.push_back(recs[i]);
      ::munmap(om, old_len);
    }
  }
  void* m = allocate_and_map(fd.get(), len, ec);
  if (!m) return t;
  t.map_ = m;
  t.map_len_ = len;
  // The names file: beside the table, world-readable, UID and name only.
  std::string names_path = names_path_for(dir);
  UniqueFd nfd(::open(names_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!nfd || ::fchmod(nfd.get(), 0644) != 0) {
    ec = last_error();
    return t;
  }
  size_t names_len = sizeof(Header) + size_t(size) * sizeof(NameRecord);
  void* nm = allocate_and_map(nfd.get(), names_len, ec);
  if (!nm) return t;
  t.names_map_ = nm;
  t.names_len_ = names_len;
  t.names_fd_ = std::move(nfd);
  t.names_ = reinterpret_cast<NameRecord*>(init_header(nm, kNamesMagic, first, size) + 1);
  t.fd_ = std::move(fd);
  t.slots_ = reinterpret_cast<LeaseRecord*>(init_header(m, kMagic, first, size) + 1);
  t.first_ = first;
  t.size_ = size;
  return t;
}

LeaseTable LeaseTable::open_readonly(const std::string& dir, std::error_code& ec) {
  LeaseTable t;
  std::string path = dir + "/leases";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    ec = last_error();
    return t;
  }
  Header h{};
  if (::pread(fd.get(), &h, sizeof h, 0) != sizeof h || std::memcmp(h.magic, kMagic, 8) != 0) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return t;
  }
  size_t len = sizeof(Header) + size_t(h.size) * sizeof(LeaseRecord);
  void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (m == MAP_FAILED) {
    ec = last_error();
    return t;
  }
  t.fd_ = std::move(fd);
  t.map_ = m;
  t.map_len_ = len;
  t.slots_ = reinterpret_cast<LeaseRecord*>(static_cast<Header*>(m) + 1);
  t.first_ = h.first;
  t.size_ = h.size;
  return t;
}

LeaseRecord* LeaseTable::slot(uint32_t uid) noexcept {
  if (!slots_ || uid < first_ || uid - first_ >= size_) return nullptr;
  return &slots_[uid - first_];
}

namespace {
// The writer's half of the names file's protocol: seq odd while `change` runs, even after.
template <typename Change>
void seq_write(NameRecord& n, Change change) noexcept {
  __atomic_store_n(&n.seq, n.seq + 1, __ATOMIC_RELAXED);  // odd: being written
  __atomic_thread_fence(__ATOMIC_RELEASE);
  change();
  __atomic_store_n(&n.seq, n.seq + 1, __ATOMIC_RELEASE);  // even: complete
}
}  // namespace

std::pair<std::string, NameKind> LeaseTable::name_of(uint32_t uid) const {
  if (!names_ || uid < first_ || uid - first_ >= size_ || names_[uid - first_].uid != uid) return {{}, NameKind::user};
  const NameRecord& r = names_[uid - first_];
  return {std::string(r.name, ::strnlen(r.name, sizeof r.name)), r.kind};
}

void LeaseTable::write_name(uint32_t uid, std::string_view user, NameKind kind) noexcept {
  if (!names_) return;
  NameRecord& n = names_[uid - first_];
  seq_write(n, [&] {
    if (user.empty()) {
      std::snprintf(n.name, sizeof n.name, "superd-%u", uid);  // connection_user_name, without allocating
    } else {
      size_t len = std::min(user.size(), sizeof n.name - 1);
      std::memcpy(n.name, user.data(), len);
      n.name[len] = '\0';
    }
    n.kind = kind;
    n.uid = uid;
  });
}

void LeaseTable::clear_name(uint32_t uid) noexcept {
  if (!names_) return;
  NameRecord& n = names_[uid - first_];
  seq_write(n, [&] {
    n.uid = 0;
    n.kind = NameKind{};
    n.name[0] = '\0';
  });
}

void LeaseTable::record(uint32_t uid, int32_t pid, uint64_t serial, int64_t started_ms, std::string_view service,
                        std::string_view user, NameKind kind) noexcept {
  LeaseRecord* r = slot(uid);
  if (!r) return;
  write_name(uid, user, kind);
  r->pid = pid;
  r->serial = serial;
  r->started_ms = started_ms;
  size_t n = std::min(service.size(), sizeof r->service - 1);
  std::memcpy(r->service, service.data(), n);
  r->service[n] = '\0';
  r->uid = uid;  // last: a reader seeing uid != 0 sees a complete record (same thread writes)
}

void LeaseTable::set_pid(uint32_t uid, int32_t pid) noexcept {
  if (LeaseRecord* r = slot(uid)) r->pid = pid;
}

void LeaseTable::clear(uint32_t uid) noexcept {
  if (LeaseRecord* r = slot(uid)) {
    r->uid = 0;
    clear_name(uid);
  }
}

std::vector<LeaseRecord> LeaseTable::live() const {
  std::vector<LeaseRecord> out;
  // Pages never touched read as zero without being faulted in as private copies.
  for (uint32_t i = 0; slots_ && i < size_; ++i)
    if (slots_[i].uid != 0) out.push_back(slots_[i]);
  return out;
}

}  // namespace superd::uid_pool
