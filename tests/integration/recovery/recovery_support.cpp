#include "recovery_support.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <algorithm>
#include <cstdio>
#include <set>
#include <stdexcept>

namespace roomcast::itest::recovery {

// ---------------------------------------------------------------- paths and flags

std::string recovery_path(const std::string& room, const std::string& role, const std::string& user,
                          std::optional<std::uint64_t> since, const std::string& epoch, const std::string& platform) {
  std::string p = ws_path(room, role, user, "tok", platform);
  if (since) {
    p += "?since=" + std::to_string(*since);
    if (!epoch.empty()) p += "&epoch=" + epoch;
  }
  return p;
}

std::vector<std::string> redis_bus_args(const std::string& node_id, const std::string& redis, const std::string& prefix,
                                        bool script_publish) {
  return {"--node-id",
          node_id,
          "--threads",
          "2",
          "--bus",
          "redis",
          "--redis-address",
          redis,
          "--redis-prefix",
          prefix,
          "--registry",
          "local",
          "--redis-script-publish",
          script_publish ? "true" : "false"};
}

json::value welcome_room(const json::value& welcome, const std::string& room) {
  const auto* rooms = json_find(welcome, "rooms");
  if (rooms && rooms->is_array())
    for (const auto& r : rooms->get_array())
      if (json_string(r, "room") == room) return r;
  return nullptr;
}

// ---------------------------------------------------------------- position tracking

void seq_tracker::remember(const std::string& text) {
  recent.push_back(text);
  if (recent.size() > 12) recent.pop_front();
}

std::string seq_tracker::context() const {
  std::string s;
  for (const auto& r : recent) s += "\n      " + r;
  return s;
}

void seq_tracker::on_welcome(const json::value& w, bool first) {
  if (!first) return;
  auto r = welcome_room(w, room);
  if (r.is_null()) return;
  epoch = json_string(r, "epoch");
  last = static_cast<std::uint64_t>(std::max<std::int64_t>(0, json_int(r, "seq", 0)));
  positioned = true;
}

json::value seq_tracker::on_frame(const std::string& text) {
  remember(text);
  auto v = try_parse_json(text);
  if (!v) {
    anomalies.push_back("non-JSON frame: " + text);
    return nullptr;
  }
  const auto type = json_string(*v, "type");
  if (type == "message" && json_string(*v, "room") == room) {
    ++messages;
    const auto s = json_int(*v, "seq", -1);
    if (s <= 0) {
      anomalies.push_back("message without seq: " + text);
    } else {
      const auto seq = static_cast<std::uint64_t>(s);
      if (positioned && (filtered ? seq <= last : seq != last + 1))
        anomalies.push_back(
            (filtered ? "expected a seq above " + std::to_string(last) : "expected seq " + std::to_string(last + 1)) +
            " got " + std::to_string(seq) + " (epoch " + epoch + "); recent frames:" + context());
      last = seq;
      positioned = true;
      seqs.push_back(seq);
    }
  } else if (type == "gap" && json_string(*v, "room") == room) {
    gaps.push_back(*v);
    epoch = json_string(*v, "epoch");
    last = static_cast<std::uint64_t>(std::max<std::int64_t>(0, json_int(*v, "seq", 0)));
    positioned = true;
  } else if (type == "recovered" && json_string(*v, "room") == room) {
    recovered.push_back(*v);
  } else if (type == "joined" && json_string(*v, "room") == room) {
    if (!positioned && json_find(*v, "epoch")) {
      epoch = json_string(*v, "epoch");
      last = static_cast<std::uint64_t>(json_int(*v, "seq", 0));
      positioned = true;
    }
  }
  return *v;
}

namespace {

// What differs between seqs and the ascending list `want`: counts other than one, seqs not wanted,
// order (the first few of each).
std::string seq_diff(const std::vector<std::uint64_t>& seqs, const std::vector<std::uint64_t>& want) {
  std::map<std::uint64_t, int> count;
  for (auto s : seqs) ++count[s];
  const std::set<std::uint64_t> wanted(want.begin(), want.end());
  std::string why;
  int shown = 0;
  for (auto s : want) {
    if (shown >= 10) break;
    const auto it = count.find(s);
    const int n = it == count.end() ? 0 : it->second;
    if (n != 1) {
      why += " seq " + std::to_string(s) + " x" + std::to_string(n) + ";";
      ++shown;
    }
  }
  for (auto& [s, n] : count)
    if (!wanted.contains(s) && shown++ < 15) why += " unexpected seq " + std::to_string(s) + ";";
  for (std::size_t i = 1; i < seqs.size() && shown < 20; ++i)
    if (seqs[i] <= seqs[i - 1]) {
      why += " out of order at #" + std::to_string(i) + " (" + std::to_string(seqs[i - 1]) + " then " +
             std::to_string(seqs[i]) + ");";
      ++shown;
    }
  return why;
}

}  // namespace

std::string check_exact(const std::vector<std::uint64_t>& seqs, std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> want;
  for (auto s = from; s <= to; ++s) want.push_back(s);
  if (seqs == want) return {};
  return "got " + std::to_string(seqs.size()) + " seqs, want " + std::to_string(want.size()) + " (" +
         std::to_string(from) + ".." + std::to_string(to) + "):" + seq_diff(seqs, want);
}

std::string check_seqs(const std::vector<std::uint64_t>& seqs, const std::vector<std::uint64_t>& want) {
  if (seqs == want) return {};
  return "got " + std::to_string(seqs.size()) + " seqs, want " + std::to_string(want.size()) + ":" +
         seq_diff(seqs, want);
}

// ---------------------------------------------------------------- many clients, one thread

std::string pooled_client::path() const {
  if (!ever_welcomed || !t.positioned || t.epoch.empty()) return recovery_path(room, role, user, {}, {}, platform);
  return recovery_path(room, role, user, t.last, t.epoch, platform);
}

std::string pooled_client::describe() const {
  std::string s = user + " in " + room + " (connects " + std::to_string(connects) + ", failed " +
                  std::to_string(failed_connects) + ", nodes";
  for (const auto& n : nodes) s += " " + n;
  s += ", start " + std::to_string(start) + ", last " + std::to_string(t.last) + ", epoch " + t.epoch;
  if (!drops.empty()) {
    s += ", ended:";
    for (const auto& d : drops) s += " [" + d + "]";
  }
  return s + ")";
}

client_pool::client_pool() : born_(std::chrono::steady_clock::now()) {}

client_pool::~client_pool() {
  stop();
  clients_.clear();  // closes the sockets; loop_ then releases what its handlers held
}

pooled_client& client_pool::add(std::uint16_t port, const std::string& room, const std::string& user) {
  std::lock_guard lk(mu_);
  auto c = std::make_unique<pooled_client>();
  c->port = port;
  c->room = room;
  c->user = user;
  c->t.room = room;
  clients_.push_back(std::move(c));
  return *clients_.back();
}

std::string client_pool::connect_all(std::chrono::milliseconds timeout) {
  {
    std::lock_guard lk(mu_);
    strict_ = true;
    failure_.clear();
    for (auto& c : clients_)
      if (c->closed()) c->pending = true;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string why;
  while (true) {
    run_once(10ms);
    std::lock_guard lk(mu_);
    if (!failure_.empty()) {
      why = failure_;
      break;
    }
    const auto open = std::count_if(clients_.begin(), clients_.end(), [](auto& c) { return c->is_open(); });
    if (static_cast<std::size_t>(open) == clients_.size()) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      why = "only " + std::to_string(open) + " of " + std::to_string(clients_.size()) + " clients connected in time";
      break;
    }
  }
  std::lock_guard lk(mu_);
  strict_ = false;
  return why;
}

void client_pool::start() {
  stop_ = false;
  thread_ = std::thread([this] {
    while (!stop_) run_once(10ms);
  });
}

void client_pool::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::string client_pool::upgrade_summary() {
  return inspect([&](auto&) {
    char b[200];
    std::snprintf(b, sizeof b, "%d upgrades, %.0f ms on average, %.0f ms at most (longest loop round %.0f ms)",
                  upgrades_, upgrades_ ? upgrade_ms_total_ / upgrades_ : 0.0, upgrade_ms_max_, round_ms_max_);
    return std::string(b);
  });
}

std::map<std::string, int> client_pool::drop_reasons() {
  return inspect([](auto& cs) {
    std::map<std::string, int> out;
    for (auto& c : cs)
      for (const auto& d : c->drops) ++out[d.substr(d.find(' ') + 1)];
    return out;
  });
}

bool client_pool::wait_all(const std::function<bool(const pooled_client&)>& pred, std::chrono::milliseconds timeout) {
  return poll_until(
      [&] {
        return inspect(
            [&](auto& cs) { return std::all_of(cs.begin(), cs.end(), [&](const auto& c) { return pred(*c); }); });
      },
      timeout, 50ms);
}

std::string client_pool::stamp() const {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - born_).count();
  char b[32];
  std::snprintf(b, sizeof b, "t+%.3fs ", static_cast<double>(ms) / 1000.0);
  return b;
}

