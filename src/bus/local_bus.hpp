#pragma once
// In-process bus for a single node: publish hands the message straight back to this node.
#include "bus/bus.hpp"

namespace roomcast::bus {

class local_bus final : public bus {
 public:
  void start(message_handler on_message) override { handler_ = std::move(on_message); }
  void stop() override {}
  void publish(envelope e, publish_callback done) override;
  void subscribe_room(const std::string&) override {}  // every room is local
  void unsubscribe_room(const std::string&) override {}
  bool healthy() const override { return true; }
  const char* name() const noexcept override { return "local"; }
  bool reaches_other_nodes() const noexcept override { return false; }

 private:
  message_handler handler_;
};

}  // namespace roomcast::bus
