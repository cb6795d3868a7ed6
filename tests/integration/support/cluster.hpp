#pragma once
// Cluster nodes (node_process with the rabbitmq/redis flags and a per-test prefix) and what the
// tests observe of nodes: /readyz, /metrics, /api/stats, frames, the node's output.

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "support/itest.hpp"

namespace roomcast::itest {

// ---------------------------------------------------------------- nodes

struct cluster_options {
  std::string prefix;              // --rabbitmq-prefix
  std::string amqp;                // --rabbitmq-uris
  std::string redis;               // --redis-address; empty = --registry local
  std::vector<std::string> extra;  // more flags
};

// Flags of one cluster node (node_process adds --listen-address and --port).
std::vector<std::string> cluster_args(const std::string& node_id, const cluster_options& o);

struct cluster_node {
  std::string id;
  std::unique_ptr<node_process> proc;
  std::uint16_t port() const { return proc->port(); }
};

cluster_node start_cluster_node(const std::string& node_id, const cluster_options& o);

// ---------------------------------------------------------------- observations

http_response readyz(std::uint16_t port);

// Polls /readyz until it answers 200; returns the last answer on timeout (status 0 if none).
http_response wait_ready(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Value of an un-labelled sample in /metrics; -1 when absent.
double metric_value(std::uint16_t port, const std::string& name);

std::int64_t stat_int(std::uint16_t port, const std::string& key);

// Waits until the node's queue has at least `n` room bindings (binds are counted after bind-ok).
bool wait_room_binds(std::uint16_t port, double n, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// All frames that arrive on `m` within `window` (returns early when the stream ends).
std::vector<boost::json::value> collect(member& m, std::chrono::milliseconds window);

// Reads frames until a `message` with `id` arrives (other frames are returned in `skipped`).
std::optional<boost::json::value> read_message_id(member& m, const std::string& id,
                                                  std::vector<boost::json::value>* skipped = nullptr,
                                                  std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Reads frames until one of `type` arrives (the frames before it are appended to `skipped`).
std::optional<boost::json::value> read_type_keeping(member& m, const std::string& type,
                                                    std::vector<boost::json::value>* skipped = nullptr,
                                                    std::chrono::milliseconds timeout = std::chrono::seconds(5));

std::string dump(const std::vector<boost::json::value>& frames);

std::set<std::string> string_set(const boost::json::value& v, const std::string& array_path,
                                 const std::string& member_key = {});

// Polls GET target until `pred` holds on its JSON; returns the last JSON seen (null if none).
boost::json::value poll_json(std::uint16_t port, const std::string& target,
                             const std::function<bool(const boost::json::value&)>& pred,
                             std::chrono::milliseconds timeout = std::chrono::seconds(5));

// The first line of the node's output for which `pred` holds, polled until `timeout`; "" if none.
std::string wait_for_output(const node_process& p, const std::function<bool(const std::string&)>& pred,
                            std::chrono::milliseconds timeout);

bool contains_ci(std::string haystack, std::string needle);

}  // namespace roomcast::itest
