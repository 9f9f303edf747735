// Loading: the main file, the service files its include globs match (a service is named by
// its file stem, at most kMaxServices), services converted in memory (superd serve --xinetd),
// then the validations of validate.cpp.
#include <glob.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/config.hpp"

namespace superd::config {
namespace {

std::optional<std::string> read_file(const std::string& path, Problems& p) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    p.add({path, 0, 0}, "", std::string("cannot read: ") + std::strerror(errno));
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Problems in a converted service point at the line of the source it came from.
void map_lines(Problems& p, size_t from, const MemoryService& m) {
  Problems mapped;
  for (size_t i = 0; i < p.list().size(); ++i) {
    Problem pr = p.list()[i];
    if (i >= from && pr.where.file == m.file) {
      uint32_t line = pr.where.line;
      pr.where.line = line >= 1 && line <= m.line_origin.size() ? m.line_origin[line - 1] : 0;
      pr.where.column = 0;
      pr.message += " (in the converted service " + m.name + ")";
    }
    mapped.add(pr.where, pr.key, pr.message);
  }
  p = std::move(mapped);
}

}  // namespace

Config load(const std::string& path, Problems& p) {
  return load(path, {}, p);
}

Config load(const std::string& path, const std::vector<MemoryService>& extra, Problems& p) {
  namespace fs = std::filesystem;
  Config c;
  std::set<std::string> names;
  auto add = [&](std::optional<Service> svc) {
    if (!svc) return;
    if (svc->service.disabled)
      c.disabled.push_back(svc->name);
    else
      c.services.push_back(std::move(*svc));
  };
  if (path.empty()) {
    c.global.include.clear();
  } else {
    auto text = read_file(path, p);
    if (!text) return c;
    c.global = parse_global(*text, path, p);
  }
  fs::path base = fs::path(path).parent_path();
  for (const MemoryService& m : extra) {
    if (!names.insert(m.name).second) {
      p.add({m.file, m.line_origin.empty() ? 0 : m.line_origin.front(), 0}, "",
            "service \"" + m.name + "\" is defined twice");
      continue;
    }
    size_t before = p.list().size();
    auto svc = parse_service(m.toml, m.file, m.name, p);
    if (p.list().size() != before) map_lines(p, before, m);
    if (svc) {
      // Later checks (overlaps, exec) name the source lines too.
      svc->where = {m.file, m.origin_line, 0};
      for (Listen& l : svc->socket.listen)
        l.where = {m.file,
                   l.where.line >= 1 && l.where.line <= m.line_origin.size() ? m.line_origin[l.where.line - 1] : 0, 0};
    }
    add(std::move(svc));
  }
  for (const std::string& pattern : c.global.include) {
    fs::path full = fs::path(pattern).is_absolute() ? fs::path(pattern) : base / pattern;
    glob_t g{};
    int rc = ::glob(full.c_str(), 0, nullptr, &g);
    if (rc != 0 && rc != GLOB_NOMATCH) p.add({path, 1, 1}, "superd.include", "cannot expand \"" + pattern + "\"");
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) {
      std::string file = g.gl_pathv[i];
      std::string name = fs::path(file).stem().string();
      if (c.services.size() >= kMaxServices) {
        p.add({file, 1, 1}, "", "more than " + std::to_string(kMaxServices) + " services");
        break;
      }
      if (!names.insert(name).second) {
        p.add({file, 1, 1}, "", "service \"" + name + "\" is defined twice");
        continue;
      }
      auto body = read_file(file, p);
      if (!body) continue;
      add(parse_service(*body, file, name, p));
    }
    globfree(&g);
  }
  validate(c, p);
  validate_system(c, p);
  return c;
}

}  // namespace superd::config
