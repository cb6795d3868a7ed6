// The config file (TOML): every key's checks, on arbitrary text.
#include "config/config.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace roomcast;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto r = config::parse_toml_text(text);
  if (!r.cfg && (r.exit_code == 0 || r.message.empty())) std::abort();  // a refusal names the key
  (void)config::parse_size(text);
  (void)config::parse_duration(text);
  return 0;
}
