#include "support/amqp_client.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <sys/time.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace roomcast::itest {
namespace {

std::string describe(const amqp_rpc_reply_t& r, const std::string& what) {
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

}  // namespace

struct amqp_test_connection::impl {
  std::vector<char> url;  // amqp_parse_url points into it
  amqp_connection_state_t conn = nullptr;
  amqp_channel_t channel = 1;
  bool logged_in = false;
  bool channel_open = false;
  bool confirming = false;
  std::uint64_t published = 0;
  std::uint64_t acked = 0;

  void check(const std::string& what) {
    auto r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error(describe(r, what));
  }
  ~impl() {
    if (!conn) return;
    if (channel_open) amqp_channel_close(conn, channel, AMQP_REPLY_SUCCESS);
    if (logged_in) amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
  }
};

amqp_test_connection::amqp_test_connection(const std::string& uri) : impl_(std::make_unique<impl>()) {
  auto& d = *impl_;
  d.url.assign(uri.begin(), uri.end());
  d.url.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(d.url.data(), &info) != AMQP_STATUS_OK) throw std::runtime_error("bad AMQP URI: " + uri);
  const char* vhost = (info.vhost && info.vhost[0]) ? info.vhost : "/";
  d.conn = amqp_new_connection();
  amqp_socket_t* sock = amqp_tcp_socket_new(d.conn);
  timeval tv{5, 0};
  if (!sock || amqp_socket_open_noblock(sock, info.host, info.port, &tv) != AMQP_STATUS_OK) {
    amqp_destroy_connection(d.conn);
    d.conn = nullptr;
    throw std::runtime_error("cannot connect to " + std::string(info.host) + ":" + std::to_string(info.port));
  }
  auto login = amqp_login(d.conn, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    auto why = describe(login, "login");
    amqp_destroy_connection(d.conn);
    d.conn = nullptr;
    throw std::runtime_error(why);
  }
  d.logged_in = true;
  amqp_channel_open(d.conn, d.channel);
  d.check("channel.open");
  d.channel_open = true;
}

amqp_test_connection::~amqp_test_connection() = default;

bool amqp_test_connection::queue_exists(const std::string& queue) {
  auto& d = *impl_;
  if (!d.channel_open) throw std::runtime_error("channel closed by an earlier passive declare");
  amqp_queue_declare(d.conn, d.channel, amqp_cstring_bytes(queue.c_str()), /*passive*/ 1, 0, 0, 0, amqp_empty_table);
  auto r = amqp_get_rpc_reply(d.conn);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return true;
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    const auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
    amqp_channel_close_ok_t ok{};
    amqp_send_method(d.conn, d.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    d.channel_open = false;
    if (m->reply_code == 404) return false;
  }
  throw std::runtime_error(describe(r, "passive queue.declare " + queue));
}

void amqp_test_connection::publish_confirmed(const std::string& exchange, const std::string& routing_key,
                                             const std::string& body, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (!d.confirming) {
    amqp_confirm_select(d.conn, d.channel);
    d.check("confirm.select");
    d.confirming = true;
  }
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.content_type = amqp_cstring_bytes("application/json");
  props.delivery_mode = 2;
  amqp_bytes_t payload{body.size(), const_cast<char*>(body.data())};
  int rc = amqp_basic_publish(d.conn, d.channel, amqp_cstring_bytes(exchange.c_str()),
                              amqp_cstring_bytes(routing_key.c_str()), 0, 0, &props, payload);
  if (rc != AMQP_STATUS_OK) throw std::runtime_error(std::string("basic.publish: ") + amqp_error_string2(rc));
  const std::uint64_t tag = ++d.published;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (d.acked < tag) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw std::runtime_error("no publisher confirm for delivery tag " + std::to_string(tag));
    timeval tv{static_cast<time_t>(left.count() / 1'000'000), static_cast<suseconds_t>(left.count() % 1'000'000)};
    amqp_frame_t frame;
    rc = amqp_simple_wait_frame_noblock(d.conn, &frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) continue;
    if (rc != AMQP_STATUS_OK) throw std::runtime_error(std::string("waiting for confirm: ") + amqp_error_string2(rc));
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;
    if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
      d.acked = std::max<std::uint64_t>(d.acked, ack->delivery_tag);
    } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
      throw std::runtime_error("broker nacked delivery tag " + std::to_string(tag));
    } else if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
      d.channel_open = false;
      throw std::runtime_error("broker closed the channel while publishing to " + exchange);
    }
  }
}

bool amqp_queue_exists(const std::string& uri, const std::string& queue) {
  amqp_test_connection c(uri);
  return c.queue_exists(queue);
}

}  // namespace roomcast::itest
