// fuzz_proxy: the PROXY protocol header parser (proxy/header.hpp). The first byte picks the
// versions accepted and the second the TLV bound; the rest is what the socket held. Beside
// ASan/UBSan, the parser's promises are checked: a header is never longer than the input or
// than max_header(); "more" asks for more than it was given and no more than max_header(); and
// the answer does not depend on bytes past the header (every shorter prefix of a complete
// header asks for more, and the header alone parses to the same length).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "proxy/header.hpp"

namespace proxy = superd::proxy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  proxy::Limits l;
  l.accept = static_cast<proxy::Versions>(1 + data[0] % 3);
  l.max_tlv = static_cast<size_t>(data[1]) * 32;
  std::span<const uint8_t> in(data + 2, size - 2);
  const size_t bound = proxy::max_header(l);
  proxy::Result r = proxy::parse(in, l);
  switch (r.kind) {
    case proxy::Result::Kind::done: {
      if (r.length == 0 || r.length > in.size() || r.length > bound) std::abort();
      proxy::Result alone = proxy::parse(in.first(r.length), l);
      if (alone.kind != proxy::Result::Kind::done || alone.length != r.length) std::abort();
      if (r.length > 1 && proxy::parse(in.first(r.length - 1), l).kind != proxy::Result::Kind::more) std::abort();
      if (r.header.version != 1 && r.header.version != 2) std::abort();
      break;
    }
    case proxy::Result::Kind::more:
      if (r.need <= in.size() || r.need > bound) std::abort();
      break;
    case proxy::Result::Kind::error:
      if (r.error.empty()) std::abort();
      break;
  }
  return 0;
}
