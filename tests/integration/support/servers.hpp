#pragma once
// Launchers of the servers the integration tests run next to roomcast, all through scripts/ and
// RAII (stopped and their directory removed on destruction):
//   - redis_server: a private redis-server on a free port (optionally persistent, restartable);
//   - nginx_server: nginx in front of some nodes;
//   - rabbitmq_server: a broker of the test's own (restartable app, rabbitmqctl);
//   - the shared broker of the run: amqp_uri() is ROOMCAST_TEST_AMQP_URI (scripts/run-tests.sh), or
//     the rabbitmq_server that broker_environment started when that is unset (ctest by hand).

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/shell.hpp"

namespace roomcast::itest {

struct redis_options {
  bool persist = false;  // redis.sh --persist: data survives stop()/start()
  bool start = true;     // start in the constructor (else call start())
};

class redis_server {
 public:
  // Picks a free port; when o.start, starts it (3 tries with new ports) or throws.
  explicit redis_server(redis_options o = {});
  ~redis_server();
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  command_result start();  // (again) on the same port and directory
  command_result stop();
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& dir() const { return dir_; }

 private:
  redis_options options_;
  std::string dir_;
  std::uint16_t port_ = 0;
};

// redis-cli -p <port> <args>
command_result redis_cli(std::uint16_t port, const std::string& args);

class nginx_server {
 public:
  // nginx on a free port balancing over 127.0.0.1:<node_ports>; throws when it does not start.
  explicit nginx_server(const std::vector<std::uint16_t>& node_ports);
  ~nginx_server();  // prints the tail of error.log when the test failed
  nginx_server(const nginx_server&) = delete;
  nginx_server& operator=(const nginx_server&) = delete;

  std::uint16_t port() const { return port_; }

 private:
  void stop();
  std::string dir_;
  std::uint16_t port_ = 0;
};

class rabbitmq_server {
 public:
  // Starts a broker (2 tries with new ports); throws when it does not come up.
  rabbitmq_server();
  ~rabbitmq_server();
  rabbitmq_server(const rabbitmq_server&) = delete;
  rabbitmq_server& operator=(const rabbitmq_server&) = delete;

  const std::string& uri() const { return uri_; }
  const std::string& dir() const { return dir_; }
  // rabbitmqctl -n <node> <args>, through rabbitmq.sh (which knows the broker's cookie and epmd).
  command_result ctl(const std::string& args) const;

 private:
  command_result stop();
  std::string dir_;
  std::uint16_t port_ = 0;
  std::string uri_;
};

// The broker URI of this run: ROOMCAST_TEST_AMQP_URI, or the one broker_environment started.
std::string amqp_uri();

// Starts a rabbitmq_server for the whole executable when the run did not provide a broker.
class broker_environment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;

 private:
  std::unique_ptr<rabbitmq_server> broker_;
};

}  // namespace roomcast::itest
