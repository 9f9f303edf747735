// Issue 9's pure parts: the instance tmpfs plan (one tmpfs, one budget, bound onto each place),
// the hidden runtime directory, the pool's blocked summary, the lease table's names file, the
// cgroup v2 detection from fake /proc files, and the config keys for the bounds.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "sandbox/cgroup.hpp"
#include "sandbox/mounts.hpp"
#include "uid_pool/lease_table.hpp"
#include "uid_pool/pool.hpp"

using namespace superd;
namespace fs = std::filesystem;

namespace {
// "tmpfs /tmp", "bind /tmp/.1 /var/tmp", ... for the per-instance operations, in order.
std::vector<std::string> per_instance_ops(const sandbox::MountPlan& p) {
  std::vector<std::string> out;
  for (size_t i = 0; i < p.ops.size(); ++i)
    if (p.ops[i].per_instance) out.push_back(p.describe(i));
  return out;
}

struct ScratchDir : superd::test::ScratchDir {
  ScratchDir() : superd::test::ScratchDir("superd-unit") {}
};
}  // namespace

TEST_CASE("private /tmp, /var/tmp, /dev/shm and runtime directories share one tmpfs", "[bounds]") {
  config::SandboxConfig sb;
  sb.private_tmp_size = 1 << 20;
  sb.runtime.names = {"svc"};
  sandbox::Roots roots{"/run", "/var/lib", "/var/cache", "/var/log"};
  auto plan = sandbox::build(sb, roots);
  CHECK(per_instance_ops(plan) == std::vector<std::string>{
                                      "proc /proc",
                                      "tmpfs /tmp",
                                      "mkdir /tmp/.0",
                                      "mkdir /tmp/.1",
                                      "mkdir /tmp/.2",
                                      "mkdir /tmp/.3",
                                      "chown /tmp/.3",
                                      "bind /tmp/.3 /run/svc",
                                      "bind /tmp/.2 /dev/shm",
                                      "bind /tmp/.1 /var/tmp",
                                      "bind /tmp/.0 /tmp",
                                  });
  size_t tmpfs = 0;
  for (const auto& o : plan.ops)
    if (o.per_instance && o.op == sandbox::Op::tmpfs) {
      ++tmpfs;
      CHECK(std::string(o.source).find("size=1048576") != std::string::npos);
    }
  CHECK(tmpfs == 1);
  for (const auto& o : plan.ops)
    if (o.op == sandbox::Op::mkdir && o.per_instance && std::string(o.path) != "/tmp/.3") CHECK(o.mode == 01777);
}

TEST_CASE("one private place is a plain tmpfs with the budget; none, no tmpfs", "[bounds]") {
  sandbox::Roots roots{"/run", "/var/lib", "/var/cache", "/var/log"};
  config::SandboxConfig only_shm;
  only_shm.private_tmp = false;
  only_shm.private_ipc = true;
  auto ops = per_instance_ops(sandbox::build(only_shm, roots));
  CHECK(std::count(ops.begin(), ops.end(), "tmpfs /dev/shm") == 1);
  CHECK(std::count_if(ops.begin(), ops.end(), [](const std::string& s) { return s.rfind("bind", 0) == 0; }) == 0);
  config::SandboxConfig none;
  none.private_tmp = false;
  ops = per_instance_ops(sandbox::build(none, roots));
  CHECK(std::count_if(ops.begin(), ops.end(), [](const std::string& s) { return s.rfind("tmpfs", 0) == 0; }) == 0);
}

TEST_CASE("superd's runtime directory is covered inside the sandbox", "[bounds]") {
  config::SandboxConfig sb;
  sandbox::Roots roots{"/srv/r/run", "/var/lib", "/var/cache", "/var/log"};
  auto plan = sandbox::build(sb, roots);
  bool hidden = false;
  for (size_t i = 0; i < plan.ops.size(); ++i)
    if (plan.describe(i) == "tmpfs /srv/r/run/superd") {
      hidden = true;
      CHECK(std::string(plan.ops[i].source).rfind("mode=0000", 0) == 0);
      CHECK_FALSE(plan.ops[i].per_instance);
    }
  CHECK(hidden);
}

TEST_CASE("the pool's blocked summary counts what blocks the UIDs that are not held", "[bounds]") {
  uid_pool::Pool p(100, 109);
  REQUIRE(p.lease_exact(100));
  p.block(100, uid_pool::kForeignIpc);  // held: not counted
  p.block(101, uid_pool::kForeignIpc);
  p.block(102, uid_pool::kQuarantined);
  p.block(102, uid_pool::kForeignProcess);
  p.block(103, uid_pool::kOrphan);
  auto b = p.blocked_summary(2);
  CHECK(b.unavailable == 3);
  CHECK(b.by_reason[2] == 1);  // foreign-ipc
  CHECK(b.by_reason[3] == 1);  // quarantined
  CHECK(b.by_reason[1] == 1);  // foreign-process
  CHECK(b.by_reason[4] == 1);  // orphan-unswept
  REQUIRE(b.sample.size() == 2);
  CHECK(b.sample[0] == std::make_pair(101u, static_cast<uint8_t>(uid_pool::kForeignIpc)));
  CHECK(std::string(uid_pool::block_name(4)) == "orphan-unswept");
  p.unblock(103, uid_pool::kOrphan);
  CHECK(p.lease_exact(103));
}

