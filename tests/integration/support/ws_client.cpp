#include "support/ws_client.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/parse.hpp>

#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <stdexcept>
#include <thread>

#include "support/json_util.hpp"

namespace roomcast::itest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

}  // namespace

struct ws_loop::impl {
  asio::io_context ioc;
};

ws_loop::ws_loop() : impl_(std::make_unique<impl>()) {}

ws_loop::~ws_loop() {
  // Let the handlers of closed clients see their abort (and release those clients) before the
  // io_context goes.
  impl_->ioc.restart();
  impl_->ioc.poll();
}

std::size_t ws_loop::run_for(std::chrono::milliseconds timeout) {
  auto& ioc = impl_->ioc;
  const auto deadline = clock_type::now() + timeout;
  if (ioc.stopped()) ioc.restart();
  std::size_t n = ioc.run_one_for(timeout);
  if (n == 0) {
    // No work at all (no client has an operation pending) returns at once: wait all the same.
    if (ioc.stopped()) std::this_thread::sleep_until(deadline);
    return 0;
  }
  // Then what is ready, within bounds: with many clients streaming, poll() alone could go on for
  // as long as frames keep arriving.
  const auto budget_end = clock_type::now() + 20ms;
  while (n < 4096) {
    if (ioc.stopped()) ioc.restart();
    if (ioc.poll_one() == 0) break;
    if (++n % 64 == 0 && clock_type::now() >= budget_end) break;
  }
  return n;
}

struct ws_client::impl : std::enable_shared_from_this<ws_client::impl> {
  impl(asio::io_context* loop, ws_options o)
      : options(o),
        own(loop ? nullptr : std::make_unique<asio::io_context>()),
        ioc(loop ? *loop : *own),
        ws(ioc),
        on_loop(loop != nullptr) {
    if (!options.headers.empty())
      ws.set_option(websocket::stream_base::decorator([h = options.headers](websocket::request_type& req) {
        for (const auto& [k, v] : h) req.set(k, v);
      }));
    if (options.deflate) {
      websocket::permessage_deflate pmd;
      pmd.client_enable = true;
      pmd.msg_size_threshold = 0;  // compress every message it sends
      ws.set_option(pmd);
    }
  }

  ws_options options;
  std::unique_ptr<asio::io_context> own;  // before ws: the stream goes first
  asio::io_context& ioc;
  websocket::stream<tcp::socket> ws;
  beast::flat_buffer buffer;
  websocket::response_type response;
  std::deque<std::string> inbox;
  std::optional<beast::error_code> read_error;
  std::string last_error;
  std::string end_why;  // why the connection or attempt ended (first reason)
  std::string host, target;
  phase ph = phase::idle;
  bool connected = false;
  bool read_pending = false;
  const bool on_loop;
  std::function<void()> on_activity;  // loop mode: after a handler changed something

  void notify() {
    if (on_activity) on_activity();
  }

  // A loop's handlers keep their client alive until they ran (its ws_client may be gone by then).
  // An own io_context's handlers die with it, and must not keep the client alive (a cycle).
  std::shared_ptr<impl> keep() { return on_loop ? shared_from_this() : nullptr; }

  void end(std::string why) {
    if (ph == phase::closed) return;
    ph = phase::closed;
    end_why = std::move(why);
  }

  void fail(std::string why) {
    last_error = why;
    end(std::move(why));
    beast::error_code ignored;
    ws.next_layer().close(ignored);
  }

  bool run_until(const std::function<bool()>& done, clock_type::time_point deadline) {
    while (!done()) {
      auto now = clock_type::now();
      if (now >= deadline) return false;
      if (ioc.stopped()) ioc.restart();
      if (ioc.run_one_for(deadline - now) == 0 && ioc.stopped()) return done();  // no work left
    }
    return true;
  }

  // Runs the handlers that are ready now (bounded).
  void run_ready() {
    for (int i = 0; i < 1000; ++i) {
      if (ioc.stopped()) ioc.restart();
      if (ioc.poll() == 0) return;
    }
  }

