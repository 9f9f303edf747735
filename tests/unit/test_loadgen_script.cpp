// loadgen::script (bench/loadgen): the step language parsed from strings, its order rules, and
// the scripts the old --send/--expect flags stand for.
#include <catch2/catch.hpp>

#include "loadgen/script.hpp"

using namespace loadgen::script;

TEST_CASE("loadgen script: escapes", "[loadgen_script]") {
  CHECK(unescape("GET / HTTP/1.0\\r\\n\\r\\n") == "GET / HTTP/1.0\r\n\r\n");
  CHECK(unescape("a\\x41\\\\b\\0c") == std::string("aA\\b\0c", 6));
  CHECK(unescape("\\q\\x4") == "\\q\\x4");  // unknown and short escapes stay as written
}

TEST_CASE("loadgen script: an HTTP/1.0 GET from a file", "[loadgen_script]") {
  Script s;
  REQUIRE_FALSE(parse(s, "# a comment\n\nsend GET / HTTP/1.0\\r\\n\\r\\n\r\nexpect-regex ^HTTP/1\\.[01] 200 \neof\n"));
  REQUIRE(s.body.size() == 2);
  CHECK(s.body[0].kind == Kind::send);
  CHECK(s.body[0].text == "GET / HTTP/1.0\r\n\r\n");
  CHECK(s.body[1].kind == Kind::expect_regex);
  CHECK(s.body[1].text == "^HTTP/1\\.[01] 200 ");  // passed to std::regex as written
  REQUIRE(s.body[1].re);
  CHECK(std::regex_search(std::string("HTTP/1.1 200 OK\r\n"), *s.body[1].re));
  CHECK_FALSE(std::regex_search(std::string("HTTP/1.1 404 Not Found\r\n"), *s.body[1].re));
  REQUIRE(s.tail.size() == 1);
  CHECK(s.tail[0].kind == Kind::eof);
  CHECK(s.length() == 3);
  CHECK_FALSE(validate(s));
}

TEST_CASE("loadgen script: repeat runs the body N times, then the tail once", "[loadgen_script]") {
  Script s;
  REQUIRE_FALSE(parse(s, "send ping\\n\nexpect-prefix pong\\n\nrepeat 3\nshutdown\neof\n"));
  CHECK(s.repeat == 3);
  CHECK(s.length() == 2 * 3 + 2);
  CHECK(s.at(0).kind == Kind::send);
  CHECK(s.at(5).kind == Kind::expect_prefix);
  CHECK(s.at(6).kind == Kind::shutdown);
  CHECK(s.at(7).kind == Kind::eof);
}

TEST_CASE("loadgen script: errors name the line and the rule", "[loadgen_script]") {
  Script s;
  auto e = parse(s, "send a\nbogus x\n");
  REQUIRE(e);
  CHECK(e->find("line 2") != std::string::npos);
  Script t;
  CHECK(add_line(t, "eof") == std::nullopt);
  CHECK(add_line(t, "send x"));  // nothing after eof
  Script u;
  CHECK_FALSE(add_line(u, "shutdown"));
  CHECK(add_line(u, "send x"));  // no send after the half-close
  Script v;
  CHECK(add_line(v, "expect-regex ("));  // a bad regex is refused at parse time
  CHECK(add_line(v, "repeat 0"));
  CHECK(add_line(v, "send"));
  CHECK(add_line(v, "eof now"));
  Script w;
  REQUIRE_FALSE(add_line(w, "repeat 2"));
  CHECK(validate(w));  // nothing to repeat
}

TEST_CASE("loadgen script: the old flags", "[loadgen_script]") {
  Script plain = from_legacy(std::nullopt, true, std::string("hello\n"), false);
  REQUIRE(plain.length() == 1);
  CHECK(plain.at(0).kind == Kind::expect_exact);

  // --send, half-close, then the prefix: the prefix must wait for the half-close, or a server
  // that reads to EOF before answering would never answer.
  Script prefix = from_legacy(std::string("req"), true, std::string("HTTP"), true);
  REQUIRE(prefix.length() == 4);
  CHECK(prefix.at(0).kind == Kind::send);
  CHECK(prefix.at(1).kind == Kind::shutdown);
  CHECK(prefix.at(2).kind == Kind::expect_prefix);
  CHECK(prefix.at(3).kind == Kind::eof);

  Script none = from_legacy(std::nullopt, true, std::nullopt, false);
  REQUIRE(none.length() == 1);
  CHECK(none.at(0).kind == Kind::eof);
}
