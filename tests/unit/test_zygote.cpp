// spawn/zygote, end to end: its wire format lives inside zygote.cpp, so these tests start real
// zygotes for trivial /bin/sh services (sandbox roots in a scratch directory under /srv) and
// check what comes back: the answer to a request (the instance's PID and pidfd, in request
// order, running as the requested UID with the request's environment and serial), a failed
// step as its {step, errno} record, a set-up failure named by its step, and a zygote that is
// gone. Instances are cloned with CLONE_PARENT, so this process reaps them; every wait is
// bounded (the whole file takes well under a second). UIDs 89050-89059.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "spawn/plan.hpp"
#include "spawn/spawn.hpp"
#include "spawn/zygote.hpp"
#include "spawn/zygote_pool.hpp"
#include "util/unique_fd.hpp"

using namespace superd;
namespace fs = std::filesystem;

namespace {

constexpr int kWaitMs = 5000;

// One request and its answer (the zygote's socket blocking, as start() leaves it).
struct Answer {
  spawn::Child child;
  spawn::ChildError err;
  std::error_code ec;
  bool lost = false;
};
Answer round_trip(spawn::Zygote& z, const spawn::InstancePlan& ip) {
  Answer a;
  REQUIRE_FALSE(z.send(ip));
  a.child = z.receive(a.err, a.ec, a.lost);
  return a;
}

bool root() {
  if (::geteuid() == 0) return true;
  WARN("not root: a zygote needs to unshare and switch UIDs; skipped");
  return false;
}

// Scratch sandbox roots (/srv/ut-XXXXXX/{run,lib,cache,log}), removed at the end.
struct Scratch {
  superd::test::ScratchDir dir_{"ut"};
  fs::path root = dir_.path;
  sandbox::Roots roots;
  Scratch() {
    fs::permissions(root, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);  // instances look up paths in it
    for (const char* d : {"run", "lib", "cache", "log"}) fs::create_directories(root / d);
    roots = {(root / "run").string(), (root / "lib").string(), (root / "cache").string(), (root / "log").string()};
  }
};

// A dynamic-user service with the default sandbox (so it spawns through a zygote).
spawn::ServicePlan plan_for(const Scratch& s, const std::string& service_keys) {
  config::Problems p;
  auto svc =
      config::parse_service("[socket]\nlisten = [\"127.0.0.1:7001\"]\n[service]\n" + service_keys, "z.toml", "z", p);
  std::string problems;
  for (const auto& x : p.list()) problems += x.to_string() + "\n";
  INFO(problems);
  REQUIRE(svc);
  auto built = spawn::make_service_plan(*svc, s.roots, nullptr, {}, std::nullopt, true);
  REQUIRE(built);
  auto plan = std::move(*built);
  REQUIRE(plan.use_zygote);
  return plan;
}

// One connection's fds: ours, the instance's end, and a stderr pipe.
struct Conn {
  UniqueFd mine, theirs, err_r, err_w;
  Conn() {
    int sv[2], pp[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    mine.reset(sv[0]);
    theirs.reset(sv[1]);
    REQUIRE(::pipe2(pp, O_CLOEXEC) == 0);
    err_r.reset(pp[0]);
    err_w.reset(pp[1]);
  }
  // What the instance wrote until it closed the connection (bounded by kWaitMs).
  std::string read_all() {
    std::string out;
    char buf[256];
    for (;;) {
      pollfd pf{mine.get(), POLLIN, 0};
      if (::poll(&pf, 1, kWaitMs) != 1) break;
      ssize_t n = ::read(mine.get(), buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
};

spawn::InstancePlan instance(const spawn::ServicePlan& plan, Conn& c, uid_t uid, uint64_t serial) {
  spawn::Peer peer;
  peer.is_unix = true;
  peer.unix_pid = 4321;
  spawn::InstancePlan ip;
  spawn::make_instance_plan(ip, plan, peer, uid, serial);
  ip.conn_fd = c.theirs.get();
  ip.stderr_fd = c.err_w.get();
  return ip;
}

// Reaps an instance (ours through CLONE_PARENT); kills it, by its pidfd, if it overstays.
int reap(spawn::Child& child) {
  pollfd pf{child.pidfd.get(), POLLIN, 0};
  if (::poll(&pf, 1, kWaitMs) != 1) ::syscall(SYS_pidfd_send_signal, child.pidfd.get(), SIGKILL, nullptr, 0);
  int st = 0;
  REQUIRE(::waitpid(child.pid, &st, 0) == child.pid);
  return st;
}

// The PID a pidfd refers to, from its fdinfo.
pid_t pidfd_pid(int pidfd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(pidfd));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("Pid:", 0) == 0) return std::atoi(line.c_str() + 4);
  return -1;
}

// The real UID of a process (an exited instance stays a zombie until reaped: still readable).
long uid_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("Uid:", 0) == 0) return std::strtol(line.c_str() + 4, nullptr, 10);
  return -1;
}

}  // namespace

