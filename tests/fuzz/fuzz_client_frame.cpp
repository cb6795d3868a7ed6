// Every text frame a client sends goes through decode_client_frame.
#include "protocol/codec.hpp"
#include "protocol/ws_frame.hpp"

#include <boost/json/parse.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace roomcast::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  client_frame f;
  decode_error err;
  filter_limits limits;
  limits.max_users = 8;
  if (!decode_client_frame(text, f, err, limits)) {
    if (err.code.empty() || err.message.empty()) std::abort();  // a refusal always says what and why
    return 0;
  }
  // What a publish carries on is raw JSON that other clients will parse. (Text frames reach the
  // decoder valid UTF-8: ws_reader closes with 1007 otherwise.)
  if (valid_utf8(text) && (f.type == client_frame::kind::publish || f.type == client_frame::kind::chat)) {
    boost::system::error_code ec;
    (void)boost::json::parse(f.data, ec);
    if (ec) std::abort();
  }
  if (f.audience.users.size() > limits.max_users) std::abort();
  return 0;
}
