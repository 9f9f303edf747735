// `superd capsule start|stop|list|status|enable|disable` and `superd run --capsule`: the client
// side. start, stop and list ask the host's superd; status adds what the capsule's own superd
// says (its control socket under <runtime_root>/capsules/NAME); enable and disable make or remove
// the marker <config dir>/capsules.enabled/NAME, which superd reads when it starts.
#pragma once

#include <string>

namespace superd::cli {

int capsule_command(const std::string& verb, const std::string& name, bool json, const std::string& config_path);

// The runtime root of capsule `name`'s superd, for `superd run --capsule` (its control socket).
std::string capsule_runtime_root(const std::string& name, const std::string& config_path, std::string& error);

}  // namespace superd::cli
