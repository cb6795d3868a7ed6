// Abuse limits (issue 15), through the real binary: connections per source address, unfinished
// handshakes per shard (slowloris), JSON depth and members in client frames and API bodies, joins
// per session, and HEAD's Content-Length. Source addresses are loopback aliases (127.0.0.x), so
// one test shows both the refused address and another one that is not refused.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/itest.hpp"

namespace roomcast::itest {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// A plain TCP connection from a chosen loopback source address; every read has a deadline.
class raw_tcp {
 public:
  raw_tcp(const std::string& source, std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) == 0 &&
          ::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
  }
  ~raw_tcp() {
    if (fd_ >= 0) ::close(fd_);
  }
  raw_tcp(const raw_tcp&) = delete;
  raw_tcp& operator=(const raw_tcp&) = delete;

  bool ok() const { return ok_; }
  bool send(std::string_view s) {
    return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Everything until the peer closes (or the deadline); `closed` says which.
  std::string read_all(std::chrono::milliseconds timeout, bool* closed = nullptr) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        if (closed) *closed = true;
        return out;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    if (closed) *closed = false;
    return out;
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

// Status of one `GET target` sent from `source` (0: no answer).
unsigned status_from(const std::string& source, std::uint16_t port, const std::string& target = "/healthz",
                     std::string* answer = nullptr) {
  raw_tcp c(source, port);
  if (!c.ok() || !c.send("GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) return 0;
  const auto text = c.read_all(5s);
  if (answer) *answer = text;
  if (text.size() < 12 || !text.starts_with("HTTP/1.1 ")) return 0;
  return static_cast<unsigned>(std::stoi(text.substr(9, 3)));
}

// The value of one sample line of /metrics ("name{labels}"), -1 when absent.
double sample(std::uint16_t port, const std::string& series) {
  const auto m = http_get(port, "/metrics");
  const auto at = m.body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(m.body.substr(at + series.size() + 2));
}

std::string header_of(const std::string& response, const std::string& name) {
  const auto at = response.find("\r\n" + name + ": ");
  if (at == std::string::npos) return {};
  const auto from = at + name.size() + 4;
  return response.substr(from, response.find("\r\n", from) - from);
}

// --- connections per source address -------------------------------------------------

TEST(abuse, an_address_over_source_rate_gets_429_before_its_request_is_read_and_another_is_served) {
  auto node = start_node({"--threads", "1", "--source-rate", "1", "--source-burst", "5"});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(status_from("127.0.0.2", node->port()), 200u) << i;
  std::string answer;
  EXPECT_EQ(status_from("127.0.0.2", node->port(), "/healthz", &answer), 429u) << answer;
  EXPECT_EQ(header_of(answer, "Retry-After"), "1") << answer;
  EXPECT_NE(answer.find("source_rate"), std::string::npos) << answer;
  // An upgrade from that address is refused the same way, before any handshake work.
  EXPECT_EQ(status_from("127.0.0.2", node->port(), ws_path("345", "STU", "u1")), 429u);
  // Another address (another school) has its own bucket.
  EXPECT_EQ(status_from("127.0.0.3", node->port()), 200u);
  EXPECT_GE(sample(node->port(), R"(roomcast_connections_refused_total{reason="source_rate"})"), 2);
  // The bucket refills at source_rate.
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(status_from("127.0.0.2", node->port()), 200u);
}

// --- unfinished handshakes per shard (slowloris) -----------------------------------

TEST(abuse, connections_beyond_max_pending_handshakes_get_503_until_the_slow_ones_finish_or_time_out) {
  auto node = start_node({"--threads", "1", "--max-pending-handshakes", "4", "--handshake-timeout", "2s"});
  std::vector<std::unique_ptr<raw_tcp>> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(std::make_unique<raw_tcp>("127.0.0.4", node->port()));
    ASSERT_TRUE(slow.back()->ok());
    ASSERT_TRUE(slow.back()->send("GET /healthz HTTP/1.1\r\nHost: "));  // half a request, then silence
  }
  std::this_thread::sleep_for(300ms);  // the node accepted them
  {
    raw_tcp next("127.0.0.5", node->port());  // another address: the cap is per shard, not per address
    ASSERT_TRUE(next.ok());
    bool closed = false;
    const auto answer = next.read_all(5s, &closed);  // answered without being asked: nothing is read
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 503")) << answer;
    EXPECT_FALSE(header_of(answer, "Retry-After").empty()) << answer;
    EXPECT_NE(answer.find("max_pending_handshakes"), std::string::npos) << answer;
    EXPECT_TRUE(closed);
  }
  // One slow client finishes its request: its answer comes, and its slot is free again.
  ASSERT_TRUE(slow[0]->send("x\r\nConnection: close\r\n\r\n"));
  bool closed = false;
  const auto done = slow[0]->read_all(5s, &closed);
  EXPECT_TRUE(done.starts_with("HTTP/1.1 200")) << done;
  // Same thread: the slot was given back before the next accept runs.
  EXPECT_EQ(status_from("127.0.0.5", node->port()), 200u);
  // The others time out (handshake_timeout) and new connections are served.
  for (std::size_t i = 1; i < slow.size(); ++i) {
    bool gone = false;
    slow[i]->read_all(5s, &gone);
    EXPECT_TRUE(gone) << "slow connection " << i << " was not closed after handshake_timeout";
  }
  EXPECT_EQ(sample(node->port(), R"(roomcast_connections_refused_total{reason="pending_handshakes"})"), 1);
  EXPECT_EQ(sample(node->port(), "roomcast_pending_handshakes"), 1);  // the /metrics request itself
  EXPECT_EQ(upgrade_status(node->port(), ws_path("345", "STU", "u1")), 101u);
}

// --- JSON depth and members ---------------------------------------------------------

std::string nested(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']');
}
std::string zeros(int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) s += i ? ",0" : "0";
  return s + "]";
}

TEST(abuse, client_frames_over_json_limits_get_an_error_frame_and_the_session_stays) {
  auto node = start_node({"--json-max-depth", "16", "--json-max-members", "1000"});
  auto t = join(node->port(), "345", "THE", "teacher");
  ASSERT_TRUE(t->send_text(R"({"type":"publish","id":"deep","data":)" + nested(20) + "}"));
  auto e = t->read_type("error");
  ASSERT_TRUE(e.has_value()) << t->read_error();
  EXPECT_EQ(json_string(*e, "code"), "bad_json") << json::serialize(*e);
  EXPECT_NE(json_string(*e, "message").find("json_max_depth"), std::string::npos) << json::serialize(*e);
  ASSERT_TRUE(t->send_text(R"({"type":"publish","id":"wide","data":)" + zeros(1001) + "}"));
  e = t->read_type("error");
  ASSERT_TRUE(e.has_value()) << t->read_error();
  EXPECT_NE(json_string(*e, "message").find("json_max_members"), std::string::npos) << json::serialize(*e);
  // Within the limits the same shapes go through.
  ASSERT_TRUE(t->send_text(R"({"type":"publish","id":"ok","data":)" + nested(14) + "}"));
  auto ack = t->read_type("ack");
  EXPECT_TRUE(ack.has_value()) << t->read_error();
  EXPECT_EQ(sample(node->port(), R"(roomcast_json_refused_total{source="client",limit="depth"})"), 1);
  EXPECT_EQ(sample(node->port(), R"(roomcast_json_refused_total{source="client",limit="members"})"), 1);
}

TEST(abuse, api_bodies_over_json_limits_get_400_bad_json_naming_the_limit) {
  auto node = start_node();  // defaults: depth 32, 10000 members
  auto deep = http_post_json(node->port(), "/api/publish", R"({"room":"345","data":)" + nested(40) + "}");
  EXPECT_EQ(deep.status, 400u) << deep.body;
  EXPECT_EQ(json_string(deep.json(), "error.code"), "bad_json");
  EXPECT_NE(deep.body.find("json_max_depth"), std::string::npos) << deep.body;
  auto wide = http_post_json(node->port(), "/api/publish", R"({"room":"345","data":)" + zeros(10001) + "}");
  EXPECT_EQ(wide.status, 400u) << wide.body;
  EXPECT_NE(wide.body.find("json_max_members"), std::string::npos) << wide.body;
  auto kick = http_post_json(node->port(), "/api/disconnect", R"({"user":"u","reason":)" + nested(40) + "}");
  EXPECT_EQ(kick.status, 400u) << kick.body;
  // The defaults take a full users filter (filter_max_users) and a full batch (api_publish_batch_max).
  std::string users = "[";
  for (int i = 0; i < 1000; ++i) users += (i ? ",\"u" : "\"u") + std::to_string(i) + "\"";
  users += "]";
  auto full = http_post_json(node->port(), "/api/publish", R"({"room":"345","users":)" + users + R"(,"data":1})");
  EXPECT_EQ(full.status, 200u) << full.body.substr(0, 300);
  std::string batch = "[";
  for (int i = 0; i < 1000; ++i)
    batch += std::string(i ? "," : "") + R"({"room":"b","data":)" + std::to_string(i) + "}";
  batch += "]";
  auto many = http_post_json(node->port(), "/api/publish", batch, {}, 20s);
  EXPECT_EQ(many.status, 200u) << many.body.substr(0, 300);
  EXPECT_EQ(sample(node->port(), R"(roomcast_json_refused_total{source="api",limit="depth"})"), 2);
  EXPECT_EQ(sample(node->port(), R"(roomcast_json_refused_total{source="api",limit="members"})"), 1);
}

// --- joins per session ---------------------------------------------------------------

TEST(abuse, joins_over_join_rate_get_rate_limited_error_frames_naming_the_room) {
  auto node = start_node({"--join-rate", "1", "--join-burst", "3"});
  auto s = join(node->port(), "345", "STU", "joiner");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s->send_text(R"({"type":"join","room":"j)" + std::to_string(i) + R"("})"));
    auto j = s->read_type("joined");
    ASSERT_TRUE(j.has_value()) << "join " << i << ": " << s->read_error();
  }
  ASSERT_TRUE(s->send_text(R"({"type":"join","room":"j3"})"));
  auto e = s->read_type("error");
  ASSERT_TRUE(e.has_value()) << s->read_error();
  EXPECT_EQ(json_string(*e, "code"), "rate_limited") << json::serialize(*e);
  EXPECT_EQ(json_string(*e, "room"), "j3") << json::serialize(*e);
  EXPECT_EQ(sample(node->port(), "roomcast_join_rate_limited_total"), 1);
  // The session stays, and a second later it may join again.
  std::this_thread::sleep_for(1100ms);
  ASSERT_TRUE(s->send_text(R"({"type":"join","room":"j3"})"));
  EXPECT_TRUE(s->read_type("joined").has_value()) << s->read_error();
}