  void start_read() {
    if (read_pending || read_error || !connected) return;
    read_pending = true;
    ws.async_read(buffer, [this, self = keep()](beast::error_code ec, std::size_t) {
      read_pending = false;
      if (ec) {
        read_error = ec;
        // Beast records the peer's close frame in reason().
        if (ws.reason().code != websocket::close_code::none)
          end("close frame " + std::to_string(static_cast<unsigned>(ws.reason().code)));
        else
          end(ec.message());
        notify();
        return;
      }
      inbox.push_back(beast::buffers_to_string(buffer.data()));
      buffer.consume(buffer.size());
      start_read();
      notify();
    });
  }

  bool write(std::string_view data, bool text, std::chrono::milliseconds timeout) {
    if (!connected || read_error) return false;
    ws.text(text);
    std::optional<beast::error_code> result;
    ws.async_write(asio::buffer(data.data(), data.size()), [&](beast::error_code ec, std::size_t) { result = ec; });
    if (!run_until([&] { return result.has_value(); }, clock_type::now() + timeout)) {
      last_error = "write: timed out";
      // The handler references locals: tear the socket down so it runs before we return.
      beast::error_code ignored;
      ws.next_layer().close(ignored);
      run_until([&] { return result.has_value(); }, clock_type::now() + 1s);
      return false;
    }
    if (*result) last_error = "write: " + result->message();
    return !*result;
  }

  // Opens the socket (with the receive buffer asked for); false with last_error set on failure.
  bool open_socket() {
    auto& sock = ws.next_layer();
    beast::error_code ec;
    sock.open(tcp::v4(), ec);
    if (!ec && options.rcvbuf > 0) sock.set_option(asio::socket_base::receive_buffer_size(options.rcvbuf), ec);
    if (ec) {
      fail("socket setup: " + ec.message());
      return false;
    }
    return true;
  }
};

ws_client::ws_client(ws_options options) : impl_(std::make_shared<impl>(nullptr, options)) {}

ws_client::ws_client(ws_loop& loop, ws_options options) : impl_(std::make_shared<impl>(&loop.impl_->ioc, options)) {}

ws_client::~ws_client() {
  impl_->on_activity = nullptr;  // the handlers still to run must not call back into a caller that is gone
  beast::error_code ignored;
  impl_->ws.next_layer().close(ignored);
  impl_->end("dropped by the test");
}

unsigned ws_client::connect(std::uint16_t port, const std::string& path) {
  auto& d = *impl_;
  if (!d.open_socket()) return 0;
  d.ph = phase::connecting;

  std::optional<beast::error_code> result;
  std::string stage = "connect";
  d.host = "127.0.0.1:" + std::to_string(port);
  d.target = path;
  d.ws.next_layer().async_connect(
      tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port), [&](beast::error_code cec) {
        if (cec) return void(result = cec);
        // Like browsers: no Nagle delay on small frames (close replies, pongs).
        beast::error_code ignored;
        d.ws.next_layer().set_option(tcp::no_delay(true), ignored);
        stage = "handshake";
        d.ws.async_handshake(d.response, d.host, d.target, [&](beast::error_code hec) { result = hec; });
      });
  if (!d.run_until([&] { return result.has_value(); }, clock_type::now() + d.options.handshake_timeout)) {
    beast::error_code ec;
    d.ws.next_layer().close(ec);
    d.run_until([&] { return result.has_value(); }, clock_type::now() + 1s);
    d.last_error = stage + ": timed out";
    d.end(d.last_error);
    return 0;
  }
  if (*result) {
    d.last_error = stage + ": " + result->message();
    d.end(d.last_error);
    // A refused upgrade still carries the server's HTTP response.
    return d.response.result_int() != 0 && d.response.result_int() != 101 ? d.response.result_int() : 0;
  }
  d.connected = true;
  d.ph = phase::open;
  d.start_read();
  return d.response.result_int();
}

