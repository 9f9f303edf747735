// libnss_superd.so.2: passwd and group entries for superd's live dynamic UIDs, answered only from
// the world-readable names file the daemon keeps (uid_pool/lease_table.hpp). The module never
// talks to the daemon and takes no lock the daemon takes: each lookup reads the header and the
// one slot it needs with pread (no mapping, so a truncated file cannot raise SIGBUS) from a
// descriptor the module keeps open (names_fd). A slot is accepted only if its sequence number
// is even and the same before and after the copy (the writer's seqlock), so a record being
// written is read whole or not at all. Enumeration keeps its cursor under the module's own mutex.
//
// The names file is <dir>/names, dir = $SUPERD_NSS_LEASES (secure_getenv, for tests) or
// /run/superd/dynamic-uid. Every user has a group of the same name and number, as systemd's
// dynamic users do; a shared-directory group (NameKind::group) is a group only, and wins a
// by-name group lookup over a user's own group of the same name.
#include <fcntl.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "uid_pool/lease_table.hpp"

namespace {

using superd::uid_pool::kNamesMagic;
using superd::uid_pool::NameKind;
using superd::uid_pool::NameRecord;
using Header = superd::uid_pool::FileHeader;

constexpr const char* kGecos = "superd dynamic user";
constexpr const char* kShell = "/usr/sbin/nologin";

void names_path(char* out, size_t len) {
  const char* dir = secure_getenv("SUPERD_NSS_LEASES");
  if (!dir || !*dir) dir = "/run/superd/dynamic-uid";
  std::snprintf(out, len, "%s/names", dir);
}

// The names file, opened once and kept: open and close are a third of a lookup's cost. Each
// use checks with fstat that the descriptor is still the file it opened and that the file is
// still linked: a program may close every descriptor (and reuse the number) and the file may be
// removed; either way the module opens it again. Lookups hold the mutex while they read, so no
// thread closes the descriptor under another.
std::mutex file_mutex;
struct Cached {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  char path[4096] = {};
} cached;

int names_fd() {
  char path[4096];
  names_path(path, sizeof path);
  struct stat st {};
  if (cached.fd >= 0 && std::strcmp(path, cached.path) == 0 && ::fstat(cached.fd, &st) == 0 &&
      st.st_dev == cached.dev && st.st_ino == cached.ino && st.st_nlink > 0)
    return cached.fd;
  // Ours but stale (unlinked, or the variable changed): close it; a number reused by the
  // program for another file is not ours to close.
  if (cached.fd >= 0 && ::fstat(cached.fd, &st) == 0 && st.st_dev == cached.dev && st.st_ino == cached.ino)
    ::close(cached.fd);
  cached.fd = -1;
  int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return -1;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return -1;
  }
  cached = {fd, st.st_dev, st.st_ino, {}};
  std::memcpy(cached.path, path, sizeof path);
  return fd;
}

