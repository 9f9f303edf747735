// fuzz_config: the TOML loaders, fed from memory. The input is read as a main file
// (parse_global) and as a service file through config::load with one MemoryService (what
// `superd serve --xinetd` uses), which also runs the checks across services and against the
// system (user and group lookups, exec[0]'s stat). Nothing follows `include`: parse_global only
// records the patterns, and load("") reads no main file. A `banner` path is opened at load time
// as configured (a trusted operator's file), so tests/fuzz/run runs the targets with stdin from
// /dev/null.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.hpp"

namespace config = superd::config;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  config::Problems main_problems;
  config::Global g = config::parse_global(text, "superd.toml", main_problems);
  for (const auto& p : main_problems.list()) (void)p.to_string();

  config::Problems problems;
  config::MemoryService m{"fuzz", text, "fuzz.toml", {}, 0};
  config::Config c = config::load("", {m}, problems);
  config::skip_failed_services(c, problems);
  for (const auto& p : problems.list()) (void)p.to_string();
  return 0;
}
