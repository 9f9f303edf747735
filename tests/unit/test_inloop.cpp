// inloop: the internal services and the relay, driven over real sockets (socketpairs and loopback
// TCP) on an io_context run in the test thread. Every wait is bounded: a broken session fails the
// test instead of hanging it.
// clang-format off
#include <utility>  // before any Boost include (Boost 1.74 trap)
// clang-format on

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include "support.hpp"

#include "inloop/inloop.hpp"

using namespace superd;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using Socket = asio::generic::stream_protocol::socket;

namespace {
using superd::test::sa;
using superd::test::v4;
using superd::test::v6;

// Runs `io` until `pred()` holds or `limit` passes; false on timeout.
template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.restart();
    io.run_for(5ms);
    if (io.stopped()) std::this_thread::sleep_for(1ms);
  }
  return true;
}

void run_for(asio::io_context& io, std::chrono::milliseconds d) {
  run_until(
      io, [] { return false; }, d);
}

std::pair<UniqueFd, UniqueFd> stream_pair() {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

struct Outcome {
  int calls = 0;
  inloop::Traffic traffic;
  std::error_code ec;
  inloop::Done done() {
    return [this](inloop::Traffic t, std::error_code e) {
      ++calls;
      traffic = t;
      ec = e;
    };
  }
};

// The test's end of a connection, driven asynchronously on the same io_context.
struct Client {
  Client(asio::io_context& io, UniqueFd fd) : sock(io) {
    sock.assign(asio::generic::stream_protocol(AF_UNIX, 0), fd.release());
  }
  Client(asio::io_context& io, int family, int fd) : sock(io) {
    sock.assign(asio::generic::stream_protocol(family, 0), fd);
  }

  void send(std::string data, bool then_shutdown) {
    out = std::move(data);
    asio::async_write(sock, asio::buffer(out), [this, then_shutdown](boost::system::error_code ec, size_t n) {
      sent = n;
      write_done = true;
      write_err = ec;
      if (!ec && then_shutdown) sock.shutdown(Socket::shutdown_send);
    });
  }
  // Reads until EOF or an error, or until `limit` bytes arrived.
  void read_all(size_t limit = SIZE_MAX) {
    sock.async_read_some(asio::buffer(buf), [this, limit](boost::system::error_code ec, size_t n) {
      got.append(buf.data(), n);
      if (ec == asio::error::eof)
        eof = true;
      else if (ec)
        read_err = ec;
      else if (got.size() < limit)
        read_all(limit);
      else
        reached_limit = true;
    });
  }
  bool closed() const { return eof || read_err; }

  Socket sock;
  std::string out, got;
  size_t sent = 0;
  bool write_done = false, eof = false, reached_limit = false;
  boost::system::error_code write_err, read_err;
  std::array<char, 65536> buf{};
};

std::string random_bytes(size_t n) {
  std::mt19937 rng(42);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string chargen_stream(size_t bytes) {
  std::string s;
  for (size_t n = 0; s.size() < bytes; ++n) s += inloop::chargen_line(n);
  s.resize(bytes);
  return s;
}

int open_fd_count() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  while (::readdir(d)) ++n;
  ::closedir(d);
  return n;
}

// Echo ran to its end: the client got every byte back, then EOF, and Done counted both ways.
void check_echoed_all(asio::io_context& io, Client& c, Outcome& o, const std::string& payload) {
  REQUIRE(run_until(io, [&] { return c.closed() && o.calls > 0; }));
  CHECK(c.eof);
  CHECK(c.got == payload);
  CHECK_FALSE(o.ec);
  CHECK(o.traffic.from_client == payload.size());
  CHECK(o.traffic.to_client == payload.size());
}

}  // namespace

TEST_CASE("internal service names", "[inloop]") {
  for (auto w : {inloop::Internal::echo, inloop::Internal::discard, inloop::Internal::daytime,
                 inloop::Internal::chargen, inloop::Internal::time})
    CHECK(inloop::parse_internal(inloop::internal_name(w)) == w);
  CHECK(inloop::parse_internal("echo") == inloop::Internal::echo);
  CHECK_FALSE(inloop::parse_internal("Echo"));
  CHECK_FALSE(inloop::parse_internal("tcpmux"));
  CHECK_FALSE(inloop::parse_internal(""));
}