// The names file and its header for one lookup; fd < 0 if missing, unreadable, short or not a
// names file.
struct File {
  std::lock_guard<std::mutex> lock{file_mutex};
  int fd = names_fd();
  Header h{};
  File() {
    if (fd >= 0 && (::pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h) ||
                    std::memcmp(h.magic, kNamesMagic, 8) != 0 || h.size == 0))
      fd = -1;
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  // Slot i copied consistently; false if free, torn beyond retries, or past the file's end.
  bool read(uint32_t i, NameRecord& out) const {
    if (fd < 0 || i >= h.size) return false;
    off_t off = static_cast<off_t>(sizeof(Header) + size_t(i) * sizeof(NameRecord));
    for (int attempt = 0; attempt < 64; ++attempt) {
      uint32_t before = 0, after = 0;
      if (::pread(fd, &before, sizeof before, off) != sizeof before) return false;
      if (before & 1) continue;  // being written
      if (::pread(fd, &out, sizeof out, off) != sizeof out) return false;
      if (::pread(fd, &after, sizeof after, off) != sizeof after) return false;
      if (before != after || out.seq != before) continue;
      out.name[sizeof out.name - 1] = '\0';
      return out.uid != 0 && out.uid == h.first + i && out.name[0] != '\0';
    }
    return false;
  }
  bool find_id(uint32_t id, NameRecord& out) const {
    return fd >= 0 && id >= h.first && id - h.first < h.size && read(id - h.first, out);
  }
  // By name: "superd-UID" is found by its number; any other name by a scan of the file, read in
  // large blocks, with each candidate then read again through the seqlock. `group`: a group
  // lookup, which prefers a group-only record; a passwd lookup sees users only.
  bool find_name(const char* name, bool group, NameRecord& out) const {
    if (fd < 0 || !name) return false;
    unsigned long n = 0;
    char tail = 0;
    if (std::sscanf(name, "superd-%lu%c", &n, &tail) == 1 && n <= UINT32_MAX)
      return find_id(static_cast<uint32_t>(n), out) && std::strcmp(out.name, name) == 0 &&
             (group || out.kind == NameKind::user);
    if (std::strlen(name) >= sizeof out.name) return false;
    constexpr uint32_t kBlock = 256;  // 12 KiB of stack
    NameRecord block[kBlock];
    bool found_user = false;
    NameRecord user{};
    for (uint32_t at = 0; at < h.size; at += kBlock) {
      uint32_t count = std::min(kBlock, h.size - at);
      off_t off = static_cast<off_t>(sizeof(Header) + size_t(at) * sizeof(NameRecord));
      ssize_t got = ::pread(fd, block, size_t(count) * sizeof(NameRecord), off);
      if (got <= 0) break;
      count = std::min<uint32_t>(count, static_cast<uint32_t>(size_t(got) / sizeof(NameRecord)));
      for (uint32_t i = 0; i < count; ++i) {
        if (block[i].uid == 0 || std::strncmp(block[i].name, name, sizeof block[i].name) != 0) continue;
        if (!read(at + i, out) || std::strcmp(out.name, name) != 0) continue;  // changed meanwhile
        if (out.kind == NameKind::group) {
          if (group) return true;
        } else if (!group) {
          return true;
        } else if (!found_user) {
          found_user = true;
          user = out;
        }
      }
    }
    if (found_user) out = user;
    return found_user;
  }
};

// Copies `s` into the caller's buffer; nullptr if it does not fit.
char* put(const char* s, char*& buf, size_t& left) {
  size_t n = std::strlen(s) + 1;
  if (n > left) return nullptr;
  std::memcpy(buf, s, n);
  char* at = buf;
  buf += n;
  left -= n;
  return at;
}

// What an entry is made of: a names-file record, or a capsule's UID.
struct Answer {
  char name[128] = {};
  uint32_t id = 0;
  char home[4096] = "/";
  void from(const NameRecord& r) {
    std::snprintf(name, sizeof name, "%s", r.name);
    id = r.uid;
    std::snprintf(home, sizeof home, "/");
  }
};

