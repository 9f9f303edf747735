// Decoding of control requests (request.hpp). Every field is read through a checked accessor:
// nlohmann's value() and get() throw on a wrong type, so none is called on the peer's data.
#include "control/request.hpp"

#include <array>
#include <nlohmann/json.hpp>
#include <utility>

namespace superd::control {
namespace {

using nlohmann::json;

// An optional string field: absent is "", anything but a string is an error.
bool read_string(const json& req, const char* key, std::string& out, std::string& error) {
  auto it = req.find(key);
  if (it == req.end()) return true;
  if (!it->is_string()) {
    error = std::string("\"") + key + "\" must be a string";
    return false;
  }
  out = it->get<std::string>();
  return true;
}

// An optional list of strings: absent is empty.
bool read_strings(const json& req, const char* key, std::vector<std::string>& out, std::string& error) {
  auto it = req.find(key);
  if (it == req.end()) return true;
  bool ok = it->is_array();
  if (ok)
    for (const json& v : *it) ok = ok && v.is_string();
  if (!ok) {
    error = std::string("\"") + key + "\" must be a list of strings";
    return false;
  }
  for (const json& v : *it) out.push_back(v.get<std::string>());
  return true;
}

constexpr std::array<std::pair<const char*, Request::Op>, 8> kOps{{
    {"status", Request::Op::status},
    {"reload", Request::Op::reload},
    {"run", Request::Op::run},
    {"upgrade", Request::Op::upgrade},
    {"capsule", Request::Op::capsule},
    {"start", Request::Op::start},
    {"stop", Request::Op::stop},
    {"keep", Request::Op::keep},
}};

}  // namespace

std::optional<Request> parse_request(std::string_view msg, std::string& error) {
  json req = json::parse(msg, nullptr, false);
  if (req.is_discarded() || !req.is_object() || !req.contains("op")) {
    error = "malformed request";
    return std::nullopt;
  }
  Request r;
  const json& op = req["op"];
  bool known = false;
  for (auto [name, value] : kOps)
    if (op.is_string() && op.get_ref<const std::string&>() == name) {
      r.op = value;
      known = true;
    }
  if (!known) {
    error = "unknown op";
    return std::nullopt;
  }
  switch (r.op) {
    case Request::Op::status:
    case Request::Op::reload:
      return r;
    case Request::Op::upgrade:
      if (!read_string(req, "binary", r.binary, error)) return std::nullopt;
      return r;
    case Request::Op::run:
      if (!read_strings(req, "argv", r.argv, error) || !read_strings(req, "properties", r.properties, error) ||
          !read_string(req, "unit", r.unit, error))
        return std::nullopt;
      return r;
    case Request::Op::capsule:
      if (!read_string(req, "action", r.action, error) || !read_string(req, "name", r.name, error)) return std::nullopt;
      return r;
    case Request::Op::start:
    case Request::Op::stop:
    case Request::Op::keep:
      if (!req.contains("name") || !req["name"].is_string()) {
        error = "no service name";
        return std::nullopt;
      }
      r.name = req["name"].get<std::string>();
      return r;
  }
  error = "unknown op";
  return std::nullopt;
}

}  // namespace superd::control
