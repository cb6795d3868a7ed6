#pragma once
// Runs the real roomcast binary as a child process on a free loopback port.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace roomcast::itest {

// Binds 127.0.0.1:0, reads the port the kernel picked and releases it.
std::uint16_t pick_free_port();

struct exit_result {
  std::optional<int> exit_code;  // nullopt: still running at the deadline (then killed)
  std::string output;            // stdout + stderr
};

// Runs `binary args...` to completion (for config errors); kills it after `timeout`.
exit_result run_to_exit(const std::string& binary, const std::vector<std::string>& args,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));

class node_process {
 public:
  // Starts `binary --listen-address 127.0.0.1 --port <free> args...` and waits
  // until GET /healthz answers 200 (poll every 20 ms, at most 10 s).
  // Throws std::runtime_error (with the node's output) when it does not come up.
  node_process(std::string binary, std::vector<std::string> args);
  ~node_process();  // SIGKILL if still running; prints the output tail if the test failed

  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  bool running();
  void signal(int sig);
  void terminate();  // SIGTERM
  // Exit code (128 + signal when killed by a signal), or nullopt if still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  std::string output() const;
  std::string output_tail(std::size_t lines = 80) const;

 private:
  bool start_once(std::string& why);
  bool reap(bool block);

  std::string binary_;
  std::vector<std::string> args_;
  std::string log_path_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

}  // namespace roomcast::itest
