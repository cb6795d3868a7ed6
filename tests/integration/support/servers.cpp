#include "support/servers.hpp"

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <stdexcept>

namespace roomcast::itest {
namespace {

void remove_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

std::string& started_broker_uri() {
  static std::string uri;
  return uri;
}

}  // namespace

redis_server::redis_server(redis_options o) : options_(o), dir_(make_temp_dir("redis")) {
  if (!o.start) {
    port_ = script_free_port();
    return;
  }
  std::string why;
  for (int attempt = 0; attempt < 3; ++attempt) {  // the port can be taken between pick and bind
    port_ = script_free_port();
    auto r = start();
    if (r.status == 0) return;
    why = r.output;
    stop();
  }
  remove_dir(dir_);
  throw std::runtime_error("redis.sh start failed: " + why);
}

redis_server::~redis_server() {
  stop();
  remove_dir(dir_);
}

command_result redis_server::start() {
  return run_script(
      "redis.sh", "start " + shell_quote(dir_) + " " + std::to_string(port_) + (options_.persist ? " --persist" : ""));
}

command_result redis_server::stop() { return run_script("redis.sh", "stop " + shell_quote(dir_)); }

command_result redis_cli(std::uint16_t port, const std::string& args) {
  return run_command("redis-cli -p " + std::to_string(port) + " " + args);
}

nginx_server::nginx_server(const std::vector<std::uint16_t>& node_ports) : dir_(make_temp_dir("nginx")) {
  std::string ports;
  for (auto p : node_ports) ports += " " + std::to_string(p);
  std::string why;
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = script_free_port();
    auto r = run_script("nginx.sh", "start " + shell_quote(dir_) + " " + std::to_string(port_) + ports);
    if (r.status == 0) return;
    why = r.output;
    stop();
  }
  remove_dir(dir_);
  throw std::runtime_error("nginx.sh start failed: " + why);
}

nginx_server::~nginx_server() {
  stop();
  if (::testing::Test::HasFailure()) {
    auto log = run_command("tail -n 40 " + shell_quote(dir_ + "/error.log"));
    std::cerr << "--- nginx error.log ---\n" << log.output << "--- end of nginx error.log ---\n";
  }
  remove_dir(dir_);
}

void nginx_server::stop() { run_script("nginx.sh", "stop " + shell_quote(dir_)); }

rabbitmq_server::rabbitmq_server() : dir_(make_temp_dir("rabbitmq")) {
  std::string why;
  for (int attempt = 0; attempt < 2; ++attempt) {  // the port can be taken between pick and bind
    port_ = script_free_port(true);
    auto r = run_script("rabbitmq.sh", "start " + shell_quote(dir_) + " " + std::to_string(port_));
    if (r.status == 0) {
      uri_ = last_line(r.output);
      return;
    }
    why = r.output;
    stop();  // whatever half-started
  }
  remove_dir(dir_);
  throw std::runtime_error("rabbitmq.sh start failed: " + why);
}

rabbitmq_server::~rabbitmq_server() {
  stop();
  remove_dir(dir_);
}

command_result rabbitmq_server::ctl(const std::string& args) const {
  return run_script("rabbitmq.sh", "ctl " + shell_quote(dir_) + " " + args);
}

command_result rabbitmq_server::stop() { return run_script("rabbitmq.sh", "stop " + shell_quote(dir_)); }

std::string amqp_uri() {
  if (const char* v = std::getenv("ROOMCAST_TEST_AMQP_URI"); v && *v) return v;
  return started_broker_uri();
}

void broker_environment::SetUp() {
  if (const char* v = std::getenv("ROOMCAST_TEST_AMQP_URI"); v && *v) return;
  try {
    broker_ = std::make_unique<rabbitmq_server>();
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  started_broker_uri() = broker_->uri();
}

void broker_environment::TearDown() { broker_.reset(); }

}  // namespace roomcast::itest
