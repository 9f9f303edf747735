// The Session the daemon holds for an in-loop implementation object: the implementation is
// shared with its pending handlers (enable_shared_from_this) and told to stop when the daemon
// lets go, so destroying the handle closes the sockets and suppresses the Done callback.
// Internal to superd/inloop.
#pragma once

#include <utility>  // before any Boost include (Boost 1.74 trap)

#include <boost/system/error_code.hpp>
#include <memory>
#include <system_error>

#include "inloop/inloop.hpp"

namespace superd::inloop::detail {

// Asio reports boost::system errors; the Done callback speaks std::error_code.
inline std::error_code to_std(const boost::system::error_code& ec) {
  if (!ec) return {};
  if (ec.category() == boost::system::system_category()) return {ec.value(), std::system_category()};
  if (ec.category() == boost::system::generic_category()) return {ec.value(), std::generic_category()};
  return std::make_error_code(std::errc::io_error);
}

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