// The running capsules, "<dir>/capsules": one line each, "BLOCK NAME HOME", replaced whole by
// the daemon (rename), so it is read in one go. Block UID + 0 is "capsule-NAME" (its home the
// capsule's), + N is "capsule-NAME-N" (home /).
struct Capsules {
  static constexpr uint32_t kBlock = 65536;
  struct Line {
    uint32_t block = 0;
    char name[72] = {};  // at most capsule::kMaxName in practice
    char home[1024] = {};
  };
  std::string text;  // the whole file (at most 64 KiB)
  Capsules() {
    char path[4096];
    names_path(path, sizeof path);
    char* slash = std::strrchr(path, '/');
    std::snprintf(slash, sizeof path - static_cast<size_t>(slash - path), "/capsules");
    int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return;
    char buf[4096];
    ssize_t got;
    while (text.size() < (1u << 16) && (got = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, size_t(got));
    ::close(fd);
  }
  // Line i (0-based), if there is one.
  bool line(int i, Line& l) const {
    size_t at = 0;
    for (int k = 0; at < text.size(); ++k) {
      size_t end = text.find('\n', at);
      if (end == std::string::npos) end = text.size();
      std::string one = text.substr(at, end - at);
      at = end + 1;
      if (std::sscanf(one.c_str(), "%u %71s %1023s", &l.block, l.name, l.home) != 3) {
        --k;
        continue;
      }
      if (k == i) return true;
    }
    return false;
  }
  static void answer(const Line& l, uint32_t offset, Answer& a) {
    if (offset == 0)
      std::snprintf(a.name, sizeof a.name, "capsule-%s", l.name);
    else
      std::snprintf(a.name, sizeof a.name, "capsule-%s-%u", l.name, offset);
    a.id = l.block + offset;
    std::snprintf(a.home, sizeof a.home, "%s", offset == 0 ? l.home : "/");
  }
  bool by_id(uint32_t id, Answer& a) const {
    Line l;
    for (int i = 0; line(i, l); ++i)
      if (id >= l.block && id - l.block < kBlock) return answer(l, id - l.block, a), true;
    return false;
  }
  // "capsule-NAME" (an exact capsule name first), then "capsule-NAME-N".
  bool by_name(const char* name, Answer& a) const {
    if (std::strncmp(name, "capsule-", 8) != 0) return false;
    const char* rest = name + 8;
    Line l;
    for (int i = 0; line(i, l); ++i)
      if (std::strcmp(rest, l.name) == 0) return answer(l, 0, a), true;
    for (int i = 0; line(i, l); ++i) {
      size_t len = std::strlen(l.name);
      unsigned long k = 0;
      char tail = 0;
      if (std::strncmp(rest, l.name, len) == 0 && rest[len] == '-' &&
          std::sscanf(rest + len + 1, "%lu%c", &k, &tail) == 1 && k >= 1 && k < kBlock)
        return answer(l, static_cast<uint32_t>(k), a), true;
    }
    return false;
  }
};

nss_status fill_passwd(const Answer& r, passwd* pw, char* buf, size_t len, int* errnop) {
  char* name = put(r.name, buf, len);
  char* pass = put("x", buf, len);
  char* gecos = put(kGecos, buf, len);
  char* dir = put(r.home, buf, len);
  char* shell = put(kShell, buf, len);
  if (!name || !pass || !gecos || !dir || !shell) {
    *errnop = ERANGE;
    return NSS_STATUS_TRYAGAIN;
  }
  *pw = passwd{name, pass, r.id, r.id, gecos, dir, shell};
  return NSS_STATUS_SUCCESS;
}

nss_status fill_group(const Answer& r, group* gr, char* buf, size_t len, int* errnop) {
  // The member list: one null pointer, aligned.
  uintptr_t misalign = reinterpret_cast<uintptr_t>(buf) % alignof(char*);
  size_t skip = misalign ? alignof(char*) - misalign : 0;
  if (len < skip + sizeof(char*)) {
    *errnop = ERANGE;
    return NSS_STATUS_TRYAGAIN;
  }
  char** members = reinterpret_cast<char**>(buf + skip);
  members[0] = nullptr;
  buf += skip + sizeof(char*);
  len -= skip + sizeof(char*);
  char* name = put(r.name, buf, len);
  char* pass = put("x", buf, len);
  if (!name || !pass) {
    *errnop = ERANGE;
    return NSS_STATUS_TRYAGAIN;
  }
  *gr = group{name, pass, r.id, members};
  return NSS_STATUS_SUCCESS;
}

// Enumeration cursors (glibc serialises set/get/endpwent itself; the mutex makes it certain).
std::mutex cursor_mutex;
uint32_t pw_cursor = 0, gr_cursor = 0;

// `accept`: which records the enumeration lists. After the names file's slots come the
// capsules' roots (not every UID of every block).
template <typename Accept, typename Fill, typename Entry>
nss_status next_entry(uint32_t& cursor, Entry* e, char* buf, size_t len, int* errnop, Accept accept, Fill fill) {
  std::lock_guard<std::mutex> lock(cursor_mutex);
  uint32_t slots = 0;
  Answer a;
  {
    File f;
    NameRecord r{};
    slots = f.fd >= 0 ? f.h.size : 0;
    for (; cursor < slots; ++cursor) {
      if (!f.read(cursor, r) || !accept(r)) continue;
      a.from(r);
      break;
    }
  }
  if (cursor >= slots) {
    Capsules c;
    Capsules::Line l;
    if (!c.line(static_cast<int>(cursor - slots), l)) {
      *errnop = ENOENT;
      return NSS_STATUS_NOTFOUND;
    }
    Capsules::answer(l, 0, a);
  }
  nss_status st = fill(a, e, buf, len, errnop);
  if (st == NSS_STATUS_SUCCESS) ++cursor;  // on ERANGE the same entry is tried again
  return st;
}

// A by-key lookup: `find` picks the record from the names file, `capsule` from the capsules
// (asked only when the names file has no answer); `fill` writes the entry.
template <typename Find, typename Capsule, typename Fill, typename Entry>
nss_status lookup(Find find, Capsule capsule, Fill fill, Entry* e, char* buf, size_t len, int* errnop) {
  Answer a;
  bool found = false, in_range = false;
  {
    File f;
    NameRecord r{};
    found = find(f, r, in_range);
    if (found) a.from(r);
  }
  if (!found && !in_range) found = capsule(Capsules(), a);
  if (!found) {
    *errnop = ENOENT;
    return NSS_STATUS_NOTFOUND;
  }
  return fill(a, e, buf, len, errnop);
}

}  // namespace

