#include "cluster/subjects.h"

namespace fk::cluster {

namespace {

constexpr char kHex[] = "0123456789abcdef";

bool plain(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

template <typename F>
void for_each_level(std::string_view text, F f) {
  std::size_t start = 0;
  while (true) {
    std::size_t slash = text.find('/', start);
    f(text.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return;
    start = slash + 1;
  }
}

}  // namespace

std::string encode_level(std::string_view level) {
  bool keep = !level.empty();
  for (char c : level) keep = keep && plain(c);
  if (keep) return std::string(level);
  std::string out = "=";
  out.reserve(1 + level.size() * 2);
  for (unsigned char c : level) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

std::string topic_to_subject(std::string_view topic) {
  std::string out;
  out.reserve(topic.size() + 8);
  bool first = true;
  for_each_level(topic, [&](std::string_view level) {
    if (!first) out.push_back('.');
    first = false;
    out += encode_level(level);
  });
  return out;
}

std::optional<std::string> subject_to_topic(std::string_view subject) {
  std::string out;
  bool first = true;
  std::size_t start = 0;
  while (start <= subject.size()) {
    std::size_t dot = subject.find('.', start);
    std::string_view token =
        subject.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!first) out.push_back('/');
    first = false;
    if (token.empty()) return std::nullopt;
    if (token.front() == '=') {
      if (token.size() % 2 != 1) return std::nullopt;
      for (std::size_t i = 1; i < token.size(); i += 2) {
        int hi = hex_value(token[i]), lo = hex_value(token[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out.push_back(static_cast<char>(hi << 4 | lo));
      }
    } else {
      for (char c : token)
        if (!plain(c)) return std::nullopt;
      out += token;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

std::vector<std::string> filter_to_subjects(std::string_view filter) {
  std::string out;
  bool trailing_hash = false;
  bool first = true;
  for_each_level(filter, [&](std::string_view level) {
    if (!first) out.push_back('.');
    first = false;
    if (level == "+") {
      out.push_back('*');
    } else if (level == "#") {
      out.push_back('>');
      trailing_hash = true;
    } else {
      out += encode_level(level);
    }
  });
  if (!trailing_hash) return {out};
  if (out == ">") return {out};
  // "a/#" matches "a" too: the parent level's own subject.
  return {out, out.substr(0, out.size() - 2)};
}

std::string key_for(std::string_view text) {
  return encode_level(text);
}

}  // namespace fk::cluster
