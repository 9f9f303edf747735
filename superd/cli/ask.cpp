// See ask.hpp.
#include "cli/ask.hpp"

#include "control/control.hpp"

namespace superd::cli {

nlohmann::json ask(const std::string& runtime_root, const nlohmann::json& request, std::string& error) {
  std::string text = control::request(runtime_root, request.dump(), error);
  if (text.empty()) {
    error = "cannot reach superd: " + error;
    return nullptr;
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "bad answer from superd";
    return nullptr;
  }
  if (j.contains("error") && j["error"].is_string()) {
    error = j["error"];
    return nullptr;
  }
  return j;
}

}  // namespace superd::cli