TEST_CASE("echo: a round trip, then the client's close ends it cleanly", "[inloop]") {
  asio::io_context io;
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::echo, std::move(server), o.done());
  Client c(io, std::move(client_fd));
  c.send("hello\r\n", false);
  c.read_all(7);
  REQUIRE(run_until(io, [&] { return c.reached_limit; }));
  CHECK(c.got == "hello\r\n");
  CHECK(o.calls == 0);
  c.sock.close();
  REQUIRE(run_until(io, [&] { return o.calls > 0; }));
  run_for(io, 20ms);
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.traffic.from_client == 7);
  CHECK(o.traffic.to_client == 7);
}

TEST_CASE("echo: a payload far larger than its buffer, with back-pressure", "[inloop]") {
  asio::io_context io;
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::echo, std::move(server), o.done());
  Client c(io, std::move(client_fd));
  const std::string payload = random_bytes(4 << 20);
  c.send(payload, true);
  // Nobody reads the echo yet: the service must stop reading once its write blocks, so the
  // client's write stalls far short of the 4 MiB (an unbounded reader would swallow it all).
  run_for(io, 300ms);
  CHECK_FALSE(c.write_done);
  CHECK(o.calls == 0);
  c.read_all();
  REQUIRE(run_until(
      io, [&] { return c.closed() && o.calls > 0; }, 20000ms));
  CHECK(c.eof);
  CHECK(c.got.size() == payload.size());
  CHECK(c.got == payload);
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.traffic.from_client == payload.size());
  CHECK(o.traffic.to_client == payload.size());
}

TEST_CASE("echo: after the client's half-close it finishes its writes, then closes", "[inloop]") {
  asio::io_context io;
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::echo, std::move(server), o.done());
  Client c(io, std::move(client_fd));
  const std::string payload = random_bytes(1 << 20);  // more than the socket buffers hold
  c.send(payload, true);
  // The echo is not read yet: the FIN sits behind data the service cannot write back.
  run_for(io, 100ms);
  CHECK(o.calls == 0);
  c.read_all();
  check_echoed_all(io, c, o, payload);
}

TEST_CASE("echo: shut down at once with data queued still gets every byte back", "[inloop]") {
  asio::io_context io;
  auto [server, client_fd] = stream_pair();
  std::string payload = "some bytes before the FIN\n";
  REQUIRE(::send(client_fd.get(), payload.data(), payload.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(payload.size()));
  REQUIRE(::shutdown(client_fd.get(), SHUT_WR) == 0);
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::echo, std::move(server), o.done());
  Client c(io, std::move(client_fd));
  c.read_all();
  check_echoed_all(io, c, o, payload);
}

TEST_CASE("discard: counts what it reads until EOF", "[inloop]") {
  asio::io_context io;
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::discard, std::move(server), o.done());
  Client c(io, std::move(client_fd));
  c.send(random_bytes(300000), true);
  c.read_all();
  REQUIRE(run_until(io, [&] { return c.closed() && o.calls > 0; }));
  CHECK(c.eof);
  CHECK(c.got.empty());
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.traffic.from_client == 300000);
  CHECK(o.traffic.to_client == 0);
}

TEST_CASE("daytime text: ctime's layout, CRLF", "[inloop]") {
  for (time_t t : {time_t(0), time_t(1796112136), time_t(951782400), ::time(nullptr)}) {
    char buf[64];
    REQUIRE(::ctime_r(&t, buf));
    std::string want(buf);
    REQUIRE(want.back() == '\n');
    want.insert(want.size() - 1, "\r");
    CHECK(inloop::daytime_text(t) == want);
  }
  // In UTC the value is known outright.
  const char* old = std::getenv("TZ");
  std::string saved = old ? old : "";
  ::setenv("TZ", "UTC", 1);
  ::tzset();
  CHECK(inloop::daytime_text(1796112136) == "Tue Dec  1 08:02:16 2026\r\n");
  CHECK(inloop::daytime_text(0) == "Thu Jan  1 00:00:00 1970\r\n");
  if (old)
    ::setenv("TZ", saved.c_str(), 1);
  else
    ::unsetenv("TZ");
  ::tzset();
}

