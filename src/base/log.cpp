#include "base/log.h"

#include <atomic>
#include <cstdio>

namespace fk::log {
namespace {

Sink& sink() {
  static Sink s = [](Level, std::string_view line) {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
  };
  return s;
}

std::atomic<Level>& min_level() {
  static std::atomic<Level> l{Level::kInfo};
  return l;
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\\') return true;
  }
  return false;
}

}  // namespace

void set_sink(Sink s) {
  sink() = std::move(s);
}
void set_min_level(Level level) {
  min_level().store(level);
}
bool enabled(Level level) {
  return level >= min_level().load();
}

std::string format_line(std::string_view event, std::initializer_list<Field> fields) {
  std::string line(event);
  for (const Field& f : fields) {
    line += ' ';
    line += f.key;
    line += '=';
    if (!needs_quotes(f.value)) {
      line += f.value;
      continue;
    }
    line += '"';
    for (char c : f.value) {
      if (c == '"' || c == '\\') line += '\\';
      if (c == '\n') {
        line += "\\n";
        continue;
      }
      line += c;
    }
    line += '"';
  }
  return line;
}

void write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  sink()(level, format_line(event, fields));
}

}  // namespace fk::log
