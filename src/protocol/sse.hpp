#pragma once
// Server-Sent Events (the WHATWG EventSource stream), sans-io: the events of roomcast's SSE
// fallback (docs/protocol.md, "SSE") and the client's position in a Last-Event-ID.
//
// An event carries one server frame's JSON as its data. A room message with a seq has the id
// "<epoch>:<seq>", so a browser's EventSource sends it back as Last-Event-ID when it reconnects
// and the node recovers from there exactly as from ?since=<seq>&epoch=<epoch>.
#include <cstdint>
#include <string>
#include <string_view>

namespace roomcast::protocol {

// Appends one event: `id: <epoch>:<seq>` when epoch is not empty (a room keeping history: seq 0 is
// its position before the first message), `event: <event>` when not empty, the data
// as `data:` lines (a line break inside the data, which a backend's pretty-printed JSON may have,
// starts another `data:` line; EventSource joins them with "\n" again), then the blank line.
void append_sse_event(std::string& out, std::string_view data, std::uint64_t seq = 0, std::string_view epoch = {},
                      std::string_view event = {});
std::string sse_event(std::string_view data, std::uint64_t seq = 0, std::string_view epoch = {},
                      std::string_view event = {});

// The payload of the stream's last event when the node ends it: {"type":"close","code","reason"},
// with the code a WebSocket session would close with (1012 drain, 4008 slow consumer, …).
std::string encode_close(std::uint16_t code, std::string_view reason);

// A comment line: EventSource ignores it; it keeps proxies and the TCP connection from going idle.
inline constexpr std::string_view sse_heartbeat = ":\n\n";

// The response head of a stream. The body has no length: it ends when the node closes the
// connection. X-Accel-Buffering: nginx passes each event on as it comes (proxy_buffering off for
// this response) even where the location buffers.
std::string_view sse_response_head() noexcept;

// "<epoch>:<seq>" (an id this node sent) → epoch and seq. False for anything else; the caller
// then treats the stream as new (no recovery), as for a client that never had an id.
bool parse_sse_event_id(std::string_view text, std::string& epoch, std::uint64_t& seq);

// The Accept header asks for an event stream (EventSource sends "text/event-stream").
bool accepts_event_stream(std::string_view accept) noexcept;

}  // namespace roomcast::protocol
