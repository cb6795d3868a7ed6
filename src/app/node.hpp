#pragma once
// One roomcast node: builds every piece from the config (backends, router, API, shards), runs the
// shards, and drains on SIGTERM/SIGINT. main() only parses the config and calls run().
#include "config/config.hpp"

#include <memory>

namespace roomcast::app {

class node {
 public:
  explicit node(config::config cfg);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  // Listens, serves until a drain (SIGTERM/SIGINT) has finished, stops the backends. Returns the
  // process exit code: 0 after a drain, 1 when the port can't be bound.
  int run();

 private:
  struct parts;
  std::unique_ptr<parts> p_;
};

}  // namespace roomcast::app
