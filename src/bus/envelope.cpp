#include "bus/envelope.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace roomcast::bus {

namespace {
std::string_view kind_name(protocol::target_kind k) {
  switch (k) {
    case protocol::target_kind::room:
      return "room";
    case protocol::target_kind::user:
      return "user";
    case protocol::target_kind::all:
      return "all";
  }
  return "all";
}

std::string_view type_name(envelope_type t) {
  switch (t) {
    case envelope_type::message:
      return "\"message\"";
    case envelope_type::kick:
      return "\"kick\"";
    case envelope_type::presence:
      return "\"presence\"";
    case envelope_type::room_kick:
      return "\"room_kick\"";
  }
  return "\"message\"";
}

// The wire form is head + [seq part] + tail, so a store that assigns the seq (the redis history
// script) can put the seq in without decoding anything.
void append_head(std::string& s, const envelope& e) {
  using protocol::append_json_string;
  s += "{\"v\":1,\"type\":";
  s += type_name(e.type);
  s += ",\"kind\":\"";
  s += kind_name(e.kind);
  s += "\",\"target\":";
  append_json_string(s, e.target);
  s += ",\"id\":";
  append_json_string(s, e.id);
  s += ",\"from\":";
  append_json_string(s, e.from);
  s += ",\"origin\":";
  append_json_string(s, e.origin);
  protocol::append_filter_members(s, e.audience);
  if (e.receipt) s += ",\"receipt\":true";
}

void append_tail(std::string& s, const envelope& e) {
  using protocol::append_json_string;
  if (e.type == envelope_type::kick) {
    s += ",\"code\":" + std::to_string(e.code) + ",\"reason\":";
    append_json_string(s, e.reason);
  }
  if (e.type == envelope_type::room_kick) {
    s += ",\"user\":";
    append_json_string(s, e.user);
    s += ",\"reason\":";
    append_json_string(s, e.reason);
  }
  s += ",\"data\":";
  s += e.data.empty() ? std::string_view("null") : std::string_view(e.data);
  s += "}";
}

}  // namespace

std::string encode_envelope(const envelope& e) {
  std::string s;
  s.reserve(128 + e.target.size() + e.id.size() + e.from.size() + e.origin.size() + e.data.size());
  append_head(s, e);
  if (e.seq != 0) {
    s += ",\"seq\":" + std::to_string(e.seq) + ",\"epoch\":";
    protocol::append_json_string(s, e.epoch);
  }
  append_tail(s, e);
  return s;
}

envelope_parts encode_envelope_parts(const envelope& e) {
  envelope_parts p;
  p.head.reserve(64 + e.target.size() + e.id.size() + e.from.size() + e.origin.size());
  append_head(p.head, e);
  p.tail.reserve(16 + e.data.size());
  append_tail(p.tail, e);
  return p;
}

bool decode_envelope(std::string_view wire, envelope& out) {
  boost::json::error_code ec;
  const auto v = boost::json::parse(wire, ec);
  if (ec || !v.is_object()) return false;
  const auto& o = v.get_object();
  auto str = [&](std::string_view k, std::string& dst) {
    const auto* x = o.if_contains(k);
    if (!x || !x->is_string()) return false;
    dst = std::string(x->get_string());
    return true;
  };
  std::string type, kind;
  if (!str("type", type) || !str("kind", kind) || !str("target", out.target) || !str("id", out.id) ||
      !str("from", out.from) || !str("origin", out.origin))
    return false;
  if (type == "message")
    out.type = envelope_type::message;
  else if (type == "kick")
    out.type = envelope_type::kick;
  else if (type == "presence")
    out.type = envelope_type::presence;
  else if (type == "room_kick")
    out.type = envelope_type::room_kick;
  else
    return false;
  if (kind == "room")
    out.kind = protocol::target_kind::room;
  else if (kind == "user")
    out.kind = protocol::target_kind::user;
  else if (kind == "all")
    out.kind = protocol::target_kind::all;
  else
    return false;
  if (out.type == envelope_type::kick) {
    const auto* c = o.if_contains("code");
    // The node closes sessions with this code: only an application code (4000-4999, what the API
    // takes) is sent on; 70000 must not wrap to 4464, nor 1005 reach a close frame.
    if (!c || !c->is_int64() || c->get_int64() < 4000 || c->get_int64() > 4999) return false;
    out.code = static_cast<std::uint16_t>(c->get_int64());
    str("reason", out.reason);
  }
  if (out.type == envelope_type::room_kick && (!str("user", out.user) || !str("reason", out.reason))) return false;
  if (const auto* seq = o.if_contains("seq")) {
    if (seq->is_uint64())
      out.seq = seq->get_uint64();
    else if (seq->is_int64() && seq->get_int64() > 0)
      out.seq = static_cast<std::uint64_t>(seq->get_int64());
    else
      return false;
    if (!str("epoch", out.epoch)) return false;
  }
  if (protocol::parse_filter(o, protocol::stored_filter_limits, out.audience)) return false;
  if (const auto* r = o.if_contains("receipt")) out.receipt = r->is_bool() && r->get_bool();
  const auto raw = protocol::find_raw_member(wire, "data");
  if (!raw) return false;
  out.data = std::string(*raw);
  return true;
}

}  // namespace roomcast::bus
