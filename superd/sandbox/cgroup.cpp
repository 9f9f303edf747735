#include "sandbox/cgroup.hpp"

#include <fstream>
#include <sstream>

namespace superd::sandbox::cgroup {
namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

bool has_word(const std::string& list, const std::string& word) {
  std::istringstream in(list);
  for (std::string w; in >> w;)
    if (w == word) return true;
  return false;
}

}  // namespace

Support detect(const std::string& proc) {
  Support s;
  // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS"
  std::ifstream mi(proc + "/mountinfo");
  for (std::string line; std::getline(mi, line);) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3)), head(line.substr(0, dash));
    std::string fstype, id, parent, dev, root, mountpoint;
    tail >> fstype;
    head >> id >> parent >> dev >> root >> mountpoint;
    if (fstype == "cgroup2") {
      s.mount = mountpoint;
      break;
    }
  }
  if (s.mount.empty()) {
    s.why = "no cgroup2 filesystem is mounted";
    return s;
  }
  std::ifstream cg(proc + "/cgroup");
  for (std::string line; std::getline(cg, line);)
    if (line.rfind("0::", 0) == 0) s.own = line.substr(3);
  if (s.own.empty()) {
    s.why = "superd is in no cgroup2 cgroup";
    return s;
  }
  std::string dir = s.mount + (s.own == "/" ? "" : s.own);
  s.controllers = first_line(dir + "/cgroup.controllers");
  bool memory = has_word(s.controllers, "memory"), pids = has_word(s.controllers, "pids");
  if (!memory || !pids) {
    s.why = "the cgroup2 hierarchy at " + s.mount + " offers superd's cgroup " + s.own + " the controllers [" +
            s.controllers + "], without " +
            (memory ? ""
             : pids ? "memory"
                    : "memory and pids") +
            (memory && !pids ? "pids" : "");
    return s;
  }
  s.usable = true;
  return s;
}

}  // namespace superd::sandbox::cgroup
