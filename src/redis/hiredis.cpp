#include "redis/hiredis.hpp"

#include <charconv>

namespace roomcast::redis {

std::string_view view(const redisReply* r) noexcept {
  const bool text =
      r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
  return text ? std::string_view(r->str, r->len) : std::string_view();
}

std::uint64_t num(const redisReply* r) noexcept {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return static_cast<std::uint64_t>(r->integer);
  std::uint64_t v = 0;
  if (r->type == REDIS_REPLY_STRING) std::from_chars(r->str, r->str + r->len, v);
  return v;
}

}  // namespace roomcast::redis
