#pragma once
// Why a bus did not take a publish: one error category for every bus, so the API and the tests
// read the same codes whichever bus runs (the publish callback's error_code).
#include <string>
#include <system_error>

namespace roomcast::bus {

enum class errc {
  buffer_full = 1,  // the broker (or Redis) is away and the outage buffer is full: the API says 503
  nacked,           // the broker refused the message (basic.nack)
  refused,          // Redis answered the PUBLISH with an error
  stopped,          // the bus stopped before the message went out
};

inline const std::error_category& category() noexcept {
  struct category_t final : std::error_category {
    const char* name() const noexcept override { return "roomcast.bus"; }
    std::string message(int c) const override {
      switch (static_cast<errc>(c)) {
        case errc::buffer_full:
          return "bus unreachable and outage buffer full";
        case errc::nacked:
          return "broker refused the message (nack)";
        case errc::refused:
          return "redis refused the PUBLISH";
        case errc::stopped:
          return "bus stopped";
      }
      return "unknown bus error";
    }
  };
  static const category_t c;
  return c;
}

inline std::error_code make_error(errc e) noexcept { return {static_cast<int>(e), category()}; }

}  // namespace roomcast::bus
