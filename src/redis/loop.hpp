#pragma once
// The process's one Redis thread ("rc-redis"): an io_context that every Redis connection (bus,
// history, registry) runs on. Plain C++ on purpose: Asio stays in the .cpp files of src/redis/.
#include <chrono>
#include <functional>
#include <memory>

namespace roomcast::redis {

class loop {
 public:
  loop();   // starts the thread
  ~loop();  // stops it and joins (never from the loop's own thread)
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  // The loop of this process, made on first use and shared while anyone holds it: bus, history
  // and registry all run on one thread.
  static std::shared_ptr<loop> shared();

  // Runs f on the Redis thread, in post order. Any thread.
  void post(std::function<void()> f);
  // Runs f on the Redis thread after `delay` (not cancellable: f checks whether it still matters).
  void post_after(std::chrono::milliseconds delay, std::function<void()> f);
  bool in_loop_thread() const noexcept;

  struct impl;
  impl& get() noexcept { return *impl_; }

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace roomcast::redis
