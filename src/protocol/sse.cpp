#include "protocol/sse.hpp"

#include "protocol/codec.hpp"

#include <charconv>

namespace roomcast::protocol {

void append_sse_event(std::string& out, std::string_view data, std::uint64_t seq, std::string_view epoch,
                      std::string_view event) {
  if (!epoch.empty()) {
    out += "id: ";
    out += epoch;
    out += ':';
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, seq);
    out.append(buf, r.ptr);
    out += '\n';
  }
  if (!event.empty()) {
    out += "event: ";
    out += event;
    out += '\n';
  }
  // CR, LF and CRLF all end a line in the stream: each line of the data gets its own field.
  std::size_t start = 0;
  for (;;) {
    const auto end = data.find_first_of("\r\n", start);
    out += "data: ";
    out += data.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    out += '\n';
    if (end == std::string_view::npos) break;
    start = end + 1;
    if (data[end] == '\r' && start < data.size() && data[start] == '\n') ++start;
  }
  out += '\n';
}

std::string sse_event(std::string_view data, std::uint64_t seq, std::string_view epoch, std::string_view event) {
  std::string out;
  out.reserve(data.size() + epoch.size() + event.size() + 48);
  append_sse_event(out, data, seq, epoch, event);
  return out;
}

std::string encode_close(std::uint16_t code, std::string_view reason) {
  std::string s = R"({"type":"close","code":)";
  s += std::to_string(code);
  s += R"(,"reason":)";
  append_json_string(s, reason);
  s += '}';
  return s;
}

std::string_view sse_response_head() noexcept {
  return "HTTP/1.1 200 OK\r\n"
         "Server: roomcast\r\n"
         "Content-Type: text/event-stream\r\n"
         "Cache-Control: no-store\r\n"
         "X-Accel-Buffering: no\r\n"
         "Connection: close\r\n"
         "\r\n";
}

bool parse_sse_event_id(std::string_view text, std::string& epoch, std::uint64_t& seq) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) return false;
  const auto e = text.substr(0, colon);
  // Epochs are short tokens the node made (hex); anything else is not one of our ids.
  if (e.size() > 64) return false;
  for (const char c : e)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
      return false;
  const auto s = text.substr(colon + 1);
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size()) return false;
  epoch = std::string(e);
  seq = v;
  return true;
}

bool accepts_event_stream(std::string_view accept) noexcept {
  // A media range list: "text/event-stream", maybe with parameters or next to others.
  constexpr std::string_view want = "text/event-stream";
  for (std::size_t pos = accept.find(want); pos != std::string_view::npos; pos = accept.find(want, pos + 1)) {
    const bool starts = pos == 0 || accept[pos - 1] == ',' || accept[pos - 1] == ' ';
    const auto after = pos + want.size();
    const bool ends = after == accept.size() || accept[after] == ',' || accept[after] == ';' || accept[after] == ' ';
    if (starts && ends) return true;
  }
  return false;
}

}  // namespace roomcast::protocol
