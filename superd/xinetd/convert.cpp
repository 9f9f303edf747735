// The importer's pipeline: parse (parse.cpp: the grammar, includes) -> apply each attribute
// line to a State (attrs.cpp, as xinetd's parsers) -> build one service file per State
// (service.cpp; inetd.conf lines: inetd.cpp) -> name the files. Every line that does not carry
// over, or that xinetd reads differently from how it looks, yields one Warning naming file, line
// and attribute; what xinetd would not run is still written, disabled.
#include <algorithm>
#include <cctype>
#include <set>

#include "xinetd/attrs.hpp"
#include "xinetd/model.hpp"
#include "xinetd/parse.hpp"

namespace superd::xinetd {

namespace {
using namespace detail;

class Converter {
 public:
  explicit Converter(Result& res) : res_(res) {}
  void run(const std::vector<Entry>& entries);

 private:
  void warn(const std::string& file, uint32_t line, const std::string& attr, const std::string& msg) {
    res_.warnings.push_back({file, line, attr, msg});
  }
  void apply(State& st, const Entry& e, const Attr& a, bool defaults) {
    apply_attribute(st, e, a, defaults, res_.warnings);
  }
  void name_files(std::vector<Built>& built);

  Result& res_;
  State defaults_;
  bool defaults_seen_ = false;
  std::string defaults_file_;
  uint32_t defaults_line_ = 0;
};

void Converter::run(const std::vector<Entry>& entries) {
  // Services are built after every entry is read: the defaults' single values apply to all of
  // them (service_fill runs after parsing), while their lists seed only the services that
  // follow them (fill_attribute runs when a service is read).
  std::vector<std::pair<const Entry*, State>> services;
  for (const Entry& e : entries) {
    if (e.kind == Entry::Kind::defaults) {
      if (defaults_seen_ && e.file == defaults_file_) {
        warn(e.file, e.line, "defaults",
             "only one defaults section per file: xinetd ignores this one (the first is on line " +
                 std::to_string(defaults_line_) + ")");
        continue;
      }
      defaults_seen_ = true;
      defaults_file_ = e.file;
      defaults_line_ = e.line;
      for (const Attr& a : e.attrs) apply(defaults_, e, a, true);
      continue;
    }
    State st;
    if (e.kind == Entry::Kind::service) {
      st.only_from = defaults_.only_from;
      st.no_access = defaults_.no_access;
      st.log_on_success = defaults_.log_on_success;
      st.log_on_failure = defaults_.log_on_failure;
      st.passenv = defaults_.passenv;
      for (const Attr& a : e.attrs) apply(st, e, a, false);
    }
    services.emplace_back(&e, std::move(st));
  }
  std::vector<Built> built;
  for (auto& [e, st] : services) {
    auto b = e->kind == Entry::Kind::inetd ? build_inetd(*e, res_.warnings)
                                           : build_service(*e, st, defaults_, res_.warnings);
    if (b) built.push_back(std::move(*b));
  }
  for (const List* l : {&defaults_.enabled, &defaults_.disabled})
    for (const auto& n : l->items)
      if (std::none_of(built.begin(), built.end(), [&](const Built& b) { return b.file.name == n; }))
        warn(defaults_file_, defaults_line_, l == &defaults_.enabled ? "enabled" : "disabled",
             "\"" + n + "\" names no converted service");
  if (defaults_.enabled.present && defaults_.enabled.items.empty())
    warn(defaults_file_, defaults_line_, "enabled", "an empty enabled list disables every service, as in xinetd");
  name_files(built);
}

// File names: the id, made a valid superd service name, and unique (a second "echo" becomes
// echo-dgram or echo-stream, then echo-2, ...).
void Converter::name_files(std::vector<Built>& built) {
  std::set<std::string> used;
  for (Built& b : built) {
    ServiceFile& f = b.file;
    std::string name = f.name;
    for (char& c : name)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '@') c = '_';
    if (name.empty() || name.size() > 128) name = "service" + std::to_string(used.size() + 1);
    if (name != f.name)
      warn(f.origin_file, f.origin_line, f.name,
           "not a valid superd service name; the file is named " + name + ".toml");
    if (used.count(name)) {
      std::string base = name, candidate = base + "-" + b.kind;
      for (int i = 2; used.count(candidate); ++i) candidate = base + "-" + std::to_string(i);
      warn(f.origin_file, f.origin_line, f.name,
           "another service is already named " + base + "; this one is written as " + candidate + ".toml");
      name = candidate;
    }
    used.insert(name);
    f.name = name;
    res_.services.push_back(std::move(f));
  }
}

Result convert_parsed(Parsed parsed) {
  Result res;
  res.warnings = std::move(parsed.warnings);
  res.errors = std::move(parsed.errors);
  Converter(res).run(parsed.entries);
  return res;
}

}  // namespace

Result convert_text(std::string_view text, const std::string& file, Includes includes) {
  Parsed parsed;
  parse_text(text, file, parsed, includes);
  return convert_parsed(std::move(parsed));
}

Result convert_file(const std::string& path) {
  Parsed parsed;
  parse_file(path, parsed);
  return convert_parsed(std::move(parsed));
}

}  // namespace superd::xinetd
