// The `redirect` relay: one accepted client, one outgoing TCP connection, two pumps.
//
// Each direction is a loop "read up to 64 KiB, write all of it, read again", so a slow side
// stalls its writer and never grows a queue (bounded memory: 128 KiB per relay). EOF on one side
// becomes shutdown(SHUT_WR) on the other; the relay ends cleanly when both directions have seen
// EOF, and on the first error or reset otherwise, closing both sockets before Done is posted.
// Lifetime: the same shared-Impl scheme as internal.cpp (see there).
// clang-format off
#include <utility>  // before any Boost include (Boost 1.74 trap)
// clang-format on

#include <sys/socket.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>

#include "inloop/handle.hpp"
#include "inloop/inloop.hpp"

namespace superd::inloop {

namespace asio = boost::asio;
using Socket = asio::generic::stream_protocol::socket;

namespace {
using detail::to_std;

constexpr size_t kRelayBuffer = 64 * 1024;

class RelayImpl : public std::enable_shared_from_this<RelayImpl> {
 public:
  RelayImpl(asio::io_context& io, Done done) : io_(io), client_(io), server_(io), done_(std::move(done)) {}

  void start(UniqueFd conn, const sockaddr_storage& target, socklen_t target_len) {
    sockaddr_storage local{};
    socklen_t local_len = sizeof local;
    if (::getsockname(conn.get(), reinterpret_cast<sockaddr*>(&local), &local_len) != 0)
      return finish({errno, std::system_category()});
    boost::system::error_code ec;
    client_.assign(asio::generic::stream_protocol(local.ss_family, 0), conn.get(), ec);
    if (ec) return finish(to_std(ec));
    (void)conn.release();

    if (target_len == 0 || target_len > sizeof(sockaddr_storage))
      return finish(std::make_error_code(std::errc::invalid_argument));
    // Our own socket, so that it is close-on-exec from birth (Asio's open() would not make it so).
    int family = target.ss_family;
    UniqueFd out(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!out) return finish({errno, std::system_category()});
    server_.assign(asio::generic::stream_protocol(family, 0), out.get(), ec);
    if (ec) return finish(to_std(ec));
    (void)out.release();

    asio::generic::stream_protocol::endpoint peer(&target, target_len);
    server_.async_connect(peer, [self = shared_from_this()](boost::system::error_code cec) {
      if (self->finished_) return;
      if (cec) return self->finish(to_std(cec));
      self->pump(self->up_);
      self->pump(self->down_);
    });
  }

  void stop() noexcept {
    finished_ = true;
    done_ = nullptr;
    close_both();
  }
  Traffic traffic() const { return traffic_; }

 private:
  struct Direction {
    Socket* from;
    Socket* to;
    bool toward_client;
    bool at_eof = false;
    std::array<char, kRelayBuffer> buf{};
  };

  void close_both() noexcept {
    boost::system::error_code ignored;
    client_.close(ignored);
    server_.close(ignored);
  }

  void finish(std::error_code ec) {
    if (finished_) return;
    finished_ = true;
    close_both();
    asio::post(io_, [self = shared_from_this(), ec] {
      if (!self->done_) return;  // the session was destroyed after the post
      Done done = std::exchange(self->done_, nullptr);
      done(self->traffic_, ec);
    });
  }

  // One direction: read from d.from into d.buf, write all of it to d.to, repeat. Counted: bytes
  // read from the client and bytes written to it.
  void pump(Direction& d) {
    d.from->async_read_some(asio::buffer(d.buf),
                            [self = shared_from_this(), &d](boost::system::error_code ec, size_t n) {
                              if (self->finished_) return;
                              if (ec == asio::error::eof) {
                                d.at_eof = true;
                                // ENOTCONN here (the other side already went away) shows up on its own read instead.
                                boost::system::error_code ignored;
                                d.to->shutdown(Socket::shutdown_send, ignored);
                                if (self->up_.at_eof && self->down_.at_eof) self->finish({});
                                return;
                              }
                              if (ec) return self->finish(to_std(ec));
                              if (!d.toward_client) self->traffic_.from_client += n;
                              asio::async_write(*d.to, asio::buffer(d.buf.data(), n),
                                                [self, &d](boost::system::error_code wec, size_t written) {
                                                  if (self->finished_) return;
                                                  if (d.toward_client) self->traffic_.to_client += written;
                                                  if (wec) return self->finish(to_std(wec));
                                                  self->pump(d);
                                                });
                            });
  }

  asio::io_context& io_;
  Socket client_;
  Socket server_;
  Done done_;
  Traffic traffic_;
  bool finished_ = false;
  Direction up_{&client_, &server_, false};   // client -> server
  Direction down_{&server_, &client_, true};  // server -> client
};

}  // namespace

std::unique_ptr<Session> relay(asio::io_context& io, UniqueFd conn, const sockaddr_storage& target,
                               socklen_t target_len, Done done) {
  auto impl = std::make_shared<RelayImpl>(io, std::move(done));
  impl->start(std::move(conn), target, target_len);
  return std::make_unique<detail::Handle<RelayImpl>>(std::move(impl));
}

}  // namespace superd::inloop
