// The process: parse the config (exit 2 naming the key when it is wrong), set up logging, run one
// node (app/node.hpp builds and wires every piece).
#include "app/node.hpp"
#include "config/config.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <iostream>

int main(int argc, char** argv) {
  using namespace roomcast;
  auto parsed = config::parse(argc, argv);
  if (!parsed.cfg) {
    if (parsed.exit_code == 0) {
      std::cout << parsed.message;
      return 0;
    }
    std::cerr << parsed.message << "\n";
    return parsed.exit_code;
  }
  // hiredis and rabbitmq-c write to sockets the peer may have closed: an error, not a signal.
  std::signal(SIGPIPE, SIG_IGN);

  auto logger = spdlog::stderr_color_mt("roomcast");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(parsed.cfg->log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  if (parsed.cfg->api_key.empty()) spdlog::warn("api_key is empty: /api/* accepts anyone (demo mode)");
  if (parsed.cfg->auth == config::auth_mode::none) spdlog::warn("auth = none: tokens are not checked (demo mode)");

  app::node node(std::move(*parsed.cfg));
  return node.run();
}