TEST_CASE("the lease table is 0600 and allocated; the names file holds only UIDs and names", "[bounds]") {
  ScratchDir d;
  fs::create_directories(d.path / "superd" / "dynamic-uid");
  std::error_code ec;
  auto t = uid_pool::LeaseTable::open((d.path / "superd" / "dynamic-uid").string(), 5000, 5999, ec);
  REQUIRE_FALSE(ec);
  struct stat st {};
  REQUIRE(::stat((d.path / "superd" / "dynamic-uid" / "leases").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_blocks * 512 >= st.st_size);  // every block allocated: no sparse page to fault on
  t.record(5003, 42, 7, 0, "secretservice");
  t.record(5004, 43, 8, 0, "group:web", "web");
  std::string names_path = uid_pool::names_path_for((d.path / "superd" / "dynamic-uid").string());
  CHECK(names_path == (d.path / "superd" / "dynamic-uid" / "names").string());
  REQUIRE(::stat(names_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
  std::ifstream in(names_path, std::ios::binary);
  std::string blob((std::istreambuf_iterator<char>(in)), {});
  CHECK(blob.find("superd-5003") != std::string::npos);
  CHECK(blob.find("web") != std::string::npos);
  CHECK(blob.find("secretservice") == std::string::npos);
  // Slot of 5003: after the 64-byte header, 48 bytes a UID; seq even (complete), uid set.
  uid_pool::NameRecord r{};
  std::memcpy(&r, blob.data() + 64 + 3 * sizeof r, sizeof r);
  CHECK(r.uid == 5003);
  CHECK(r.seq % 2 == 0);
  CHECK(r.seq > 0);
  t.clear(5003);
  std::ifstream again(names_path, std::ios::binary);
  blob.assign((std::istreambuf_iterator<char>(again)), {});
  std::memcpy(&r, blob.data() + 64 + 3 * sizeof r, sizeof r);
  CHECK(r.uid == 0);
  CHECK(r.seq % 2 == 0);
}

TEST_CASE("cgroup v2 support is read from mountinfo, the process's cgroup and its controllers", "[bounds]") {
  ScratchDir d;
  auto write = [](const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  };
  fs::path cg = d.path / "cg";
  write(d.path / "proc" / "mountinfo",
        "22 1 0:21 / /proc rw - proc proc rw\n41 31 0:38 / " + cg.string() + " rw,relatime - cgroup2 cgroup2 rw\n");
  write(d.path / "proc" / "cgroup", "4:memory:/x\n0::/svc\n");
  write(cg / "svc" / "cgroup.controllers", "hugetlb\n");
  auto s = sandbox::cgroup::detect((d.path / "proc").string());
  CHECK_FALSE(s.usable);
  CHECK(s.mount == cg.string());
  CHECK(s.own == "/svc");
  CHECK(s.why.find("[hugetlb], without memory and pids") != std::string::npos);
  write(cg / "svc" / "cgroup.controllers", "cpu memory pids\n");
  CHECK(sandbox::cgroup::detect((d.path / "proc").string()).usable);
  write(cg / "svc" / "cgroup.controllers", "cpu memory\n");
  CHECK(sandbox::cgroup::detect((d.path / "proc").string()).why.find("without pids") != std::string::npos);
  write(d.path / "proc" / "mountinfo", "22 1 0:21 / /proc rw - proc proc rw\n");
  CHECK(sandbox::cgroup::detect((d.path / "proc").string()).why == "no cgroup2 filesystem is mounted");
}

TEST_CASE("private_tmp_size and the cgroup keys parse, and bad values name the key", "[bounds]") {
  config::Problems p;
  auto svc = config::parse_service(R"([socket]
listen = ["127.0.0.1:7001"]
[service]
exec = ["/bin/true"]
private_tmp_size = "8M"
memory_max = "512M"
tasks_max = 64
cpu_weight = 50
)",
                                   "ok.toml", "ok", p);
  REQUIRE(p.empty());
  REQUIRE(svc);
  CHECK(svc->service.sandbox.private_tmp_size == 8u << 20);
  CHECK(*svc->service.memory_max == 512u << 20);
  CHECK(*svc->service.tasks_max == 64);
  CHECK(*svc->service.cpu_weight == 50);
  config::Problems q;
  config::parse_service(R"([socket]
listen = ["127.0.0.1:7001"]
[service]
exec = ["/bin/true"]
private_tmp_size = "1K"
cpu_weight = 0
)",
                        "bad.toml", "bad", q);
  std::string all;
  for (const auto& x : q.list()) all += x.to_string() + "\n";
  CHECK(all.find("bad.toml:5:20: service.private_tmp_size") != std::string::npos);
  CHECK(all.find("bad.toml:6:14: service.cpu_weight") != std::string::npos);
  config::SandboxConfig defaults;
  CHECK(defaults.private_tmp_size == 64u << 20);
}
