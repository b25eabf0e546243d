// Logging facade: structured lines (an event name plus key=value fields).
//
// The parts log through this facade only; app/ installs the sink (spdlog) at start-up. Never
// pass a private key, an ownership token, a secret or a payload as a field.
//
// Thread-safety: log() may be called from any thread; set_log_sink() only before threads start.
#pragma once

#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace fk::log {

enum class Level { kDebug, kInfo, kWarn, kError };

struct Field {
  std::string_view key;
  std::string value;
};

using Sink = std::function<void(Level, std::string_view line)>;

// Installs the sink; the default writes to stderr.
void set_sink(Sink sink);
void set_min_level(Level level);
bool enabled(Level level);

// Formats `event key=value ...` (values with spaces or quotes are quoted) and sends it.
void write(Level level, std::string_view event, std::initializer_list<Field> fields = {});

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) {
  write(Level::kDebug, e, f);
}
inline void info(std::string_view e, std::initializer_list<Field> f = {}) {
  write(Level::kInfo, e, f);
}
inline void warn(std::string_view e, std::initializer_list<Field> f = {}) {
  write(Level::kWarn, e, f);
}
inline void error(std::string_view e, std::initializer_list<Field> f = {}) {
  write(Level::kError, e, f);
}

// On hot paths: the fields (often std::string copies) are built only when the level is on.
#define FK_LOG_INFO(...)                                                           \
  do {                                                                             \
    if (::fk::log::enabled(::fk::log::Level::kInfo)) ::fk::log::info(__VA_ARGS__); \
  } while (0)
#define FK_LOG_DEBUG(...)                                                            \
  do {                                                                               \
    if (::fk::log::enabled(::fk::log::Level::kDebug)) ::fk::log::debug(__VA_ARGS__); \
  } while (0)

// Exposed for tests.
std::string format_line(std::string_view event, std::initializer_list<Field> fields);

}  // namespace fk::log
