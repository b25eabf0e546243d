// MemoryStore: the registry kept in process memory, for unit tests and tools.
//
// A write transaction works on a private copy of the committed state and publishes it on
// commit (snapshot isolation, nothing durable). Thread-safety: as storage::Store.
#pragma once

#include <memory>
#include <mutex>

#include "storage/store.h"

namespace fk::storage {

class MemoryStore final : public Store {
 public:
  MemoryStore();
  ~MemoryStore() override;

  Result<std::unique_ptr<Transaction>> begin_write() override;
  Result<std::unique_ptr<Transaction>> begin_read() override;

  struct State;

 private:
  friend class MemoryTransaction;
  std::mutex writer_;   // held by the open write transaction
  std::mutex publish_;  // guards committed_
  std::shared_ptr<const State> committed_;
};

}  // namespace fk::storage
