// The broker's app is stopped for a few seconds and started again while a backend publishes 500
// room messages at a steady pace: no publish is refused (200, or 202 queued into the outage
// buffer), and every client of the room, on either node, ends with every seq of the room from its
// welcome's to the head (500 more) exactly once, in order, each carrying the message published
// with that seq, and no gap frame (unconfirmed publishes are re-sent and redeliveries dropped by
// id; a hole a node sees is filled from the history).
//
// This test runs a broker of its own (it stops it), not the run's shared one.

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "support/cluster.hpp"
#include "support/servers.hpp"

namespace roomcast::itest::cluster {
namespace {

constexpr int total_messages = 500;
constexpr auto publish_interval = 16ms;  // 500 messages over ~8 s: before, during and after the outage
constexpr int clients_per_node = 5;

std::string stats_summary(std::uint16_t port) {
  try {
    auto s = get_stats(port);
    std::string out;
    for (const char* k : {"bus_up", "bus_received", "bus_duplicates", "bus_published", "bus_outage_buffer"}) {
      const auto* v = json_find(s, k);
      out += std::string(out.empty() ? "" : ", ") + k + "=" + (v ? json::serialize(*v) : std::string("?"));
    }
    return out;
  } catch (const std::exception& e) {
    return std::string("(no /api/stats: ") + e.what() + ")";
  }
}

// Reads a client's frames on its own thread, keeping the seq and the `n` of every room message.
class room_reader {
 public:
  room_reader(member m, std::string room) : m_(std::move(m)), room_(std::move(room)) {
    for (const auto& r : string_rooms()) {
      if (json_string(r, "room") != room_) continue;
      welcome_seq_ = json_int(r, "seq", -1);
      epoch_ = json_string(r, "epoch");
    }
    thread_ = std::thread([this] { run(); });
  }
  ~room_reader() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  room_reader(const room_reader&) = delete;
  room_reader& operator=(const room_reader&) = delete;

  std::vector<std::int64_t> received() const {
    std::lock_guard lk(mu_);
    return ns_;
  }
  std::vector<std::int64_t> seqs() const {
    std::lock_guard lk(mu_);
    return seqs_;
  }
  std::int64_t welcome_seq() const { return welcome_seq_; }  // the room's seq in the welcome (-1: none)
  const std::string& welcome_epoch() const { return epoch_; }
  std::size_t count() const {
    std::lock_guard lk(mu_);
    return ns_.size();
  }
  std::string problems() const {
    std::lock_guard lk(mu_);
    return problems_;
  }
  std::string node() const { return json_string(m_.welcome, "node"); }
  std::string user() const { return json_string(m_.welcome, "user"); }

 private:
  void run() {
    while (!stop_) {
      std::optional<json::value> f;
      try {
        f = m_->read_json(100ms);
      } catch (const std::exception& e) {
        std::lock_guard lk(mu_);
        problems_ += std::string("bad frame: ") + e.what() + "; ";
        continue;
      }
      if (!f) {
        if (!m_->is_open()) {
          std::lock_guard lk(mu_);
          problems_ += "stream ended: " + m_->read_error() + "; ";
          return;
        }
        continue;
      }
      std::lock_guard lk(mu_);
      if (json_string(*f, "type") == "message" && json_string(*f, "room") == room_) {
        ns_.push_back(json_int(*f, "data.n"));
        seqs_.push_back(json_int(*f, "seq", -1));  // -1: a message without seq (never expected here)
      } else {
        problems_ += "unexpected frame " + json::serialize(*f) + "; ";
      }
    }
  }

  json::array string_rooms() const {
    const auto* rooms = json_find(m_.welcome, "rooms");
    return rooms && rooms->is_array() ? rooms->get_array() : json::array{};
  }