bool ws_client::connect_async(std::uint16_t port, const std::string& path) {
  auto& d = *impl_;
  if (!d.open_socket()) return false;
  d.ph = phase::connecting;
  d.host = "127.0.0.1:" + std::to_string(port);
  d.target = path;
  d.ws.next_layer().async_connect(
      tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port),
      [self = d.shared_from_this()](beast::error_code cec) {
        if (self->ph == phase::closed) return;  // dropped meanwhile
        if (cec) {
          self->fail("connect: " + cec.message());
          return self->notify();
        }
        beast::error_code ignored;
        self->ws.next_layer().set_option(tcp::no_delay(true), ignored);
        self->ws.async_handshake(self->response, self->host, self->target, [self](beast::error_code hec) {
          if (self->ph == phase::closed) return;
          if (hec) {
            const auto status = self->response.result_int();
            self->fail("upgrade: " + (status ? "answered " + std::to_string(status) : hec.message()));
            return self->notify();
          }
          self->connected = true;
          self->ph = phase::open;
          self->start_read();
          self->notify();
        });
      });
  return true;
}

std::string ws_client::handshake_header(std::string_view name) const {
  auto it = impl_->response.find(beast::string_view(name.data(), name.size()));
  return it == impl_->response.end() ? std::string() : std::string(it->value());
}

const std::string& ws_client::last_error() const { return impl_->last_error; }

bool ws_client::send_text(std::string_view text, std::chrono::milliseconds timeout) {
  return impl_->write(text, true, timeout);
}

bool ws_client::send_binary(std::string_view data, std::chrono::milliseconds timeout) {
  return impl_->write(data, false, timeout);
}

std::optional<std::string> ws_client::read_text(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  d.start_read();
  d.run_until([&] { return !d.inbox.empty() || d.read_error.has_value(); }, clock_type::now() + timeout);
  if (d.inbox.empty()) return std::nullopt;
  std::string frame = std::move(d.inbox.front());
  d.inbox.pop_front();
  return frame;
}

std::optional<boost::json::value> ws_client::read_json(std::chrono::milliseconds timeout) {
  auto text = read_text(timeout);
  if (!text) return std::nullopt;
  return parse_json(*text);
}

std::optional<boost::json::value> ws_client::read_type(std::string_view type, std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    if (left.count() <= 0) return std::nullopt;
    auto frame = read_json(left);
    if (!frame) return std::nullopt;
    if (json_string(*frame, "type") == type) return frame;
  }
}

std::vector<std::string> ws_client::read_available(std::chrono::milliseconds wait) {
  auto& d = *impl_;
  d.start_read();
  d.run_until([&] { return !d.inbox.empty() || d.read_error.has_value(); }, clock_type::now() + wait);
  d.run_ready();
  std::vector<std::string> out;
  take_frames(out);
  return out;
}

std::size_t ws_client::take_frames(std::vector<std::string>& out) {
  auto& d = *impl_;
  const auto n = d.inbox.size();
  for (auto& f : d.inbox) out.push_back(std::move(f));
  d.inbox.clear();
  return n;
}

bool ws_client::wait_closed(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (!d.connected) return true;
  d.start_read();
  return d.run_until([&] { return d.read_error.has_value(); }, clock_type::now() + timeout);
}

bool ws_client::is_open() const { return impl_->connected && !impl_->read_error; }

ws_client::phase ws_client::state() const { return impl_->ph; }

void ws_client::pump(std::chrono::milliseconds duration) {
  impl_->start_read();
  impl_->run_until([] { return false; }, clock_type::now() + duration);
}

std::optional<std::uint16_t> ws_client::close_code() const {
  // Beast records the peer's close frame in reason(). The read may still end with a socket
  // error instead of error::closed when the server drops TCP right after its close frame
  // ("fail the connection", RFC 6455 7.1.7), so the frame is what counts.
  const auto& d = *impl_;
  if (!d.read_error || d.ws.reason().code == websocket::close_code::none) return std::nullopt;
  return static_cast<std::uint16_t>(d.ws.reason().code);
}

std::string ws_client::close_reason() const { return std::string(impl_->ws.reason().reason.c_str()); }

std::string ws_client::read_error() const { return impl_->read_error ? impl_->read_error->message() : std::string(); }

std::string ws_client::why() const { return impl_->end_why; }

void ws_client::on_activity(std::function<void()> fn) { impl_->on_activity = std::move(fn); }

