// The internal services (RFC 862 echo, 863 discard, 867 daytime, 864 chargen, 868 time): the pure
// pieces (text, bytes, the chargen pattern, the datagram answers and the loop guard) and the
// stream sessions that run them on the daemon's io_context.
//
// Lifetime strategy: a Session is a thin owner of a shared Impl. Every pending handler holds the
// Impl too, so destroying the Session only closes the socket and forgets `done`; the cancelled
// handlers then run against a still-valid Impl, see `finished_` and return. Done is posted, and
// the posted handler checks that `done_` is still set, so a Session destroyed before it runs never
// hears from it.
// clang-format off
#include <utility>  // before any Boost include (Boost 1.74 trap)
// clang-format on

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <cstring>
#include <random>

#include "inloop/handle.hpp"
#include "inloop/inloop.hpp"

namespace superd::inloop {

namespace asio = boost::asio;
using Socket = asio::generic::stream_protocol::socket;

namespace {
using detail::to_std;

constexpr size_t kEchoBuffer = 16 * 1024;
constexpr uint32_t kSecondsFrom1900To1970 = 2208988800u;
constexpr size_t kChargenChars = 72;
constexpr char kFirstPrintable = ' ';  // 32 .. 126: the 95 printable ASCII characters
constexpr uint16_t kNfsPort = 2049;
constexpr uint16_t kFirstUnprivilegedPort = 1024;

// The ends of a chargen stream: the client went away. Not an error, it is how chargen stops.
bool is_peer_gone(const boost::system::error_code& ec) {
  return ec == asio::error::broken_pipe || ec == asio::error::connection_reset || ec == asio::error::eof;
}

// One full cycle of chargen lines (95 x 74 = 7030 bytes); a stream writes it round and round, a
// datagram takes a prefix.
const std::string& chargen_cycle() {
  static const std::string cycle = [] {
    std::string s;
    s.reserve(kChargenCycle * kChargenLineLen);
    for (size_t n = 0; n < kChargenCycle; ++n) s += chargen_line(n);
    return s;
  }();
  return cycle;
}

size_t random_up_to(size_t max) {
  static std::minstd_rand rng{std::random_device{}()};
  return std::uniform_int_distribution<size_t>(0, max)(rng);
}

// The address family of a connected socket, so that Asio's generic socket can adopt it.
int socket_family(int fd, std::error_code& ec) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    ec = {errno, std::system_category()};
    return AF_UNSPEC;
  }
  return ss.ss_family;
}

class StreamImpl : public std::enable_shared_from_this<StreamImpl> {
 public:
  StreamImpl(asio::io_context& io, Internal which, Done done)
      : io_(io), which_(which), sock_(io), done_(std::move(done)) {}

  void start(UniqueFd conn) {
    std::error_code ec;
    int family = socket_family(conn.get(), ec);
    if (ec) return finish(ec);
    boost::system::error_code bec;
    sock_.assign(asio::generic::stream_protocol(family, 0), conn.get(), bec);
    if (bec) return finish(to_std(bec));
    (void)conn.release();  // the socket owns it now
    switch (which_) {
      case Internal::echo:
        return read_echo();
      case Internal::discard:
        return read_discard();
      case Internal::daytime:
        reply_ = daytime_text(::time(nullptr));
        return write_reply();
      case Internal::time: {
        auto b = time_bytes(::time(nullptr));
        reply_.assign(reinterpret_cast<const char*>(b.data()), b.size());
        return write_reply();
      }
      case Internal::chargen:
        read_discard();
        return write_chargen();
    }
  }

  // The Session is gone: close, and never call done.
  void stop() noexcept {
    finished_ = true;
    done_ = nullptr;
    boost::system::error_code ignored;
    sock_.close(ignored);
  }
  Traffic traffic() const { return traffic_; }

 private:
  void finish(std::error_code ec) {
    if (finished_) return;
    finished_ = true;
    boost::system::error_code ignored;
    sock_.close(ignored);
    asio::post(io_, [self = shared_from_this(), ec] {
      if (!self->done_) return;  // the session was destroyed after the post
      Done done = std::exchange(self->done_, nullptr);
      done(self->traffic_, ec);
    });
  }

