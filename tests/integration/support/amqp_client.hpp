#pragma once
// A test-side AMQP client (rabbitmq-c): passive queue.declare to see whether a queue still exists,
// publishing raw envelopes with publisher confirms. rabbitmq-c stays out of this header.

#include <chrono>
#include <memory>
#include <string>

namespace roomcast::itest {

class amqp_test_connection {
 public:
  // Connects, logs in and opens channel 1; throws std::runtime_error on any failure.
  explicit amqp_test_connection(const std::string& uri);
  ~amqp_test_connection();
  amqp_test_connection(const amqp_test_connection&) = delete;
  amqp_test_connection& operator=(const amqp_test_connection&) = delete;

  // Passive queue.declare: true when the queue exists, false on 404 NOT_FOUND (the server then
  // closes the channel, so this connection is done for). Throws on anything else.
  bool queue_exists(const std::string& queue);

  // Puts the channel in confirm mode (once), publishes `body` and waits for the broker's ack.
  void publish_confirmed(const std::string& exchange, const std::string& routing_key, const std::string& body,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// One passive declare on a fresh connection (a 404 closes the channel).
bool amqp_queue_exists(const std::string& uri, const std::string& queue);

}  // namespace roomcast::itest
