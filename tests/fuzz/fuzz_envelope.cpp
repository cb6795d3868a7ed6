// What arrives from the broker (RabbitMQ or Redis): a malicious or corrupted bus envelope.
#include "bus/envelope.hpp"

#include <boost/json/parse.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace roomcast;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view wire(reinterpret_cast<const char*>(data), size);
  bus::envelope e;
  if (!bus::decode_envelope(wire, e)) return 0;
  // A decoded envelope encodes to a wire form that decodes to the same envelope.
  const std::string again = bus::encode_envelope(e);
  bus::envelope e2;
  if (!bus::decode_envelope(again, e2)) std::abort();
  if (e2.type != e.type || e2.kind != e.kind || e2.target != e.target || e2.id != e.id || e2.from != e.from ||
      e2.data != e.data || e2.audience != e.audience || e2.receipt != e.receipt || e2.origin != e.origin ||
      e2.seq != e.seq || e2.epoch != e.epoch || e2.code != e.code || e2.reason != e.reason || e2.user != e.user)
    std::abort();
  if (e.type == bus::envelope_type::kick && (e.code < 4000 || e.code > 4999)) std::abort();
  // Message data goes to browsers verbatim: it must be JSON.
  if (e.type == bus::envelope_type::message) {
    boost::system::error_code ec;
    (void)boost::json::parse(e.data, ec);
    if (ec) std::abort();
  }
  return 0;
}
