// ReservedTopicHandler: requests published on reserved `$aws/...` topics (fleet provisioning
// plugs in here). The broker defines it; app/ wires the implementation.
//
// on_request runs on the publishing connection's I/O thread and must not block: long work
// (signing, storage) goes elsewhere. reply() may be called from any thread; each reply is
// delivered only to the connection that asked, and only if it holds a matching subscription.
#pragma once

#include <functional>
#include <string_view>

#include "broker/types.h"

namespace fk::broker {

class ReservedTopicHandler {
 public:
  using Reply = std::function<void(Message reply)>;

  virtual ~ReservedTopicHandler() = default;
  virtual bool handles(std::string_view topic) const = 0;
  virtual void on_request(const ClientIdentity& client, const Message& request, Reply reply) = 0;
};

}  // namespace fk::broker