TEST_CASE("daytime over a stream: one line, then close", "[inloop]") {
  asio::io_context io;
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::daytime, std::move(server), o.done());
  Client c(io, std::move(client_fd));
  c.read_all();
  REQUIRE(run_until(io, [&] { return c.closed() && o.calls > 0; }));
  CHECK(c.eof);
  std::regex line(
      "(Sun|Mon|Tue|Wed|Thu|Fri|Sat) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
      "[ 123][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] [0-9]{4}\r\n");
  CHECK(std::regex_match(c.got, line));
  CHECK_FALSE(o.ec);
  CHECK(o.traffic.to_client == c.got.size());
}

TEST_CASE("time bytes: seconds since 1900, big-endian", "[inloop]") {
  CHECK(inloop::time_bytes(0) == std::array<uint8_t, 4>{0x83, 0xaa, 0x7e, 0x80});  // 2208988800
  CHECK(inloop::time_bytes(1796112136) == std::array<uint8_t, 4>{0xee, 0xb8, 0xfd, 0x88});
  // RFC 868's 32 bits wrap on 2036-02-07 06:28:16 UTC.
  CHECK(inloop::time_bytes(2085978496) == std::array<uint8_t, 4>{0, 0, 0, 0});
}

TEST_CASE("time over a stream: 4 bytes, then close", "[inloop]") {
  asio::io_context io;
  auto [server, client_fd] = stream_pair();
  Outcome o;
  time_t before = ::time(nullptr);
  auto session = inloop::serve_stream(io, inloop::Internal::time, std::move(server), o.done());
  Client c(io, std::move(client_fd));
  c.read_all();
  REQUIRE(run_until(io, [&] { return c.closed() && o.calls > 0; }));
  time_t after = ::time(nullptr);
  CHECK(c.eof);
  REQUIRE(c.got.size() == 4);
  uint32_t v = 0;
  for (char ch : c.got) v = (v << 8) | static_cast<uint8_t>(ch);
  CHECK(v >= static_cast<uint32_t>(before + 2208988800u));
  CHECK(v <= static_cast<uint32_t>(after + 2208988800u));
  CHECK_FALSE(o.ec);
  CHECK(o.traffic.to_client == 4);
}

TEST_CASE("chargen lines: 72 rotating printable characters and CRLF", "[inloop]") {
  std::string l0 = inloop::chargen_line(0);
  REQUIRE(l0.size() == 74);
  CHECK(l0.substr(0, 10) == " !\"#$%&'()");
  CHECK(l0.substr(72) == "\r\n");
  CHECK(inloop::chargen_line(1).substr(0, 3) == "!\"#");
  CHECK(inloop::chargen_line(94)[0] == '~');
  CHECK(inloop::chargen_line(94)[1] == ' ');  // wraps round the 95 printable characters
  CHECK(inloop::chargen_line(95) == l0);
  for (size_t n = 0; n < 95; ++n) {
    std::string l = inloop::chargen_line(n);
    for (size_t i = 0; i < 72; ++i) {
      CHECK(l[i] >= 32);
      CHECK(l[i] <= 126);
      if (i > 0) CHECK((l[i] - 32) == (l[i - 1] - 32 + 1) % 95);
    }
  }
}

TEST_CASE("chargen over a stream: the pattern, until the client closes", "[inloop]") {
  asio::io_context io;
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::chargen, std::move(server), o.done());
  Client c(io, std::move(client_fd));
  c.send("input it reads and drops", true);  // a half-close does not stop chargen
  c.read_all(20000);
  REQUIRE(run_until(io, [&] { return c.reached_limit || c.closed(); }));
  REQUIRE(c.reached_limit);
  CHECK(c.got.substr(0, 20000) == chargen_stream(20000));
  run_for(io, 20ms);
  CHECK(o.calls == 0);
  c.sock.close();
  REQUIRE(run_until(io, [&] { return o.calls > 0; }));
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);  // the client going away is how chargen ends
  CHECK(o.traffic.to_client >= 20000);
  CHECK(o.traffic.from_client == std::string("input it reads and drops").size());
}

TEST_CASE("chargen over loopback TCP stops on the client's reset", "[inloop]") {
  asio::io_context io;
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket cs(io);
  cs.connect(acc.local_endpoint());
  asio::ip::tcp::socket ss = acc.accept();
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::chargen, UniqueFd(ss.release()), o.done());
  Client c(io, AF_INET, cs.release());
  c.read_all(5000);
  REQUIRE(run_until(io, [&] { return c.reached_limit || c.closed(); }));
  REQUIRE(c.reached_limit);
  CHECK(c.got.substr(0, 5000) == chargen_stream(5000));
  c.sock.close();  // unread data in its buffer: the kernel answers with RST
  REQUIRE(run_until(io, [&] { return o.calls > 0; }));
  CHECK_FALSE(o.ec);
}

