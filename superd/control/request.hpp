// A control request, decoded and checked once (Parse once): the daemon's handlers in
// daemon/requests.cpp get typed fields, never a JSON node. A request is a JSON object with a
// string "op"; a field of the wrong type is the peer's error, answered with a message, and never
// an exception inside the daemon's event loop (where it would end the daemon). Pure over text,
// so tests/unit and tests/fuzz feed it strings.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace superd::control {

struct Request {
  enum class Op { status, reload, run, upgrade, capsule, start, stop, keep };
  Op op = Op::status;
  std::string name;                           // start, stop, keep (required); capsule
  std::string action;                         // capsule: start, stop or list (checked by the daemon)
  std::string binary;                         // upgrade: "" for the running binary's path
  std::vector<std::string> argv, properties;  // run
  std::string unit;                           // run: "" for a one-off
};

// The request in `msg`, or nullopt with `error` set to the answer: "malformed request" (not a
// JSON object with an "op"), "unknown op", "no service name", or which field has the wrong type.
std::optional<Request> parse_request(std::string_view msg, std::string& error);

}  // namespace superd::control