void client_pool::note(pooled_client& c, const std::string& what) {
  if (c.drops.size() < 8) c.drops.push_back(stamp() + what);
}

void client_pool::attempt(pooled_client& c, std::chrono::steady_clock::time_point now) {
  c.pending = false;
  c.welcomed = false;
  c.live = false;
  c.ws = std::make_unique<ws_client>(loop_);  // a new client per attempt: no stale handler can mix in
  c.ws->on_activity([this, &c] {
    if (!c.dirty) dirty_.push_back(&c);
    c.dirty = true;
  });
  if (!c.ws->connect_async(c.port, c.path())) {
    attempt_failed(c, now);
    return;
  }
  ++in_flight_;
  c.in_flight = true;
  c.attempt_deadline = now + attempt_timeout;
}

void client_pool::attempt_failed(pooled_client& c, std::chrono::steady_clock::time_point now, const std::string& why) {
  ++c.failed_connects;
  note(c, "attempt failed: " + (why.empty() ? c.ws->why() : why));
  if (strict_ && failure_.empty()) failure_ = "could not connect " + c.describe();
  c.pending = true;
  c.next_try = now + 100ms + std::chrono::milliseconds(jitter_() % 100);
}

// Picks up what the loop did for c since the last round: a finished or failed attempt, frames, the
// end of the connection.
void client_pool::advance(pooled_client& c, std::chrono::steady_clock::time_point now) {
  if (!c.ws) return;
  if (c.in_flight) {
    if (c.ws->is_open()) {
      c.in_flight = false;
      --in_flight_;
      c.live = true;
      ++c.connects;
      const double ms = std::chrono::duration<double, std::milli>(now - (c.attempt_deadline - attempt_timeout)).count();
      ++upgrades_;
      upgrade_ms_total_ += ms;
      upgrade_ms_max_ = std::max(upgrade_ms_max_, ms);
    } else if (c.ws->closed()) {
      c.in_flight = false;
      --in_flight_;
      attempt_failed(c, now);
      return;
    } else {
      return;
    }
  }
  if (!c.live) return;
  frames_.clear();
  c.ws->take_frames(frames_);
  for (const auto& f : frames_) handle(c, f);
  if (c.ws->closed()) {
    c.live = false;
    note(c, c.ws->why());
    c.pending = reconnect.load();
    c.next_try = now;
  }
}

