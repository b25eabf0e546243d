#include "fleetkey/rotation_runner.h"

#include <boost/asio.hpp>
#include <chrono>
#include <deque>

#include "linux/machine_timer.h"

namespace fleetkey {

namespace asio = boost::asio;

class RotationRunnerState : public std::enable_shared_from_this<RotationRunnerState> {
 public:
  RotationRunnerState(asio::io_context& io, DeviceConnection& connection, CredentialStore& store,
                      RotationConfig config, std::string root_ca_pem)
      : io_(io),
        connection_(connection),
        store_(store),
        config_(std::move(config)),
        root_ca_pem_(std::move(root_ca_pem)),
        timer_(io),
        machine_(config_) {}

  asio::io_context& io_;
  DeviceConnection& connection_;
  CredentialStore& store_;
  RotationConfig config_;
  std::string root_ca_pem_;
  linux_platform::MachineTimer timer_;
  Rotator machine_;
  TlsIdentity current_;  // what the connection uses
  bool running_ = false;
  RotationState last_state_ = RotationState::kIdle;
  std::function<void(RotationResult)> done_;
  std::function<void(RotationState)> on_state_;

  static std::uint64_t now_ms() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
  }

  void start(const TlsIdentity& current) {
    RotationRecord saved;
    Error error;
    current_ = current;
    running_ = true;
    if (!store_.load_rotation(saved, error)) return finish(false, error);
    machine_ = Rotator(config_, std::move(saved));
    run(machine_.start(now_ms(), current.certificate_pem, current.private_key_pem,
                       connection_.connected()));
  }

  void feed(const Event& e) {
    if (!running_) return;
    run(machine_.on(e, now_ms()));
  }

  void run(std::vector<Action> actions) {
    std::deque<Action> queue(std::make_move_iterator(actions.begin()),
                             std::make_move_iterator(actions.end()));
    while (!queue.empty() && running_) {
      Action a = std::move(queue.front());
      queue.pop_front();
      std::vector<Action> more = execute(a);
      for (auto it = more.rbegin(); it != more.rend(); ++it) queue.push_front(std::move(*it));
      if (machine_.state() != last_state_) {
        last_state_ = machine_.state();
        if (on_state_) on_state_(last_state_);
      }
    }
  }

  // Feeds an event on the next turn of the loop (not from inside the call that caused it).
  void post(Event e) {
    asio::post(io_, [weak = weak_from_this(), e = std::move(e)] {
      if (auto self = weak.lock()) self->feed(e);
    });
  }

  std::vector<Action> execute(const Action& a) {
    auto weak = weak_from_this();
    switch (a.type) {
      case Action::Type::kGenerateKey: {
        Event e;
        e.type = Event::Type::kKeyGenerated;
        e.ok = generate_key_and_csr(a.key_type, config_.common_name, e.private_key_pem, e.csr_pem,
                                    e.error);
        return machine_.on(e, now_ms());
      }
      case Action::Type::kSave: {
        Event e;
        e.type = Event::Type::kSaved;
        e.ok = store_.save_rotation(machine_.record(), e.error);
        return machine_.on(e, now_ms());
      }
      case Action::Type::kSubscribe:
        connection_.subscribe(a.topics, [weak](bool ok) {
          auto self = weak.lock();
          if (!self) return;
          Event e;
          e.type = Event::Type::kSubscribed;
          e.ok = ok;
          self->feed(e);
        });
        return {};
      case Action::Type::kPublish:
        connection_.publish(a.topics.at(0), a.payload, 1, false, [weak](bool ok, const Error& err) {
          auto self = weak.lock();
          if (ok || !self) return;
          Event e;
          e.type = Event::Type::kPublishFailed;
          e.ok = false;
          e.error = err;
          self->feed(e);
        });
        return {};
      case Action::Type::kStartTimer: {
        timer_.start(a.delay_ms, [weak] {
          auto self = weak.lock();
          if (!self) return;
          Event e;
          e.type = Event::Type::kTimer;
          self->feed(e);
        });
        return {};
      }
      case Action::Type::kCancelTimer:
        timer_.cancel();
        return {};
      case Action::Type::kConnect: {
        const RotationRecord& r = machine_.record();
        TlsIdentity id =
            a.role == Role::kNewDevice
                ? TlsIdentity{r.certificate_pem, r.private_key_pem, root_ca_pem_}
                : TlsIdentity{r.previous_certificate_pem, r.previous_private_key_pem, root_ca_pem_};
        if (id.certificate_pem == current_.certificate_pem && connection_.connected()) {
          // Already connected with it (the device booted with the new certificate).
          Event e;
          e.type = Event::Type::kConnected;
          post(e);
          return {};
        }
        current_ = id;
        connection_.switch_identity(std::move(id));
        return {};
      }
      case Action::Type::kComplete: {
        Error error;
        if (!store_.commit_rotation(machine_.record(), error))
          finish(false, error);
        else
          finish(true, {});
        return {};
      }
      case Action::Type::kFail:
        finish(false, machine_.error());
        return {};
      case Action::Type::kDisconnect:
        return {};
    }
    return {};
  }

  void finish(bool ok, const Error& error) {
    if (!running_) return;
    running_ = false;
    timer_.cancel();
    RotationResult result;
    result.ok = ok;
    result.error = error;
    result.record = machine_.record();
    if (done_) {
      auto done = std::move(done_);
      done_ = nullptr;
      done(std::move(result));
    }
  }
};

RotationRunner::RotationRunner(asio::io_context& io, DeviceConnection& connection,
                               CredentialStore& store, RotationConfig config,
                               std::string root_ca_pem)
    : state_(std::make_shared<RotationRunnerState>(io, connection, store, std::move(config),
                                                   std::move(root_ca_pem))) {}

RotationRunner::~RotationRunner() {
  state_->running_ = false;
  state_->timer_.cancel();
}

TlsIdentity RotationRunner::boot_identity(CredentialStore& store, const TlsIdentity& committed) {
  RotationRecord r;
  Error error;
  if (store.load_rotation(r, error) && r.stage == RotationStage::kIssued)
    return TlsIdentity{r.certificate_pem, r.private_key_pem, committed.root_ca_pem};
  return committed;
}

bool RotationRunner::pending(CredentialStore& store) {
  RotationRecord r;
  Error error;
  return store.load_rotation(r, error) && r.stage != RotationStage::kNone;
}

void RotationRunner::start(const TlsIdentity& current, std::function<void(RotationResult)> done,
                           std::function<void(RotationState)> on_state) {
  state_->done_ = std::move(done);
  state_->on_state_ = std::move(on_state);
  state_->last_state_ = RotationState::kIdle;
  state_->start(current);
}

bool RotationRunner::running() const {
  return state_->running_;
}

void RotationRunner::on_connected() {
  Event e;
  e.type = Event::Type::kConnected;
  state_->feed(e);
}

bool RotationRunner::on_disconnected(const Error& error, bool permanent) {
  if (!state_->running_) return false;
  const RotationState before = state_->machine_.state();
  Event e;
  e.type = permanent ? Event::Type::kConnectFailed : Event::Type::kDisconnected;
  e.error = error;
  e.permanent = permanent;
  state_->feed(e);
  return permanent && before == RotationState::kSwitch;
}

bool RotationRunner::on_message(const std::string& topic, const std::string& payload) {
  if (topic.rfind("$fleetkey/certificates/rotate/", 0) != 0) return false;
  Event e;
  e.type = Event::Type::kMessage;
  e.topic = topic;
  e.payload = payload;
  state_->feed(e);
  return true;
}

}  // namespace fleetkey
