// The orphan sweep: UIDs a previous superd leased when it died (crashed, killed) may still run
// processes — their PID namespaces outlive it — and own IPC objects. They must be swept before
// reuse, but not before superd serves: a sweep of 1,000 UIDs one after the other took minutes.
//
// Strategy: the daemon forks one sweeper process and goes on. The sweeper forks a helper per UID
// (up to kParallel at once); each helper takes the UID and repeats kill(-1, SIGKILL), which
// reaches exactly that UID's processes, until nothing is left to signal. One /proc scan then
// checks every UID at once, a few rounds until a deadline; the UIDs found clear have their IPC
// objects removed in one scan. The sweeper writes one fixed-size Result per UID on a pipe; the
// daemon reads them from its loop and returns each UID (or quarantines it) as its result comes.
// Until then the orphaned UIDs stay blocked in the pool.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <system_error>
#include <vector>

#include "cleanup/ipc.hpp"
#include "util/unique_fd.hpp"

namespace superd::cleanup::sweep {

enum class Step : uint32_t { done = 0, processes = 1, ipc = 2 };

struct Result {
  uint32_t uid;
  Step step;    // done: swept; else the step that failed
  int32_t err;  // errno of that step
};
static_assert(sizeof(Result) == 12);

struct Sweeper {
  pid_t pid = -1;
  UniqueFd results;  // read end; Results, then EOF when the sweeper is done
};

// Forks the sweeper for `uids`. Call from the single-threaded daemon.
std::optional<Sweeper> start(const std::vector<uint32_t>& uids, const ipc::Roots& roots, std::error_code& ec);

}  // namespace superd::cleanup::sweep

// Called by its short name across superd (sweep::...); it lives in cleanup/.
namespace superd {
namespace sweep = cleanup::sweep;
}  // namespace superd
