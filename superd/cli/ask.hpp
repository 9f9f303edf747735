// One request to the running daemon for the commands in cli/: its JSON answer, or null with
// `error` saying why (it could not be reached, answered nonsense, or answered {"error": ...}).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace superd::cli {

nlohmann::json ask(const std::string& runtime_root, const nlohmann::json& request, std::string& error);

}  // namespace superd::cli
