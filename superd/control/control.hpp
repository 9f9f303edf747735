// The control socket, <runtime_root>/superd/control (SOCK_SEQPACKET, 0600 root): how
// `superd run` reaches the running daemon, which alone owns the UID pool. One request per
// connection, a JSON message; `run` passes the caller's stdin/stdout/stderr with SCM_RIGHTS,
// so the transient service reads and writes the caller's pipeline directly. The daemon answers
// {"ok":true,"uid":U,"pid":P} when it started, then {"exit":{"signaled":B,"code":N}} when it
// ended; if the caller goes away first, the instance is killed.
#pragma once

#include <string>
#include <system_error>
#include <vector>

#include "util/fdpass.hpp"
#include "util/unique_fd.hpp"

namespace superd::control {

using fdpass::kMaxMessage;
using fdpass::recv_message;  // the framing lives in util/fdpass (the zygotes use it too)
using fdpass::send_message;

std::string socket_path(const std::string& runtime_root);

// Client side of `superd run`: returns the exit code to exit with (status, or 128+signal),
// or -1 with `error` set when the daemon could not be reached or refused.
int run_client(const std::string& runtime_root, const std::vector<std::string>& argv,
               const std::vector<std::string>& properties, const std::string& unit, std::string& error);

// One request, one answer (`superd status`, `superd reload`): the daemon's JSON answer, or
// empty with `error` set.
std::string request(const std::string& runtime_root, const std::string& json, std::string& error);
inline std::string status_client(const std::string& runtime_root, std::string& error) {
  return request(runtime_root, R"({"op":"status"})", error);
}

}  // namespace superd::control
