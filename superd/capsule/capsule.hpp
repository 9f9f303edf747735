// Capsules: a whole superd running as a dynamic user, with a persistent home and a block of
// 65,536 host UIDs of its own (systemd 256's capsule@NAME.service, and then per-connection UIDs
// inside it). This module holds the host's side that needs no event loop:
//   - names and blocks: which block of capsule_uid_range a capsule owns (stable: the block that
//     owns its home already, else a hash of "capsule:NAME" and the blocks after it; never one
//     another capsule's home or a running capsule owns);
//   - the home <state_root>/capsules/NAME (created on first start, owned by the block's first
//     UID, the capsule's root) and the runtime directory <runtime_root>/capsules/NAME;
//   - launch(): clone into new user, mount, PID and IPC namespaces, map the block, and exec
//     `superd serve --capsule` as the namespace's root. The child's steps: PDEATHSIG, root of
//     the user namespace, the OS read-only and nosuid, its home and runtime directory writable,
//     private /tmp /var/tmp /dev/shm, other capsules' homes and runtime directories and the
//     host's boundary and superd directories covered, a fresh /proc, no_new_privs, exec.
// The daemon (daemon/capsules.cpp) starts, watches and stops them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "util/unique_fd.hpp"

namespace superd::capsule {

inline constexpr uint32_t kBlockSize = 65536;

// Why `name` cannot name a capsule ("" if it can): letters, digits, - _ . ; at most kMaxName
// (so that its user names, capsule-NAME-N, are valid ones of at most 31); not "." or "..".
inline constexpr size_t kMaxName = 16;
std::string name_error(const std::string& name);

struct Roots {
  std::string state_root, runtime_root;  // the host's
  uint32_t first = 0, last = 0;          // capsule_uid_range
  std::string home(const std::string& name) const { return state_root + "/capsules/" + name; }
  std::string runtime_dir(const std::string& name) const { return runtime_root + "/capsules/" + name; }
};

// The homes under <state_root>/capsules and the block each one's owner lies in (by name).
std::map<std::string, uint32_t> homes_by_block(const Roots& roots);

// The first UID of the block for `name`. `running`: blocks of capsules running now, by name.
std::optional<uint32_t> choose_block(const Roots& roots, const std::string& name,
                                     const std::map<std::string, uint32_t>& running);

// Creates (or adopts) the home and the runtime directory for a capsule with block `block`: the
// home 0711 and its .config/superd owned by the block's root; a home owned by another UID (the
// range moved) is given to the new one, file by file. On failure `failed` names the path.
std::error_code prepare_dirs(const Roots& roots, const std::string& name, uint32_t block, std::string& failed);

struct LaunchSpec {
  std::string name, home, runtime_dir;
  std::string exe;                // the superd binary to run inside
  uint32_t block = 0;             // host UIDs block..block+65535 are 0..65535 inside
  std::vector<std::string> hide;  // host directories covered by an empty tmpfs inside
  int ready_fd = -1;              // becomes fd 3 (--ready-fd 3)
  int log_fd = -1;                // stdout and stderr
  int alive_fd = -1;              // read end of a pipe whose write end the daemon holds while it lives
};

struct Launched {
  pid_t pid = -1;
  UniqueFd pidfd;
};

// Starts the capsule's superd; pid -1 and `error` on failure.
Launched launch(const LaunchSpec& spec, std::string& error);

}  // namespace superd::capsule
