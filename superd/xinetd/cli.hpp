// `superd import-xinetd [FILE] [-o DIR]`: converts FILE (default /etc/xinetd.conf) and writes
// DIR/NAME.toml per service, or, without a directory, every file to stdout after a line
// "# ---- NAME.toml". Warnings go to stderr, one per line.
#pragma once

#include <string>

namespace superd::xinetd {

inline constexpr const char* kDefaultConfig = "/etc/xinetd.conf";

// Returns 0 when it converted (even with warnings), 2 when an input file cannot be read,
// 1 when an output file cannot be written.
int import_main(const std::string& file, const std::string& out_dir);

}  // namespace superd::xinetd
