// The import-xinetd command: convert_file (xinetd.hpp) does the work; this writes its output.
#include "xinetd/cli.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "xinetd/xinetd.hpp"

namespace superd::xinetd {

int import_main(const std::string& file, const std::string& out_dir) {
  Result r = convert_file(file.empty() ? kDefaultConfig : file);
  for (const auto& w : r.warnings) std::cerr << w.to_string() << "\n";
  for (const auto& e : r.errors) std::cerr << e << "\n";
  int rc = r.errors.empty() ? 0 : 2;
  if (out_dir.empty()) {
    for (const auto& s : r.services) std::cout << "# ---- " << s.name << ".toml\n" << s.toml;
    std::cout.flush();
    return rc;
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    std::cerr << out_dir << ": " << ec.message() << "\n";
    return 1;
  }
  for (const auto& s : r.services) {
    std::string path = out_dir + "/" + s.name + ".toml";
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << s.toml;
    out.close();
    if (!out) {
      std::cerr << path << ": " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  return rc;
}

}  // namespace superd::xinetd
