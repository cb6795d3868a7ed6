// permessage-deflate input comes from clients: the Sec-WebSocket-Extensions offer and compressed
// message payloads. The inflater must stay within its output bound whatever the bytes claim, and
// what the node compresses must inflate back to itself.
#include "protocol/deflate.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace roomcast::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto answer = negotiate_deflate(in);
  if (!answer.empty() && answer != "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    std::abort();

  static inflater inf;  // reused across inputs, as a shard reuses its own
  std::string out;
  constexpr std::size_t max = 64 << 10;
  const auto r = inf.inflate(in, out, max);
  if (r == inflater::result::ok && out.size() > max) std::abort();
  if (r != inflater::result::ok && !out.empty()) std::abort();

  static deflater def(1);
  std::string z;
  if (!def.compress(in, z)) std::abort();
  std::string back;
  if (inf.inflate(z, back, size + 1) != inflater::result::ok || back != in) std::abort();
  return 0;
}