// Drops an attempt past its deadline; starts the attempt a client waits for (within max_in_flight).
void client_pool::sweep(pooled_client& c, std::chrono::steady_clock::time_point now) {
  if (c.in_flight && now >= c.attempt_deadline) {
    c.ws->drop();
    c.in_flight = false;
    --in_flight_;
    attempt_failed(c, now, "no 101 within " + std::to_string(attempt_timeout.count()) + " ms");
  }
  if (in_flight_ < max_in_flight && c.pending && c.closed() && now >= c.next_try && (strict_ || reconnect.load()))
    attempt(c, now);
}

void client_pool::run_once(std::chrono::milliseconds timeout) {
  for (int spins = 0; waiting_.load() > 0 && spins < 100000; ++spins) std::this_thread::yield();
  std::lock_guard lk(mu_);
  // The clients' handlers run here, under mu_, so inspect() sees them between rounds only.
  loop_.run_for(timeout);
  const auto now = std::chrono::steady_clock::now();
  struct round_timer {
    client_pool& p;
    std::chrono::steady_clock::time_point t0;
    ~round_timer() {
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      p.round_ms_max_ = std::max(p.round_ms_max_, ms);
    }
  } timer{*this, now};
  for (auto* c : dirty_) {
    c->dirty = false;
    advance(*c, now);
  }
  dirty_.clear();
  if (now >= next_sweep_) {  // not every round: a round can be one frame, and there are thousands of clients
    next_sweep_ = now + 5ms;
    for (auto& cp : clients_) sweep(*cp, now);
  }
}

