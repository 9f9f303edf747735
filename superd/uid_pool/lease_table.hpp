// Lease records under <runtime_root>/superd/dynamic-uid/: one file, "leases", mapped shared into
// superd, with a fixed 64-byte slot per UID of the range. Recording or clearing a lease is a
// store into that mapping: no system call on the connection path, yet `superd status`, an NSS
// module or a restarted superd can read who holds which UID. The daemon holds an exclusive
// flock on the file, so two daemons never share one runtime root.
//
// The table is root-only (0600): it names every service, UID and PID. What others may read,
// the user names an NSS module resolves, is a second mapped file beside it, `names` (0644),
// holding only UID, kind and name per slot. The directory is 0755 so the names file can be
// opened; the table's own mode keeps it root's.
//
// Both files are allocated in full when opened (posix_fallocate): a store into a sparse mapped
// page the filesystem cannot back raises SIGBUS, so a full disk would crash the daemon at some
// connection. Allocation up front turns that into a clear refusal to start.
#pragma once

#include <cstdint>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "util/unique_fd.hpp"

namespace superd::uid_pool {

// A slot of the names file. `seq` is odd while the writer changes the slot: a reader copies the
// slot between two equal even reads of `seq`, so it sees a record whole or not at all.
enum class NameKind : uint8_t {
  user = 1,   // a user and its group of the same name and number (every lease of a process)
  group = 2,  // a group only: a service's shared-directory GID, no process runs as it
};

struct NameRecord {
  uint32_t seq;
  uint32_t uid;  // 0: free slot
  NameKind kind;
  char name[39];  // NUL-terminated, at most kMaxUserName ("superd-61234", "foobard-acme")
};
static_assert(sizeof(NameRecord) == 48);

struct LeaseRecord {
  uint32_t uid;        // 0: free slot
  int32_t pid;         // host PID of the instance's main process, 0 while spawning
  uint64_t serial;     // per-connection serial number (%c)
  int64_t started_ms;  // CLOCK_REALTIME, ms
  char service[40];    // NUL-terminated, truncated
};
static_assert(sizeof(LeaseRecord) == 64);

// The first slot-sized block of both files: the magic and the range, so a reader (`superd
// status`, the NSS module) needs nothing else.
struct FileHeader {
  char magic[8];  // kTableMagic or kNamesMagic
  uint32_t first, size;
  char pad[48];
};
static_assert(sizeof(FileHeader) == sizeof(LeaseRecord) && sizeof(FileHeader) >= sizeof(NameRecord));
inline constexpr char kTableMagic[8] = {'S', 'U', 'P', 'E', 'R', 'D', 'L', '1'};
inline constexpr char kNamesMagic[8] = {'S', 'U', 'P', 'E', 'R', 'D', 'N', '2'};

// The names file of the table in `dir`: "<dir>/names" (<runtime_root>/superd/dynamic-uid/names).
std::string names_path_for(const std::string& dir);

// A user name for a named lease, made valid as systemd does for DynamicUser= names: the kind
// prefix ("wait:", "group:") dropped, every character outside [A-Za-z0-9_-] turned into '-', a
// name that does not start with a letter or '_' prefixed with '_', and at most kMaxUserName
// characters: a longer name keeps its head and ends in '-' and 8 hex digits of its FNV-1a hash,
// so two long names stay apart.
// "foobard@acme" -> "foobard-acme", "capsule:web" -> "capsule-web".
inline constexpr size_t kMaxUserName = 31;
std::string user_name_for(std::string_view lease_name);
// A per-connection lease's user name, "superd-UID" (the names file writes the same).
inline std::string connection_user_name(uint32_t uid) {
  std::string name = "superd-";  // not "literal" + string: g++ 12 warns falsely (-Wrestrict) on that
  name += std::to_string(uid);
  return name;
}

class LeaseTable {
 public:
  LeaseTable() = default;
  LeaseTable(LeaseTable&&) noexcept;
  LeaseTable& operator=(LeaseTable&&) noexcept;
  ~LeaseTable();

  // Creates or opens <dir>/leases for [first, last] and takes the lock. Records a previous
  // daemon left behind are handed out once by take_orphans(); the file starts empty.
  // `inherited`: the table's fd from the image before an upgrade (the lock comes with it).
  static LeaseTable open(const std::string& dir, uint32_t first, uint32_t last, std::error_code& ec,
                         UniqueFd inherited = {});
  // Opens read-only without the lock (for `superd status`).
  static LeaseTable open_readonly(const std::string& dir, std::error_code& ec);

  // `user`: the user name for the names file; empty gives "superd-UID" (a per-connection lease).
  void record(uint32_t uid, int32_t pid, uint64_t serial, int64_t started_ms, std::string_view service,
              std::string_view user = {}, NameKind kind = NameKind::user) noexcept;
  void set_pid(uint32_t uid, int32_t pid) noexcept;
  void clear(uint32_t uid) noexcept;
  std::vector<LeaseRecord> live() const;  // every occupied slot
  // The names file's entry for a held UID (empty if none), for an upgrade's hand-over.
  std::pair<std::string, NameKind> name_of(uint32_t uid) const;
  int fd() const noexcept { return fd_.get(); }  // borrowed: handed to an upgrade's new image
  std::vector<LeaseRecord> take_orphans() { return std::move(orphans_); }
  void set_orphans(std::vector<LeaseRecord> rest) { orphans_ = std::move(rest); }

  bool valid() const noexcept { return slots_ != nullptr; }
  uint32_t first() const noexcept { return first_; }
  uint32_t size() const noexcept { return size_; }

 private:
  LeaseRecord* slot(uint32_t uid) noexcept;
  void write_name(uint32_t uid, std::string_view user, NameKind kind) noexcept;
  void clear_name(uint32_t uid) noexcept;
  UniqueFd fd_, names_fd_;
  LeaseRecord* slots_ = nullptr;
  NameRecord* names_ = nullptr;
  void* map_ = nullptr;
  size_t map_len_ = 0;
  void* names_map_ = nullptr;
  size_t names_len_ = 0;
  uint32_t first_ = 0, size_ = 0;
  std::vector<LeaseRecord> orphans_;
};

}  // namespace superd::uid_pool
