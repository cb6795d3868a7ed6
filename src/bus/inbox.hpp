#pragma once
// Work handed to a bus's own thread: any thread posts, the bus thread takes everything at once.
// An eventfd wakes the bus thread's poll(); the mutex is taken once per publish or subscription,
// never per recipient.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <vector>

namespace roomcast::bus {

template <class Op>
class inbox {
 public:
  inbox() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~inbox() {
    if (fd_ >= 0) ::close(fd_);
  }
  inbox(const inbox&) = delete;
  inbox& operator=(const inbox&) = delete;

  // Any thread.
  void post(Op o) {
    bool was_empty;
    {
      std::lock_guard lk(mu_);
      was_empty = ops_.empty();
      ops_.push_back(std::move(o));
    }
    // Non-empty means a wake is already pending (take() empties it): one syscall per batch.
    if (was_empty) wake();
  }
  void wake() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
  }

  // Bus thread: poll fd() for POLLIN; then clear() and take().
  int fd() const noexcept { return fd_; }
  void clear() noexcept {
    std::uint64_t v;
    [[maybe_unused]] auto n = ::read(fd_, &v, sizeof v);
  }
  std::vector<Op> take() {
    std::vector<Op> out;
    std::lock_guard lk(mu_);
    out.swap(ops_);
    return out;
  }

 private:
  int fd_;
  std::mutex mu_;
  std::vector<Op> ops_;
};

}  // namespace roomcast::bus
