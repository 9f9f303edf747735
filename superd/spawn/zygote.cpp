#include "spawn/zygote.hpp"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "sandbox/landlock.hpp"
#include "spawn/child.hpp"
#include "util/fdpass.hpp"

namespace superd::spawn {
namespace {

// The wire format between daemon and zygote: fixed headers, the environment as NUL-separated
// strings after the request header; fds by SCM_RIGHTS (connection, stderr; or stdin, stdout,
// stderr for a passthrough run).
struct Request {
  uint32_t uid, gid;
  uint64_t serial;
  uint32_t passthrough;
  uint32_t env_bytes;
  uint32_t n_idmap;  // idmapped trees after the stdio fds (state_directory_idmap)
};
struct Reply {
  int32_t pid;
  int32_t step;
  int32_t err;
  int32_t detail;
};

using detail::kMaxSlots;
using detail::kStackSize;

struct SetupReply {
  int32_t step;
  int32_t err;
  int32_t detail;
};

// Runs in the forked zygote process; never returns.
[[noreturn]] void zygote_main(int sock, pid_t daemon, const ServicePlan& plan) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != daemon) _exit(0);
  // Set-up failures travel as a fixed {step, errno, detail} record, as the instance's do.
  auto fail = [&](SetupStep step, int detail = -1) {
    SetupReply r{static_cast<int32_t>(step), errno, detail};
    (void)fdpass::send_message(sock, std::string(reinterpret_cast<char*>(&r), sizeof r));
    _exit(1);
  };
  // The daemon's signal handlers and mask do not apply here.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : kCaughtSignals) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Only the request socket (moved to fd 3) and stdio survive of the daemon's fds.
  if (sock != 3 && (::dup2(sock, 3) != 3)) _exit(1);
  sock = 3;
  ::syscall(SYS_close_range, 4, ~0U, 0);
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);

  if (::unshare(CLONE_NEWNS) != 0) fail(SetupStep::unshare_mount_ns);
  int slots[kMaxSlots];
  for (int& s : slots) s = -1;
  int failed = sandbox::apply(plan.mounts, slots, 0, sandbox::Which::per_service);
  if (failed >= 0) fail(SetupStep::mounts, failed);
  for (int& s : slots)
    if (s >= 0) ::close(s);
  if (plan.drop_bounding_set && !drop_bounding_set(plan)) fail(SetupStep::bounding_set);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(SetupStep::no_new_privs);
  // The zygote's own Landlock domain; each instance nests one more (child.cpp, step 11b).
  if (plan.landlock_scopes && sandbox::landlock::restrict_self(plan.landlock_scopes) != 0) fail(SetupStep::landlock);
  if (plan.filter && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, plan.filter->fprog()) != 0)
    fail(SetupStep::seccomp_base);
  if (plan.gate_filter && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, plan.gate_filter->fprog()) != 0)
    fail(SetupStep::seccomp_gate);
  SetupReply ok{static_cast<int32_t>(SetupStep::ok), 0, -1};
  (void)fdpass::send_message(sock, std::string(reinterpret_cast<char*>(&ok), sizeof ok));

  static char stack[kStackSize] alignas(64);
  int inst_slots[kMaxSlots];
  InstancePlan ip;
  for (;;) {
    std::string msg;
    std::vector<UniqueFd> fds;
    if (fdpass::recv_message(sock, msg, &fds, 3 + config::kMaxIdmapDirs)) _exit(0);  // the daemon is gone
    Reply reply{-1, 0, 0, -1};
    Request req{};
    if (msg.size() < sizeof req) _exit(1);
    std::memcpy(&req, msg.data(), sizeof req);
    ip.service = &plan;
    ip.uid = req.uid;
    ip.gid = req.gid;
    ip.passthrough = req.passthrough != 0;
    ip.null_fd = null_fd;
    ip.env_storage.clear();
    const char* e = msg.data() + sizeof req;
    const char* end = e + std::min<size_t>(req.env_bytes, msg.size() - sizeof req);
    while (e < end) {
      size_t n = ::strnlen(e, static_cast<size_t>(end - e));
      ip.env_storage.emplace_back(e, n);
      e += n + 1;
    }
    finish_arrays(ip, plan, req.serial);
    // The idmapped trees come last; the stdio fds before them.
    const size_t n_idmap = std::min<size_t>(req.n_idmap, config::kMaxIdmapDirs);
    const size_t n_stdio = fds.size() >= n_idmap ? fds.size() - n_idmap : 0;
    ip.n_idmap_fds = static_cast<unsigned>(n_idmap);
    for (size_t i = 0; i < n_idmap && n_stdio + i < fds.size(); ++i) ip.idmap_fds[i] = fds[n_stdio + i].get();
    bool slots_ok = true;
    for (int i = 0; i < plan.mounts.slots && i < kMaxSlots; ++i) inst_slots[i] = -1;
    if (n_stdio + n_idmap != fds.size() || !detail::fill_idmap_slots(ip, inst_slots)) slots_ok = false;
    if (!slots_ok) {
      reply.step = static_cast<int32_t>(Step::mounts);
      reply.err = EBADF;
      (void)fdpass::send_message(sock, std::string(reinterpret_cast<char*>(&reply), sizeof reply));
      continue;
    }
    if (ip.passthrough && n_stdio == 3) {
      ip.stdin_fd = fds[0].get(), ip.stdout_fd = fds[1].get(), ip.stderr_fd = fds[2].get();
    } else if (!ip.passthrough && n_stdio == 2) {
      ip.conn_fd = fds[0].get(), ip.stderr_fd = fds[1].get();
    } else {
      reply.step = static_cast<int32_t>(Step::stdio);
      reply.err = EBADF;
      (void)fdpass::send_message(sock, std::string(reinterpret_cast<char*>(&reply), sizeof reply));
      continue;
    }
    ChildError cerr;
    detail::ChildArgs args{&ip, &cerr, nullptr, 0, inst_slots, true};
    int pidfd = -1;
    // Exactly the flags the gate filter lets through (see sandbox/seccomp.hpp, zygote_gate).
    int flags = plan.zygote_clone_flags;
    pid_t pid = ::clone(detail::child_main, stack + kStackSize, flags, &args, &pidfd);
    if (pid < 0) {
      reply.step = -1;
      reply.err = errno;
    } else {
      reply.pid = pid;
      reply.step = static_cast<int32_t>(cerr.step);
      reply.err = cerr.err;
      reply.detail = cerr.detail;
    }
    std::vector<int> out;
    if (pidfd >= 0) out.push_back(pidfd);
    (void)fdpass::send_message(sock, std::string(reinterpret_cast<char*>(&reply), sizeof reply), out);
    if (pidfd >= 0) ::close(pidfd);
  }
}

}  // namespace

