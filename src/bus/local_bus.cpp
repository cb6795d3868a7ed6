#include "bus/local_bus.hpp"

namespace roomcast::bus {

void local_bus::publish(envelope e, publish_callback done) {
  if (handler_) handler_(e, {});
  if (done) done({}, {});
}

}  // namespace roomcast::bus
