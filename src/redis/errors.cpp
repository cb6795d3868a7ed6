#include "redis/errors.hpp"

namespace roomcast::redis {

const std::error_category& category() noexcept {
  struct category_t final : std::error_category {
    const char* name() const noexcept override { return "roomcast.redis"; }
    std::string message(int c) const override {
      switch (static_cast<errc>(c)) {
        case errc::not_connected:
          return "redis unreachable";
        case errc::queue_full:
          return "redis command queue full";
        case errc::timeout:
          return "redis reply timed out";
        case errc::disconnected:
          return "redis connection lost before the reply";
        case errc::stopped:
          return "redis connection stopped";
        case errc::error_reply:
          return "redis answered with an error";
        case errc::bad_reply:
          return "unexpected reply from redis";
      }
      return "unknown redis error";
    }
  };
  static const category_t c;
  return c;
}

}  // namespace roomcast::redis