const char* setup_step_name(SetupStep s) noexcept {
  switch (s) {
    case SetupStep::ok:
      return "ok";
    case SetupStep::socketpair:
      return "socketpair";
    case SetupStep::fork:
      return "fork";
    case SetupStep::unshare_mount_ns:
      return "unshare(CLONE_NEWNS)";
    case SetupStep::mounts:
      return "mounts";
    case SetupStep::bounding_set:
      return "PR_CAPBSET_DROP";
    case SetupStep::no_new_privs:
      return "no_new_privs";
    case SetupStep::landlock:
      return "landlock_restrict_self";
    case SetupStep::seccomp_base:
      return "seccomp (base)";
    case SetupStep::seccomp_gate:
      return "seccomp (gate)";
    case SetupStep::died:
      return "set-up";
  }
  return "?";
}

std::string SetupError::describe(const ServicePlan& plan) const {
  if (step == SetupStep::died)
    return "the zygote died during set-up: " + std::error_code(err, std::generic_category()).message();
  std::string what =
      step == SetupStep::mounts ? plan.mounts.describe(static_cast<size_t>(detail)) : setup_step_name(step);
  return what + ": " + std::strerror(err);
}

std::unique_ptr<Zygote> Zygote::launch(const ServicePlan& plan, SetupError& error) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    error = {SetupStep::socketpair, errno, -1};
    return nullptr;
  }
  UniqueFd mine(sv[0]), theirs(sv[1]);
  pid_t daemon = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    error = {SetupStep::fork, errno, -1};
    return nullptr;
  }
  if (pid == 0) {
    mine.reset();
    zygote_main(theirs.release(), daemon, plan);
  }
  theirs.reset();
  return std::unique_ptr<Zygote>(new Zygote(pid, std::move(mine)));
}

