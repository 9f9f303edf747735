// cleanup/ipc through its Roots: fake /proc/sysvipc files in this kernel's format (header line
// included), a fake /dev/shm and a fake mqueue directory with files chowned to test UIDs, and
// real SysV objects given to a test UID with IPC_SET. Test UIDs are 89000-89099 only.
//
// Every test that removes SysV objects runs in a private IPC namespace (PrivateIpc below): an id
// read from a fake file can then name no object of the host, and the real objects created here
// die with the namespace whatever happens to the test.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "cleanup/ipc.hpp"
#include "util/unique_fd.hpp"

using namespace superd;
namespace fs = std::filesystem;

namespace {

// The header lines of this kernel's /proc/sysvipc files (Linux 6.18), copied verbatim.
const char kMsgHeader[] =
    "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      "
    "ctime";
const char kSemHeader[] = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime";
const char kShmHeader[] =
    "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      "
    "dtime      "
    "ctime                   rss                  swap";

struct Owners {
  unsigned uid, gid, cuid, cgid;
};

// Rows as the kernel prints them (ipc/msg.c, sem.c, shm.c sysvipc_*_proc_show).
std::string msg_row(int id, Owners o, unsigned lspid = 0, unsigned lrpid = 0) {
  char b[256];
  std::snprintf(b, sizeof b, "%10d %10d  %4o  %10lu %10lu %5u %5u %5u %5u %5u %5u %10llu %10llu %10llu", 0, id, 0600,
                0ul, 0ul, lspid, lrpid, o.uid, o.gid, o.cuid, o.cgid, 0ull, 0ull, 1796192940ull);
  return b;
}
std::string sem_row(int id, Owners o, unsigned nsems = 2) {
  char b[256];
  std::snprintf(b, sizeof b, "%10d %10d  %4o %10u %5u %5u %5u %5u %10llu %10llu", 0, id, 0600, nsems, o.uid, o.gid,
                o.cuid, o.cgid, 0ull, 1796192940ull);
  return b;
}
std::string shm_row(int id, Owners o, unsigned long size = 4096, unsigned cpid = 0, unsigned lpid = 0) {
  char b[320];
  std::snprintf(b, sizeof b, "%10d %10d  %4o %21lu %5u %5u  %5lu %5u %5u %5u %5u %10llu %10llu %10llu %21lu %21lu", 0,
                id, 0600, size, cpid, lpid, 0ul, o.uid, o.gid, o.cuid, o.cgid, 0ull, 0ull, 1796192940ull, 0ul, 0ul);
  return b;
}

// A scratch directory (/srv/ut-XXXXXX) with sysvipc/{msg,sem,shm}, shm/ and mqueue/ inside.
struct Scratch {
  superd::test::ScratchDir dir_{"ut"};
  fs::path root = dir_.path;
  ipc::Roots roots;
  Scratch() {
    for (const char* d : {"sysvipc", "shm", "mqueue"}) fs::create_directories(root / d);
    roots.sysvipc = (root / "sysvipc").string();
    roots.dev_shm = (root / "shm").string();
    roots.mqueue = (root / "mqueue").string();
    sysv({}, {}, {});
  }
  void sysv(const std::vector<std::string>& msg, const std::vector<std::string>& sem,
            const std::vector<std::string>& shm) {
    auto write = [&](const char* name, const char* header, const std::vector<std::string>& rows) {
      std::ofstream out(root / "sysvipc" / name, std::ios::trunc);
      out << header << "\n";
      for (const auto& r : rows) out << r << "\n";
    };
    write("msg", kMsgHeader, msg);
    write("sem", kSemHeader, sem);
    write("shm", kShmHeader, shm);
  }
  // A file in shm/ or mqueue/ owned by uid:gid.
  std::string file(const char* dir, const char* name, uid_t uid, gid_t gid) {
    std::string p = (root / dir / name).string();
    std::ofstream(p) << "x";
    REQUIRE(::chown(p.c_str(), uid, gid) == 0);
    return p;
  }
};

// This process in an IPC namespace of its own until the end of the scope.
struct PrivateIpc {
  UniqueFd host{::open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC)};
  PrivateIpc() {
    REQUIRE(host);
    REQUIRE(::unshare(CLONE_NEWIPC) == 0);
  }
  ~PrivateIpc() { (void)::setns(host.get(), CLONE_NEWIPC); }
};

