#include "redis/hiredis.hpp"

#include <charconv>
#include <cstddef>

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

namespace {

// hiredis's own reply functions (static in hiredis.c), taken from a reader it made.
const redisReplyObjectFunctions& default_functions() {
  static const redisReplyObjectFunctions fns = [] {
    redisReader* r = redisReaderCreate();
    const redisReplyObjectFunctions copy = *r->fn;
    redisReaderFree(r);
    return copy;
  }();
  return fns;
}

void* create_bounded_array(const redisReadTask* task, int elements) {
  if (elements < 0 || static_cast<std::size_t>(elements) > max_reply_elements) return nullptr;  // reader: OOM error
  return default_functions().createArray(task, elements);
}

redisReplyObjectFunctions bounded_functions() {
  redisReplyObjectFunctions fns = default_functions();
  fns.createArray = create_bounded_array;
  return fns;
}

}  // namespace

redisReader* make_reader() {
  static redisReplyObjectFunctions fns = bounded_functions();
  return redisReaderCreateWithFunctions(&fns);
}

}  // namespace roomcast::redis