void client_pool::handle(pooled_client& c, const std::string& text) {
  if (!c.welcomed) {
    auto v = try_parse_json(text);
    if (v && json_string(*v, "type") == "welcome") {
      c.welcomed = true;
      c.nodes.push_back(json_string(*v, "node"));
      if (!c.ever_welcomed) {
        c.t.on_welcome(*v, true);
        c.start = c.t.last;
        c.start_epoch = c.t.epoch;
        c.ever_welcomed = true;
      }
      c.t.remember(text);
      return;
    }
  }
  const auto gaps = c.t.gaps.size();
  c.t.on_frame(text);
  if (c.t.gaps.size() != gaps) c.gap_at.push_back(c.t.seqs.size());
}

// ---------------------------------------------------------------- publishing

std::uint64_t publish_answer::seq() const {
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, json_int(body, "seq", 0)));
}
std::string publish_answer::epoch() const { return json_string(body, "epoch"); }
bool publish_answer::duplicate() const { return json_bool(body, "duplicate"); }

namespace {

publish_answer parse_publish_answer(const http_response& res) {
  publish_answer a;
  a.status = res.status;
  if (auto v = try_parse_json(res.body))
    a.body = std::move(*v);
  else
    a.body = json::string(res.body);
  return a;
}

}  // namespace

publish_answer try_publish(std::uint16_t port, const std::string& body, std::chrono::milliseconds timeout) {
  publish_answer a;
  try {
    a = parse_publish_answer(http_post_json(port, "/api/publish", body, {}, timeout));
  } catch (const std::exception& e) {
    a.error = e.what();
  }
  return a;
}

publish_answer try_publish(http_connection& conn, const std::string& body, std::chrono::milliseconds timeout) {
  publish_answer a;
  try {
    a = parse_publish_answer(conn.post_json("/api/publish", body, timeout));
  } catch (const std::exception& e) {
    a.error = e.what();
  }
  return a;
}

std::string room_body(const std::string& room, const std::string& id, const std::string& data_json,
                      const std::string& extra_members) {
  return "{\"room\":" + json_quote(room) + ",\"id\":" + json_quote(id) + ",\"data\":" + data_json + extra_members + "}";
}

void retry_stats::note(const std::string& s) {
  std::lock_guard lk(mu);
  if (failures.size() < 20) failures.push_back(s);
}

publish_answer publish_retrying_with(const std::function<publish_answer()>& attempt, retry_stats& st,
                                     std::chrono::milliseconds patience, std::vector<std::string>* trail) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  publish_answer a;
  while (true) {
    a = attempt();
    if (a.status == 200) {
      if (a.duplicate()) ++st.duplicates;
      if (json_bool(a.body, "unsequenced")) ++st.unsequenced;
      if (trail && !trail->empty()) trail->push_back("200 " + json::serialize(a.body));
      return a;
    }
    const std::string what =
        a.status ? std::to_string(a.status) + " " + json::serialize(a.body) : "transport: " + a.error;
    if (trail) trail->push_back(what);
    st.note(what);
    ++st.retries;
    if (std::chrono::steady_clock::now() >= deadline) return a;
    std::this_thread::sleep_for(50ms);
  }
}

publish_answer publish_retrying(std::uint16_t port, const std::string& body, retry_stats& st,
                                std::chrono::milliseconds patience, std::vector<std::string>* trail) {
  return publish_retrying_with([&] { return try_publish(port, body, 3s); }, st, patience, trail);
}

// ---------------------------------------------------------------- stream_publisher

stream_publisher::stream_publisher(std::uint16_t port, std::vector<std::string> rooms, double rate, std::string tag)
    : port_(port), rooms_(std::move(rooms)), rate_(rate), tag_(std::move(tag)) {}

stream_publisher::~stream_publisher() { stop(); }

void stream_publisher::start(unsigned threads) {
  begin_run();
  for (unsigned t = 0; t < threads; ++t) {
    std::vector<std::string> mine;
    for (std::size_t i = t; i < rooms_.size(); i += threads) mine.push_back(rooms_[i]);
    threads_.emplace_back([this, mine] { run(mine, rate_, std::chrono::microseconds(0)); });
  }
}

