#include "bus/amqp_link.hpp"

#include <amqp_tcp_socket.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace roomcast::bus {

bool amqp_reply_ok(const amqp_rpc_reply_t& r, const char* what, std::string& err) {
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return true;
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    err = std::string(what) + ": " + amqp_error_string2(r.library_error);
  } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
    err = std::string(what) + ": server exception " + std::to_string(r.reply.id);
    if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      const auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
      err += " " + std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
    } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      const auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
      err += " " + std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
    }
  } else {
    err = std::string(what) + ": no reply";
  }
  return false;
}

bool amqp_link::open(const std::string& uri, std::string_view name, std::chrono::seconds heartbeat,
                     std::chrono::milliseconds timeout, std::string& err) {
  close(false);
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  std::vector<char> buf(uri.begin(), uri.end());
  buf.push_back('\0');
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) {
    err = "bad broker URI";
    return false;
  }
  // "amqp://host:port/" names the empty vhost by the letter of the URI spec; nobody means that.
  if (info.vhost == nullptr || info.vhost[0] == '\0') info.vhost = const_cast<char*>("/");
  where_ = std::string(info.host) + ":" + std::to_string(info.port);
  conn_ = amqp_new_connection();
  amqp_socket_t* sock = amqp_tcp_socket_new(conn_);
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  if (!sock || amqp_socket_open_noblock(sock, info.host, info.port, &tv) != AMQP_STATUS_OK) {
    err = "connect " + where_ + " failed";
    close(false);
    return false;
  }
  // Neither the handshake nor a set-up RPC may hang on a broker that stopped answering.
  amqp_set_handshake_timeout(conn_, &tv);
  amqp_set_rpc_timeout(conn_, &tv);

  // Client properties: a name the broker's connection list shows, and the connection.blocked
  // capability (the broker then says when a resource alarm blocks publishing).
  amqp_table_entry_t caps_entry;
  caps_entry.key = amqp_cstring_bytes("connection.blocked");
  caps_entry.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  caps_entry.value.value.boolean = 1;
  amqp_table_entry_t props_entries[2];
  props_entries[0].key = amqp_cstring_bytes("connection_name");
  props_entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
  props_entries[0].value.value.bytes = amqp_bytes_of(name);
  props_entries[1].key = amqp_cstring_bytes("capabilities");
  props_entries[1].value.kind = AMQP_FIELD_KIND_TABLE;
  props_entries[1].value.value.table = {1, &caps_entry};
  amqp_table_t props{2, props_entries};

  const auto login = amqp_login_with_properties(conn_, info.vhost, 0, 131072, static_cast<int>(heartbeat.count()),
                                                &props, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
  const std::string who = where_ + " vhost " + info.vhost + " as " + info.user;
  if (!amqp_reply_ok(login, ("login to " + who + " failed").c_str(), err)) {
    // Wrong credentials show as ACCESS_REFUSED in the broker's close reason.
    close(false);
    return false;
  }
  amqp_channel_open(conn_, 1);
  if (!amqp_reply_ok(amqp_get_rpc_reply(conn_), "channel.open", err)) {
    close(false);
    return false;
  }
  frame_max_ = static_cast<std::uint32_t>(amqp_get_frame_max(conn_));
  heartbeat_ = std::chrono::seconds(amqp_get_heartbeat(conn_));
  return true;
}

bool amqp_link::stream(std::string& err) {
  // rabbitmq-c may hold a frame it read past the last reply (only a heartbeat can come unasked
  // before anything is published or consumed): take it out of its buffers.
  while (amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_)) {
    amqp_frame_t f;
    timeval zero{0, 0};
    if (amqp_simple_wait_frame_noblock(conn_, &f, &zero) != AMQP_STATUS_OK) break;
    if (f.frame_type != AMQP_FRAME_HEARTBEAT) {
      err = "unexpected frame from the broker before streaming";
      return false;
    }
  }
  fd_ = amqp_get_sockfd(conn_);
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) {
    err = std::string("fcntl: ") + std::strerror(errno);
    return false;
  }
  reader_ = amqp::frame_reader(frame_max_);
  out_.clear();
  out_off_ = 0;
  last_sent_ = last_received_ = clock::now();
  return true;
}

bool amqp_link::flush(std::string& err) {
  while (out_off_ < out_.size()) {
    const ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n > 0) {
      out_off_ += static_cast<std::size_t>(n);
      last_sent_ = clock::now();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;  // the rest when POLLOUT says so
    err = std::string("send to the broker: ") + (n < 0 ? std::strerror(errno) : "nothing written");
    return false;
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  } else if (out_off_ > (1u << 20)) {  // a long backlog: don't keep sent bytes around
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  return true;
}

bool amqp_link::recv_some(std::string& err, bool& would_block) {
  constexpr std::size_t chunk = std::size_t{256} * 1024;
  char* p = reader_.prepare(chunk);
  const ssize_t n = ::recv(fd_, p, chunk, 0);
  if (n > 0) {
    reader_.commit(static_cast<std::size_t>(n));
    last_received_ = clock::now();
    would_block = static_cast<std::size_t>(n) < chunk;
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    would_block = true;
    return true;
  }
  err = n == 0 ? "the broker closed the socket" : std::string("recv from the broker: ") + std::strerror(errno);
  return false;
}

bool amqp_link::tick(clock::time_point now, std::string& err) {
  if (heartbeat_.count() == 0) return true;
  if (now - last_received_ > 2 * heartbeat_) {
    err = "no heartbeat from the broker for " + std::to_string(2 * heartbeat_.count()) + " s";
    return false;
  }
  if (now - last_sent_ > heartbeat_ / 2 && !wants_write()) amqp::append_heartbeat(out_);
  return true;
}

void amqp_link::close(bool graceful) {
  if (!conn_) return;
  if (graceful && fd_ >= 0) {
    amqp::append_connection_close(out_);
    std::string ignored;
    flush(ignored);
  }
  amqp_destroy_connection(conn_);  // closes the socket
  conn_ = nullptr;
  fd_ = -1;
  out_.clear();
  out_off_ = 0;
}

}  // namespace roomcast::bus
