// Processes by UID, outside the PID-namespace guarantee: the census of UIDs some foreign
// process runs with, and the kill sweep used on orphans left by a superd that died (their
// PID namespaces outlive it, so their UIDs must be swept before reuse).
#pragma once

#include <cstdint>
#include <system_error>
#include <vector>

namespace superd::cleanup::proc {

// Every real, effective, saved or filesystem UID in [lo, hi] of a live (non-zombie) process.
std::vector<uint32_t> uids_in_range(uint32_t lo, uint32_t hi);

// Kills every process running with `uid`: a helper child takes the UID (so kill(-1) reaches
// exactly that UID's processes and nothing else) and repeats kill(-1, SIGKILL) until none is
// left. Returns an error if processes remain after the deadline.
std::error_code kill_all_of_uid(uint32_t uid);

}  // namespace superd::cleanup::proc

// Called by its short name across superd (proc::...); it lives in cleanup/.
namespace superd {
namespace proc = cleanup::proc;
}  // namespace superd
