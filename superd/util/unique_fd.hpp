// UniqueFd: the one owner of a file descriptor. Move-only; closes on destruction.
// A bare `int` anywhere else in superd is a *borrowed* fd. Every fd superd creates is
// close-on-exec from birth (SOCK_CLOEXEC, O_CLOEXEC, pipe2, accept4, CLONE_PIDFD).
#pragma once

#include <unistd.h>

#include <utility>

namespace superd::util {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Hands the fd over to a new owner (an Asio descriptor, say); this object forgets it.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace superd::util

namespace superd {
using util::UniqueFd;  // the owned fd, everywhere in superd
}  // namespace superd
