// fuzz_syslog: the /dev/log datagram parser (daemon/syslog_message.hpp). The first 2 bytes set
// the text bound, the third whether the datagram arrived truncated (full_size larger than the
// bytes kept); the rest is the datagram. The text must lie inside the datagram and within the
// bound, and the priority must name a facility and severity in range.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/syslog_message.hpp"

namespace syslog = superd::daemon::syslog;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const size_t max_text = (static_cast<size_t>(data[0]) | static_cast<size_t>(data[1]) << 8) % (2 * syslog::kMaxText);
  const size_t extra = data[2];
  const std::string_view datagram(reinterpret_cast<const char*>(data) + 3, size - 3);
  syslog::Message m = syslog::parse(datagram, datagram.size() + extra, max_text);
  if (!m.text.empty() &&
      (m.text.data() < datagram.data() || m.text.data() + m.text.size() > datagram.data() + datagram.size()))
    std::abort();
  if (m.text.size() > max_text) std::abort();
  if (m.facility < 0 || m.facility > 23 || m.severity < 0 || m.severity > 7) std::abort();
  (void)syslog::priority_name(m.facility, m.severity);
  (void)syslog::level_of(m.severity);
  return 0;
}
