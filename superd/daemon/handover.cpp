#include "daemon/handover.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace superd::daemon::handover {

using nlohmann::json;

namespace {

json source_json(const net::SourceKey& k) {
  return json::binary_t(std::vector<uint8_t>(k.bytes.begin(), k.bytes.end()));
}

net::SourceKey source_from(const json& j) {
  net::SourceKey k;
  const auto& b = j.get_binary();
  if (b.size() == k.bytes.size()) std::copy(b.begin(), b.end(), k.bytes.begin());
  return k;
}

}  // namespace

std::string encode(const State& s) {
  json j = {{"format", s.format},
            {"version", s.version},
            {"argv", s.argv},
            {"exe_fd", s.exe_fd},
            {"table_fd", s.table_fd},
            {"control_fd", s.control_fd},
            {"control_pending", s.control_pending},
            {"reply_fd", s.reply_fd},
            {"requested_ns", s.requested_ns},
            {"paused_ns", s.paused_ns},
            {"uid_min", s.uid_min},
            {"uid_max", s.uid_max},
            {"runtime_root", s.runtime_root},
            {"serial", s.serial},
            {"zygotes", s.zygotes},
            {"started_units", s.started_units},
            {"stopped_units", s.stopped_units},
            {"wait_running", s.wait_running},
            {"rollback", s.rollback}};
  for (const auto& l : s.listeners) j["listeners"].push_back({{"fd", l.fd}, {"key", l.key}, {"service", l.service}});
  for (const auto& l : s.leases) j["leases"].push_back({{"uid", l.uid}, {"user", l.user}, {"kind", l.kind}});
  for (const auto& i : s.instances)
    j["instances"].push_back({{"service", i.service},
                              {"pid", i.pid},
                              {"pidfd", i.pidfd},
                              {"err", i.err},
                              {"serial", i.serial},
                              {"uid", i.uid},
                              {"leased", i.leased},
                              {"peer", i.peer},
                              {"source", source_json(i.source)},
                              {"started_ns", i.started_ns},
                              {"deadline_ns", i.deadline_ns},
                              {"term_sent", i.term_sent},
                              {"err_line", i.err_line},
                              {"retired", i.retired}});
  for (const auto& c : s.counters)
    j["counters"].push_back({{"service", c.service},
                             {"accepted", c.accepted},
                             {"refused", c.refused},
                             {"failed", c.failed},
                             {"ended_ok", c.ended_ok},
                             {"ended_error", c.ended_error},
                             {"ended_signal", c.ended_signal},
                             {"zygote_restarts", c.zygote_restarts},
                             {"since_ns", c.since_ns},
                             {"proxy_local", c.proxy_local}});
  for (const auto& c : s.capsules)
    j["capsules"].push_back({{"name", c.name},
                             {"home", c.home},
                             {"block", c.block},
                             {"pid", c.pid},
                             {"pidfd", c.pidfd},
                             {"out", c.out},
                             {"alive", c.alive},
                             {"ready_seen", c.ready_seen},
                             {"started_ns", c.started_ns}});
  for (const auto& l : s.syslogs) j["syslogs"].push_back({{"service", l.service}, {"path", l.path}, {"fd", l.fd}});
  // CBOR carries the source keys' bytes as they are; the memfd holds binary, not text.
  auto bytes = json::to_cbor(j);
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
  try {
    State s;
    s.version = j.at("version");
    s.argv = j.at("argv").get<std::vector<std::string>>();
    s.exe_fd = j.at("exe_fd");
    s.table_fd = j.at("table_fd");
    s.control_fd = j.at("control_fd");
    s.control_pending = j.at("control_pending").get<std::vector<int>>();
    s.reply_fd = j.at("reply_fd");
    s.requested_ns = j.at("requested_ns");
    s.paused_ns = j.at("paused_ns");
    s.uid_min = j.at("uid_min");
    s.uid_max = j.at("uid_max");
    s.runtime_root = j.at("runtime_root");
    s.serial = j.at("serial");
    s.zygotes = j.at("zygotes").get<std::vector<pid_t>>();
    s.started_units = j.at("started_units").get<std::vector<std::string>>();
    s.stopped_units = j.at("stopped_units").get<std::vector<std::string>>();
    s.wait_running = j.at("wait_running").get<std::vector<std::string>>();
    s.rollback = j.at("rollback");
    for (const auto& l : j.value("listeners", json::array()))
      s.listeners.push_back({l.at("fd"), l.at("key"), l.at("service")});
    s.listener_count = s.listeners.size();
    for (const auto& l : j.value("leases", json::array()))
      s.leases.push_back({l.at("uid"), l.at("user"), l.at("kind")});
    for (const auto& i : j.value("instances", json::array()))
      s.instances.push_back({i.at("service"), i.at("pid"), i.at("pidfd"), i.at("err"), i.at("serial"), i.at("uid"),
                             i.at("leased"), i.at("peer"), source_from(i.at("source")), i.at("started_ns"),
                             i.at("deadline_ns"), i.at("term_sent"), i.at("err_line"), i.at("retired")});
    for (const auto& c : j.value("counters", json::array()))
      s.counters.push_back({c.at("service"), c.at("accepted"), c.at("refused"), c.at("failed"), c.at("ended_ok"),
                            c.at("ended_error"), c.at("ended_signal"), c.at("zygote_restarts"), c.at("since_ns"),
                            c.value("proxy_local", uint64_t{0})});
    for (const auto& c : j.value("capsules", json::array()))
      s.capsules.push_back({c.at("name"), c.at("home"), c.at("block"), c.at("pid"), c.at("pidfd"), c.at("out"),
                            c.at("alive"), c.at("ready_seen"), c.at("started_ns")});
    for (const auto& l : j.value("syslogs", json::array()))
      s.syslogs.push_back({l.at("service"), l.at("path"), l.at("fd")});
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