TEST_CASE("a zygote answers each request with its instance, in request order", "[zygote]") {
  if (!root()) return;
  Scratch s;
  auto plan = plan_for(s, "exec = [\"/bin/sh\", \"-c\", \"echo $(id -u) $(id -g) $USER $UNIXREMOTEPID %c\"]\n");
  spawn::SetupError failure;
  auto z = spawn::Zygote::start(plan, failure);
  INFO(failure.describe(plan));
  REQUIRE(z);
  CHECK(z->pid() > 0);

  // A round trip: send, then the answer.
  Conn c;
  auto ip = instance(plan, c, 89050, 17);
  auto [child, err, ec, lost] = round_trip(*z, ip);  // blocks: start() left the socket blocking
  REQUIRE_FALSE(ec);
  CHECK(err.step == spawn::Step::none);
  CHECK(err.err == 0);
  REQUIRE(child.pid > 0);
  REQUIRE(child.pidfd);
  CHECK((::fcntl(child.pidfd.get(), F_GETFD) & FD_CLOEXEC));
  CHECK(pidfd_pid(child.pidfd.get()) == child.pid);
  c.theirs.reset();  // the request carried copies: the instance holds the only other end now
  c.err_w.reset();
  CHECK(c.read_all() == "89050 89050 superd-89050 4321 17\n");
  int st = reap(child);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);

  // Two requests sent before either answer is read: answered in order.
  Conn c1, c2;
  auto ip1 = instance(plan, c1, 89051, 18), ip2 = instance(plan, c2, 89052, 19);
  REQUIRE_FALSE(z->send(ip1));
  REQUIRE_FALSE(z->send(ip2));
  c1.theirs.reset(), c1.err_w.reset(), c2.theirs.reset(), c2.err_w.reset();
  lost = true;
  spawn::Child first = z->receive(err, ec, lost);
  REQUIRE_FALSE(ec);
  CHECK_FALSE(lost);
  CHECK(err.step == spawn::Step::none);
  spawn::Child second = z->receive(err, ec, lost);
  REQUIRE_FALSE(ec);
  CHECK(err.step == spawn::Step::none);
  REQUIRE(first.pid > 0);
  REQUIRE(second.pid > 0);
  CHECK(c1.read_all() == "89051 89051 superd-89051 4321 18\n");
  CHECK(c2.read_all() == "89052 89052 superd-89052 4321 19\n");
  CHECK(uid_of(first.pid) == 89051);  // the first answer is the first request's instance
  CHECK(uid_of(second.pid) == 89052);
  CHECK(reap(first) == 0);
  CHECK(reap(second) == 0);
}