void stream_publisher::start_batched() {
  begin_run();
  for (const auto& room : rooms_) threads_.emplace_back([this, room] { run_batched(room); });
}

void stream_publisher::stop() {
  stop_ = true;
  bool joined = false;
  for (auto& t : threads_)
    if (t.joinable()) {
      t.join();
      joined = true;
    }
  threads_.clear();
  if (joined) {
    std::lock_guard lk(mu_);
    stopped_at_ = std::chrono::steady_clock::now();
    accepted_in_run_ = accepted_locked() - accepted_at_start_;
  }
}

void stream_publisher::publish_once_each() {
  http_connection conn(port_);
  for (const auto& r : rooms_) publish(conn, r);
}

stream_publisher::room_state stream_publisher::state(const std::string& room) {
  std::lock_guard lk(mu_);
  return rooms_state_[room];
}

std::uint64_t stream_publisher::head(const std::string& room) {
  std::lock_guard lk(mu_);
  auto& st = rooms_state_[room];
  return st.epochs.empty() ? 0 : st.max_seq[st.epochs.back()];
}

std::uint64_t stream_publisher::total_accepted() {
  std::lock_guard lk(mu_);
  return accepted_locked();
}

double stream_publisher::achieved_rate() {
  std::lock_guard lk(mu_);
  const double secs = std::chrono::duration<double>(stopped_at_ - started_at_).count();
  return secs > 0 ? static_cast<double>(accepted_in_run_) / secs : 0;
}

double stream_publisher::run_seconds() {
  std::lock_guard lk(mu_);
  return std::chrono::duration<double>(stopped_at_ - started_at_).count();
}

std::vector<std::string> stream_publisher::given_up() {
  std::lock_guard lk(mu_);
  return given_up_;
}

std::vector<std::string> stream_publisher::retried() {
  std::lock_guard lk(mu_);
  return retried_;
}

double stream_publisher::slowest_publish_ms() {
  std::lock_guard lk(mu_);
  return slowest_ms_;
}

double stream_publisher::mean_publish_ms() {
  std::lock_guard lk(mu_);
  const auto n = accepted_locked();
  return n ? total_ms_ / static_cast<double>(n) : 0;
}

void stream_publisher::begin_run() {
  stop_ = false;
  std::lock_guard lk(mu_);
  started_at_ = std::chrono::steady_clock::now();
  accepted_at_start_ = accepted_locked();
}

std::uint64_t stream_publisher::accepted_locked() {
  std::uint64_t n = 0;
  for (auto& [r, st] : rooms_state_) n += st.accepted;
  return n;
}

// Sends body until it is accepted (or 20 s pass); keeps the attempts of a request that needed
// more than one. Returns the last answer and the time all attempts took, in ms.
std::pair<publish_answer, double> stream_publisher::send_retrying(http_connection& conn, const std::string& body,
                                                                  const std::string& what) {
  std::vector<std::string> trail;
  const auto t0 = std::chrono::steady_clock::now();
  auto a = publish_retrying_with(
      [&] {
        conn.set_port(port_);
        return try_publish(conn, body, 3s);
      },
      stats, 20s, &trail);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!trail.empty()) {
    std::string t = what + ":";
    for (auto& x : trail) t += " [" + x + "]";
    std::lock_guard lk(mu_);
    retried_.push_back(t);
  }
  return {std::move(a), ms};
}

// One accepted message's answer ({"seq":…,"epoch":…}): the room's highest seq per epoch. Holds mu_.
void stream_publisher::record_locked(room_state& st, const json::value& answer) {
  ++st.accepted;
  const auto seq = static_cast<std::uint64_t>(std::max<std::int64_t>(0, json_int(answer, "seq", 0)));
  if (seq == 0) return;
  const auto e = json_string(answer, "epoch");
  if (std::find(st.epochs.begin(), st.epochs.end(), e) == st.epochs.end()) {
    st.epochs.push_back(e);
    st.ids.clear();
  }
  st.max_seq[e] = std::max(st.max_seq[e], seq);
  if (e == st.epochs.back()) st.ids[seq] = json_string(answer, "id");
}

