// bench/nss_lookup: the cost of a user lookup through glibc and the NSS module.
//   nss_lookup fill DIR FIRST LAST N    a names file in DIR (a lease table for [FIRST, LAST]) with
//                                       N live per-connection leases from FIRST upward
//   nss_lookup lookup UID MS            getpwuid(UID) in a loop for MS ms; prints
//                                       "ns_per_lookup=X lookups=N found=0|1"
// bench/nss.py runs `lookup` in a private mount namespace whose /etc/nsswitch.conf it chooses, so
// the same loop measures `passwd: superd` and `passwd: files`.
#include <pwd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

#include "uid_pool/lease_table.hpp"

namespace {

int fill(const char* dir, uint32_t first, uint32_t last, uint32_t n) {
  std::error_code ec;
  auto table = superd::uid_pool::LeaseTable::open(dir, first, last, ec);
  if (ec) {
    std::fprintf(stderr, "nss_lookup: %s: %s\n", dir, ec.message().c_str());
    return 1;
  }
  for (uint32_t i = 0; i < n && first + i <= last; ++i) table.record(first + i, 1000 + int32_t(i), i, 0, "bench");
  return 0;  // the files stay; the table's lock goes with the process
}

int lookup(uid_t uid, long ms) {
  using Clock = std::chrono::steady_clock;
  long n = 0, found = 0;
  auto end = Clock::now() + std::chrono::milliseconds(ms), start = Clock::now();
  auto now = start;
  do {
    for (int i = 0; i < 256; ++i, ++n) found += getpwuid(uid) != nullptr;
    now = Clock::now();
  } while (now < end);
  double ns = std::chrono::duration<double, std::nano>(now - start).count() / double(n);
  std::printf("ns_per_lookup=%.0f lookups=%ld found=%d\n", ns, n, found == n ? 1 : found == 0 ? 0 : -1);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 6 && std::strcmp(argv[1], "fill") == 0)
    return fill(argv[2], uint32_t(std::strtoul(argv[3], nullptr, 10)), uint32_t(std::strtoul(argv[4], nullptr, 10)),
                uint32_t(std::strtoul(argv[5], nullptr, 10)));
  if (argc == 4 && std::strcmp(argv[1], "lookup") == 0)
    return lookup(uid_t(std::strtoul(argv[2], nullptr, 10)), std::strtol(argv[3], nullptr, 10));
  std::fprintf(stderr, "usage: nss_lookup fill DIR FIRST LAST N | nss_lookup lookup UID MS\n");
  return 2;
}
