// Sockets passed by systemd (superd.socket, systemd-socket-activate): sd_listen_fds(3)'s
// protocol without libsystemd. LISTEN_PID must be this process; LISTEN_FDS sockets from fd 3,
// named by LISTEN_FDNAMES. Each is described by the address it is bound to, in the form a
// listen address is written (listener key), so the daemon adopts the one that matches a
// configured listener instead of binding its own; the variables are unset once read.
#pragma once

#include <string>
#include <vector>

namespace superd::listener {

struct Passed {
  int fd = -1;
  std::string name;     // its LISTEN_FDNAMES entry ("" if none)
  std::string address;  // "127.0.0.1:7001", "[::1]:7001", "*:7001" (dual stack), "/path", "@name"
  bool datagram = false;
  std::string describe() const;  // "fd 3 (web, udp 127.0.0.1:7001)"
};

// The passed sockets; `warnings` gets a line for what is ignored (a LISTEN_PID of another
// process, an fd that is not a listening stream or a datagram socket: closed).
std::vector<Passed> take_passed_sockets(std::vector<std::string>& warnings);

}  // namespace superd::listener