void stream_publisher::publish(http_connection& conn, const std::string& room) {
  std::uint64_t n;
  {
    std::lock_guard lk(mu_);
    n = ++counter_[room];
  }
  const std::string id = tag_ + "-" + room + "-" + std::to_string(n);
  const auto [a, ms] = send_retrying(
      conn, room_body(room, id, "{\"n\":" + std::to_string(n) + "}", members_of ? members_of(room, n) : ""), id);
  std::lock_guard lk(mu_);
  if (a.status != 200) {
    given_up_.push_back(id + ": " + (a.status ? json::serialize(a.body) : a.error));
    return;
  }
  slowest_ms_ = std::max(slowest_ms_, ms);
  total_ms_ += ms;
  record_locked(rooms_state_[room], a.body);
}

// Publishes `count` messages of `room` in one batch (retried whole, with the same ids, until
// accepted: a repeat is answered as a duplicate with its first seq).
void stream_publisher::publish_batch(http_connection& conn, const std::string& room, std::uint64_t count) {
  std::uint64_t first;
  {
    std::lock_guard lk(mu_);
    first = counter_[room] + 1;
    counter_[room] += count;
  }
  std::string body = "[";
  for (std::uint64_t n = first; n < first + count; ++n) {
    if (n != first) body += ",";
    body += room_body(room, tag_ + "-" + room + "-" + std::to_string(n), "{\"n\":" + std::to_string(n) + "}",
                      members_of ? members_of(room, n) : "");
  }
  body += "]";
  const std::string what = tag_ + "-" + room + "-" + std::to_string(first) + "+" + std::to_string(count);
  const auto [a, ms] = send_retrying(conn, body, what);
  std::lock_guard lk(mu_);
  const auto* results = a.body.is_object() ? a.body.as_object().if_contains("results") : nullptr;
  if (a.status != 200 || !results || !results->is_array() || results->as_array().size() != count) {
    given_up_.push_back(what + ": " + (a.status ? json::serialize(a.body) : a.error));
    return;
  }
  slowest_ms_ = std::max(slowest_ms_, ms);
  auto& st = rooms_state_[room];
  for (const auto& r : results->as_array()) {
    total_ms_ += ms;
    if (json_bool(r, "duplicate")) ++stats.duplicates;
    if (json_bool(r, "unsequenced")) ++stats.unsequenced;
    record_locked(st, r);
  }
}

void stream_publisher::run_batched(const std::string& room) {
  http_connection conn(port_);
  const auto period = std::chrono::microseconds(static_cast<std::int64_t>(1e6 / rate_));
  auto next = std::chrono::steady_clock::now();
  while (!stop_) {
    const auto now = std::chrono::steady_clock::now();
    std::uint64_t due = 0;
    while (next <= now && due < 1000) {
      ++due;
      next += period;
    }
    if (due == 0) {
      std::this_thread::sleep_until(next);
      continue;
    }
    publish_batch(conn, room, due);
  }
}

void stream_publisher::run(const std::vector<std::string>& mine, double rate, std::chrono::microseconds offset) {
  http_connection conn(port_);
  const auto period = std::chrono::microseconds(static_cast<std::int64_t>(1e6 / rate));
  const auto max_behind = std::chrono::microseconds(1'000'000);
  auto next = std::chrono::steady_clock::now() + offset;
  std::this_thread::sleep_until(next);
  while (!stop_) {
    for (const auto& r : mine) {
      if (stop_) break;
      publish(conn, r);
    }
    next += period;
    const auto now = std::chrono::steady_clock::now();
    if (next > now) {
      std::this_thread::sleep_for(next - now);
    } else if (now - next > max_behind) {  // too far behind: skip the oldest ticks
      const auto skip = (now - next - max_behind) / period;
      skipped_ += static_cast<std::uint64_t>(skip);
      next += skip * period;
    }
  }
}

std::string start_and_wait_subscribed(client_pool& pool, const std::vector<std::uint16_t>& ports) {
  if (auto why = pool.connect_all(); !why.empty()) return why;
  pool.start();
  if (!pool.wait_all([](const pooled_client& c) { return c.ever_welcomed; }, 10s))
    return "not every client was welcomed";
  for (auto port : ports)
    if (!poll_until([&] { return metric_value(port, "roomcast_bus_room_subscribes_total") >= 1; }, 10s))
      return "node on port " + std::to_string(port) + " never subscribed the room";
  return {};
}

}  // namespace roomcast::itest::recovery
