#pragma once
// Helpers for the cluster fault tests (on top of cluster_support.hpp):
//   - amqp_test_connection: a test-side rabbitmq-c client (passive queue.declare to see whether a
//     queue still exists, publishing raw envelopes with publisher confirms);
//   - private_rabbitmq: a broker of the test's own (scripts/rabbitmq.sh, RAII) whose app can be
//     stopped and started again with rabbitmqctl;
//   - wait_for_output: polls a node's captured stdout+stderr for a line.

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <sys/time.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cluster_support.hpp"

namespace roomcast::itest::cluster {

// ---------------------------------------------------------------- test-side AMQP client

class amqp_test_connection {
 public:
  // Connects, logs in and opens channel 1; throws std::runtime_error on any failure.
  explicit amqp_test_connection(const std::string& uri) : url_(uri.begin(), uri.end()) {
    url_.push_back('\0');
    amqp_connection_info info;
    amqp_default_connection_info(&info);
    if (amqp_parse_url(url_.data(), &info) != AMQP_STATUS_OK) throw std::runtime_error("bad AMQP URI: " + uri);
    const char* vhost = (info.vhost && info.vhost[0]) ? info.vhost : "/";
    conn_ = amqp_new_connection();
    amqp_socket_t* sock = amqp_tcp_socket_new(conn_);
    timeval tv{5, 0};
    if (!sock || amqp_socket_open_noblock(sock, info.host, info.port, &tv) != AMQP_STATUS_OK) {
      amqp_destroy_connection(conn_);
      conn_ = nullptr;
      throw std::runtime_error("cannot connect to " + std::string(info.host) + ":" + std::to_string(info.port));
    }
    auto login = amqp_login(conn_, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    if (login.reply_type != AMQP_RESPONSE_NORMAL) {
      auto why = describe(login, "login");
      amqp_destroy_connection(conn_);
      conn_ = nullptr;
      throw std::runtime_error(why);
    }
    logged_in_ = true;
    amqp_channel_open(conn_, channel_);
    check("channel.open");
    channel_open_ = true;
  }
  ~amqp_test_connection() {
    if (!conn_) return;
    if (channel_open_) amqp_channel_close(conn_, channel_, AMQP_REPLY_SUCCESS);
    if (logged_in_) amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn_);
  }
  amqp_test_connection(const amqp_test_connection&) = delete;
  amqp_test_connection& operator=(const amqp_test_connection&) = delete;

  // Passive queue.declare: true when the queue exists, false on 404 NOT_FOUND (the server then
  // closes the channel, so this connection is done for). Throws on anything else.
  bool queue_exists(const std::string& queue) {
    if (!channel_open_) throw std::runtime_error("channel closed by an earlier passive declare");
    amqp_queue_declare(conn_, channel_, amqp_cstring_bytes(queue.c_str()), /*passive*/ 1, 0, 0, 0, amqp_empty_table);
    auto r = amqp_get_rpc_reply(conn_);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return true;
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      const auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
      amqp_channel_close_ok_t ok{};
      amqp_send_method(conn_, channel_, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      channel_open_ = false;
      if (m->reply_code == 404) return false;
    }
    throw std::runtime_error(describe(r, "passive queue.declare " + queue));
  }

