// The names seccomp settings are written in: the syscall groups ("@system-service", "@mount",
// ..., modelled on systemd's src/shared/seccomp-util.c), actions, architectures, address
// families, and systemd's "~" list form. Internal to sandbox/seccomp*.cpp; the public face is
// seccomp.hpp.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace superd::sandbox::seccomp::detail {

using Names = std::set<std::string, std::less<>>;

struct Group {
  std::string_view name;
  std::span<const std::string_view> members;
};

std::span<const Group> groups() noexcept;
const Group* find_group(std::string_view name);
// Adds a group's members (nested groups expanded) or a single name to `out`.
void expand(std::string_view name, Names& out, int depth = 0);
// Known to this libseccomp (a call of another architecture counts as known).
bool known_syscall(std::string_view name);

// A deny list of families under an allow list of calls enumerates the others up to here.
constexpr int kFamilyMax = AF_MAX;

std::string quoted(std::string_view s);
// "EPERM" / "13" / "kill" -> a libseccomp action; "x86-64" -> an arch token; "AF_INET" -> 2.
std::optional<uint32_t> parse_action(std::string_view s, std::string& why);
std::optional<uint32_t> parse_arch(std::string_view s, std::string& why);
std::optional<int> parse_family(std::string_view s, std::string& why);

// A list in systemd's form: a leading "~" on the first entry makes it a deny list.
struct ParsedList {
  bool deny = false;
  std::vector<std::string_view> entries;  // without "~"
};
std::optional<ParsedList> parse_list(const std::vector<std::string>& list, const char* what, std::string& why);

}  // namespace superd::sandbox::seccomp::detail
