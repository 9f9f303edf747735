// Checks that need more than one file: listeners used twice across services, the dynamic
// range against the user database, and the programs on this system (exec[0] exists and a
// dynamic user may run it).
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "config/config.hpp"
#include "uid_pool/userdb.hpp"

namespace superd::config {

void validate(const Config& c, Problems& p) {
  // The same address twice, within a service or across services.
  std::vector<std::pair<const Listen*, const Service*>> all;
  for (const Service& s : c.services)
    for (const Listen& l : s.socket.listen) {
      for (auto& [other, other_svc] : all)
        if (l.datagram == other->datagram && l.spec.conflicts_with(other->spec))
          p.add(l.where, "socket.listen",
                "\"" + l.spec.to_string() + "\" overlaps \"" + other->spec.to_string() + "\" of service " +
                    other_svc->name + " (" + other->where.file + ":" + std::to_string(other->where.line) + ")");
      all.emplace_back(&l, &s);
    }
  // The dynamic range must not hold a user or group the system database knows (a capsule's
  // users are its own: its user namespace maps them to its block).
  auto clash = c.global.capsule.empty() ? userdb::first_clashes(c.global.uid_min, c.global.uid_max, 3)
                                        : decltype(userdb::first_clashes(0, 0, 0)){};
  if (!clash.empty()) {
    std::string names;
    for (auto& cl : clash) names += (names.empty() ? "" : ", ") + cl;
    Location w = c.global.uid_range_where.line ? c.global.uid_range_where : Location{c.global.file, 1, 1};
    p.add(w, "superd.dynamic_uid_range",
          "[" + std::to_string(c.global.uid_min) + ", " + std::to_string(c.global.uid_max) +
              "] overlaps the system database: " + names);
  }
}

void validate_capsule(const Config& c, Problems& p) {
  std::string under = c.global.runtime_root + "/";
  for (const Service& s : c.services)
    for (const Listen& l : s.socket.listen) {
      const net::ListenSpec& spec = l.spec;
      if (spec.kind == net::Kind::unix_abstract)
        p.add(l.where, "socket.listen",
              "\"" + spec.to_string() + "\": a capsule has no abstract sockets (use a path under " + under + ")");
      else if (spec.kind == net::Kind::unix_path && spec.path.rfind(under, 0) != 0)
        p.add(l.where, "socket.listen", "\"" + spec.to_string() + "\": a capsule's UNIX sockets live under " + under);
      else if (!spec.is_unix() && spec.port < 1024)
        p.add(l.where, "socket.listen", "\"" + spec.to_string() + "\": a capsule binds ports 1024 and above only");
    }
}

namespace {
// exec[0] of one service: there, executable, and reachable by its user.
void validate_program(const Service& s, Problems& p) {
  namespace fs = std::filesystem;
  // At the exec key (a converted xinetd service: its server line), else the file.
  const Location& w = s.service.exec_where.line ? s.service.exec_where : s.where;
  if (s.service.exec.empty()) return;  // internal or redirect: nothing to execute
  {
    const std::string& exe = s.service.exec_path;
    if (exe.empty() || exe.front() != '/') {
      p.add(w, "service.exec[0]", "\"" + exe + "\" must be an absolute path");
      return;
    }
    struct stat st {};
    if (::stat(exe.c_str(), &st) != 0) {
      p.add(w, "service.exec[0]", "\"" + exe + "\": " + std::strerror(errno));
      return;
    }
    if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
      p.add(w, "service.exec[0]", "\"" + exe + "\" is not an executable file");
      return;
    }
    if (s.service.dynamic_user) {
      // A dynamic UID is "other" to every file: it needs o+x on the program and o+x on each directory above it.
      if (!(st.st_mode & S_IXOTH)) {
        p.add(w, "service.exec[0]", "\"" + exe + "\" is not executable by a dynamic user (needs o+x)");
        return;
      }
      for (fs::path d = fs::path(exe).parent_path(); !d.empty() && d != d.root_path(); d = d.parent_path()) {
        struct stat ds {};
        if (::stat(d.c_str(), &ds) == 0 && !(ds.st_mode & S_IXOTH)) {
          p.add(w, "service.exec[0]",
                "\"" + exe + "\" is not reachable by a dynamic user: directory " + d.string() + " lacks o+x");
          break;
        }
      }
    }
  }
}

}  // namespace

void validate_system(const Config& c, Problems& p) {
  namespace fs = std::filesystem;
  for (const Service& s : c.services) {
    size_t before = p.list().size();
    validate_program(s, p);
    p.mark_service(before, s.name);
  }
}

std::vector<Problem> skip_failed_services(Config& c, Problems& p) {
  if (c.global.strict) return {};
  std::vector<Problem> taken = p.take_service_problems();
  for (const Problem& pr : taken) {
    bool seen = false;
    for (const auto& f : c.failed) seen |= f.name == pr.service;
    if (!seen) c.failed.push_back({pr.service, pr.to_string()});
    std::erase_if(c.services, [&](const Service& s) { return s.name == pr.service; });
  }
  return taken;
}

}  // namespace superd::config
