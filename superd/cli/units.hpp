// `superd start|stop|enable|disable NAME`: the client side. start and stop ask the running
// daemon (they last until it restarts); enable and disable make or remove the link
// `NAME@INSTANCE.toml -> NAME@.toml` beside the template, as systemctl does, and with --now also
// start or stop it. Each prints one clear line on failure and returns non-zero.
#pragma once

#include <string>

namespace superd::cli {

int unit_command(const std::string& verb, const std::string& name, bool now, const std::string& config_path);

}  // namespace superd::cli
