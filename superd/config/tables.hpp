// Internal to superd/config: what each table reader offers the others. socket.cpp reads
// [socket], service.cpp [service] and the whole service file, sandbox.cpp the sandbox keys of
// [service]. Each reads into the plain structs of config.hpp and reports through its
// TableReader (reader.hpp), so every problem names file, line, column and key.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "config/reader.hpp"

namespace superd::config::detail {

// A user or group name, or a number.
std::optional<uid_t> resolve_user(const std::string& s);
std::optional<gid_t> resolve_group(const std::string& s);

// [socket] (socket.cpp); calls r.finish().
void read_socket(TableReader& r, SocketConfig& s);
// The sandbox keys of [service] (sandbox.cpp), after dynamic_user: their defaults follow it.
void read_sandbox(TableReader& r, ServiceConfig& svc, const std::string& name);
// [service] (service.cpp), the sandbox keys included; calls r.finish().
void read_service(TableReader& r, ServiceConfig& s, const std::string& name);
// A whole service file (service.cpp). `transient` (superd run): no listener is needed.
std::optional<Service> parse_service_file(std::string_view text, const std::string& file, const std::string& name,
                                          Problems& p, bool transient);

}  // namespace superd::config::detail
