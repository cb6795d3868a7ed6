#pragma once
// One API or client publish as a bus tracks it: it may become several wire messages (a user on
// several nodes) and completes once, when the last is confirmed or the first fails. Bus thread.
#include "bus/bus.hpp"

#include <cstddef>
#include <system_error>

namespace roomcast::bus {

struct pending_publish {
  publish_callback done;
  std::size_t remaining = 0;  // wire messages not confirmed yet
  bool completed = false;
  void complete(std::error_code ec, publish_result r) {
    if (completed) return;
    completed = true;
    if (done) done(ec, r);
  }
  // One of its wire messages was confirmed; the publish completes with the last.
  void confirmed() {
    if (remaining > 0 && --remaining == 0) complete({}, {});
  }
};

}  // namespace roomcast::bus
