// control::parse_request: the control socket's requests, decoded from strings. A field of the
// wrong type is an answer for the peer, never an exception (which would end the daemon).
#include <catch2/catch.hpp>

#include "control/request.hpp"

using superd::control::parse_request;
using Op = superd::control::Request::Op;

TEST_CASE("control: requests decode into typed fields", "[control]") {
  std::string error;
  auto run = parse_request(R"({"op":"run","argv":["/bin/echo","hi"],"properties":["a=1"],"unit":"u"})", error);
  REQUIRE(run);
  CHECK(run->op == Op::run);
  CHECK(run->argv == std::vector<std::string>{"/bin/echo", "hi"});
  CHECK(run->properties == std::vector<std::string>{"a=1"});
  CHECK(run->unit == "u");
  auto cap = parse_request(R"({"op":"capsule","action":"list"})", error);
  REQUIRE(cap);
  CHECK(cap->op == Op::capsule);
  CHECK(cap->action == "list");
  CHECK(cap->name.empty());
  auto up = parse_request(R"({"op":"upgrade"})", error);
  REQUIRE(up);
  CHECK(up->binary.empty());
  auto start = parse_request(R"({"op":"start","name":"web@1"})", error);
  REQUIRE(start);
  CHECK(start->name == "web@1");
}

TEST_CASE("control: bad requests are errors, never exceptions", "[control]") {
  auto error_of = [](std::string_view msg) {
    std::string error;
    std::optional<superd::control::Request> r;
    REQUIRE_NOTHROW(r = parse_request(msg, error));
    CHECK(!r);
    return error;
  };
  CHECK(error_of("") == "malformed request");
  CHECK(error_of("[1]") == "malformed request");
  CHECK(error_of(R"({"name":"x"})") == "malformed request");
  CHECK(error_of(R"({"op":1})") == "unknown op");
  CHECK(error_of(R"({"op":"launch"})") == "unknown op");
  CHECK(error_of(R"({"op":"stop","name":7})") == "no service name");
  // These threw nlohmann::json::type_error out of the daemon's control handler before.
  CHECK(error_of(R"({"op":"capsule","action":1})") == "\"action\" must be a string");
  CHECK(error_of(R"({"op":"capsule","action":"start","name":[]})") == "\"name\" must be a string");
  CHECK(error_of(R"({"op":"upgrade","binary":false})") == "\"binary\" must be a string");
  CHECK(error_of(R"({"op":"run","argv":"/bin/sh"})") == "\"argv\" must be a list of strings");
  CHECK(error_of(R"({"op":"run","argv":["a",2]})") == "\"argv\" must be a list of strings");
  CHECK(error_of(R"({"op":"run","argv":["a"],"unit":null})") == "\"unit\" must be a string");
}
