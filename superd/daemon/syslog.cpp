// The services' /dev/log sockets (daemon/syslog.hpp): created when a service is built, read in the
// loop, each message logged through the service's sink as its instance's stderr lines are.
#include "daemon/syslog.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "daemon/hub.hpp"
#include "util/log.hpp"

namespace superd::daemon {

SyslogSocket::SyslogSocket(boost::asio::io_context& io, UniqueFd fd, std::string p)
    : sd(io, fd.release()), path(std::move(p)), resume(io), report(io) {}

SyslogSocket::~SyslogSocket() {
  boost::system::error_code ignored;
  sd.close(ignored);
  ::unlink(path.c_str());
}

UniqueFd open_syslog_socket(const std::string& path, std::error_code& ec) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    ec = std::make_error_code(std::errc::filename_too_long);
    return {};
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  int on = 1;
  ::unlink(path.c_str());
  if (!fd || ::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0 ||
      ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0 || ::chmod(path.c_str(), 0666) != 0) {
    ec = std::error_code(errno, std::generic_category());
    if (fd) ::unlink(path.c_str());
    return {};
  }
  return fd;
}

// Before the plan is built, which binds the path at /dev/log: "" when log_syslog cannot apply
// (an in-loop service, sandbox = false).
std::string Daemon::syslog_path(const config::Service& sc) {
  const auto& sb = sc.service.sandbox;
  if (sc.service.exec.empty() || !sb.enabled || !sb.log_syslog) return {};
  if (handed_)  // an upgrade: the socket the old image's instances of this service bind
    for (const auto& h : handed_->syslogs)
      if (h.service == sc.name && h.fd >= 0) return h.path;
  return fmt::format("{}/{}", syslog_dir_, ++syslog_sockets_);
}

// After the plan: the socket, if the plan binds it somewhere (a service without a mount namespace
// keeps the host's /dev/log; a host /dev without one gets none, said once here).
void Daemon::open_syslog(Service& s, const std::string& path) {
  switch (s.plan.mounts.dev_log) {
    case sandbox::DevLog::none:
      return;
    case sandbox::DevLog::no_host_dev_log:
      log::warning(
          "service {}: log_syslog needs private_devices = true or a /dev/log on the host; its syslog messages "
          "are not read",
          s.cfg->name);
      return;
    case sandbox::DevLog::private_dev:
    case sandbox::DevLog::host:
      break;
  }
  std::error_code ec;
  UniqueFd fd;
  if (handed_)
    for (auto& h : handed_->syslogs)
      if (h.path == path && h.fd >= 0 && ::fcntl(h.fd, F_SETFD, FD_CLOEXEC) == 0) fd.reset(std::exchange(h.fd, -1));
  if (!fd) fd = open_syslog_socket(path, ec);
  if (!fd) {
    log::warning("service {}: cannot create its syslog socket {}: {}; its /dev/log is not read", s.cfg->name, path,
                 ec.message());
    return;
  }
  s.syslog = std::make_unique<SyslogSocket>(io_, std::move(fd), path);
  wait_syslog(s);
}

// The handlers run with operation_aborted once the socket (and `s` with it) is gone.
void Daemon::wait_syslog(Service& s) {
  s.syslog->sd.async_wait(asio::posix::descriptor_base::wait_read, [this, sp = &s](boost::system::error_code ec) {
    if (!ec) on_syslog_readable(*sp);
  });
}

void Daemon::on_syslog_readable(Service& s) {
  if (!read_syslog(s, SyslogSocket::kBatch)) return wait_syslog(s);
  // A full batch: the rest after the loop's other work. Not another wait: the descriptor's is
  // edge-triggered, and would not fire for what is queued already.
  s.syslog->resume.expires_after(std::chrono::seconds(0));
  s.syslog->resume.async_wait([this, sp = &s](boost::system::error_code ec) {
    if (!ec) on_syslog_readable(*sp);
  });
}

// Reads up to `max` datagrams; true if all `max` came (more may be queued).
bool Daemon::read_syslog(Service& s, int max) {
  SyslogSocket& sl = *s.syslog;
  for (int i = 0; i < max; ++i) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
    iovec iov{sl.buf.data(), sl.buf.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sl.sd.native_handle(), &mh, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        log::warning("service {}: reading its syslog socket: {}", s.cfg->name, log::errno_text(errno));
      return false;
    }
    std::optional<ucred> cred;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
        ucred u;
        std::memcpy(&u, CMSG_DATA(c), sizeof u);
        cred = u;
      } else if (c->cmsg_type == SCM_RIGHTS) {  // not ours to keep
        for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++k) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
          ::close(fd);
        }
      }
    }
    syslog::Budget::Verdict v = sl.budget.take(Clock::now());
    if (v.report) s.log_syslog_dropped(v.report);
    if (v.first_drop) {
      sl.report.expires_at(sl.budget.window_end());
      sl.report.async_wait([sp = &s](boost::system::error_code ec) {
        if (ec) return;
        if (uint64_t dropped = sp->syslog->budget.take_dropped()) sp->log_syslog_dropped(dropped);
      });
    }
    if (!v.log) continue;
    size_t got = std::min(static_cast<size_t>(n), sl.buf.size());
    syslog::Message m = syslog::parse({sl.buf.data(), got}, static_cast<size_t>(n));
    s.log_syslog(cred ? syslog_sender(s, *cred) : std::nullopt, cred ? std::optional(cred->uid) : std::nullopt, m);
  }
  return true;
}

// The serial of the instance a message came from: by UID for a dynamic user (unique to its
// instance), by the main process's PID for a static one (see syslog.hpp). An instance can run,
// and log, before its zygote's answer is read: then its UID is still a request in flight.
// O(live instances), for logged lines only.
std::optional<uint64_t> Daemon::syslog_sender(const Service& s, const ucred& c) const {
  const bool dynamic = s.cfg->service.dynamic_user;
  for (const auto& [pid, inst] : instances_)
    if (inst->service == &s && (inst->pid == c.pid || (dynamic && inst->uid == c.uid))) return inst->serial;
  if (const spawn::Pending* p = dynamic && s.zygotes ? s.zygotes->pending_for(c.uid) : nullptr) return p->serial;
  return std::nullopt;
}

}  // namespace superd::daemon
