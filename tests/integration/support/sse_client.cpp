#include "support/sse_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace roomcast::itest {

using clock_type = std::chrono::steady_clock;

namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
int remaining_ms(clock_type::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
  return static_cast<int>(std::max<long long>(0, left));
}
}  // namespace

boost::json::value sse_event::json() const { return boost::json::parse(data); }

sse_client::sse_client(options o) : options_(std::move(o)) {}

sse_client::~sse_client() { close(); }

void sse_client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

unsigned sse_client::connect(std::uint16_t port, const std::string& path, const std::string& last_event_id,
                             std::chrono::milliseconds timeout) {
  close();
  buf_.clear();
  response_headers_.clear();
  ended_ = false;
  const auto deadline = clock_type::now() + timeout;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return 0;
  if (options_.rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &options_.rcvbuf, sizeof options_.rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return 0;
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
  if (!last_event_id.empty()) req += "Last-Event-ID: " + last_event_id + "\r\n";
  for (const auto& [k, v] : options_.headers) req += k + ": " + v + "\r\n";
  req += "\r\n";
  if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return 0;
  std::size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
    if (!fill(deadline)) return 0;
  const std::string head = buf_.substr(0, end);
  buf_.erase(0, end + 4);
  unsigned status = 0;
  if (head.size() > 12) status = static_cast<unsigned>(std::atoi(head.c_str() + 9));
  std::size_t pos = head.find("\r\n");
  while (pos != std::string::npos) {
    const auto next = head.find("\r\n", pos + 2);
    const auto line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    if (const auto colon = line.find(':'); colon != std::string::npos) {
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      response_headers_.emplace_back(lower(line.substr(0, colon)), value);
    }
    pos = next;
  }
  if (status != 200) {
    // A refusal: read its body to the end (the node closes after it).
    while (fill(deadline)) {
    }
  }
  return status;
}

std::string sse_client::header(std::string name) const {
  name = lower(name);
  for (const auto& [k, v] : response_headers_)
    if (k == name) return v;
  return {};
}

bool sse_client::fill(clock_type::time_point deadline) {
  if (fd_ < 0 || ended_) return false;
  pollfd p{fd_, POLLIN, 0};
  const int r = ::poll(&p, 1, remaining_ms(deadline));
  if (r <= 0) return false;
  char tmp[16384];
  const auto n = ::recv(fd_, tmp, sizeof tmp, 0);
  if (n <= 0) {
    ended_ = true;
    return false;
  }
  buf_.append(tmp, static_cast<std::size_t>(n));
  return true;
}

std::optional<sse_event> sse_client::next(std::chrono::milliseconds timeout) {
  const auto deadline = clock_type::now() + timeout;
  sse_event ev;
  bool has_data = false;
  for (;;) {
    const auto nl = buf_.find('\n');
    if (nl == std::string::npos) {
      if (!fill(deadline)) return std::nullopt;
      continue;
    }
    std::string line = buf_.substr(0, nl);
    buf_.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      if (has_data) {
        if (!ev.id.empty()) last_id_ = ev.id;
        return ev;
      }
      ev = {};
      continue;
    }
    if (line.front() == ':') {
      ++comments_;
      continue;
    }
    const auto colon = line.find(':');
    const std::string field = line.substr(0, colon);
    std::string value = colon == std::string::npos ? std::string() : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (field == "data") {
      if (has_data) ev.data += '\n';
      ev.data += value;
      has_data = true;
    } else if (field == "id") {
      ev.id = value;
    } else if (field == "event") {
      ev.event = value;
    }
  }
}

std::optional<sse_event> sse_client::next_of_type(const std::string& type, std::chrono::milliseconds timeout) {
  const auto deadline = clock_type::now() + timeout;
  while (clock_type::now() < deadline) {
    auto ev = next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()));
    if (!ev) return std::nullopt;
    const auto j = ev->json();
    if (j.is_object() && j.as_object().contains("type") && j.at("type").as_string() == type) return ev;
    skipped_.push_back(std::move(*ev));
  }
  return std::nullopt;
}

bool sse_client::wait_end(std::chrono::milliseconds timeout) {
  const auto deadline = clock_type::now() + timeout;
  while (!ended_ && clock_type::now() < deadline) {
    auto ev = next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()));
    if (ev) skipped_.push_back(std::move(*ev));
  }
  return ended_;
}

}  // namespace roomcast::itest