bool root() {
  if (::geteuid() == 0) return true;
  WARN("not root: cannot chown files or create a private IPC namespace; skipped");
  return false;
}

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

using Found = std::vector<std::tuple<ipc::Kind, int, std::string, uint32_t, uint32_t>>;
Found found(std::vector<ipc::Object> objs) {
  Found out;
  for (const auto& o : objs) out.emplace_back(o.kind, o.id, o.name, o.owner, o.creator);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("the fake files' headers are this kernel's", "[ipc]") {
  // The parser finds columns by name; a fake with other names would test nothing.
  auto same = [](const char* file, const char* header) {
    std::string real = first_line(std::string("/proc/sysvipc/") + file);
    if (real != header) WARN("/proc/sysvipc/" << file << " header differs here: " << real);
    return real == header || real.empty();
  };
  CHECK(same("msg", kMsgHeader));
  CHECK(same("sem", kSemHeader));
  CHECK(same("shm", kShmHeader));
}

TEST_CASE("owned_in_range finds SysV objects by owner, group or creator, each column found by name", "[ipc]") {
  Scratch s;
  s.roots.dev_shm.clear();
  s.roots.mqueue.clear();
  s.sysv(
      {
          msg_row(5, {89001, 0, 0, 0}),                // owner in range, created by root
          msg_row(6, {1000, 1000, 1000, 1000}),        // none of ours
          msg_row(7, {0, 0, 89002, 0}, 89050, 89051),  // only the creator; PIDs are not owners
      },
      {
          sem_row(32769, {89099, 89099, 89099, 89099}),  // the range's upper end
          sem_row(32770, {89100, 89100, 89100, 89100}),  // just past it
          sem_row(32771, {0, 89003, 0, 0}, 89004),       // only the group; nsems is no owner
      },
      {
          shm_row(65536, {89000, 89000, 89000, 89000}),       // the lower end
          shm_row(65537, {0, 0, 0, 0}, 89010, 89011, 89012),  // size, cpid, lpid in range: not owners
          shm_row(65538, {89030, 89030, 0, 0}),               // handed over by root with IPC_SET
      });
  CHECK(found(ipc::owned_in_range(89000, 89099, s.roots)) == Found{
                                                                 {ipc::Kind::shm, 65536, "", 89000, 89000},
                                                                 {ipc::Kind::shm, 65538, "", 89030, 0},
                                                                 {ipc::Kind::sem, 32769, "", 89099, 89099},
                                                                 {ipc::Kind::sem, 32771, "", 89003, 0},
                                                                 {ipc::Kind::msg, 5, "", 89001, 0},
                                                                 {ipc::Kind::msg, 7, "", 89002, 89002},
                                                             });
  CHECK(ipc::owned_in_range(89040, 89049, s.roots).empty());
  // One entry per object, named by the first matching column (uid, gid, cuid, cgid).
  s.sysv({msg_row(9, {89005, 89006, 89007, 89008})}, {}, {});
  CHECK(found(ipc::owned_in_range(89006, 89008, s.roots)) == Found{{ipc::Kind::msg, 9, "", 89006, 89007}});
  // A missing or header-only file is no object.
  fs::remove(s.root / "sysvipc" / "msg");
  CHECK(ipc::owned_in_range(89000, 89099, s.roots).empty());
  CHECK(std::string(ipc::kind_name(ipc::Kind::posix_shm)) == "posix-shm");
  CHECK(std::string(ipc::kind_name(ipc::Kind::mqueue)) == "mqueue");
}

TEST_CASE("owned_in_range finds files in /dev/shm and the mqueue view by owner or group", "[ipc]") {
  if (!root()) return;
  Scratch s;
  s.file("shm", "by-owner", 89001, 89001);
  s.file("shm", "by-group", 0, 89005);
  s.file("shm", "roots", 0, 0);
  s.file("shm", "outside", 89200, 89200);
  s.file("mqueue", "q1", 89001, 0);
  s.file("mqueue", "q2", 89002, 89002);
  REQUIRE(::symlink("roots", (s.root / "shm" / "link").c_str()) == 0);
  REQUIRE(::lchown((s.root / "shm" / "link").c_str(), 89003, 89003) == 0);  // the link's own owner counts
  CHECK(found(ipc::owned_in_range(89000, 89099, s.roots)) == Found{
                                                                 {ipc::Kind::posix_shm, -1, "by-group", 89005, 89005},
                                                                 {ipc::Kind::posix_shm, -1, "by-owner", 89001, 89001},
                                                                 {ipc::Kind::posix_shm, -1, "link", 89003, 89003},
                                                                 {ipc::Kind::mqueue, -1, "q1", 89001, 89001},
                                                                 {ipc::Kind::mqueue, -1, "q2", 89002, 89002},
                                                             });
  // An empty root is skipped (every instance had a private /dev/shm); a missing one finds nothing.
  s.roots.dev_shm.clear();
  s.roots.mqueue = (s.root / "no-such-dir").string();
  CHECK(ipc::owned_in_range(89000, 89099, s.roots).empty());
}

TEST_CASE("remove_owned_by removes the given UIDs' files and keeps everyone else's", "[ipc]") {
  if (!root()) return;
  PrivateIpc ns;  // the fake SysV ids below name nothing here
  Scratch s;
  std::string a = s.file("shm", "a", 89001, 89001), b = s.file("shm", "b", 0, 89005), c = s.file("shm", "c", 0, 0),
              d = s.file("shm", "d", 89002, 89002), q = s.file("mqueue", "q", 89001, 0),
              r = s.file("mqueue", "r", 89002, 89002);
  // SysV objects of 89001 that do not exist (any more): gone counts as removed, no failure.
  s.sysv({msg_row(3, {89001, 89001, 89001, 89001})}, {sem_row(4, {0, 0, 89001, 0})}, {shm_row(5, {89005, 0, 0, 0})});

  CHECK(ipc::remove_owned_by({}, s.roots).empty());  // nothing asked, nothing touched
  CHECK(fs::exists(a));

  CHECK(ipc::remove_owned_by({89001, 89005}, s.roots).empty());
  CHECK_FALSE(fs::exists(a));
  CHECK_FALSE(fs::exists(b));  // by its group
  CHECK_FALSE(fs::exists(q));
  CHECK(fs::exists(c));
  CHECK(fs::exists(d));
  CHECK(fs::exists(r));
  CHECK(ipc::remove_owned_by({89001}, s.roots).empty());  // again: nothing left, nothing fails

  // What cannot be removed comes back as a failure record: a directory cannot be unlinked.
  fs::path dir = s.root / "shm" / "dir";
  fs::create_directory(dir);
  REQUIRE(::chown(dir.c_str(), 89002, 89002) == 0);
  auto failures = ipc::remove_owned_by({89002}, s.roots);
  REQUIRE(failures.size() == 1);
  CHECK(failures[0].owner == 89002);
  CHECK(failures[0].object.kind == ipc::Kind::posix_shm);
  CHECK(failures[0].object.name == "dir");
  CHECK(failures[0].err == EISDIR);
  CHECK_FALSE(fs::exists(d));  // the other objects of 89002 were still removed
  CHECK_FALSE(fs::exists(r));
  CHECK(fs::exists(dir));
  CHECK(fs::exists(c));
}

namespace {
// Real SysV objects in the private namespace; removed at the end whatever happens.
struct SysvObjects {
  int shm = -1, sem = -1, msg = -1, keep = -1;
  SysvObjects() {
    shm = ::shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    sem = ::semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    msg = ::msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    keep = ::msgget(IPC_PRIVATE, IPC_CREAT | 0600);  // stays root's
  }
  ~SysvObjects() {
    if (shm >= 0) ::shmctl(shm, IPC_RMID, nullptr);
    if (sem >= 0) ::semctl(sem, 0, IPC_RMID);
    if (msg >= 0) ::msgctl(msg, IPC_RMID, nullptr);
    if (keep >= 0) ::msgctl(keep, IPC_RMID, nullptr);
  }
};
// Hands an object to `uid` the way a service could: IPC_SET of the owner (the creator stays).
void give(const SysvObjects& o, uid_t uid) {
  shmid_ds sd{};
  REQUIRE(::shmctl(o.shm, IPC_STAT, &sd) == 0);
  sd.shm_perm.uid = uid;
  sd.shm_perm.gid = uid;
  REQUIRE(::shmctl(o.shm, IPC_SET, &sd) == 0);
  semid_ds md{};
  REQUIRE(::semctl(o.sem, 0, IPC_STAT, &md) == 0);
  md.sem_perm.uid = uid;
  md.sem_perm.gid = uid;
  REQUIRE(::semctl(o.sem, 0, IPC_SET, &md) == 0);
  msqid_ds qd{};
  REQUIRE(::msgctl(o.msg, IPC_STAT, &qd) == 0);
  qd.msg_perm.uid = uid;
  qd.msg_perm.gid = uid;
  REQUIRE(::msgctl(o.msg, IPC_SET, &qd) == 0);
}
}  // namespace

TEST_CASE("real SysV objects given to a UID are found and removed; root's stay", "[ipc]") {
  if (!root()) return;
  std::string host_ns = fs::read_symlink("/proc/self/ns/ipc");
  {
    PrivateIpc ns;
    CHECK(fs::read_symlink("/proc/self/ns/ipc") != host_ns);
    SysvObjects o;
    REQUIRE(o.shm >= 0);
    REQUIRE(o.sem >= 0);
    REQUIRE(o.msg >= 0);
    REQUIRE(o.keep >= 0);
    give(o, 89020);
    ipc::Roots roots{"/proc/sysvipc", "", ""};  // the real files (and the object-count shortcut)
    CHECK(found(ipc::owned_in_range(89000, 89099, roots)) ==
          Found{
              {ipc::Kind::shm, o.shm, "", 89020, 0},  // owner given away, creator root
              {ipc::Kind::sem, o.sem, "", 89020, 0},
              {ipc::Kind::msg, o.msg, "", 89020, 0},
          });
    CHECK(ipc::remove_owned_by({89021}, roots).empty());
    shmid_ds sd{};
    CHECK(::shmctl(o.shm, IPC_STAT, &sd) == 0);  // another UID's: untouched

    CHECK(ipc::remove_owned_by({89020}, roots).empty());
    CHECK(::shmctl(o.shm, IPC_STAT, &sd) == -1);
    CHECK(errno == EINVAL);
    semid_ds md{};
    CHECK(::semctl(o.sem, 0, IPC_STAT, &md) == -1);
    msqid_ds qd{};
    CHECK(::msgctl(o.msg, IPC_STAT, &qd) == -1);
    CHECK(::msgctl(o.keep, IPC_STAT, &qd) == 0);
    CHECK(ipc::owned_in_range(89000, 89099, roots).empty());
    // Removing what is already gone is success.
    CHECK(ipc::remove({ipc::Kind::shm, o.shm, {}, 89020, 0}, roots) == 0);
  }
  CHECK(fs::read_symlink("/proc/self/ns/ipc") == host_ns);  // back in the host's namespace
}
