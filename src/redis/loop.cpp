#include "redis/loop.hpp"

#include "redis/loop_impl.hpp"

#include <boost/asio/steady_timer.hpp>
#include <pthread.h>
#include <signal.h>

#include <mutex>

namespace roomcast::redis {

loop::loop() : impl_(std::make_unique<impl>()) {
  impl_->thread = std::thread([i = impl_.get()] {
    pthread_setname_np(pthread_self(), "rc-redis");  // top -H, perf
    // Asio sends with MSG_NOSIGNAL; blocked here too, a write to a socket Redis closed can never
    // raise SIGPIPE on this thread, whatever makes it.
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);
    i->io.run();
  });
}

loop::~loop() {
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::shared_ptr<loop> loop::shared() {
  static std::mutex mu;
  static std::weak_ptr<loop> one;
  std::lock_guard lk(mu);
  auto l = one.lock();
  if (!l) {
    l = std::make_shared<loop>();
    one = l;
  }
  return l;
}

void loop::post(std::function<void()> f) { boost::asio::post(impl_->io, std::move(f)); }

void loop::post_after(std::chrono::milliseconds delay, std::function<void()> f) {
  auto t = std::make_shared<boost::asio::steady_timer>(impl_->io, delay);
  t->async_wait([t, f = std::move(f)](const boost::system::error_code& ec) {
    if (!ec) f();
  });
}

bool loop::in_loop_thread() const noexcept { return impl_->thread.get_id() == std::this_thread::get_id(); }

}  // namespace roomcast::redis
