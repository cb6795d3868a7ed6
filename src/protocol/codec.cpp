#include "protocol/codec.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <array>

namespace roomcast::protocol {

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out.push_back(hex[u >> 4]);
          out.push_back(hex[u & 0xf]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

namespace {

std::size_t skip_ws(std::string_view s, std::size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

// Index just past the string literal starting at s[i] == '"'.
std::size_t skip_string(std::string_view s, std::size_t i) {
  ++i;
  while (i < s.size()) {
    if (s[i] == '\\') {
      i += 2;
      continue;
    }
    if (s[i] == '"') return i + 1;
    ++i;
  }
  return s.size();
}

// Index just past the value starting at s[i] (valid JSON assumed).
std::size_t skip_value(std::string_view s, std::size_t i) {
  if (i >= s.size()) return i;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return i;
  }
  // number, true, false, null
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' && s[i] != '\r' &&
         s[i] != '\t')
    ++i;
  return i;
}

}  // namespace

std::optional<std::string_view> find_raw_member(std::string_view s, std::string_view key) {
  std::size_t i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  i = skip_ws(s, i + 1);
  boost::json::monotonic_resource mr;
  while (i < s.size() && s[i] == '"') {
    const std::size_t key_end = skip_string(s, i);
    const std::string_view raw_key = s.substr(i + 1, key_end - i - 2);
    bool match = raw_key == key;
    if (!match && raw_key.find('\\') != std::string_view::npos) {
      // An escaped key ("d\u0061ta") still names the member; decode it to compare.
      boost::json::error_code ec;
      auto v = boost::json::parse(s.substr(i, key_end - i), ec, &mr);
      match = !ec && v.is_string() && v.get_string() == key;
    }
    i = skip_ws(s, key_end);
    if (i >= s.size() || s[i] != ':') return std::nullopt;
    i = skip_ws(s, i + 1);
    const std::size_t value_end = skip_value(s, i);
    if (match) return s.substr(i, value_end - i);
    i = skip_ws(s, value_end);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  return std::nullopt;
}

std::optional<std::vector<std::string_view>> split_raw_array(std::string_view s) {
  std::size_t i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '[') return std::nullopt;
  std::vector<std::string_view> out;
  i = skip_ws(s, i + 1);
  while (i < s.size() && s[i] != ']') {
    const std::size_t end = skip_value(s, i);
    out.push_back(s.substr(i, end - i));
    i = skip_ws(s, end);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  return out;
}

bool decode_client_frame(std::string_view text, client_frame& out, decode_error& err, const filter_limits& limits,
                         const json_limits& json) {
  const std::size_t first = skip_ws(text, 0);
  if (first >= text.size() || text[first] != '{') {
    // The seed's browser client sends plain text: it is a chat message to the URL's room.
    out.type = client_frame::kind::chat;
    out.data.clear();
    out.data += "{\"text\":";
    append_json_string(out.data, text);
    out.data.push_back('}');
    return true;
  }
  // A small stack arena keeps typical frames free of heap allocations while parsing.
  std::array<unsigned char, 2048> arena;
  boost::json::monotonic_resource mr(arena.data(), arena.size());
  boost::json::value v;
  std::string refusal;
  if (const auto r = parse_json(text, json, v, refusal, &mr); r != json_refusal::none) {
    err = {error_code::bad_json, std::move(refusal), r == json_refusal::invalid ? json_refusal::none : r};
    return false;
  }
  if (!v.is_object()) {
    err = {error_code::bad_json, "expected a JSON object"};
    return false;
  }
  const auto& o = v.get_object();
  const auto* type = o.if_contains("type");
  if (!type || !type->is_string()) {
    err = {error_code::unknown_type, "missing \"type\""};
    return false;
  }
  const std::string_view t = type->get_string();
  auto room_of = [&](bool required) -> bool {
    const auto* r = o.if_contains("room");
    if (!r) {
      if (!required) return true;
      err = {error_code::bad_request, "\"room\" is required"};
      return false;
    }
    if (!r->is_string() || r->get_string().empty() || r->get_string().size() > 256) {
      err = {error_code::bad_request, "\"room\" must be a non-empty string (at most 256 bytes)"};
      return false;
    }
    out.room = std::string(r->get_string());
    return true;
  };
  if (t == "ping") {
    out.type = client_frame::kind::ping;
    return true;
  }
  if (t == "join" || t == "leave") {
    out.type = t == "join" ? client_frame::kind::join : client_frame::kind::leave;
    out.since = 0;
    out.epoch.clear();
    // The room first: an error about the other fields can then name it (docs/protocol.md).
    if (!room_of(true)) return false;
    if (const auto* since = o.if_contains("since")) {
      if (since->is_uint64())
        out.since = since->get_uint64();
      else if (since->is_int64() && since->get_int64() >= 0)
        out.since = static_cast<std::uint64_t>(since->get_int64());
      else {
        err = {error_code::bad_request, "\"since\" must be a non-negative integer"};
        return false;
      }
    }
    if (const auto* epoch = o.if_contains("epoch")) {
      if (!epoch->is_string() || epoch->get_string().size() > 64) {
        err = {error_code::bad_request, "\"epoch\" must be a string"};
        return false;
      }
      out.epoch = std::string(epoch->get_string());
    }
    return true;
  }
  if (t == "auth" || t == "refresh") {
    out.type = t == "auth" ? client_frame::kind::auth : client_frame::kind::refresh;
    const auto* tok = o.if_contains("token");
    if (!tok || !tok->is_string() || tok->get_string().empty() || tok->get_string().size() > 4096) {
      err = {error_code::bad_request, "\"token\" must be a non-empty string (at most 4096 bytes)"};
      return false;
    }
    out.token = std::string(tok->get_string());
    return true;
  }
  if (t == "received") {
    out.type = client_frame::kind::received;
    const auto* id = o.if_contains("id");
    if (!id || !id->is_string() || id->get_string().empty() || id->get_string().size() > 128) {
      err = {error_code::bad_request, "\"id\" must be the message's id (a string of at most 128 bytes)"};
      return false;
    }
    out.id = std::string(id->get_string());
    return true;
  }
  if (t == "kill") {
    out.type = client_frame::kind::kill;
    return true;
  }
  if (t == "publish") {
    out.type = client_frame::kind::publish;
    out.room.clear();
    if (!room_of(false)) return false;
    // A field this server doesn't know is refused: a misspelt filter ("role") must not widen the
    // audience to the whole room.
    for (const auto& kv : o) {
      const std::string_view k = kv.key();
      if (k != "type" && k != "room" && k != "id" && k != "data" && !is_filter_key(k)) {
        err = {error_code::bad_request, "unknown field \"" + std::string(k.substr(0, 64)) +
                                            "\" (known: type, room, id, data, roles, platforms, users)"};
        return false;
      }
    }
    const auto* id = o.if_contains("id");
    out.id.clear();
    if (id) {
      if (!id->is_string() || id->get_string().size() > 128) {
        err = {error_code::bad_request, "\"id\" must be a string of at most 128 bytes"};
        return false;
      }
      out.id = std::string(id->get_string());
    }
    auto raw = find_raw_member(text, "data");
    if (!raw || !o.contains("data")) {
      err = {error_code::bad_request, "\"data\" is required"};
      return false;
    }
    out.data = std::string(*raw);
    if (auto why = parse_filter(o, limits, out.audience)) {
      err = {error_code::bad_request, std::move(*why)};
      return false;
    }
    return true;
  }
  err = {error_code::unknown_type, "unknown type \"" + std::string(t.substr(0, 64)) + "\""};
  return false;
}

void append_position(std::string& s, const room_position& p) {
  s += "{\"room\":";
  append_json_string(s, p.room);
  if (!p.epoch.empty()) {
    s += ",\"seq\":" + std::to_string(p.seq) + ",\"epoch\":";
    append_json_string(s, p.epoch);
  }
  s.push_back('}');
}

std::string encode_welcome(const welcome_info& w) {
  std::string s = "{\"type\":\"welcome\",\"node\":";
  append_json_string(s, w.node);
  s += ",\"session\":";
  append_json_string(s, w.session);
  s += ",\"user\":";
  append_json_string(s, w.user);
  s += ",\"rooms\":[";
  if (w.rooms) {
    bool first = true;
    for (const auto& r : *w.rooms) {
      if (!first) s.push_back(',');
      first = false;
      append_position(s, r);
    }
  }
  s += "]";
  if (w.dev_kill) s += ",\"dev_kill\":true";
  s += "}";
  return s;
}

std::string encode_joined(const room_position& p) {
  std::string s = "{\"type\":\"joined\",\"room\":";
  append_json_string(s, p.room);
  if (!p.epoch.empty()) {
    s += ",\"seq\":" + std::to_string(p.seq) + ",\"epoch\":";
    append_json_string(s, p.epoch);
  }
  s.push_back('}');
  return s;
}

std::string encode_recovered(std::string_view room, std::uint64_t from, std::uint64_t to) {
  std::string s = "{\"type\":\"recovered\",\"room\":";
  append_json_string(s, room);
  s += ",\"from\":" + std::to_string(from) + ",\"to\":" + std::to_string(to) + "}";
  return s;
}

std::string encode_gap(std::string_view room, std::string_view reason, std::uint64_t seq, std::string_view epoch) {
  std::string s = "{\"type\":\"gap\",\"room\":";
  append_json_string(s, room);
  s += ",\"reason\":";
  append_json_string(s, reason);
  s += ",\"seq\":" + std::to_string(seq) + ",\"epoch\":";
  append_json_string(s, epoch);
  s += "}";
  return s;
}

void append_message(std::string& out, const message_view& m) {
  out.reserve(out.size() + 64 + m.target.size() + m.id.size() + m.from.size() + m.data.size());
  out += "{\"type\":\"message\",";
  switch (m.kind) {
    case target_kind::room:
      out += "\"room\":";
      append_json_string(out, m.target);
      break;
    case target_kind::user:
      out += "\"user\":";
      append_json_string(out, m.target);
      break;
    case target_kind::all:
      out += "\"all\":true";
      break;
  }
  if (m.seq != 0) out += ",\"seq\":" + std::to_string(m.seq);
  if (m.receipt) out += ",\"receipt\":true";
  out += ",\"id\":";
  append_json_string(out, m.id);
  out += ",\"from\":";
  append_json_string(out, m.from);
  out += ",\"data\":";
  out += m.data;
  out.push_back('}');
}

std::string encode_error(std::string_view code, std::string_view message, std::string_view id, std::string_view room) {
  std::string s = "{\"type\":\"error\",\"code\":";
  append_json_string(s, code);
  s += ",\"message\":";
  append_json_string(s, message);
  if (!id.empty()) {
    s += ",\"id\":";
    append_json_string(s, id);
  }
  if (!room.empty()) {
    s += ",\"room\":";
    append_json_string(s, room);
  }
  s.push_back('}');
  return s;
}

std::string encode_kicked(std::uint16_t code, std::string_view reason) {
  std::string s = "{\"type\":\"kicked\",\"code\":" + std::to_string(code) + ",\"reason\":";
  append_json_string(s, reason);
  s.push_back('}');
  return s;
}

std::string encode_ack(std::string_view id, std::uint64_t seq, bool duplicate) {
  std::string s = "{\"type\":\"ack\",\"id\":";
  append_json_string(s, id);
  if (seq) s += ",\"seq\":" + std::to_string(seq);
  if (duplicate) s += ",\"duplicate\":true";
  s.push_back('}');
  return s;
}

std::string encode_refreshed(std::int64_t exp) {
  return "{\"type\":\"refreshed\",\"exp\":" + std::to_string(exp) + "}";
}

std::string encode_left(std::string_view room, std::string_view reason, bool kicked) {
  std::string s = "{\"type\":\"left\",\"room\":";
  append_json_string(s, room);
  if (kicked) {
    s += ",\"kicked\":true,\"reason\":";
    append_json_string(s, reason);
  }
  s.push_back('}');
  return s;
}

std::string_view pong_payload() noexcept { return "{\"type\":\"pong\"}"; }

}  // namespace roomcast::protocol