bool ws_client::close(std::uint16_t code, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (!is_open()) return false;
  std::optional<beast::error_code> result;
  d.ws.async_close(websocket::close_reason(code), [&](beast::error_code ec) { result = ec; });
  auto deadline = clock_type::now() + timeout;
  // The pending read sees the server's close frame; the close op completes after that.
  bool ok = d.run_until([&] { return result.has_value() && !d.read_pending; }, deadline);
  if (!ok) {
    beast::error_code ignored;
    d.ws.next_layer().close(ignored);
    d.run_until([&] { return result.has_value(); }, clock_type::now() + 1s);
  }
  return ok;  // the op itself reports operation_aborted once the read saw the close
}

void ws_client::drop() {
  auto& d = *impl_;
  beast::error_code ignored;
  d.ws.next_layer().close(ignored);
  d.end("dropped by the test");
  if (!d.on_loop) d.run_until([&] { return !d.read_pending; }, clock_type::now() + 1s);
}

void ws_client::reset() {
  auto& d = *impl_;
  beast::error_code ignored;
  d.ws.next_layer().set_option(asio::socket_base::linger(true, 0), ignored);
  d.ws.next_layer().close(ignored);
  d.end("reset by the test");
  if (!d.on_loop) d.run_until([&] { return !d.read_pending; }, clock_type::now() + 1s);
}

raw_ws_client::raw_ws_client(int rcvbuf) : rcvbuf_(rcvbuf) {}

raw_ws_client::~raw_ws_client() { close(); }

bool raw_ws_client::connect_tcp(std::uint16_t port) {
  close();
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  if (rcvbuf_ > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf_, sizeof rcvbuf_);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close();
    return false;
  }
  return true;
}

bool raw_ws_client::send_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

unsigned raw_ws_client::connect(std::uint16_t port, const std::string& path, std::chrono::milliseconds timeout,
                                const std::string& extra_headers) {
  if (!connect_tcp(port)) return 0;
  std::string req = "GET " + path + " HTTP/1.1\r\n" + "Host: 127.0.0.1:" + std::to_string(port) +
                    "\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n" +
                    extra_headers + "\r\n";
  if (!send_raw(req)) return 0;

  // One byte at a time so that no WebSocket frame after the head is consumed.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string head;
  while (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || head.size() > 16384) return 0;
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char c = 0;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    head.push_back(c);
  }
  head_ = head;
  // "HTTP/1.1 101 Switching Protocols"
  auto sp = head.find(' ');
  if (sp == std::string::npos) return 0;
  return static_cast<unsigned>(std::strtoul(head.c_str() + sp + 1, nullptr, 10));
}

bool raw_ws_client::read_frame(std::uint8_t& first_byte, std::string& payload, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pending_.size() >= 2) {
      const auto b1 = static_cast<std::uint8_t>(pending_[1]);
      std::size_t pos = 2;
      std::uint64_t len = b1 & 0x7f;
      bool whole_header = true;
      if (len == 126 || len == 127) {
        const std::size_t n = len == 126 ? 2 : 8;
        if (pending_.size() < 2 + n) {
          whole_header = false;
        } else {
          len = 0;
          for (std::size_t i = 0; i < n; ++i) len = (len << 8) | static_cast<std::uint8_t>(pending_[2 + i]);
          pos += n;
        }
      }
      if (whole_header && pending_.size() >= pos + len) {
        first_byte = static_cast<std::uint8_t>(pending_[0]);
        payload = pending_.substr(pos, static_cast<std::size_t>(len));
        pending_.erase(0, pos + static_cast<std::size_t>(len));
        return true;
      }
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || fd_ < 0) return false;
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    pending_.append(buf, static_cast<std::size_t>(n));
  }
}

bool raw_ws_client::peer_closed() {
  if (fd_ < 0) return true;
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) continue;
    if (n == 0) return true;
    if (errno == EINTR) continue;
    return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

std::string raw_ws_client::read_to_end(std::chrono::milliseconds timeout) {
  std::string out;
  if (fd_ < 0) return out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EOF or reset
  }
  return out;
}

void raw_ws_client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace roomcast::itest
