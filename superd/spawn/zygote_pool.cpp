// spawn::ZygotePool: see zygote_pool.hpp for the strategy.
#include "spawn/zygote_pool.hpp"

#include <sched.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace superd::spawn {

namespace asio = boost::asio;

struct ZygotePool::Slot {
  std::unique_ptr<Zygote> zygote;
  std::unique_ptr<asio::posix::stream_descriptor> answers;  // a dup of its socket, for the loop
  std::deque<Pending> pending;
  bool waiting = false;
};

std::vector<pid_t> ZygotePool::pids() const {
  std::vector<pid_t> out;
  for (const auto& slot : slots_)
    if (slot->zygote) out.push_back(slot->zygote->pid());
  return out;
}

ZygotePool::ZygotePool(asio::io_context& io, const ServicePlan& plan, std::string service, Events events, size_t count)
    : io_(io), plan_(plan), service_(std::move(service)), events_(std::move(events)), count_(count) {}

size_t zygotes_for(size_t configured) noexcept {
  if (configured) return std::min(configured, ZygotePool::kMaxZygotes);
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpus = ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  return std::clamp<size_t>(static_cast<size_t>(cpus), 1, ZygotePool::kMaxZygotes);
}

ZygotePool::~ZygotePool() = default;

const Pending* ZygotePool::pending_for(uint32_t uid) const noexcept {
  for (const auto& slot : slots_)
    for (const Pending& p : slot->pending)
      if (p.lease && p.lease.uid() == uid) return &p;
  return nullptr;
}

namespace {
// Non-blocking on both fds (one file description): answers are read until EAGAIN. The loop
// watches a duplicate, so that the Zygote keeps owning its socket.
std::unique_ptr<asio::posix::stream_descriptor> watch(asio::io_context& io, const Zygote& z, int& err) {
  int fd = z.socket();
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) {
    err = errno;
    return nullptr;
  }
  return std::make_unique<asio::posix::stream_descriptor>(io, dup);
}
}  // namespace

std::optional<SetupError> ZygotePool::start() {
  size_t n = zygotes_for(count_);
  for (size_t i = 0; i < n; ++i) {
    auto slot = std::make_unique<Slot>();
    SetupError e;
    slot->zygote = Zygote::start(plan_, e);
    if (!slot->zygote) return e;
    int err = 0;
    slot->answers = watch(io_, *slot->zygote, err);
    if (!slot->answers) return SetupError{SetupStep::died, err, -1};  // "dup" failed: as good as dead
    slots_.push_back(std::move(slot));
  }
  return std::nullopt;
}

bool ZygotePool::backlog_full() const noexcept {
  for (const auto& z : slots_)
    if (z->pending.size() < kMaxPendingPerZygote) return false;
  return !slots_.empty();
}

void ZygotePool::note_exit(pid_t pid, int wait_status) {
  if (!in_flight_) return;
  if (early_exits_.size() >= slots_.size() * kMaxPendingPerZygote) early_exits_.erase(early_exits_.begin());
  early_exits_.emplace_back(pid, wait_status);
}

// Forks a new zygote into an empty slot without waiting for its set-up.
std::optional<std::string> ZygotePool::relaunch(Slot& slot) {
  SetupError e;
  slot.zygote = Zygote::launch(plan_, e);
  if (!slot.zygote) return "cannot start a new zygote: " + e.describe(plan_);
  int err = 0;
  slot.answers = watch(io_, *slot.zygote, err);
  if (!slot.answers) {
    slot.zygote.reset();
    return "cannot start a new zygote: dup: " + std::string(std::strerror(err));
  }
  slot.waiting = false;
  return std::nullopt;
}

