// Internal to the importer: one xinetd attribute line applied the way xinetd's parse.c and
// parsers.c apply it (value count, operator, value syntax), folded into a State per service
// (and one for defaults{}). What xinetd would reject marks the State "refused".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "xinetd/parse.hpp"

namespace superd::xinetd::detail {

struct List {
  std::vector<std::string> items;  // in order of first appearance
  bool present = false;
  uint32_t line = 0;  // 0: inherited from defaults
  // The values of `items`, so that += skips a duplicate and -= finds its values in O(1) each: a
  // linear search per value made a 70,000-address only_from take seconds. Only apply_list
  // changes items, and it keeps the two in step.
  std::unordered_set<std::string> index;
};

struct State {
  std::map<std::string, Attr> single;  // accepted non-cumulative attributes; "interface" is stored as "bind"
  List only_from, no_access, log_on_success, log_on_failure, env, passenv, enabled, disabled;
  std::string refused;  // why xinetd would not run this service
  uint32_t refused_line = 0;
};

// Applies `a` (a line of entry `e`; `defaults`: the defaults section) to `st`.
void apply_attribute(State& st, const Entry& e, const Attr& a, bool defaults, std::vector<Warning>& warnings);

struct Built;
// Turns a service's State (`defaults`: the defaults section's) into a service file; nullopt
// (with a warning) when the service does not carry over.
std::optional<Built> build_service(const Entry& e, State& st, const State& defaults, std::vector<Warning>& warnings);

// Single values a service takes from defaults{} when it does not set them (service_fill).
bool inherited(const std::string& name);
// "8:00-12:30" -> "08:00-12:30"; false if not HH:MM-HH:MM.
bool valid_time(const std::string& t, std::string& norm);
bool contains(const std::vector<std::string>& v, const std::string& s);
extern const std::vector<std::string> kSuccessFlags, kFailureFlags;

}  // namespace superd::xinetd::detail