TEST_CASE("stream setup failures are reported through a posted done", "[inloop]") {
  asio::io_context io;
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
  UniqueFd keep(p[1]);
  Outcome o;
  auto session = inloop::serve_stream(io, inloop::Internal::echo, UniqueFd(p[0]), o.done());
  CHECK(o.calls == 0);  // never from inside serve_stream
  REQUIRE(run_until(io, [&] { return o.calls > 0; }));
  CHECK(o.ec == std::errc::not_a_socket);
  CHECK(::fcntl(p[0], F_GETFD) == -1);  // closed
}

TEST_CASE("destroying a session never calls done and closes its socket", "[inloop]") {
  SECTION("mid-echo") {
    asio::io_context io;
    auto [server, client_fd] = stream_pair();
    Outcome o;
    auto session = inloop::serve_stream(io, inloop::Internal::echo, std::move(server), o.done());
    Client c(io, std::move(client_fd));
    c.send(random_bytes(1 << 20), false);
    run_for(io, 50ms);
    CHECK(session->traffic().from_client > 0);
    CHECK(session->traffic().to_client <= session->traffic().from_client);
    session.reset();
    c.read_all();
    REQUIRE(run_until(io, [&] { return c.closed(); }));
    run_for(io, 50ms);
    CHECK(o.calls == 0);
  }
  SECTION("after done was posted but before it ran") {
    asio::io_context io;
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    UniqueFd keep(p[1]);
    Outcome o;
    auto session = inloop::serve_stream(io, inloop::Internal::echo, UniqueFd(p[0]), o.done());
    session.reset();
    run_for(io, 50ms);
    CHECK(o.calls == 0);
  }
  SECTION("inside done itself") {
    asio::io_context io;
    auto [server, client_fd] = stream_pair();
    std::unique_ptr<inloop::Session> session;
    int calls = 0;
    session =
        inloop::serve_stream(io, inloop::Internal::time, std::move(server), [&](inloop::Traffic, std::error_code) {
          ++calls;
          session.reset();
        });
    REQUIRE(run_until(io, [&] { return calls > 0; }));
    run_for(io, 20ms);
    CHECK(calls == 1);
    CHECK_FALSE(session);
  }
}

namespace {
// A loopback TCP server for the relay tests: reads until EOF (the relay's propagated half-close),
// then answers "got N" and closes.
struct CountingServer {
  explicit CountingServer(asio::io_context& io) : acc(io, {asio::ip::make_address("127.0.0.1"), 0}), sock(io) {
    acc.async_accept(sock, [this](boost::system::error_code ec) {
      if (ec) return;
      accepted = true;
      read();
    });
  }
  void read() {
    sock.async_read_some(asio::buffer(buf), [this](boost::system::error_code ec, size_t n) {
      received += n;
      if (ec == asio::error::eof) {
        saw_eof = true;
        reply = "got " + std::to_string(received) + "\n";
        asio::async_write(sock, asio::buffer(reply), [this](boost::system::error_code, size_t) { sock.close(); });
      } else if (!ec) {
        read();
      }
    });
  }
  sockaddr_storage target(socklen_t& len) {
    auto ep = acc.local_endpoint();
    sockaddr_storage ss{};
    std::memcpy(&ss, ep.data(), ep.size());
    len = static_cast<socklen_t>(ep.size());
    return ss;
  }

  asio::ip::tcp::acceptor acc;
  asio::ip::tcp::socket sock;
  bool accepted = false, saw_eof = false;
  size_t received = 0;
  std::string reply;
  std::array<char, 65536> buf{};
};
}  // namespace

TEST_CASE("relay: copies both ways, counts bytes, propagates the half-close", "[inloop]") {
  asio::io_context io;
  CountingServer srv(io);
  socklen_t len = 0;
  auto target = srv.target(len);
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::relay(io, std::move(server), target, len, o.done());
  Client c(io, std::move(client_fd));
  const std::string payload = random_bytes(1 << 20);  // 16 times the relay's buffer
  c.send(payload, true);
  c.read_all();
  REQUIRE(run_until(
      io, [&] { return c.closed() && o.calls > 0; }, 20000ms));
  CHECK(srv.saw_eof);
  CHECK(srv.received == payload.size());
  CHECK(c.eof);
  CHECK(c.got == "got 1048576\n");
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.traffic.from_client == payload.size());
  CHECK(o.traffic.to_client == c.got.size());
}

