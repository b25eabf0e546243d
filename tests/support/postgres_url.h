// The URL of the PostgreSQL server the CTest fixture `postgres` started (scripts/postgres.sh):
// the first line of the file FK_POSTGRES_URL_FILE names; empty when there is none.
#pragma once

#include <cstdlib>
#include <fstream>
#include <string>

namespace fk::test {

inline std::string postgres_url() {
  const char* file = std::getenv("FK_POSTGRES_URL_FILE");
  if (file == nullptr) return {};
  std::ifstream in(file);
  std::string url;
  std::getline(in, url);
  return url;
}

}  // namespace fk::test
