// fuzz_xinetd: the xinetd.conf / inetd.conf importer (xinetd::convert_text), its output checked
// the way `superd serve --xinetd` uses it: each converted service file must parse with
// config::parse_service. Includes are off (Includes::skip), so a fuzzed `includedir /` reads
// nothing. Host names are resolved with getaddrinfo as xinetd does at load time: the target
// moves into an empty network namespace first (it runs as root), so no lookup leaves the machine
// and none waits on a resolver.
#include <sched.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "config/config.hpp"
#include "xinetd/xinetd.hpp"

namespace xinetd = superd::xinetd;
namespace config = superd::config;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (::unshare(CLONE_NEWNET) != 0)
    std::fprintf(stderr, "fuzz_xinetd: unshare(CLONE_NEWNET): %s: host names may reach DNS\n", std::strerror(errno));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  xinetd::Result r = xinetd::convert_text(text, "/etc/xinetd.conf", xinetd::Includes::skip);
  for (const auto& w : r.warnings) (void)w.to_string();
  for (const auto& s : r.services) {
    config::Problems p;
    (void)config::parse_service(s.toml, s.name + ".toml", s.name, p);
  }
  return 0;
}
