#include "uid_pool/lease_table.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

namespace superd::uid_pool {
namespace {

// The first slot-sized block is a header: the range, so a reader needs nothing else.
struct Header {
  char magic[8];  // "SUPERDL1"
  uint32_t first, size;
  char pad[48];
};
static_assert(sizeof(Header) == sizeof(LeaseRecord));
constexpr char kMagic[8] = {'S', 'U', 'P', 'E', 'R', 'D', 'L', '1'};

std::error_code last_error() { return {errno, std::generic_category()}; }

}  // namespace

LeaseTable::LeaseTable(LeaseTable&& o) noexcept { *this = std::move(o); }
LeaseTable& LeaseTable::operator=(LeaseTable&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(map_, map_len_);
    fd_ = std::move(o.fd_);
    slots_ = std::exchange(o.slots_, nullptr);
    map_ = std::exchange(o.map_, nullptr);
    map_len_ = std::exchange(o.map_len_, 0);
    first_ = o.first_;
    size_ = o.size_;
    orphans_ = std::move(o.orphans_);
  }
  return *this;
}
LeaseTable::~LeaseTable() {
  if (map_) ::munmap(map_, map_len_);
}

LeaseTable LeaseTable::open(const std::string& dir, uint32_t first, uint32_t last, std::error_code& ec) {
  LeaseTable t;
  std::string path = dir + "/leases";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) { ec = last_error(); return t; }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    ec = (errno == EWOULDBLOCK) ? std::make_error_code(std::errc::device_or_resource_busy) : last_error();
    return t;
  }
  uint32_t size = last - first + 1;
  size_t len = sizeof(Header) + size_t(size) * sizeof(LeaseRecord);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) { ec = last_error(); return t; }
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
  if (::ftruncate(fd.get(), 0) != 0) { ec = last_error(); return t; }
  if (::ftruncate(fd.get(), static_cast<off_t>(len)) != 0) { ec = last_error(); return t; }
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (m == MAP_FAILED) { ec = last_error(); return t; }
  auto* h = static_cast<Header*>(m);
  std::memcpy(h->magic, kMagic, 8);
  h->first = first;
  h->size = size;
  t.fd_ = std::move(fd);
  t.map_ = m;
  t.map_len_ = len;
  t.slots_ = reinterpret_cast<LeaseRecord*>(h + 1);
  t.first_ = first;
  t.size_ = size;
  return t;
}

LeaseTable LeaseTable::open_readonly(const std::string& dir, std::error_code& ec) {
  LeaseTable t;
  std::string path = dir + "/leases";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) { ec = last_error(); return t; }
  Header h{};
  if (::pread(fd.get(), &h, sizeof h, 0) != sizeof h || std::memcmp(h.magic, kMagic, 8) != 0) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return t;
  }
  size_t len = sizeof(Header) + size_t(h.size) * sizeof(LeaseRecord);
  void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (m == MAP_FAILED) { ec = last_error(); return t; }
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

void LeaseTable::record(uint32_t uid, int32_t pid, uint64_t serial, int64_t started_ms,
                        std::string_view service) noexcept {
  LeaseRecord* r = slot(uid);
  if (!r) return;
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
  if (LeaseRecord* r = slot(uid)) r->uid = 0;
}

std::vector<LeaseRecord> LeaseTable::live() const {
  std::vector<LeaseRecord> out;
  // Pages never touched read as zero without being faulted in as private copies.
  for (uint32_t i = 0; slots_ && i < size_; ++i)
    if (slots_[i].uid != 0) out.push_back(slots_[i]);
  return out;
}

}  // namespace superd::uid_pool
