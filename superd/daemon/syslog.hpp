// A service's /dev/log (log_syslog): many inetd programs (dropbear, vsftpd, cvs, login) say why
// they refuse only through syslog(3), so inside the sandbox /dev/log is a socket superd reads.
//
// One AF_UNIX datagram socket per Service, that is per configuration generation: a reload's new
// service gets its own, and a retired one keeps its own while its instances live (their
// namespaces hold its inode). It lives at <runtime_root>/superd/syslog/N, a root-only directory
// emptied at start (a killed superd's sockets are stale); the socket itself is 0666 so that a
// dynamic user can send, which it can only through the bind at /dev/log its mount plan makes
// (sandbox/mounts.hpp, step 14). The file goes with the Service.
//
// Who sent a message: SO_PASSCRED makes the kernel attach the sender's PID (in superd's PID
// namespace) and UID, which an instance cannot forge (no CAP_SETUID, no CAP_SYS_ADMIN). A dynamic
// user's UID is its instance's alone; a static user's instances share one, so there only the
// instance's main process is recognised, by PID, and other senders log serial "?".
//
// Bounds: a message is cut at syslog::kMaxText; at most Budget::kPerSecond lines a second per
// service, the rest counted in one line; the loop reads kBatch datagrams per wake-up. Passed fds
// never stay open (no room for them in the control buffer; any that arrive are closed).
#pragma once

#include <utility>  // first: Boost 1.74's Asio misses it under C++20

#include <array>
#include <boost/asio.hpp>
#include <string>
#include <system_error>

#include "daemon/syslog_message.hpp"
#include "util/unique_fd.hpp"

namespace superd::daemon {

struct SyslogSocket {
  static constexpr int kBatch = 32;         // datagrams per wake-up before yielding to the loop
  static constexpr int kDrainOnExit = 512;  // read when an instance ends (see Daemon::on_reaped)

  SyslogSocket(boost::asio::io_context& io, UniqueFd fd, std::string path);
  ~SyslogSocket();  // the socket closes and its file goes
  SyslogSocket(const SyslogSocket&) = delete;
  SyslogSocket& operator=(const SyslogSocket&) = delete;

  boost::asio::posix::stream_descriptor sd;
  std::string path;
  boost::asio::steady_timer resume;  // the next batch, when a wake-up's batch left datagrams queued
  boost::asio::steady_timer report;  // the budget window's end: log the dropped count
  syslog::Budget budget;
  std::array<char, 2 * syslog::kMaxText> buf;  // a longer datagram is truncated (MSG_TRUNC tells its size)
};

// A datagram socket bound at `path` (a stale file there is removed first): close-on-exec,
// non-blocking, SO_PASSCRED, mode 0666.
UniqueFd open_syslog_socket(const std::string& path, std::error_code& ec);

}  // namespace superd::daemon
