#pragma once
// The Asio side of redis::loop, for src/redis/*.cpp only (keeps Asio out of public headers).
#include "redis/loop.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <thread>

namespace roomcast::redis {

struct loop::impl {
  boost::asio::io_context io{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread;
};

}  // namespace roomcast::redis
