#include "daemon/handover.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

// A per-source key travels as CBOR binary, its bytes as they are (found by ADL from the macros).
namespace superd::util::net {
void to_json(nlohmann::json& j, const SourceKey& k) {
  j = nlohmann::json::binary_t(std::vector<uint8_t>(k.bytes.begin(), k.bytes.end()));
}
void from_json(const nlohmann::json& j, SourceKey& k) {
  const auto& b = j.get_binary();
  if (b.size() == k.bytes.size()) std::copy(b.begin(), b.end(), k.bytes.begin());
}
}  // namespace superd::util::net

namespace superd::daemon::handover {

using nlohmann::json;

// Each record's fields are named once, here: encode and decode both follow these lists. A field
// an older image of the same format does not send takes its default (as a counter added later
// does); the fields without which nothing can go on are checked in decode.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Listener, fd, key, service)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Lease, uid, user, kind)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Instance, service, pid, pidfd, err, serial, uid, leased, peer, source,
                                                started_ns, deadline_ns, term_sent, err_line, retired)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Counters, service, accepted, refused, failed, ended_ok, ended_error,
                                                ended_signal, zygote_restarts, since_ns, proxy_local)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Capsule, name, home, block, pid, pidfd, out, alive, ready_seen,
                                                started_ns)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Syslog, service, path, fd)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(State, format, version, argv, exe_fd, table_fd, control_fd,
                                                control_pending, reply_fd, requested_ns, paused_ns, uid_min, uid_max,
                                                runtime_root, serial, listeners, leases, instances, counters, capsules,
                                                syslogs, zygotes, started_units, stopped_units, wait_running, rollback)

std::string encode(const State& s) {
  // CBOR carries the source keys' bytes as they are; the memfd holds binary, not text.
  auto bytes = json::to_cbor(json(s));
  return std::string(bytes.begin(), bytes.end());
}

std::optional<State> decode(const std::string& text, std::string& error) {
  json j = json::from_cbor(text, true, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "the hand-over state is not a CBOR object";
    return std::nullopt;
  }
  if (!j.contains("format") || !j["format"].is_number_integer() || j["format"].get<int>() != kFormat) {
    error = "the hand-over state has format " + (j.contains("format") ? j["format"].dump() : std::string("(none)")) +
            "; this superd takes format " + std::to_string(kFormat);
    return std::nullopt;
  }
  for (const char* key : {"version", "argv", "exe_fd", "table_fd", "control_fd", "uid_min", "uid_max", "runtime_root"})
    if (!j.contains(key)) {
      error = std::string("the hand-over state is incomplete: no ") + key;
      return std::nullopt;
    }
  try {
    State s = j.get<State>();
    s.listener_count = s.listeners.size();
    return s;
  } catch (const json::exception& e) {
    error = std::string("the hand-over state is incomplete: ") + e.what();
    return std::nullopt;
  }
}

UniqueFd write(const State& s, std::error_code& ec) {
  std::string bytes = encode(s);
  UniqueFd fd(::memfd_create("superd-upgrade", MFD_ALLOW_SEALING));  // no MFD_CLOEXEC: it crosses the exec
  if (!fd) {
    ec = {errno, std::generic_category()};
    return {};
  }
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ec = {n < 0 ? errno : EIO, std::generic_category()};
      return {};
    }
    off += static_cast<size_t>(n);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    ec = {errno, std::generic_category()};
    return {};
  }
  return fd;
}

std::optional<State> read(int fd, std::string& error) {
  UniqueFd owned(fd);
  std::string text;
  char buf[65536];
  off_t at = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::string("cannot read the hand-over state: ") + std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    at += n;
  }
  return decode(text, error);
}

std::vector<int> fds_of(const State& s) {
  std::vector<int> fds = {s.exe_fd, s.table_fd, s.control_fd, s.reply_fd};
  fds.insert(fds.end(), s.control_pending.begin(), s.control_pending.end());
  for (const auto& l : s.listeners) fds.push_back(l.fd);
  for (const auto& i : s.instances) fds.insert(fds.end(), {i.pidfd, i.err});
  for (const auto& c : s.capsules) fds.insert(fds.end(), {c.pidfd, c.out, c.alive});
  for (const auto& l : s.syslogs) fds.push_back(l.fd);
  std::erase(fds, -1);
  return fds;
}

std::error_code keep_across_exec(const std::vector<int>& fds, bool keep) {
  for (int fd : fds)
    if (::fcntl(fd, F_SETFD, keep ? 0 : FD_CLOEXEC) != 0) return {errno, std::generic_category()};
  return {};
}

}  // namespace superd::daemon::handover