TEST_CASE("relay: to the loopback echo, interactively", "[inloop]") {
  asio::io_context io;
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  Outcome echo_o;
  std::unique_ptr<inloop::Session> echo;
  acc.async_accept([&](boost::system::error_code ec, asio::ip::tcp::socket s) {
    if (!ec) echo = inloop::serve_stream(io, inloop::Internal::echo, UniqueFd(s.release()), echo_o.done());
  });
  auto ep = acc.local_endpoint();
  sockaddr_storage target{};
  std::memcpy(&target, ep.data(), ep.size());
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::relay(io, std::move(server), target, static_cast<socklen_t>(ep.size()), o.done());
  Client c(io, std::move(client_fd));
  c.send("ping\n", false);
  c.read_all(5);
  REQUIRE(run_until(io, [&] { return c.reached_limit || c.closed(); }));
  CHECK(c.got == "ping\n");
  CHECK(o.calls == 0);  // still open both ways
  c.sock.shutdown(Socket::shutdown_send);
  c.read_all();
  REQUIRE(run_until(io, [&] { return c.closed() && o.calls > 0 && echo_o.calls > 0; }));
  CHECK(c.eof);
  CHECK_FALSE(o.ec);
  CHECK_FALSE(echo_o.ec);
  CHECK(o.traffic.from_client == 5);
  CHECK(o.traffic.to_client == 5);
  CHECK(echo_o.traffic.from_client == 5);
}