std::optional<std::string> ZygotePool::send(const InstancePlan& plan, Pending&& p) {
  Slot* slot = nullptr;
  for (auto& z : slots_)
    if (!slot || z->pending.size() < slot->pending.size()) slot = z.get();
  if (!slot) return std::string("the service has no zygote");
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::error_code ec = slot->zygote ? slot->zygote->send(plan) : std::make_error_code(std::errc::no_such_process);
    if (!ec) {
      slot->pending.push_back(std::move(p));
      ++in_flight_;
      arm(*slot);
      return std::nullopt;
    }
    if (ec == std::errc::resource_unavailable_try_again) return std::string("the zygote's request queue is full");
    // Gone (killed by hand, OOM): replace it and try once more, so the service keeps serving.
    // (A slot whose zygote was already found gone has nothing left to fail.)
    if (slot->zygote) lose(*slot, ec.message());
    if (!slot->zygote) {
      if (events_.replacing) events_.replacing();
      if (auto why = relaunch(*slot)) return why;
    }
  }
  return std::string("the zygote does not take requests");
}

void ZygotePool::arm(Slot& slot) {
  if (slot.waiting || slot.pending.empty() || !slot.answers) return;
  slot.waiting = true;
  slot.answers->async_wait(asio::posix::descriptor_base::wait_read, [this, &slot](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;  // the slot (or the pool) is gone
    slot.waiting = false;
    on_readable(slot);
  });
}

void ZygotePool::on_readable(Slot& slot) {
  if (slot.zygote && slot.zygote->setup_state() == Zygote::SetupState::pending) {
    if (auto e = slot.zygote->read_setup()) {
      fail_all(slot, "cannot start a new zygote: " + e->describe(plan_));
    }
  }
  while (!slot.pending.empty() && slot.zygote && slot.zygote->setup_state() == Zygote::SetupState::ready) {
    ChildError cerr;
    std::error_code ec;
    bool lost = false;
    Pending& next = slot.pending.front();
    next.answer_room.reset();  // room for the pidfd (see Pending::answer_room)
    Child child = slot.zygote->receive(cerr, ec, lost);
    if (ec == std::errc::resource_unavailable_try_again || ec == std::errc::operation_would_block) {
      // Not answered yet: keep a slot for it again (the pipe's read end duplicated).
      next.answer_room.reset(::fcntl(next.err_read.get(), F_DUPFD_CLOEXEC, 3));
      break;
    }
    if (ec && lost) {
      lose(slot, ec.message());
      break;
    }
    Pending p = std::move(slot.pending.front());
    slot.pending.pop_front();
    --in_flight_;
    if (!ec && cerr.step == Step::none) {
      std::optional<int> early;
      for (auto it = early_exits_.begin(); it != early_exits_.end(); ++it)
        if (it->first == child.pid) {
          early = it->second;
          early_exits_.erase(it);
          break;
        }
      events_.started(std::move(p), std::move(child), early);
      continue;
    }
    events_.failed(std::move(p), ec ? "clone: " + ec.message() : reap_failed_child(plan_, child, cerr));
  }
  arm(slot);
  if (!in_flight_) early_exits_.clear();  // what is left there was no instance of ours
  events_.answered();                     // last: it may destroy this pool
}

// The zygote died: nothing it was asked for can be vouched for. Its unanswered requests go back
// to the daemon (to block their UIDs: an instance may run with one, outside our books, until
// the census finds nothing of it left), and the slot is left empty for the next request to restart.
void ZygotePool::lose(Slot& slot, const std::string& why) {
  std::vector<Pending> unanswered(std::make_move_iterator(slot.pending.begin()),
                                  std::make_move_iterator(slot.pending.end()));
  in_flight_ -= unanswered.size();
  pid_t pid = slot.zygote ? slot.zygote->pid() : -1;
  slot.pending.clear();
  slot.answers.reset();  // cancels its wait
  slot.waiting = false;
  slot.zygote.reset();  // kills and reaps what is left of it
  events_.lost(std::move(unanswered), pid, why);
}

// A new zygote's set-up failed: the requests queued to it never ran.
void ZygotePool::fail_all(Slot& slot, const std::string& why) {
  std::deque<Pending> queued;
  queued.swap(slot.pending);
  in_flight_ -= queued.size();
  slot.answers.reset();
  slot.waiting = false;
  slot.zygote.reset();
  for (Pending& p : queued) events_.failed(std::move(p), why);
}

}  // namespace superd::spawn
