#include "redis/hiredis.hpp"

#include <charconv>

namespace roomcast::redis {

std::string_view view(const redisReply* r) noexcept {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) ? std::string_view(r->str, r->len)
                                                                               : std::string_view();
}

std::uint64_t num(const redisReply* r) noexcept {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return static_cast<std::uint64_t>(r->integer);
  std::uint64_t v = 0;
  if (r->type == REDIS_REPLY_STRING) std::from_chars(r->str, r->str + r->len, v);
  return v;
}

timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  return {static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

redisContext* connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout,
                      std::string& err) {
  const auto tv = to_timeval(timeout);
  redisContext* c = redisConnectWithTimeout(host.c_str(), port, tv);
  if (!c || c->err) {
    err = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    return nullptr;
  }
  redisSetTimeout(c, tv);
  redisEnableKeepAlive(c);
  return c;
}

}  // namespace roomcast::redis
