// SubscriptionTrie: one shard's subscriptions, by topic level, with '+' and '#' nodes.
// Matching follows AWS IoT Core: '#' does not match its parent level, and filters starting
// with a wildcard do not match '$' topics. Not thread-safe: owned by one shard's thread,
// except may_match(), which any thread may call.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace fk::broker {

class Session;

struct SubscriptionOptions {
  std::uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
};

class SubscriptionTrie {
 public:
  SubscriptionTrie();
  ~SubscriptionTrie();

  void add(std::string_view filter, Session* session, SubscriptionOptions options);
  void remove(std::string_view filter, Session* session);
  // Calls fn(session, options) for each subscription matching `topic`.
  void match(std::string_view topic,
             const std::function<void(Session*, const SubscriptionOptions&)>& fn) const;
  std::size_t size() const { return dollar_filters_ + other_filters_; }
  // False when no subscription here can match `topic`: none to '$' topics for a '$' topic
  // (wildcards never match them), none at all otherwise. Any thread: publishers on other
  // shards skip this shard (no post, no wake-up) for lifecycle events nobody here follows.
  bool may_match(std::string_view topic) const {
    const bool dollar = !topic.empty() && topic.front() == '$';
    return (dollar ? dollar_filters_ : other_filters_).load(std::memory_order_acquire) > 0;
  }

 private:
  struct Node;
  void count(std::string_view filter, int delta);

  std::unique_ptr<Node> root_;
  std::atomic<std::size_t> dollar_filters_{0};  // subscriptions whose filter starts with '$'
  std::atomic<std::size_t> other_filters_{0};
};

}  // namespace fk::broker
