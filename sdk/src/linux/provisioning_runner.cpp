#include "fleetkey/provisioning_runner.h"

#include <boost/asio.hpp>
#include <chrono>
#include <deque>

#include "linux/machine_timer.h"

namespace fleetkey {

namespace asio = boost::asio;

class RunnerState : public std::enable_shared_from_this<RunnerState> {
 public:
  RunnerState(asio::io_context& io, Endpoint ep, TlsIdentity claim, ProvisioningConfig config,
              CredentialStore& store, ConnectOptions options)
      : io_(io),
        endpoint_(std::move(ep)),
        claim_(std::move(claim)),
        config_(std::move(config)),
        store_(store),
        options_(std::move(options)),
        timer_(io),
        machine_(config_) {}

  asio::io_context& io_;
  Endpoint endpoint_;
  TlsIdentity claim_;
  ProvisioningConfig config_;
  CredentialStore& store_;
  ConnectOptions options_;
  linux_platform::MachineTimer timer_;
  Provisioner machine_;
  std::unique_ptr<MqttClient> client_;
  unsigned client_generation_ = 0;
  std::uint32_t connects_ = 0;
  std::uint32_t throttled_ = 0;
  bool finished_ = false;
  State last_state_ = State::kIdle;
  std::function<void(ProvisioningResult)> done_;
  std::function<void(State)> on_state_;

  static std::uint64_t now_ms() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
  }

  void start() {
    ProvisioningRecord saved;
    Error error;
    if (!store_.load(saved, error)) return finish(false, error);
    machine_ = Provisioner(config_, std::move(saved));
    run(machine_.start(now_ms()));
  }

  void feed(const Event& e) {
    if (finished_) return;
    run(machine_.on(e, now_ms()));
  }

  // Carries out actions in order; synchronous ones (key generation, saving) feed their result
  // back before the next action runs.
  void run(std::vector<Action> actions) {
    std::deque<Action> queue(std::make_move_iterator(actions.begin()),
                             std::make_move_iterator(actions.end()));
    while (!queue.empty() && !finished_) {
      Action a = std::move(queue.front());
      queue.pop_front();
      std::vector<Action> more = execute(a);
      for (auto it = more.rbegin(); it != more.rend(); ++it) queue.push_front(std::move(*it));
      if (machine_.state() != last_state_) {
        last_state_ = machine_.state();
        if (last_state_ == State::kBackoff && machine_.error().status_code == 429) ++throttled_;
        if (on_state_) on_state_(last_state_);
      }
    }
  }

  std::vector<Action> execute(const Action& a) {
    auto self = shared_from_this();
    switch (a.type) {
      case Action::Type::kConnect: {
        client_ = std::make_unique<MqttClient>(io_);
        const unsigned gen = ++client_generation_;
        ++connects_;
        client_->set_message_handler([self, gen](const std::string& t, const std::string& p) {
          if (gen != self->client_generation_) return;
          Event e;
          e.type = Event::Type::kMessage;
          e.topic = t;
          e.payload = p;
          self->feed(e);
        });
        client_->set_disconnect_handler([self, gen](const Error& err) {
          if (gen != self->client_generation_) return;
          Event e;
          e.type = Event::Type::kDisconnected;
          e.error = err;
          self->feed(e);
        });
        TlsIdentity id = a.role == Role::kClaim
                             ? claim_
                             : TlsIdentity{machine_.record().certificate_pem,
                                           machine_.record().private_key_pem, claim_.root_ca_pem};
        ConnectOptions o = options_;
        o.client_id = a.client_id;
        client_->connect(endpoint_, id, o, [self, gen](const ConnectResult& r) {
          if (gen != self->client_generation_) return;
          Event e;
          e.type = r.ok ? Event::Type::kConnected : Event::Type::kConnectFailed;
          e.error = r.error;
          e.permanent = r.permanent;
          self->feed(e);
        });
        return {};
      }
      case Action::Type::kDisconnect:
        ++client_generation_;
        if (client_) client_->disconnect();
        // Keep the object until the DISCONNECT is written; the next connect replaces it.
        return {};
      case Action::Type::kSubscribe: {
        const unsigned gen = client_generation_;
        client_->subscribe(a.topics, 1, [self, gen](bool ok) {
          if (gen != self->client_generation_) return;
          Event e;
          e.type = Event::Type::kSubscribed;
          e.ok = ok;
          self->feed(e);
        });
        return {};
      }
      case Action::Type::kPublish: {
        const unsigned gen = client_generation_;
        client_->publish(
            a.topics.at(0), a.payload, 1, false, [self, gen](bool ok, const Error& err) {
              // A lost connection is reported by the disconnect handler.
              if (ok || gen != self->client_generation_ || err.kind == ErrorKind::kNetwork) return;
              Event e;
              e.type = Event::Type::kPublishFailed;
              e.ok = false;
              e.error = err;
              self->feed(e);
            });
        return {};
      }
      case Action::Type::kGenerateKey: {
        Event e;
        e.type = Event::Type::kKeyGenerated;
        const std::string cn = config_.parameters.count("SerialNumber")
                                   ? config_.parameters.at("SerialNumber")
                                   : config_.claim_client_id;
        e.ok = generate_key_and_csr(a.key_type, cn, e.private_key_pem, e.csr_pem, e.error);
        return machine_.on(e, now_ms());
      }
      case Action::Type::kSave: {
        Event e;
        e.type = Event::Type::kSaved;
        e.ok = store_.save(machine_.record(), e.error);
        return machine_.on(e, now_ms());
      }
      case Action::Type::kStartTimer: {
        timer_.start(a.delay_ms, [self] {
          Event e;
          e.type = Event::Type::kTimer;
          self->feed(e);
        });
        return {};
      }
      case Action::Type::kCancelTimer:
        timer_.cancel();
        return {};
      case Action::Type::kComplete:
        finish(true, {});
        return {};
      case Action::Type::kFail:
        finish(false, machine_.error());
        return {};
    }
    return {};
  }

  void finish(bool ok, const Error& error) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    ProvisioningResult r;
    r.ok = ok;
    r.error = error;
    r.record = machine_.record();
    r.connects = connects_;
    r.throttled = throttled_;
    if (ok) {
      ++client_generation_;  // the application owns its handlers from here on
      client_->set_message_handler(nullptr);
      client_->set_disconnect_handler(nullptr);
      r.connection = std::move(client_);
    }
    auto done = std::move(done_);
    asio::post(io_, [done, r = std::make_shared<ProvisioningResult>(std::move(r))]() mutable {
      if (done) done(std::move(*r));
    });
  }
};

ProvisioningRunner::ProvisioningRunner(asio::io_context& io, Endpoint endpoint, TlsIdentity claim,
                                       ProvisioningConfig config, CredentialStore& store,
                                       ConnectOptions connect_options)
    : state_(std::make_shared<RunnerState>(io, std::move(endpoint), std::move(claim),
                                           std::move(config), store, std::move(connect_options))) {}

ProvisioningRunner::~ProvisioningRunner() {
  state_->finished_ = true;
  ++state_->client_generation_;
  state_->timer_.cancel();
  state_->client_.reset();
}

void ProvisioningRunner::start(std::function<void(ProvisioningResult)> done,
                               std::function<void(State)> on_state) {
  state_->done_ = std::move(done);
  state_->on_state_ = std::move(on_state);
  asio::post(state_->io_, [s = state_] { s->start(); });
}

State ProvisioningRunner::state() const {
  return state_->machine_.state();
}

const Error& ProvisioningRunner::last_error() const {
  return state_->machine_.error();
}

}  // namespace fleetkey