extern "C" {

nss_status _nss_superd_getpwuid_r(uid_t uid, passwd* pw, char* buf, size_t len, int* errnop) {
  return lookup(
      [&](const File& f, NameRecord& r, bool& in) {
        in = f.fd >= 0 && uid >= f.h.first && uid - f.h.first < f.h.size;  // a capsule's UID never is
        return f.find_id(uid, r) && r.kind == NameKind::user;
      },
      [&](const Capsules& c, Answer& a) { return c.by_id(uid, a); }, fill_passwd, pw, buf, len, errnop);
}

nss_status _nss_superd_getpwnam_r(const char* name, passwd* pw, char* buf, size_t len, int* errnop) {
  return lookup([&](const File& f, NameRecord& r, bool&) { return f.find_name(name, false, r); },
                [&](const Capsules& c, Answer& a) { return c.by_name(name, a); }, fill_passwd, pw, buf, len, errnop);
}

nss_status _nss_superd_getgrgid_r(gid_t gid, group* gr, char* buf, size_t len, int* errnop) {
  return lookup(
      [&](const File& f, NameRecord& r, bool& in) {
        in = f.fd >= 0 && gid >= f.h.first && gid - f.h.first < f.h.size;
        return f.find_id(gid, r);
      },
      [&](const Capsules& c, Answer& a) { return c.by_id(gid, a); }, fill_group, gr, buf, len, errnop);
}

nss_status _nss_superd_getgrnam_r(const char* name, group* gr, char* buf, size_t len, int* errnop) {
  return lookup([&](const File& f, NameRecord& r, bool&) { return f.find_name(name, true, r); },
                [&](const Capsules& c, Answer& a) { return c.by_name(name, a); }, fill_group, gr, buf, len, errnop);
}

nss_status _nss_superd_setpwent(int) {
  std::lock_guard<std::mutex> lock(cursor_mutex);
  pw_cursor = 0;
  return NSS_STATUS_SUCCESS;
}
nss_status _nss_superd_endpwent() {
  return _nss_superd_setpwent(0);
}
nss_status _nss_superd_getpwent_r(passwd* pw, char* buf, size_t len, int* errnop) {
  return next_entry(
      pw_cursor, pw, buf, len, errnop, [](const NameRecord& r) { return r.kind == NameKind::user; }, fill_passwd);
}

nss_status _nss_superd_setgrent(int) {
  std::lock_guard<std::mutex> lock(cursor_mutex);
  gr_cursor = 0;
  return NSS_STATUS_SUCCESS;
}
nss_status _nss_superd_endgrent() {
  return _nss_superd_setgrent(0);
}
nss_status _nss_superd_getgrent_r(group* gr, char* buf, size_t len, int* errnop) {
  return next_entry(
      gr_cursor, gr, buf, len, errnop, [](const NameRecord&) { return true; }, fill_group);
}

}  // extern "C"
