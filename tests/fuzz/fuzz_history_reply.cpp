// History read back from Redis: arbitrary RESP bytes through hiredis's reader, then the decoder
// (history::decode_read_reply), whose result must keep read_result's promises.
// The reader is the one redis::connection uses (arrays bounded by redis::max_reply_elements).
#include "history/redis_history.hpp"
#include "redis/hiredis.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <cstdlib>

using namespace roomcast;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  if (size < 1) return 0;
  const std::uint64_t since = data[0] % 8;
  redisReader* reader = redis::make_reader();  // what redis::connection reads with
  if (redisReaderFeed(reader, reinterpret_cast<const char*>(data + 1), size - 1) == REDIS_OK) {
    void* reply = nullptr;
    while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply != nullptr) {
      const auto res = history::decode_read_reply(static_cast<const redisReply*>(reply), since, "r");
      std::uint64_t last = since;
      for (const auto& en : res.entries) {
        if (en.seq <= last || en.seq > res.head) std::abort();
        last = en.seq;
      }
      if (res.complete && !res.epoch.empty() && since < res.head && res.entries.size() != res.head - since)
        std::abort();
      freeReplyObject(reply);
      reply = nullptr;
    }
  }
  redisReaderFree(reader);
  return 0;
}
