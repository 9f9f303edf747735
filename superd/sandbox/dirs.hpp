// Host-side preparation of a service's directories, done once at start-up (never per
// connection):
//   <root>/private          0700 root:root — the boundary no dynamic UID can cross
//   <root>/private/NAME     the data; <root>/NAME is a symlink to private/NAME
//   <runtime_root>/NAME     an empty mountpoint for the per-instance runtime tmpfs
//
// Sharing between concurrent instances, each with its own UID: every instance of a service
// also carries the service's *group* G (a GID leased from the dynamic range for the daemon's
// lifetime, stable by preference: the current group of an existing directory, else a hash of
// the name). The directories are root:G, mode 2770 (setgid: new files inherit G), and the
// instances run with umask 0007 unless configured otherwise, so files one instance writes the
// next can write too — no per-connection chown, no race. Only when a directory's group is not
// G (first start, or G was taken) is the tree re-grouped recursively.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "config/config.hpp"
#include "sandbox/mounts.hpp"

namespace superd::sandbox {

// The host paths of the service's boundary directories ("<root>/private/NAME").
std::vector<std::string> boundary_dirs(const config::SandboxConfig& sb, const Roots& roots);

// The group of the first existing boundary directory, if any (the preferred service GID).
std::optional<gid_t> existing_group(const std::vector<std::string>& dirs);

// Which directory's owner a named lease prefers (so no chown is needed). The two kinds of named
// lease have always looked differently, and each keeps its way:
enum class OwnerLookup {
  any_owner,  // lstat: the first path that exists, whoever owns it (superd run's units)
  non_root,   // stat, following a symlink: the first one not owned by root (wait-mode instances)
};
// The owner of the first existing boundary directory, as `how` says; empty when none counts.
std::optional<uid_t> existing_owner(const std::vector<std::string>& dirs, OwnerLookup how);

// Creates what is missing (see above) and re-groups a tree whose group is not `gid`.
// `owner`: the owner of new directories (root for per-connection services, the UID of a
// named lease). Errors name the path.
std::error_code prepare_dirs(const config::SandboxConfig& sb, const Roots& roots, uid_t owner, gid_t gid,
                             mode_t mode_bits, std::string& failed_path);

// The placeholder that inaccessible_paths binds over files (mode 0000).
std::error_code prepare_runtime(const Roots& roots, std::string& failed_path);

// Recursively sets owner and group under `path` (no symlink following); counts changed entries.
std::error_code chown_tree(const std::string& path, uid_t uid, gid_t gid, size_t& changed);

}  // namespace superd::sandbox
