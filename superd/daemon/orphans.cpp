#include "daemon/orphans.hpp"

#include <cstring>

#include "util/log.hpp"

namespace superd::daemon {

bool OrphanSweep::start(const std::vector<uid_pool::LeaseRecord>& orphans, const ipc::Roots& roots, Hooks hooks) {
  hooks_ = std::move(hooks);
  std::vector<uint32_t> uids;
  for (const auto& r : orphans) {
    pending_[r.uid] = r;
    uids.push_back(r.uid);
  }
  log::warning("{} leases of a previous superd are orphaned: sweeping them while serving", uids.size());
  std::error_code ec;
  auto sweeper = sweep::start(uids, roots, ec);
  if (!sweeper) {
    log::error("cannot start the orphan sweep: {}; {} UIDs stay blocked until a restart", ec.message(), uids.size());
    return false;
  }
  started_ = std::chrono::steady_clock::now();
  results_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, sweeper->results.release());
  read();
  return true;
}

void OrphanSweep::read() {
  results_->async_read_some(
      boost::asio::buffer(buf_ + have_, sizeof buf_ - have_), [this](boost::system::error_code ec, size_t n) {
        have_ += n;
        size_t whole = have_ / sizeof(sweep::Result);
        for (size_t i = 0; i < whole; ++i) {
          sweep::Result r;
          std::memcpy(&r, buf_ + i * sizeof r, sizeof r);
          on_result(r);
        }
        std::memmove(buf_, buf_ + whole * sizeof(sweep::Result), have_ % sizeof(sweep::Result));
        have_ %= sizeof(sweep::Result);
        if (!ec) return read();
        // EOF: the sweeper is done (the daemon's SIGCHLD drain reaps it). A UID it never reported
        // cannot be vouched for.
        auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
        log::info("orphan sweep done in {} ms; {} UIDs not returned", ms, pending_.size());
        auto left = std::move(pending_);
        pending_.clear();
        results_.reset();
        for (const auto& [uid, rec] : left) hooks_.quarantined(uid);
      });
}

void OrphanSweep::on_result(const sweep::Result& r) {
  auto it = pending_.find(r.uid);
  if (it == pending_.end()) return;
  const uid_pool::LeaseRecord rec = it->second;
  pending_.erase(it);  // first: a hook may ask busy()
  if (r.step == sweep::Step::done) {
    log::info("orphaned lease uid={} service={} serial={} pid={}: swept", rec.uid, rec.service, rec.serial, rec.pid);
    hooks_.returned(r.uid);
  } else {
    // The record stays: a later superd tries again.
    log::error("orphaned lease uid={} service={}: {} survive the sweep ({}); quarantined", rec.uid, rec.service,
               r.step == sweep::Step::processes ? "processes" : "IPC objects", log::errno_text(r.err));
    hooks_.quarantined(r.uid);
  }
}

}  // namespace superd::daemon