std::optional<SetupError> Zygote::read_setup() noexcept {
  std::string msg;
  if (auto ec = fdpass::recv_message(sock_.get(), msg)) {
    if (ec == std::errc::resource_unavailable_try_again || ec == std::errc::operation_would_block) return std::nullopt;
    setup_ = SetupState::failed;
    return SetupError{SetupStep::died, ec.value(), -1};
  }
  SetupReply r{};
  if (msg.size() != sizeof r) {
    setup_ = SetupState::failed;
    return SetupError{SetupStep::died, EPROTO, -1};
  }
  std::memcpy(&r, msg.data(), sizeof r);
  if (r.step != static_cast<int32_t>(SetupStep::ok)) {
    setup_ = SetupState::failed;
    return SetupError{static_cast<SetupStep>(r.step), r.err, r.detail};
  }
  setup_ = SetupState::ready;
  return std::nullopt;
}

std::unique_ptr<Zygote> Zygote::start(const ServicePlan& plan, SetupError& error) {
  auto z = launch(plan, error);
  if (!z) return nullptr;
  if (auto e = z->read_setup()) {
    error = *e;
    return nullptr;
  }
  return z;
}

Zygote::~Zygote() {
  sock_.reset();  // the zygote reads EOF and exits; make sure of it
  ::kill(pid_, SIGKILL);
  int st;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
}

std::error_code Zygote::send(const InstancePlan& plan) noexcept {
  try {
    Request req{plan.uid, plan.gid, 0, plan.passthrough ? 1u : 0u, 0, plan.n_idmap_fds};
    std::string msg(sizeof req, '\0');
    for (const std::string& e : plan.env_storage) msg.append(e).push_back('\0');
    req.env_bytes = static_cast<uint32_t>(msg.size() - sizeof req);
    req.serial = plan.serial;
    std::memcpy(msg.data(), &req, sizeof req);
    std::vector<int> fds = plan.passthrough ? std::vector<int>{plan.stdin_fd, plan.stdout_fd, plan.stderr_fd}
                                            : std::vector<int>{plan.conn_fd, plan.stderr_fd};
    for (unsigned i = 0; i < plan.n_idmap_fds; ++i) fds.push_back(plan.idmap_fds[i]);
    return fdpass::send_message(sock_.get(), msg, fds);
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

Child Zygote::receive(ChildError& err, std::error_code& ec, bool& lost) noexcept {
  Child c;
  err = {};
  lost = true;
  try {
    std::string answer;
    std::vector<UniqueFd> got;
    if ((ec = fdpass::recv_message(sock_.get(), answer, &got, 1))) return c;
    Reply r{};
    if (answer.size() != sizeof r) {
      ec = std::make_error_code(std::errc::protocol_error);
      return c;
    }
    lost = false;
    std::memcpy(&r, answer.data(), sizeof r);
    if (r.pid < 0) {
      ec = {r.err, std::generic_category()};
      return c;
    }
    c.pid = r.pid;
    if (!got.empty()) c.pidfd = std::move(got[0]);
    err.step = static_cast<Step>(r.step);
    err.err = r.err;
    err.detail = r.detail;
  } catch (...) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return c;
}

}  // namespace superd::spawn
