#pragma once
// The Lua scripts a connection runs by sha. Sans-io bookkeeping: which scripts exist, which sha
// Redis gave each on the current connection, and what to do when Redis says NOSCRIPT (its script
// cache was flushed): load it again once, and resend the calls that failed after the load (the
// load is pipelined ahead of them, so they find it). One thread only (the Redis thread).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace roomcast::redis {

using command = std::vector<std::string>;

class script_set {
 public:
  using id = std::size_t;

  id add(std::string body) {
    scripts_.push_back({std::move(body), {}, false});
    return scripts_.size() - 1;
  }
  std::size_t size() const noexcept { return scripts_.size(); }
  const std::string& body(id s) const { return scripts_.at(s).body; }
  const std::string& sha(id s) const { return scripts_.at(s).sha; }
  bool loaded(id s) const { return !scripts_.at(s).sha.empty(); }
  bool all_loaded() const {
    for (const auto& s : scripts_)
      if (s.sha.empty()) return false;
    return true;
  }

  // A new connection: every script is loaded again (SCRIPT LOAD per script, in id order).
  std::vector<command> load_commands() {
    std::vector<command> out;
    for (auto& s : scripts_) {
      s.sha.clear();
      s.reloading = false;
      out.push_back({"SCRIPT", "LOAD", s.body});
    }
    return out;
  }
  // Redis answered a SCRIPT LOAD.
  void on_loaded(id s, std::string_view sha) {
    scripts_.at(s).sha = std::string(sha);
    scripts_.at(s).reloading = false;
  }
  // The connection is gone: the shas are learnt again on the next one.
  void connection_lost() {
    for (auto& s : scripts_) {
      s.sha.clear();
      s.reloading = false;
    }
  }

  // The command that runs script `s` with `args` (numkeys, keys..., argv...). EVALSHA once its sha
  // is known, EVAL with the body before that. `out` views `args` and this set: encode it before
  // either changes.
  void append_call(id s, const command& args, std::vector<std::string_view>& out) const {
    const auto& sc = scripts_.at(s);
    out.clear();
    out.push_back(sc.sha.empty() ? std::string_view("EVAL") : std::string_view("EVALSHA"));
    out.push_back(sc.sha.empty() ? std::string_view(sc.body) : std::string_view(sc.sha));
    for (const auto& a : args) out.push_back(a);
  }

  // Redis answered a call of `s` with NOSCRIPT. True when the caller must send SCRIPT LOAD now
  // (once per flush: calls already in flight find the load ahead of their resend).
  bool on_noscript(id s) {
    auto& sc = scripts_.at(s);
    if (sc.reloading) return false;
    sc.reloading = true;
    return true;
  }

  static bool is_noscript(std::string_view error) { return error.substr(0, 8) == "NOSCRIPT"; }

 private:
  struct script {
    std::string body;
    std::string sha;  // empty: not loaded on this connection
    bool reloading;   // a SCRIPT LOAD after NOSCRIPT is in flight
  };
  std::vector<script> scripts_;
};

}  // namespace roomcast::redis