// --- HEAD ------------------------------------------------------------------------------

TEST(abuse, head_answers_the_content_length_of_get_without_a_body) {
  const auto dir = std::filesystem::temp_directory_path() / ("roomcast-head-" + random_token(8));
  std::filesystem::create_directories(dir);
  const std::string page(12345, 'x');
  std::ofstream(dir / "page.html") << page;
  auto node = start_node({"--web-root", dir.string()});
  for (const std::string target : {"/page.html", "/healthz", "/api/stats"}) {
    raw_tcp c("127.0.0.1", node->port());
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.send("HEAD " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    bool closed = false;
    const auto head = c.read_all(5s, &closed);
    EXPECT_TRUE(closed);
    const auto end = head.find("\r\n\r\n");
    ASSERT_NE(end, std::string::npos) << head;
    EXPECT_EQ(head.size(), end + 4) << target << ": HEAD sent a body: " << head;
    const auto get = http_get(node->port(), target);
    EXPECT_EQ(get.status, 200u);
    if (target == "/page.html") {
      EXPECT_EQ(get.body.size(), page.size());
    }
    if (target != "/api/stats") {  // stats change between the two requests
      EXPECT_EQ(header_of(head, "Content-Length"), std::to_string(get.body.size())) << target << ": " << head;
    } else {
      EXPECT_NE(header_of(head, "Content-Length"), "0") << head;
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace roomcast::itest