  // Puts the channel in confirm mode (once), publishes `body` and waits for the broker's ack.
  void publish_confirmed(const std::string& exchange, const std::string& routing_key, const std::string& body,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    if (!confirming_) {
      amqp_confirm_select(conn_, channel_);
      check("confirm.select");
      confirming_ = true;
    }
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;
    amqp_bytes_t payload{body.size(), const_cast<char*>(body.data())};
    int rc = amqp_basic_publish(conn_, channel_, amqp_cstring_bytes(exchange.c_str()),
                                amqp_cstring_bytes(routing_key.c_str()), 0, 0, &props, payload);
    if (rc != AMQP_STATUS_OK) throw std::runtime_error(std::string("basic.publish: ") + amqp_error_string2(rc));
    const std::uint64_t tag = ++published_;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (acked_ < tag) {
      auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw std::runtime_error("no publisher confirm for delivery tag " + std::to_string(tag));
      timeval tv{static_cast<time_t>(left.count() / 1'000'000), static_cast<suseconds_t>(left.count() % 1'000'000)};
      amqp_frame_t frame;
      rc = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
      if (rc == AMQP_STATUS_TIMEOUT) continue;
      if (rc != AMQP_STATUS_OK) throw std::runtime_error(std::string("waiting for confirm: ") + amqp_error_string2(rc));
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        acked_ = std::max<std::uint64_t>(acked_, ack->delivery_tag);
      } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        throw std::runtime_error("broker nacked delivery tag " + std::to_string(tag));
      } else if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
        channel_open_ = false;
        throw std::runtime_error("broker closed the channel while publishing to " + exchange);
      }
    }
  }

 private:
  static std::string describe(const amqp_rpc_reply_t& r, const std::string& what) {
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) return what + ": " + amqp_error_string2(r.library_error);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return what + ": channel closed " + std::to_string(m->reply_code) + " " +
               std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
      }
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return what + ": connection closed " + std::to_string(m->reply_code) + " " +
               std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
      }
      return what + ": server exception " + std::to_string(r.reply.id);
    }
    return what + ": no reply";
  }
  void check(const std::string& what) {
    auto r = amqp_get_rpc_reply(conn_);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error(describe(r, what));
  }

  std::vector<char> url_;  // amqp_parse_url points into it
  amqp_connection_state_t conn_ = nullptr;
  amqp_channel_t channel_ = 1;
  bool logged_in_ = false;
  bool channel_open_ = false;
  bool confirming_ = false;
  std::uint64_t published_ = 0;
  std::uint64_t acked_ = 0;
};

// One passive declare on a fresh connection (a 404 closes the channel).
inline bool amqp_queue_exists(const std::string& uri, const std::string& queue) {
  amqp_test_connection c(uri);
  return c.queue_exists(queue);
}

// ---------------------------------------------------------------- a broker of the test's own

class private_rabbitmq {
 public:
  private_rabbitmq() : dir_(make_temp_dir("rabbitmq-own")) {
    std::string why;
    for (int attempt = 0; attempt < 2; ++attempt) {  // the port can be taken between pick and bind
      port_ = script_free_port(true);
      auto r = run_command(shell_quote(scripts_dir() + "/rabbitmq.sh") + " start " + shell_quote(dir_) + " " +
                           std::to_string(port_));
      if (r.status == 0) {
        uri_ = trim(r.output);
        return;
      }
      why = r.output;
      stop();
    }
    cleanup();
    throw std::runtime_error("rabbitmq.sh start failed: " + why);
  }
  ~private_rabbitmq() {
    stop();
    cleanup();
  }
  private_rabbitmq(const private_rabbitmq&) = delete;
  private_rabbitmq& operator=(const private_rabbitmq&) = delete;

  const std::string& uri() const { return uri_; }
  const std::string& dir() const { return dir_; }

  // rabbitmqctl -n <node> <args>, through rabbitmq.sh (which knows the broker's cookie and epmd).
  command_result ctl(const std::string& args) const {
    return run_command(shell_quote(scripts_dir() + "/rabbitmq.sh") + " ctl " + shell_quote(dir_) + " " + args);
  }

 private:
  void stop() { run_command(shell_quote(scripts_dir() + "/rabbitmq.sh") + " stop " + shell_quote(dir_)); }
  void cleanup() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
  std::uint16_t port_ = 0;
  std::string uri_;
};

// ---------------------------------------------------------------- node output

// The first line of the node's output for which `pred` holds, polled until `timeout`; "" if none.
inline std::string wait_for_output(const node_process& p, const std::function<bool(const std::string&)>& pred,
                                   std::chrono::milliseconds timeout) {
  std::string found;
  poll_until(
      [&] {
        std::istringstream in(p.output());
        std::string line;
        while (std::getline(in, line))
          if (pred(line)) {
            found = line;
            return true;
          }
        return false;
      },
      timeout, 100ms);
  return found;
}

inline bool contains_ci(std::string haystack, std::string needle) {
  for (auto& c : haystack) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& c : needle) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return haystack.find(needle) != std::string::npos;
}

}  // namespace roomcast::itest::cluster
