// Landlock scoping (kernel ABI 6): an instance may connect only to abstract UNIX sockets, and
// signal only processes, of its own Landlock domain (itself and what it forks). The ruleset
// handles no filesystem or network access (handled_access_fs = 0): only its `scoped` bits.
//
// Prepare in the parent, commit in the child: the daemon probes the kernel's ABI once
// (supported_scopes) and drops what it lacks, with one warning; the child (or the zygote)
// calls restrict_self(), which is three syscalls and allocates nothing. A zygote restricts
// itself and every instance it clones restricts itself again: each instance gets a domain of
// its own, nested in the zygote's, so instance A cannot reach instance B's abstract socket or
// signal it, though both come from one zygote. landlock_restrict_self needs no_new_privs (or
// CAP_SYS_ADMIN); the plan sets no_new_privs whenever a scope is on.
//
// What scoping does not do: a process outside the domain (root, another service) can still
// connect to an abstract socket an instance binds, and an instance can still bind any free
// abstract name. Only a network namespace (private_network) separates the abstract namespace.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace superd::sandbox::landlock {

// linux/landlock.h of Debian 12 predates ABI 6; the values are the kernel's.
constexpr uint64_t kScopeAbstractUnixSocket = 1ULL << 0;  // LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
constexpr uint64_t kScopeSignal = 1ULL << 1;              // LANDLOCK_SCOPE_SIGNAL
constexpr int kScopeAbi = 6;                              // the first ABI with `scoped`

// The kernel's Landlock ABI version (cached after the first call): > 0, or -errno when
// Landlock is missing (ENOSYS) or disabled at boot (EOPNOTSUPP).
int abi_version() noexcept;

// The scopes an ABI offers: both from ABI 6 on, none before.
uint64_t scopes_of_abi(int abi) noexcept;
// The scopes this kernel offers.
uint64_t supported_scopes() noexcept;

// "abstract UNIX socket and signal scoping (Landlock ABI 6; this kernel has ABI 4)": the
// missing features, for the start-up warning.
std::string describe_missing(uint64_t missing, int abi);

// Returns describe_missing() the first time it is called with missing scopes, nullopt after:
// the daemon warns once per process, however many services ask.
std::optional<std::string> warning_once(uint64_t missing);

// Creates a ruleset with these scopes and restricts the calling thread to it (a new domain,
// nested in any it already has). 0, or -1 with errno. Async-signal-safe; allocates nothing.
int restrict_self(uint64_t scopes) noexcept;

}  // namespace superd::sandbox::landlock