  // Echo: read, write it all back, read again. Never reading while a write is pending is the
  // back-pressure; the client's EOF is only seen once every echoed byte is written.
  void read_echo() {
    sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      if (self->finished_) return;
      if (ec == asio::error::eof) return self->finish({});
      if (ec) return self->finish(to_std(ec));
      self->traffic_.from_client += n;
      asio::async_write(self->sock_, asio::buffer(self->buf_.data(), n),
                        [self](boost::system::error_code wec, size_t written) {
                          if (self->finished_) return;
                          self->traffic_.to_client += written;
                          if (wec) return self->finish(to_std(wec));
                          self->read_echo();
                        });
    });
  }

  // Discard (and chargen's input side): count and drop. For chargen, EOF only means the client
  // will send no more; it may still be reading, so the writer goes on.
  void read_discard() {
    sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      if (self->finished_) return;
      self->traffic_.from_client += n;
      bool chargen = self->which_ == Internal::chargen;
      if (ec == asio::error::eof) {
        if (!chargen) self->finish({});
        return;
      }
      if (ec) return self->finish(chargen && is_peer_gone(ec) ? std::error_code{} : to_std(ec));
      self->read_discard();
    });
  }

  // Daytime and time: one reply, then a FIN (shutdown first, so the reply is not lost to a reset
  // should the client have sent something we will not read).
  void write_reply() {
    asio::async_write(sock_, asio::buffer(reply_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      if (self->finished_) return;
      self->traffic_.to_client += n;
      if (ec) return self->finish(to_std(ec));
      boost::system::error_code ignored;
      self->sock_.shutdown(Socket::shutdown_send, ignored);
      self->drain_readable();
      self->finish({});
    });
  }

  // Reads (without waiting, and boundedly) what the client already sent, so that close() sends
  // FIN rather than RST.
  void drain_readable() {
    boost::system::error_code ec;
    sock_.non_blocking(true, ec);
    for (int i = 0; i < 16 && !ec; ++i) {
      size_t n = sock_.read_some(asio::buffer(buf_), ec);
      traffic_.from_client += n;
    }
  }

  void write_chargen() {
    const std::string& cycle = chargen_cycle();
    sock_.async_write_some(asio::buffer(cycle.data() + chargen_pos_, cycle.size() - chargen_pos_),
                           [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                             if (self->finished_) return;
                             self->traffic_.to_client += n;
                             if (ec) return self->finish(is_peer_gone(ec) ? std::error_code{} : to_std(ec));
                             self->chargen_pos_ = (self->chargen_pos_ + n) % chargen_cycle().size();
                             self->write_chargen();
                           });
  }

  asio::io_context& io_;
  Internal which_;
  Socket sock_;
  Done done_;
  Traffic traffic_;
  bool finished_ = false;
  std::string reply_;
  size_t chargen_pos_ = 0;
  std::array<char, kEchoBuffer> buf_{};
};

// Source addresses no real sender has; replying to them only serves a forger.
bool bogus_v4_source(uint32_t host_order) {
  if ((host_order >> 24) == 0) return true;    // 0.0.0.0/8 ("this network")
  if ((host_order >> 28) == 0xe) return true;  // 224.0.0.0/4 multicast
  return host_order == 0xffffffffu;            // limited broadcast
}

}  // namespace

std::string daytime_text(time_t now) {
  // ctime's layout with fixed English names: the reply must not depend on the daemon's locale.
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm {};
  if (!::localtime_r(&now, &tm)) return "\r\n";
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%s %s %2d %02d:%02d:%02d %d\r\n", kDays[tm.tm_wday % 7],
                        kMonths[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_year + 1900);
  return std::string(buf, n > 0 ? std::min<size_t>(n, sizeof buf - 1) : 0);
}

std::array<uint8_t, 4> time_bytes(time_t now) {
  // RFC 868 counts from 1900 in 32 bits; it wraps in 2036, and the wrapped value is the answer.
  uint32_t t = static_cast<uint32_t>(static_cast<uint64_t>(now) + kSecondsFrom1900To1970);
  return {static_cast<uint8_t>(t >> 24), static_cast<uint8_t>(t >> 16), static_cast<uint8_t>(t >> 8),
          static_cast<uint8_t>(t)};
}

std::string chargen_line(size_t n) {
  std::string line(kChargenLineLen, '\0');
  size_t start = n % kChargenCycle;
  for (size_t i = 0; i < kChargenChars; ++i) line[i] = static_cast<char>(kFirstPrintable + (start + i) % kChargenCycle);
  line[kChargenChars] = '\r';
  line[kChargenChars + 1] = '\n';
  return line;
}

std::optional<size_t> answer_datagram(Internal which, const char* in, size_t in_len, char* out, size_t cap,
                                      time_t now) {
  switch (which) {
    case Internal::discard:
      return std::nullopt;
    case Internal::echo: {
      size_t n = std::min(in_len, cap);
      if (n > 0) std::memmove(out, in, n);
      return n;
    }
    case Internal::daytime: {
      std::string s = daytime_text(now);
      size_t n = std::min(s.size(), cap);
      std::memcpy(out, s.data(), n);
      return n;
    }
    case Internal::time: {
      auto b = time_bytes(now);
      if (cap < b.size()) return std::nullopt;
      std::memcpy(out, b.data(), b.size());
      return b.size();
    }
    case Internal::chargen: {
      // RFC 864: "a random number (between 0 and 512) of characters".
      size_t n = random_up_to(std::min<size_t>(kMinDatagramCap, cap));
      std::memcpy(out, chargen_cycle().data(), n);
      return n;
    }
  }
  return std::nullopt;
}

bool drop_datagram_from(const sockaddr* peer) {
  if (!peer) return true;
  uint16_t port;
  uint32_t v4;
  if (peer->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(peer);
    port = ntohs(in->sin_port);
    v4 = ntohl(in->sin_addr.s_addr);
  } else if (peer->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(peer);
    port = ntohs(in6->sin6_port);
    const in6_addr& a = in6->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      uint32_t be;
      std::memcpy(&be, &a.s6_addr[12], 4);
      v4 = ntohl(be);
    } else {
      if (IN6_IS_ADDR_UNSPECIFIED(&a) || IN6_IS_ADDR_MULTICAST(&a)) return true;
      return port < kFirstUnprivilegedPort || port == kNfsPort;
    }
  } else {
    return false;
  }
  if (bogus_v4_source(v4)) return true;
  return port < kFirstUnprivilegedPort || port == kNfsPort;
}

std::unique_ptr<Session> serve_stream(asio::io_context& io, Internal which, UniqueFd conn, Done done) {
  auto impl = std::make_shared<StreamImpl>(io, which, std::move(done));
  impl->start(std::move(conn));
  return std::make_unique<detail::Handle<StreamImpl>>(std::move(impl));
}

}  // namespace superd::inloop