  member m_;
  std::string room_;
  std::int64_t welcome_seq_ = -1;
  std::string epoch_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<std::int64_t> ns_;
  std::vector<std::int64_t> seqs_;
  std::string problems_;
  std::thread thread_;
};

// What is wrong with `got` compared to 0..total-1 (empty when nothing is).
std::string sequence_problems(const std::vector<std::int64_t>& got) {
  std::vector<int> seen(total_messages, 0);
  std::vector<std::int64_t> bad;
  int out_of_order = 0;
  std::int64_t prev = -1;
  for (auto n : got) {
    if (n < 0 || n >= total_messages) {
      bad.push_back(n);
      continue;
    }
    ++seen[static_cast<std::size_t>(n)];
    if (n <= prev) ++out_of_order;
    prev = n;
  }
  std::string missing, dup;
  int n_missing = 0, n_dup = 0;
  for (int i = 0; i < total_messages; ++i) {
    if (seen[static_cast<std::size_t>(i)] == 0 && n_missing++ < 20) missing += std::to_string(i) + " ";
    if (seen[static_cast<std::size_t>(i)] > 1 && n_dup++ < 20) dup += std::to_string(i) + " ";
  }
  std::string out;
  if (n_missing) out += std::to_string(n_missing) + " missing (" + missing + "...) ";
  if (n_dup) out += std::to_string(n_dup) + " duplicated (" + dup + "...) ";
  if (out_of_order) out += std::to_string(out_of_order) + " out of order ";
  if (!bad.empty()) out += std::to_string(bad.size()) + " without a valid n ";
  return out;
}

// What is wrong with a client's seqs (empty when nothing is): they must be exactly
// start+1 .. start+total, each once, in order, and the message with seq s must be the one the
// backend published (n = s - start - 1: it publishes one after another, so the room numbers its
// messages in the order of n).
std::string seq_problems(std::int64_t start, const std::vector<std::int64_t>& seqs,
                         const std::vector<std::int64_t>& ns) {
  if (start < 0) return "the welcome carried no seq for the room";
  std::string out;
  int shown = 0;
  std::map<std::int64_t, int> count;
  for (auto s : seqs) ++count[s];
  for (std::int64_t s = start + 1; s <= start + total_messages; ++s)
    if (count[s] != 1 && shown++ < 20) out += "seq " + std::to_string(s) + " x" + std::to_string(count[s]) + "; ";
  for (auto& [s, k] : count)
    if ((s <= start || s > start + total_messages) && shown++ < 25) out += "unexpected seq " + std::to_string(s) + "; ";
  for (std::size_t i = 0; i < seqs.size() && shown < 30; ++i) {
    if (i > 0 && seqs[i] <= seqs[i - 1]) {
      out += "out of order at #" + std::to_string(i) + " (" + std::to_string(seqs[i - 1]) + " then " +
             std::to_string(seqs[i]) + "); ";
      ++shown;
    }
    if (i < ns.size() && ns[i] != seqs[i] - start - 1) {
      out += "seq " + std::to_string(seqs[i]) + " carried n " + std::to_string(ns[i]) + "; ";
      ++shown;
    }
  }
  if (!out.empty()) out = "seqs (welcome at " + std::to_string(start) + "): " + out;
  return out;
}

TEST(cluster_broker_restart, nothing_is_lost_or_duplicated_across_a_broker_restart) {
  rabbitmq_server broker;
  redis_server redis;
  cluster_options o{unique_prefix(), broker.uri(), redis.address(), {}};
  std::vector<cluster_node> nodes;
  nodes.push_back(start_cluster_node("br0", o));
  nodes.push_back(start_cluster_node("br1", o));
  auto dump_nodes = [&] {
    if (!HasFailure()) return;
    for (const auto& n : nodes)
      std::cerr << "--- node " << n.id << " (port " << n.port() << ") ---\n" << n.proc->output_tail(60);
    auto logs = run_command("tail -n 30 " + shell_quote(broker.dir()) + "/log/*.log");
    std::cerr << "--- broker log ---\n" << logs.output << "--- end of broker log ---\n";
  };
  for (auto& n : nodes) {
    auto r = wait_ready(n.port());
    ASSERT_EQ(r.status, 200u) << n.id << " not ready: " << r.body;
  }
  const auto p0 = nodes[0].port(), p1 = nodes[1].port();

  const std::string room = "restart" + random_token(6);
  std::vector<std::unique_ptr<room_reader>> readers;
  for (int i = 0; i < 2 * clients_per_node; ++i) {
    const auto port = nodes[static_cast<std::size_t>(i % 2)].port();
    readers.push_back(std::make_unique<room_reader>(itest::join(port, room, "STU", "c" + std::to_string(i)), room));
  }
  for (auto& r : readers) {
    EXPECT_FALSE(r->welcome_epoch().empty()) << r->user() << ": no epoch for " << room << " in the welcome";
    EXPECT_EQ(r->welcome_epoch(), readers.front()->welcome_epoch()) << r->user();
    EXPECT_EQ(r->welcome_seq(), 0) << r->user() << ": the room is new";
  }
  ASSERT_TRUE(wait_room_binds(p0, 1)) << "br0 never bound " << room;
  ASSERT_TRUE(wait_room_binds(p1, 1)) << "br1 never bound " << room;

  // The backend: one publish every 10 ms through br0's API; every answer recorded.
  std::atomic<int> sent{0};
  std::mutex answers_mu;
  std::map<unsigned, int> answers;  // status -> count (0 = transport error or timeout)
  std::string refused;              // the first few non-200/202 answers
  std::jthread backend([&] {        // joined below; also on an early exit
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < total_messages; ++i) {
      std::this_thread::sleep_until(start + i * publish_interval);
      http_request req;
      req.method = "POST";
      req.target = "/api/publish";
      req.headers = {{"Content-Type", "application/json"}};
      req.body = R"({"room":")" + room + R"(","data":{"n":)" + std::to_string(i) + "}}";
      unsigned status = 0;
      std::string body;
      try {
        // publish_timeout is 5 s (then 202 queued): allow more than that.
        auto res = http_send(p0, req, 15s);
        status = res.status;
        body = res.body;
      } catch (const std::exception& e) {
        body = e.what();
      }
      std::lock_guard lk(answers_mu);
      ++answers[status];
      if (status != 200 && status != 202 && refused.size() < 600)
        refused += "#" + std::to_string(i) + ": " + std::to_string(status) + " " + body + "\n";
      sent = i + 1;
    }
  });

