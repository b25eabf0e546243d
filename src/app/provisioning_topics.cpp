#include "app/provisioning_topics.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "net/http_client.h"

namespace fk::app {

Result<std::string> WebhookHook::call(const std::string& target, const std::string& input_json) {
  FK_ASSIGN_OR_RETURN(auto response, net::http_post(target, input_json, timeout_));
  if (response.status < 200 || response.status > 299)
    return Status{ErrorCode::kUnavailable, "it answered HTTP " + std::to_string(response.status)};
  return response.body;
}

struct ProvisioningTopics::Pool {
  explicit Pool(std::size_t n) : pool(n) {}
  boost::asio::thread_pool pool;
};

ProvisioningTopics::ProvisioningTopics(provisioning::FleetProvisioning& service,
                                       std::size_t workers)
    : service_(service), pool_(std::make_unique<Pool>(workers)) {}

ProvisioningTopics::~ProvisioningTopics() {
  stop();
}

void ProvisioningTopics::stop() {
  pool_->pool.join();
}

void ProvisioningTopics::run(std::function<void()> fn) {
  boost::asio::post(pool_->pool, std::move(fn));
}

bool ProvisioningTopics::handles(std::string_view topic) const {
  return provisioning::parse_request_topic(topic).has_value();
}

void ProvisioningTopics::on_request(const broker::ClientIdentity& client,
                                    const broker::Message& request, Reply reply) {
  auto topic = provisioning::parse_request_topic(request.topic);
  if (!topic) return;
  provisioning::Requester who{client.certificate.certificate_id, client.client_id};
  boost::asio::post(pool_->pool, [this, t = std::move(*topic), payload = request.payload,
                                  who = std::move(who), reply = std::move(reply)] {
    provisioning::Reply r = service_.handle(t, payload, who);
    broker::Message m;
    m.topic = std::move(r.topic);
    m.payload = std::move(r.payload);
    m.qos = 1;
    reply(std::move(m));
  });
}

}  // namespace fk::app
