// Loading: the main file, the service files its include globs match (a service is named by
// its file stem, at most kMaxServices), services converted in memory (superd serve --xinetd),
// then the validations of validate.cpp. A file `NAME@.toml` is a template (template.hpp): it is
// only read for its TOML syntax; `NAME@INSTANCE.toml`, a link to it or a file of its own, is an
// instance.
#include <glob.h>

#include <toml++/toml.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/config.hpp"
#include "config/reader.hpp"
#include "config/template.hpp"

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

// An instance from `file`: a link is read through (its problems name the file it points at),
// a regular file replaces the template for this instance.
std::optional<Service> read_instance(const std::string& file, const std::string& name, Problems& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  bool link = fs::is_symlink(fs::symlink_status(file, ec));
  std::string source = file;
  if (link) {
    fs::path target = fs::canonical(file, ec);
    if (ec) {
      p.add({file, 0, 0}, "", "a link to nothing (" + ec.message() + ")");
      return std::nullopt;
    }
    source = target.string();
  }
  auto text = read_file(source, p);
  if (!text) return std::nullopt;
  auto svc = parse_service(*text, source, name, p);
  if (svc) svc->origin = link ? Origin::link : Origin::file;
  return svc;
}

}  // namespace

// A parsed service: served, or listed as disabled.
void add_service(Config& c, std::optional<Service> svc) {
  if (!svc) return;
  if (svc->service.disabled)
    c.disabled.push_back(svc->name);
  else
    c.services.push_back(std::move(*svc));
}

// The service files and templates the include globs match (relative to `base`); the main
// file itself is never one, though a glob may match it.
void read_includes(Config& c, const std::filesystem::path& base, const std::string& main, std::set<std::string>& names,
                   Problems& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto add = [&](std::optional<Service> svc) { add_service(c, std::move(svc)); };
  // The files first, then templates before instances (an instance needs its template).
  std::vector<std::string> files;
  for (const std::string& pattern : c.global.include) {
    fs::path full = fs::path(pattern).is_absolute() ? fs::path(pattern) : base / pattern;
    glob_t g{};
    int rc = ::glob(full.c_str(), 0, nullptr, &g);
    if (rc != 0 && rc != GLOB_NOMATCH) p.add({main, 1, 1}, "superd.include", "cannot expand \"" + pattern + "\"");
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i)
      if (main.empty() || !fs::equivalent(g.gl_pathv[i], main, ec)) files.push_back(g.gl_pathv[i]);  // not itself
    globfree(&g);
  }
  std::vector<std::string> services;
  for (const std::string& file : files) {
    std::string name = fs::path(file).stem().string();
    auto unit = split_unit_name(name);
    if (!unit || !unit->is_template()) {
      services.push_back(file);
      continue;
    }
    if (!c.templates.emplace(name, file).second) {
      p.add({file, 1, 1}, "", "template \"" + name + "\" is defined twice");
      continue;
    }
    if (auto body = read_file(file, p)) detail::parse_toml(*body, file, p);  // its syntax, at least
  }
  for (const std::string& file : services) {
    std::string name = fs::path(file).stem().string();
    if (c.services.size() >= kMaxServices) {
      p.add({file, 1, 1}, "", "more than " + std::to_string(kMaxServices) + " services");
      break;
    }
    if (!names.insert(name).second) {
      p.add({file, 1, 1}, "", "service \"" + name + "\" is defined twice");
      continue;
    }
    if (auto unit = split_unit_name(name)) {
      if (std::string why = instance_name_error(unit->instance); !why.empty()) {
        p.add({file, 0, 0}, "", "bad instance name \"" + name + "\": " + why);
        p.mark_service(p.list().size() - 1, name);
        continue;
      }
      size_t before = p.list().size();
      add(read_instance(file, name, p));
      p.mark_service(before, name);
      continue;
    }
    size_t before = p.list().size();
    if (auto body = read_file(file, p)) add(parse_service(*body, file, name, p));
    p.mark_service(before, name);
  }
}

std::optional<Service> load_instance(const Config& c, const std::string& name, Problems& p) {
  auto unit = split_unit_name(name);
  if (!unit || unit->is_template()) {
    p.add({}, "", "\"" + name + "\" is not an instance name (NAME@INSTANCE)");
    return std::nullopt;
  }
  if (std::string why = instance_name_error(unit->instance); !why.empty()) {
    p.add({}, "", name + ": " + why);
    return std::nullopt;
  }
  auto t = c.templates.find(unit->template_name());
  if (t == c.templates.end()) {
    p.add({}, "", "no template " + unit->template_name() + " for " + name);
    return std::nullopt;
  }
  auto text = read_file(t->second, p);
  if (!text) return std::nullopt;
  auto svc = parse_service(*text, t->second, name, p);
  if (svc) svc->origin = Origin::runtime;
  return svc;
}

Config load_capsule(const std::string& name, const std::string& home, const std::string& runtime_dir, Problems& p) {
  namespace fs = std::filesystem;
  Config c;
  fs::path dir = fs::path(home) / ".config" / "superd";
  std::string main = (dir / "superd.toml").string();
  std::error_code ec;
  if (fs::exists(main, ec)) {
    auto text = read_file(main, p);
    if (!text) return c;
    size_t before = p.list().size();
    if (auto doc = detail::parse_toml(*text, main, p)) {
      if (auto* t = (*doc)["superd"].as_table())
        for (auto&& [key, node] : *t)
          if (key.str() != "log_level")
            p.add({main, node.source().begin.line, node.source().begin.column}, "superd." + std::string(key.str()),
                  "not allowed in a capsule's superd.toml: the capsule sets it (only log_level may be set)");
    }
    if (p.list().size() != before) return c;
    c.global = parse_global(*text, main, p);
  }
  c.global.file = main;
  c.global.strict = true;  // a capsule with a bad file does not start: its start says why
  c.global.capsule = name;
  c.global.capsule_home = home;
  c.global.include = {"*.toml"};
  c.global.runtime_root = runtime_dir;
  c.global.state_root = home + "/.local/state";
  c.global.cache_root = home + "/.cache";
  c.global.logs_root = home + "/.local/state/log";
  std::set<std::string> names;
  read_includes(c, dir, main, names, p);
  validate(c, p);
  validate_capsule(c, p);
  validate_system(c, p);
  return c;
}

Config load(const std::string& path, Problems& p) {
  return load(path, {}, p);
}

Config load(const std::string& path, const std::vector<MemoryService>& extra, Problems& p) {
  namespace fs = std::filesystem;
  Config c;
  std::set<std::string> names;
  auto add = [&](std::optional<Service> svc) { add_service(c, std::move(svc)); };
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
      auto origin = [&](const Location& w) {
        return Location{m.file, w.line >= 1 && w.line <= m.line_origin.size() ? m.line_origin[w.line - 1] : 0, 0};
      };
      for (Listen& l : svc->socket.listen) l.where = origin(l.where);
      if (svc->service.exec_where.line) svc->service.exec_where = origin(svc->service.exec_where);
    }
    add(std::move(svc));
    p.mark_service(before, m.name);
  }
  read_includes(c, base, path, names, p);
  validate(c, p);
  validate_system(c, p);
  return c;
}

}  // namespace superd::config