TEST_CASE("relay: a refused connect ends with ECONNREFUSED and closes the client", "[inloop]") {
  asio::io_context io;
  // A bound but not listening socket: its port is ours, and a connect to it is refused.
  UniqueFd closed_port(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto addr = v4("127.0.0.1", 0);
  REQUIRE(::bind(closed_port.get(), sa(addr), sizeof(sockaddr_in)) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(closed_port.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);

  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::relay(io, std::move(server), addr, len, o.done());
  CHECK(o.calls == 0);
  Client c(io, std::move(client_fd));
  c.read_all();
  REQUIRE(run_until(io, [&] { return c.closed() && o.calls > 0; }));
  CHECK(o.calls == 1);
  CHECK(o.ec == std::errc::connection_refused);
  CHECK(c.eof);
  CHECK(o.traffic.from_client == 0);
  CHECK(o.traffic.to_client == 0);
}

TEST_CASE("relay: the server's reset ends it with that error", "[inloop]") {
  asio::io_context io;
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket peer(io);
  bool accepted = false;
  acc.async_accept(peer, [&](boost::system::error_code ec) { accepted = !ec; });
  auto ep = acc.local_endpoint();
  sockaddr_storage target{};
  std::memcpy(&target, ep.data(), ep.size());
  auto [server, client_fd] = stream_pair();
  Outcome o;
  auto session = inloop::relay(io, std::move(server), target, static_cast<socklen_t>(ep.size()), o.done());
  Client c(io, std::move(client_fd));
  c.send("unread by the server\n", false);
  REQUIRE(run_until(io, [&] { return accepted && c.write_done; }));
  run_for(io, 20ms);
  peer.set_option(asio::socket_base::linger(true, 0));  // close() now sends RST
  peer.close();
  c.read_all();
  REQUIRE(run_until(io, [&] { return c.closed() && o.calls > 0; }));
  CHECK(o.ec == std::errc::connection_reset);
}

TEST_CASE("destroying a relay never calls done and closes both sides", "[inloop]") {
  SECTION("while connecting") {
    asio::io_context io;
    CountingServer srv(io);
    socklen_t len = 0;
    auto target = srv.target(len);
    auto [server, client_fd] = stream_pair();
    Outcome o;
    auto session = inloop::relay(io, std::move(server), target, len, o.done());
    session.reset();  // before the loop ran: the connect's completion is still pending
    Client c(io, std::move(client_fd));
    c.read_all();
    REQUIRE(run_until(io, [&] { return c.closed(); }));
    run_for(io, 20ms);
    CHECK(o.calls == 0);
  }
  SECTION("mid-stream") {
    asio::io_context io;
    CountingServer srv(io);
    socklen_t len = 0;
    auto target = srv.target(len);
    auto [server, client_fd] = stream_pair();
    Outcome o;
    auto session = inloop::relay(io, std::move(server), target, len, o.done());
    Client c(io, std::move(client_fd));
    c.send(random_bytes(1 << 20), false);
    REQUIRE(run_until(io, [&] { return srv.received > 0; }));
    CHECK(session->traffic().from_client >= srv.received);
    session.reset();
    c.read_all();
    REQUIRE(run_until(io, [&] { return c.closed() && (srv.saw_eof || !srv.sock.is_open()); }));
    run_for(io, 20ms);
    CHECK(o.calls == 0);
    CHECK(srv.saw_eof);  // the relay's server side closed too
  }
}

TEST_CASE("datagram answers", "[inloop]") {
  std::array<char, 2048> out{};
  const time_t now = 1796112136;
  SECTION("echo returns the payload, truncated to the capacity") {
    std::string in = "a datagram";
    auto n = inloop::answer_datagram(inloop::Internal::echo, in.data(), in.size(), out.data(), 512, now);
    REQUIRE(n);
    CHECK(std::string(out.data(), *n) == in);
    std::string big = random_bytes(1000);
    n = inloop::answer_datagram(inloop::Internal::echo, big.data(), big.size(), out.data(), 512, now);
    REQUIRE(n);
    CHECK(*n == 512);
    CHECK(std::string(out.data(), 512) == big.substr(0, 512));
    n = inloop::answer_datagram(inloop::Internal::echo, nullptr, 0, out.data(), 512, now);
    CHECK(n == size_t{0});  // an empty datagram gets an empty reply
  }
  SECTION("discard never answers") {
    CHECK_FALSE(inloop::answer_datagram(inloop::Internal::discard, "x", 1, out.data(), out.size(), now));
  }
  SECTION("daytime and time ignore the payload") {
    auto n = inloop::answer_datagram(inloop::Internal::daytime, "junk", 4, out.data(), out.size(), now);
    REQUIRE(n);
    CHECK(std::string(out.data(), *n) == inloop::daytime_text(now));
    n = inloop::answer_datagram(inloop::Internal::time, "junk", 4, out.data(), out.size(), now);
    REQUIRE(n == size_t{4});
    auto want = inloop::time_bytes(now);
    CHECK(std::memcmp(out.data(), want.data(), 4) == 0);
  }
  SECTION("chargen: a random-length slice of the pattern, at most 512") {
    const std::string pattern = chargen_stream(512);
    std::set<size_t> lengths;
    for (int i = 0; i < 64; ++i) {
      auto n = inloop::answer_datagram(inloop::Internal::chargen, "x", 1, out.data(), out.size(), now);
      REQUIRE(n);
      CHECK(*n <= 512);
      CHECK(std::string(out.data(), *n) == pattern.substr(0, *n));
      lengths.insert(*n);
    }
    CHECK(lengths.size() > 1);
  }
}

TEST_CASE("datagram loop and amplification guard", "[inloop]") {
  for (uint16_t port : {0, 7, 9, 13, 19, 37, 53, 123, 1023, 2049}) {
    INFO(port);
    CHECK(inloop::drop_datagram_from(sa(v4("127.0.0.1", port))));
    CHECK(inloop::drop_datagram_from(sa(v4("192.0.2.10", port))));
    CHECK(inloop::drop_datagram_from(sa(v6("::1", port))));
    CHECK(inloop::drop_datagram_from(sa(v6("::ffff:192.0.2.10", port))));
  }
  for (uint16_t port : {1024, 2048, 40000, 65535}) {
    INFO(port);
    CHECK_FALSE(inloop::drop_datagram_from(sa(v4("127.0.0.1", port))));
    CHECK_FALSE(inloop::drop_datagram_from(sa(v4("192.0.2.10", port))));
    CHECK_FALSE(inloop::drop_datagram_from(sa(v6("::1", port))));
    CHECK_FALSE(inloop::drop_datagram_from(sa(v6("2001:db8::1", port))));
    CHECK_FALSE(inloop::drop_datagram_from(sa(v6("::ffff:192.0.2.10", port))));
  }
  // Sources no real sender has.
  CHECK(inloop::drop_datagram_from(sa(v4("0.0.0.0", 40000))));
  CHECK(inloop::drop_datagram_from(sa(v4("255.255.255.255", 40000))));
  CHECK(inloop::drop_datagram_from(sa(v4("224.0.0.1", 40000))));
  CHECK(inloop::drop_datagram_from(sa(v6("::", 40000))));
  CHECK(inloop::drop_datagram_from(sa(v6("ff02::1", 40000))));
  CHECK(inloop::drop_datagram_from(sa(v6("::ffff:224.0.0.1", 40000))));
  CHECK(inloop::drop_datagram_from(nullptr));
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  CHECK_FALSE(inloop::drop_datagram_from(reinterpret_cast<const sockaddr*>(&un)));
}

net::ListenSpec listen_spec(const char* text) {
  std::string why;
  auto spec = net::parse_listen(text, why);
  REQUIRE(spec);
  return *spec;
}

TEST_CASE("own sockets: a local source on a port superd listens on gets no reply", "[inloop]") {
  std::vector<net::ListenSpec> specs = {listen_spec("127.0.0.1:16001"), listen_spec("[::1]:16002"),
                                        listen_spec("16003"),           listen_spec("192.0.2.7:16004"),
                                        listen_spec("[::]:16005"),      listen_spec("/run/x.sock")};
  std::vector<net::SourceKey> host = {net::source_key(sa(v4("10.1.2.3", 0))),
                                      net::source_key(sa(v6("2001:db8::5", 0)))};
  inloop::OwnSockets own(specs, host);
  // The server answering itself, and its neighbours on loopback and the host's addresses.
  CHECK(own.contains(sa(v4("127.0.0.1", 16001))));
  CHECK(own.contains(sa(v4("127.5.5.5", 16001))));         // all of 127/8 is this host
  CHECK(own.contains(sa(v4("10.1.2.3", 16001))));          // an interface address
  CHECK(own.contains(sa(v4("192.0.2.7", 16004))));         // a listen address, even if no interface has it
  CHECK(own.contains(sa(v6("::ffff:127.0.0.1", 16001))));  // v4-mapped counts as IPv4
  CHECK(own.contains(sa(v6("::1", 16002))));
  CHECK(own.contains(sa(v4("127.0.0.1", 16003))));  // a bare port is dual-stack
  CHECK(own.contains(sa(v6("::1", 16003))));
  CHECK(own.contains(sa(v4("127.0.0.1", 16005))));  // [::]:P may take IPv4 too
  CHECK(own.contains(sa(v6("2001:db8::5", 16005))));
  // Remote sources, other ports, the wrong family for a port, non-IP.
  CHECK_FALSE(own.contains(sa(v4("198.51.100.1", 16001))));
  CHECK_FALSE(own.contains(sa(v6("2001:db8::99", 16002))));
  CHECK_FALSE(own.contains(sa(v4("127.0.0.1", 40000))));
  CHECK_FALSE(own.contains(sa(v4("127.0.0.1", 16002))));  // [::1]:16002 is IPv6 only
  CHECK_FALSE(own.contains(sa(v6("::1", 16001))));        // 127.0.0.1:16001 is IPv4 only
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  CHECK_FALSE(own.contains(reinterpret_cast<const sockaddr*>(&un)));
  CHECK_FALSE(own.contains(nullptr));
  CHECK_FALSE(inloop::OwnSockets().contains(sa(v4("127.0.0.1", 16001))));  // no listeners, no loop
}

TEST_CASE("own sockets: the host's addresses include loopback", "[inloop]") {
  auto host = inloop::OwnSockets::host_addresses();
  CHECK(std::find(host.begin(), host.end(), net::source_key(sa(v4("127.0.0.1", 0)))) != host.end());
}

TEST_CASE("reply limiter: per source a burst, then the refill; other sources unaffected", "[inloop]") {
  using L = inloop::ReplyLimiter;
  L lim(L::Rate{1000, 1000ms}, L::Rate{20, 2000ms});  // the defaults: 10/s per source, bursts of 20
  auto t0 = std::chrono::steady_clock::now();
  auto a = net::source_key(sa(v4("192.0.2.1", 5000))), b = net::source_key(sa(v4("192.0.2.2", 5000)));
  int replies = 0;
  for (int i = 0; i < 1000; ++i) replies += lim.take(a, t0) == L::Verdict::reply;
  CHECK(replies == 20);
  CHECK(lim.take(a, t0) == L::Verdict::over_source);
  CHECK(lim.take(b, t0) == L::Verdict::reply);
  // 100 ms later one more token for a: 2000 ms / 20.
  replies = 0;
  for (int i = 0; i < 100; ++i) replies += lim.take(a, t0 + 100ms) == L::Verdict::reply;
  CHECK(replies == 1);
  // A port is not a source: the same address from another port shares the bucket.
  CHECK(lim.take(net::source_key(sa(v4("192.0.2.1", 6000))), t0 + 100ms) == L::Verdict::over_source);
}

TEST_CASE("reply limiter: the cap for all sources, untouched by refused sources", "[inloop]") {
  using L = inloop::ReplyLimiter;
  L lim(L::Rate{3, 1000ms}, L::Rate{1, 1000ms});
  auto t0 = std::chrono::steady_clock::now();
  auto src = [](int i) { return net::source_key(sa(v4(("198.51.100." + std::to_string(i)).c_str(), 4000))); };
  CHECK(lim.take(src(1), t0) == L::Verdict::reply);
  for (int i = 0; i < 10; ++i) CHECK(lim.take(src(1), t0) == L::Verdict::over_source);
  CHECK(lim.take(src(2), t0) == L::Verdict::reply);
  CHECK(lim.take(src(3), t0) == L::Verdict::reply);
  CHECK(lim.take(src(4), t0) == L::Verdict::over_all);
  CHECK(lim.take(src(5), t0 + 1000ms) == L::Verdict::reply);
  // Both unlimited: always a reply, and no table at all.
  L open(L::Rate{0, 1000ms}, L::Rate{0, 1000ms});
  for (int i = 0; i < 100; ++i) CHECK(open.take(src(1), t0) == L::Verdict::reply);
  CHECK(open.sources_tracked() == 0);
}

TEST_CASE("reply limiter: forged sources cannot grow it nor free a busy source", "[inloop]") {
  using L = inloop::ReplyLimiter;
  L lim(L::Rate{0, 1000ms}, L::Rate{20, 2000ms});
  auto t0 = std::chrono::steady_clock::now();
  auto victim = net::source_key(sa(v6("2001:db8::1", 4000)));
  for (int i = 0; i < 20; ++i) REQUIRE(lim.take(victim, t0) == L::Verdict::reply);
  int victim_replies = 0;
  for (uint32_t i = 0; i < 200000; ++i) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(0x0a000000u + i);  // 10.0.0.0/8, each one new
    lim.take(net::source_key(reinterpret_cast<const sockaddr*>(&in)), t0);
    if (i % 16 == 0) victim_replies += lim.take(victim, t0) == L::Verdict::reply;
  }
  CHECK(lim.sources_tracked() == L::kEntries);  // full, never more
  CHECK(victim_replies == 0);                   // still recently used: never evicted
}

TEST_CASE("the relay's outgoing socket is close-on-exec; sessions leave no fd behind", "[inloop]") {
  int before = open_fd_count();
  {
    asio::io_context io;
    CountingServer srv(io);
    socklen_t len = 0;
    auto target = srv.target(len);
    auto [server, client_fd] = stream_pair();
    Outcome o;
    auto session = inloop::relay(io, std::move(server), target, len, o.done());
    Client c(io, std::move(client_fd));
    c.send("x", false);
    REQUIRE(run_until(io, [&] { return srv.received > 0; }));
    // Find the relay's outgoing socket: the one whose peer is the target.
    int found = -1;
    for (int fd = 3; fd < 1024; ++fd) {
      sockaddr_storage peer{};
      socklen_t plen = sizeof peer;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0 && plen == len &&
          std::memcmp(&peer, &target, len) == 0)
        found = fd;
    }
    REQUIRE(found >= 0);
    CHECK((::fcntl(found, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(found, F_GETFL) & O_NONBLOCK) != 0);

    auto [s2, c2] = stream_pair();
    Outcome o2;
    auto echo = inloop::serve_stream(io, inloop::Internal::echo, std::move(s2), o2.done());
    Client e(io, std::move(c2));
    e.send("y", true);
    e.read_all();
    REQUIRE(run_until(io, [&] { return o2.calls > 0; }));
    session.reset();
    echo.reset();
    run_for(io, 20ms);
  }
  CHECK(open_fd_count() == before);
}
