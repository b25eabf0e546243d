// SubscriptionTrie: one shard's subscriptions, by topic level, with '+' and '#' nodes.
// Matching follows AWS IoT Core: '#' does not match its parent level, and filters starting
// with a wildcard do not match '$' topics. Not thread-safe: owned by one shard's thread.
#pragma once

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
  std::size_t size() const { return count_; }

 private:
  struct Node;
  std::unique_ptr<Node> root_;
  std::size_t count_ = 0;
};

}  // namespace fk::broker
