#include "broker/subscription_trie.h"

#include <vector>

namespace fk::broker {

struct SubscriptionTrie::Node {
  std::unordered_map<std::string, std::unique_ptr<Node>> children;
  std::unordered_map<Session*, SubscriptionOptions> subscribers;
};

namespace {

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

}  // namespace

SubscriptionTrie::SubscriptionTrie() : root_(std::make_unique<Node>()) {}
SubscriptionTrie::~SubscriptionTrie() = default;

void SubscriptionTrie::add(std::string_view filter, Session* session, SubscriptionOptions options) {
  Node* n = root_.get();
  for (std::string_view level : split(filter)) {
    auto& child = n->children[std::string(level)];
    if (!child) child = std::make_unique<Node>();
    n = child.get();
  }
  if (n->subscribers.insert_or_assign(session, options).second) count(filter, +1);
}

void SubscriptionTrie::count(std::string_view filter, int delta) {
  auto& counter = !filter.empty() && filter.front() == '$' ? dollar_filters_ : other_filters_;
  if (delta > 0) {
    counter.fetch_add(1, std::memory_order_release);
  } else {
    counter.fetch_sub(1, std::memory_order_release);
  }
}

void SubscriptionTrie::remove(std::string_view filter, Session* session) {
  std::vector<std::pair<Node*, std::string>> path;
  Node* n = root_.get();
  for (std::string_view level : split(filter)) {
    auto it = n->children.find(std::string(level));
    if (it == n->children.end()) return;
    path.emplace_back(n, std::string(level));
    n = it->second.get();
  }
  if (n->subscribers.erase(session) > 0) count(filter, -1);
  // Prune empty branches.
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    Node* parent = it->first;
    auto child = parent->children.find(it->second);
    if (child->second->subscribers.empty() && child->second->children.empty()) {
      parent->children.erase(child);
    } else {
      break;
    }
  }
}

void SubscriptionTrie::match(
    std::string_view topic,
    const std::function<void(Session*, const SubscriptionOptions&)>& fn) const {
  const std::vector<std::string_view> levels = split(topic);
  const bool dollar = !topic.empty() && topic[0] == '$';
  // Depth-first over (node, level index).
  std::vector<std::pair<const Node*, std::size_t>> stack{{root_.get(), 0}};
  while (!stack.empty()) {
    auto [n, i] = stack.back();
    stack.pop_back();
    if (i == levels.size()) {
      for (const auto& [s, o] : n->subscribers) fn(s, o);
      continue;
    }
    const bool wildcards_allowed = !(i == 0 && dollar);
    if (wildcards_allowed) {
      auto hash = n->children.find("#");
      if (hash != n->children.end()) {
        for (const auto& [s, o] : hash->second->subscribers) fn(s, o);
      }
      auto plus = n->children.find("+");
      if (plus != n->children.end()) stack.emplace_back(plus->second.get(), i + 1);
    }
    auto exact = n->children.find(std::string(levels[i]));
    if (exact != n->children.end()) stack.emplace_back(exact->second.get(), i + 1);
  }
}

}  // namespace fk::broker
