// The main file: the [superd] table (dynamic UID range, includes, log level, the roots of
// the state/cache/logs/runtime directories).
#include <toml++/toml.h>
#include <set>

#include "config/reader.hpp"

namespace superd::config {

using detail::parse_toml;
using detail::sub_table;
using detail::TableReader;

Global parse_global(std::string_view text, const std::string& file, Problems& p) {
  Global g;
  g.file = file;
  auto doc = parse_toml(text, file, p);
  if (!doc) return g;
  TableReader top(*doc, "", file, p);
  if (auto* t = sub_table(top, "superd")) {
    TableReader r(*t, "superd", file, p);
    if (auto* n = r.get("dynamic_uid_range")) {
      g.uid_range_where = r.where(*n);
      auto* a = n->as_array();
      if (!a || a->size() != 2 || !a->get(0)->is_integer() || !a->get(1)->is_integer()) {
        r.bad(*n, "dynamic_uid_range", "expected [FIRST, LAST], two integers");
      } else {
        int64_t lo = *a->get(0)->value<int64_t>(), hi = *a->get(1)->value<int64_t>();
        // 0 is root; 65535 and 4294967295 are (uid_t)-1 in 16 and 32 bits and mean "no UID".
        if (lo < 1 || hi > 4294967294LL || lo > hi) {
          r.bad(*n, "dynamic_uid_range", "expected 1 <= FIRST <= LAST <= 4294967294");
        } else if (hi - lo + 1 > kMaxPoolSize) {
          r.bad(*n, "dynamic_uid_range",
                "range holds " + std::to_string(hi - lo + 1) + " UIDs; at most " + std::to_string(kMaxPoolSize));
        } else if (lo <= 65535 && hi >= 65535) {
          r.bad(*n, "dynamic_uid_range", "must not contain 65535 ((uint16_t)-1, \"no user\")");
        } else {
          g.uid_min = static_cast<uint32_t>(lo);
          g.uid_max = static_cast<uint32_t>(hi);
        }
      }
    }
    if (auto* n = r.get("capsule_uid_range")) {
      g.capsule_range_where = r.where(*n);
      auto* a = n->as_array();
      int64_t lo = a && a->size() == 2 && a->get(0)->is_integer() ? *a->get(0)->value<int64_t>() : -1;
      int64_t hi = a && a->size() == 2 && a->get(1)->is_integer() ? *a->get(1)->value<int64_t>() : -1;
      // Whole blocks of 65,536, above the 16-bit range, below (uid_t)-1.
      if (lo < 65536 || hi > 4294967294LL || lo > hi || lo % 65536 != 0 || (hi + 1) % 65536 != 0)
        r.bad(*n, "capsule_uid_range",
              "expected [FIRST, LAST] of whole blocks of 65536: FIRST a multiple of 65536 (at least 65536), LAST "
              "one below a multiple of 65536");
      else
        g.capsule_first = static_cast<uint32_t>(lo), g.capsule_last = static_cast<uint32_t>(hi);
    }
    r.read_bool("strict", g.strict);
    r.read_int("zygotes", g.zygotes, 0, 256);
    if (r.read_string("log_target", g.log_target)) {
      std::string why;
      if (auto spec = log::SinkSpec::parse(g.log_target, why))
        g.log_sink = *spec;
      else
        r.bad(*r.get("log_target"), "log_target", why);
    }
    std::string metrics;
    if (r.read_string("metrics_listen", metrics)) {
      std::string why;
      g.metrics_where = r.where(*r.get("metrics_listen"));
      if (auto spec = net::parse_listen(metrics, why))
        g.metrics_listen = *spec;
      else
        r.bad(*r.get("metrics_listen"), "metrics_listen", why);
    }
    std::vector<std::string> allow = {"127.0.0.0/8", "::1/128"};
    if (r.get("metrics_allow")) {
      allow.clear();
      for (auto& [a, node] : r.read_strings("metrics_allow", false)) {
        std::string why;
        if (auto c = net::parse_cidr(a, why))
          g.metrics_allow.push_back(*c);
        else
          r.bad(*node, "metrics_allow", why);
      }
    } else {
      std::string why;
      for (const auto& a : allow) g.metrics_allow.push_back(*net::parse_cidr(a, why));
    }
    auto inc = r.read_strings("include", true);
    if (r.get("include")) {
      g.include.clear();
      for (auto& i : inc) g.include.push_back(i.first);
    }
    if (r.read_string("log_level", g.log_level)) {
      static const std::set<std::string> kLevels{"debug", "info", "warning", "error"};
      if (!kLevels.count(g.log_level))
        r.bad(*r.get("log_level"), "log_level", "expected debug, info, warning or error");
    }
    for (auto [key, dst] : {std::pair{"runtime_root", &g.runtime_root}, std::pair{"state_root", &g.state_root},
                            std::pair{"cache_root", &g.cache_root}, std::pair{"logs_root", &g.logs_root}}) {
      if (r.read_string(key, *dst) && (dst->empty() || dst->front() != '/' || dst->find("/../") != std::string::npos))
        r.bad(*r.get(key), key, "must be an absolute path without \"..\"");
    }
    r.finish();
  }
  top.finish();
  bool overlap = g.uid_min <= g.capsule_last && g.capsule_first <= g.uid_max;
  if (overlap)
    p.add(g.capsule_range_where.line ? g.capsule_range_where
          : g.uid_range_where.line   ? g.uid_range_where
                                     : Location{file, 1, 1},
          "superd.capsule_uid_range",
          "[" + std::to_string(g.capsule_first) + ", " + std::to_string(g.capsule_last) +
              "] overlaps dynamic_uid_range [" + std::to_string(g.uid_min) + ", " + std::to_string(g.uid_max) +
              "]: the host pool would lease capsule UIDs");
  return g;
}

}  // namespace superd::config
