// The client->server frame reader, fed the way ws_session feeds it: the input arrives in chunks
// whose sizes the input chooses, unconsumed bytes wait for the next read, and after a too-big frame
// the rest is fed again (the reader drops the oversized frame as it arrives).
#include "protocol/ws_frame.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace roomcast::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // First byte: the message limit (16 bytes .. 4 KiB); second: the read size (1 .. 256 bytes).
  const std::size_t max_message = std::size_t{16} << (data[0] % 9);
  const std::size_t chunk = std::size_t{data[1]} + 1;
  ws_reader reader(max_message);
  std::string pending;
  bool closed = false;
  for (std::size_t at = 2; at < size && !closed;) {
    const std::size_t n = std::min(chunk, size - at);
    pending.append(reinterpret_cast<const char*>(data + at), n);
    at += n;
    std::size_t done = 0;
    for (;;) {
      const std::span<char> input(pending.data() + done, pending.size() - done);
      const std::size_t need = reader.pending_frame_size(input);
      (void)need;
      auto r = reader.feed(input, [&](const ws_event& ev) {
        if (ev.opcode == ws_opcode::cont) std::abort();  // never delivered on its own
        if (ev.opcode == ws_opcode::text && !valid_utf8(ev.payload)) std::abort();
        if ((ev.opcode == ws_opcode::text || ev.opcode == ws_opcode::binary) && ev.payload.size() > max_message)
          std::abort();
        if (ev.opcode == ws_opcode::close && ev.close_code != close_code::no_status && !valid_close_code(ev.close_code))
          std::abort();
        if (ev.opcode == ws_opcode::close) closed = true;
        return !closed;
      });
      if (r.consumed > input.size()) std::abort();
      done += r.consumed;
      if (r.error == ws_error::too_big && r.consumed > 0 && done < pending.size()) continue;
      if (r.error != ws_error::none) closed = true;
      break;
    }
    pending.erase(0, done);
  }
  return 0;
}
