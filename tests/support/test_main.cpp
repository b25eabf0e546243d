// Shared main() of the test binaries: quiet logs unless FK_TEST_LOG=1.
#include <gtest/gtest.h>

#include <cstdlib>

#include "base/log.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (std::getenv("FK_TEST_LOG") == nullptr) fk::log::set_min_level(fk::log::Level::kError);
  return RUN_ALL_TESTS();
}
