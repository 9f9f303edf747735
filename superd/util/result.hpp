// util::Result<T>: a value, or why there is none. The running daemon's failures are values
// (STYLE.md, three error regimes): a stage that can fail for a reason worth a log line returns
// one of these instead of throwing or filling a `std::string&` out-parameter.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace superd::util {

template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit, so `return plan;` reads well
  static Result failure(std::string why) {
    Result r;
    r.error_ = std::move(why);
    return r;
  }
  explicit operator bool() const noexcept { return value_.has_value(); }
  T& operator*() & { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  const std::string& error() const noexcept { return error_; }

 private:
  Result() = default;
  std::optional<T> value_;
  std::string error_;
};

}  // namespace superd::util

namespace superd {
using util::Result;
}  // namespace superd