  // Early in the run, stop the broker's app (rabbitmqctl takes ~3 s to do it; the connections drop
  // at its end), keep it stopped for 3 s, then start it again (~2 s) while the backend goes on.
  poll_until([&] { return sent.load() >= 50; }, 20s, 5ms);
  const int sent_at_stop = sent.load();
  auto t0 = std::chrono::steady_clock::now();
  auto stop = broker.ctl("stop_app");
  const auto stopped_after = std::chrono::steady_clock::now() - t0;
  const int sent_at_stopped = sent.load();
  std::this_thread::sleep_for(3s);
  const auto during = std::make_pair(stats_summary(p0), stats_summary(p1));
  const int sent_at_start = sent.load();
  auto start = broker.ctl("start_app");
  const int sent_at_started = sent.load();
  backend.join();
  EXPECT_EQ(stop.status, 0) << "rabbitmqctl stop_app: " << stop.output;
  EXPECT_EQ(start.status, 0) << "rabbitmqctl start_app: " << start.output;
  std::cout << "[ INFO     ] stop_app after " << sent_at_stop << " publishes (took "
            << std::chrono::duration_cast<std::chrono::milliseconds>(stopped_after).count() << " ms, "
            << sent_at_stopped << " sent by then); start_app at " << sent_at_start << ", back at " << sent_at_started
            << "\n[ INFO     ] while stopped: br0 {" << during.first << "} br1 {" << during.second << "}\n";

  {
    std::lock_guard lk(answers_mu);
    std::string summary;
    for (auto [status, n] : answers) summary += std::to_string(status) + "x" + std::to_string(n) + " ";
    std::cout << "[ INFO     ] API answers: " << summary << "\n";
    EXPECT_EQ(answers[200] + answers[202], total_messages) << "answers " << summary << "\n" << refused;
    EXPECT_EQ(answers.count(503) ? answers[503] : 0, 0) << refused;
  }

  // Everyone ends with 0..499, in order, exactly once.
  const auto back_at = std::chrono::steady_clock::now();
  const bool all_arrived = poll_until(
      [&] {
        for (auto& r : readers)
          if (r->count() < static_cast<std::size_t>(total_messages)) return false;
        return true;
      },
      40s, 50ms);
  std::this_thread::sleep_for(all_arrived ? 500ms : 0ms);  // late duplicates would show up here
  std::cout << "[ INFO     ] all clients complete " << (all_arrived ? "" : "NOT ") << "after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - back_at).count()
            << " ms; br0 {" << stats_summary(p0) << "} br1 {" << stats_summary(p1) << "}\n";
  const std::string stats = "br0 {" + stats_summary(p0) + "} br1 {" + stats_summary(p1) + "}";
  for (auto& r : readers) {
    auto got = r->received();
    auto why = sequence_problems(got);
    why += seq_problems(r->welcome_seq(), r->seqs(), got);
    if (got.size() != static_cast<std::size_t>(total_messages) && why.empty()) why = "wrong count";
    EXPECT_TRUE(why.empty()) << r->user() << " on " << r->node() << " got " << got.size() << " messages: " << why
                             << "; " << r->problems() << "\n"
                             << stats;
    EXPECT_TRUE(r->problems().empty()) << r->user() << " on " << r->node() << ": " << r->problems();
  }
  EXPECT_EQ(stat_int(p0, "bus_outage_buffer"), 0) << stats;
  readers.clear();
  dump_nodes();
}

}  // namespace
}  // namespace roomcast::itest::cluster
