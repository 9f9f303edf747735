// The Session the daemon holds for an in-loop implementation object: the implementation is
// shared with its pending handlers (enable_shared_from_this) and told to stop when the daemon
// lets go, so destroying the handle closes the sockets and suppresses the Done callback.
// Internal to superd/inloop.
#pragma once

#include <memory>

#include "inloop/inloop.hpp"

namespace superd::inloop::detail {

template <typename Impl>
class Handle final : public Session {
 public:
  explicit Handle(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  ~Handle() override { impl_->stop(); }
  Traffic traffic() const override { return impl_->traffic(); }

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace superd::inloop::detail