TEST_CASE("a step that fails in the instance comes back as its {step, errno} record", "[zygote]") {
  if (!root()) return;
  Scratch s;
  auto check_failure = [&](spawn::ServicePlan plan, spawn::Step step, int err_no) {
    spawn::SetupError failure;
    auto z = spawn::Zygote::start(plan, failure);
    INFO(failure.describe(plan));
    REQUIRE(z);
    Conn c;
    auto ip = instance(plan, c, 89053, 20);
    auto [child, err, ec, lost] = round_trip(*z, ip);
    REQUIRE_FALSE(ec);  // the clone worked: the failure is the child's
    CHECK(err.step == step);
    CHECK(err.err == err_no);
    CHECK(err.detail == -1);
    REQUIRE(child.pid > 0);  // exited, still to be reaped
    int st = reap(child);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 127);
  };
  auto missing_program = plan_for(s, "exec = [\"/bin/true\"]\n");
  missing_program.path = (s.root / "no-such-program").string();
  check_failure(std::move(missing_program), spawn::Step::exec, ENOENT);
  auto missing_dir =
      plan_for(s, "exec = [\"/bin/true\"]\nworking_directory = \"" + (s.root / "no-such-dir").string() + "\"\n");
  check_failure(std::move(missing_dir), spawn::Step::chdir, ENOENT);
}

TEST_CASE("a zygote whose set-up fails names the step; a zygote that is gone is reported lost", "[zygote]") {
  if (!root()) return;
  Scratch s;
  std::string missing = (s.root / "no-such-path").string();
  auto bad = plan_for(s, "exec = [\"/bin/true\"]\nread_only_paths = [\"" + missing + "\"]\n");
  spawn::SetupError failure;
  CHECK_FALSE(spawn::Zygote::start(bad, failure));
  // A fixed record, not text: the step, its errno, and which mount op.
  CHECK(failure.step == spawn::SetupStep::mounts);
  CHECK(failure.err == ENOENT);
  CHECK(failure.detail >= 0);
  CHECK(failure.describe(bad).find(missing) != std::string::npos);
  CHECK(failure.describe(bad).find(std::strerror(ENOENT)) != std::string::npos);

  // Launched without waiting (the connection path): the set-up record comes on the socket.
  failure = {};
  auto pending = spawn::Zygote::launch(bad, failure);
  REQUIRE(pending);
  CHECK(pending->setup_state() == spawn::Zygote::SetupState::pending);
  ::fcntl(pending->socket(), F_SETFL, ::fcntl(pending->socket(), F_GETFL) | O_NONBLOCK);
  pollfd ready{pending->socket(), POLLIN, 0};
  REQUIRE(::poll(&ready, 1, kWaitMs) == 1);
  auto late = pending->read_setup();
  REQUIRE(late);
  CHECK(late->step == spawn::SetupStep::mounts);
  CHECK(late->err == ENOENT);
  CHECK(pending->setup_state() == spawn::Zygote::SetupState::failed);

  auto plan = plan_for(s, "exec = [\"/bin/true\"]\n");
  failure = {};
  auto z = spawn::Zygote::start(plan, failure);
  INFO(failure.describe(plan));
  REQUIRE(z);
  REQUIRE(::kill(z->pid(), SIGKILL) == 0);  // ours: started just above
  pollfd pf{z->socket(), POLLIN, 0};
  REQUIRE(::poll(&pf, 1, kWaitMs) == 1);  // the peer's end closes with it
  CHECK((pf.revents & POLLHUP));
  Conn c;
  auto ip = instance(plan, c, 89054, 21);
  std::error_code ec = z->send(ip);
  CHECK(ec == std::error_code(EPIPE, std::generic_category()));
  spawn::ChildError err;
  bool lost = false;
  spawn::Child child = z->receive(err, ec, lost);
  CHECK(lost);
  CHECK(ec == std::make_error_code(std::errc::connection_reset));
  CHECK(child.pid == -1);
}

TEST_CASE("zygote pool: one zygote per CPU of the affinity mask, or as configured, uncapped at 4") {
  cpu_set_t set;
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  CHECK(superd::spawn::zygotes_for(0) == static_cast<size_t>(CPU_COUNT(&set)));
  CHECK(superd::spawn::zygotes_for(6) == 6);
  CHECK(superd::spawn::zygotes_for(1000) == superd::spawn::ZygotePool::kMaxZygotes);
  // Pinned to one CPU (as taskset -c 0 would): one zygote.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  REQUIRE(::sched_setaffinity(0, sizeof one, &one) == 0);
  CHECK(superd::spawn::zygotes_for(0) == 1);
  REQUIRE(::sched_setaffinity(0, sizeof set, &set) == 0);
}
