// Registry: things, thing types and groups, certificates and CA certificates, policies and
// their versions, attachments and provisioning templates, with AWS IoT's rules.
//
// Every change runs in one storage transaction through the single writer (GroupCommitter):
// `write(fn)` runs `fn` with a Txn; if `fn` fails, nothing it did is kept. write() returns only
// after the commit is durable, and only then are the change's events delivered to listeners
// (the broker hears "certificate X revoked" this way). Several operations inside one write()
// are one atomic change (e.g. thing + certificate + policy attachment in RegisterThing).
//
// Signing and key generation happen before the write, on the caller's thread
// (create_certificate_from_csr and friends), never on the writer thread.
//
// Thread-safety: all Registry methods may be called from any thread. A Txn is used only inside
// the write()/read() callback that received it. Listeners run on the thread that called write()
// and must not call write() themselves.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "crypto/certificate_authority.h"
#include "registry/arn.h"
#include "storage/group_committer.h"
#include "storage/store.h"

namespace fk::registry {

using storage::Attributes;
using storage::CaCertificateRecord;
using storage::CertificateRecord;
using storage::CertificateStatus;
using storage::PolicyRecord;
using storage::PolicyVersionRecord;
using storage::TemplateRecord;
using storage::TemplateVersionRecord;
using storage::ThingGroupRecord;
using storage::ThingRecord;
using storage::ThingTypeRecord;

struct RegistryConfig {
  ArnScope arns;
  std::size_t max_policy_versions = 5;    // AWS
  std::size_t max_template_versions = 5;  // AWS's cap is unknown; 5 as for policies
  std::size_t max_policies_per_target = 10;
};

// What changed, for listeners (delivered after the commit).
struct RegistryEvent {
  enum class Kind {
    kCertificateStatusChanged,  // subject = certificate id, status = new status, detail =
                                // "created" when the certificate was just recorded
    kCertificateDeleted,        // subject = certificate id
    kPolicyChanged,             // subject = policy name (new default version or deleted)
    kPolicyAttachmentChanged,   // subject = policy name, detail = target ARN
    kThingPrincipalChanged,     // subject = thing name, detail = principal ARN
    kThingChanged,              // subject = thing name (attributes, type, deleted)
    kGroupMembershipChanged,    // subject = group name, detail = thing name
    kTemplateChanged,           // subject = template name
    kCaCertificateChanged,      // subject = CA certificate id (registered, status, deleted)
  };
  Kind kind;
  std::string subject;
  std::string detail;
  CertificateStatus status = CertificateStatus::kInactive;
};
using RegistryListener = std::function<void(const std::vector<RegistryEvent>&)>;
// The outbox form of a change's events (JSON), and back (unknown entries are skipped).
std::string encode_events(const std::vector<RegistryEvent>& events);
std::vector<RegistryEvent> decode_events(std::string_view payload);

// The setting that keeps a deleted REVOKED certificate on its CA's revocation data:
// "revoked/<caCertificateId or ->/<serial hex>", its value {"certificateId", "issuer",
// "revokedAt", "notAfter"} (JSON).
inline constexpr std::string_view kRevokedTombstonePrefix = "revoked/";
inline std::string revoked_tombstone_key(std::string_view ca_certificate_id,
                                         std::string_view serial_hex) {
  return std::string(kRevokedTombstonePrefix) +
         std::string(ca_certificate_id.empty() ? "-" : ca_certificate_id) + "/" +
         std::string(serial_hex);
}

struct CreateThingRequest {
  std::string name;
  std::string type_name;
  Attributes attributes;
};

struct UpdateThingRequest {
  std::string name;
  std::optional<std::string> type_name;
  bool remove_type = false;
  std::optional<Attributes> attributes;
  bool merge_attributes = false;  // AWS attributePayload.merge: "" removes an attribute
  std::optional<std::int64_t> expected_version;
};

struct CreateThingGroupRequest {
  std::string name;
  std::string parent_name;
  std::string description;
  Attributes attributes;
};

struct CreateTemplateRequest {
  std::string name;
  std::string body;
  std::string provisioning_role_arn;
  std::string description;
  bool enabled = false;  // AWS's default, as users report
  std::string type = "FLEET_PROVISIONING";
  std::string pre_provisioning_hook;  // JSON text or empty
};

struct UpdateTemplateRequest {
  std::string name;
  std::optional<std::string> description;
  std::optional<bool> enabled;
  std::optional<std::int64_t> default_version_id;
  std::optional<std::string> provisioning_role_arn;
  std::optional<std::string> pre_provisioning_hook;
  bool remove_pre_provisioning_hook = false;
};

// A certificate the CA just made (or one being registered), ready to be recorded.
struct NewCertificate {
  crypto::CertificateInfo info;
  std::string ca_certificate_id;
  CertificateStatus status = CertificateStatus::kInactive;
};

// Who makes the registry changes written on this thread, for the device timeline: the API
// sets the caller's access key for a request, the server's own jobs say what they are
// ("fleetkeyd: rotation"). Registry::write() hands it to its Txn (whatever thread commits).
// `operation`: what the actor called (AWS's operation name), "" when it is not an API call.
class ActorScope {
 public:
  explicit ActorScope(std::string actor, std::string operation = {});
  ~ActorScope();
  ActorScope(const ActorScope&) = delete;
  ActorScope& operator=(const ActorScope&) = delete;
  static const std::string& current();            // "fleetkeyd" outside any scope
  static const std::string& current_operation();  // "" outside any scope

 private:
  std::string previous_;
  std::string previous_operation_;
};

// The domain operations inside one transaction. Errors are AWS's exceptions (see ErrorCode).
// Changes to things, certificates and their links also go on the device timeline, in the same
// transaction, with the actor who made them.
class Txn {
 public:
  Txn(storage::Transaction& t, const RegistryConfig& config, const Clock& clock)
      : t_(t), config_(config), clock_(clock) {}

  storage::Transaction& store() { return t_; }
  void set_actor(std::string actor, std::string operation = {}) {
    actor_ = std::move(actor);
    operation_ = std::move(operation);
  }
  const std::vector<RegistryEvent>& events() const { return events_; }

  // Things. create_thing is idempotent for an identical thing.
  Result<ThingRecord> create_thing(const CreateThingRequest& req);
  Result<ThingRecord> describe_thing(std::string_view name);
  Status update_thing(const UpdateThingRequest& req);
  Status delete_thing(std::string_view name, std::optional<std::int64_t> expected_version = {});

  Result<ThingTypeRecord> create_thing_type(std::string_view name, std::string_view description,
                                            const std::vector<std::string>& searchable);
  Result<ThingTypeRecord> describe_thing_type(std::string_view name);
  Status deprecate_thing_type(std::string_view name, bool undo);
  Status delete_thing_type(std::string_view name);

  Result<ThingGroupRecord> create_thing_group(const CreateThingGroupRequest& req);
  Result<ThingGroupRecord> describe_thing_group(std::string_view name);
  Result<std::int64_t> update_thing_group(std::string_view name,
                                          std::optional<std::string> description,
                                          std::optional<Attributes> attributes, bool merge,
                                          std::optional<std::int64_t> expected_version);
  Status delete_thing_group(std::string_view name,
                            std::optional<std::int64_t> expected_version = {});
  Status add_thing_to_group(std::string_view group, std::string_view thing);
  Status remove_thing_from_group(std::string_view group, std::string_view thing);

  // Certificates.
  Result<CertificateRecord> record_certificate(const NewCertificate& cert);
  Result<CertificateRecord> describe_certificate(std::string_view id);
  Status update_certificate_status(std::string_view id, CertificateStatus status);
  // force: also detach policies (AWS forceDelete); attached things still conflict.
  Status delete_certificate(std::string_view id, bool force = false);

  // CA certificates.
  Result<std::string> registration_code();  // made on first use
  Status delete_registration_code();        // the next registration_code() is a new one
  // registration_config: JITP's {"templateBody", "roleArn"} or {"templateName"} as JSON text
  // (checked by the caller), "" = none.
  Result<CaCertificateRecord> register_ca_certificate(const crypto::CertificateInfo& ca,
                                                      CertificateStatus status,
                                                      bool auto_registration,
                                                      std::string_view certificate_mode,
                                                      std::string registration_config = {});
  Result<CaCertificateRecord> describe_ca_certificate(std::string_view id);
  Status update_ca_certificate(std::string_view id, std::optional<CertificateStatus> status,
                               std::optional<bool> auto_registration,
                               std::optional<std::string> registration_config = {});
  Status delete_ca_certificate(std::string_view id);

  // Policies.
  Result<PolicyVersionRecord> create_policy(std::string_view name, std::string_view document);
  Result<PolicyRecord> get_policy(std::string_view name);
  Status delete_policy(std::string_view name);
  Result<PolicyVersionRecord> create_policy_version(std::string_view name,
                                                    std::string_view document, bool set_default);
  Result<PolicyVersionRecord> get_policy_version(std::string_view name, std::int64_t id);
  Status set_default_policy_version(std::string_view name, std::int64_t id);
  Status delete_policy_version(std::string_view name, std::int64_t id);
  // target: a certificate ARN or a thing-group ARN.
  Status attach_policy(std::string_view policy, std::string_view target);
  Status detach_policy(std::string_view policy, std::string_view target);

  // Thing principals (certificate ARNs).
  Status attach_thing_principal(std::string_view thing, std::string_view principal);
  Status detach_thing_principal(std::string_view thing, std::string_view principal);

  // Provisioning templates.
  Result<TemplateRecord> create_template(const CreateTemplateRequest& req);
  Result<TemplateRecord> describe_template(std::string_view name);
  Status update_template(const UpdateTemplateRequest& req);
  Status delete_template(std::string_view name);
  Result<TemplateVersionRecord> create_template_version(std::string_view name,
                                                        std::string_view body, bool set_default);
  Result<TemplateVersionRecord> describe_template_version(std::string_view name, std::int64_t id);
  Status delete_template_version(std::string_view name, std::int64_t id);

 private:
  void emit(RegistryEvent::Kind kind, std::string subject, std::string detail = {},
            CertificateStatus status = CertificateStatus::kInactive) {
    events_.push_back({kind, std::move(subject), std::move(detail), status});
  }
  Result<std::string> certificate_id_of_principal(std::string_view principal);
  // One device timeline event of this change (made by actor_).
  Status timeline(const char* event, std::string reason, std::string detail, std::string thing,
                  std::string certificate_id);

  storage::Transaction& t_;
  std::string actor_ = "fleetkeyd";
  std::string operation_;  // the actor's API operation, appended to the timeline's details
  const RegistryConfig& config_;
  const Clock& clock_;
  std::vector<RegistryEvent> events_;
};

class Registry {
 public:
  Registry(storage::Store& store, crypto::CertificateAuthority& ca, const Clock& clock,
           RegistryConfig config = {});
  ~Registry();

  const RegistryConfig& config() const { return config_; }
  crypto::CertificateAuthority& ca() { return ca_; }
  const Clock& clock() const { return clock_; }

  // Runs `change` atomically (see the header comment). Returns its Status or the commit's.
  Status write(const std::function<Status(Txn&)>& change);
  // Runs `query` on a consistent snapshot of committed data.
  Status read(const std::function<Status(Txn&)>& query);

  // Storage commits so far (each one fsync); with group commit, fewer than write() calls.
  std::uint64_t commits() const { return committer_.commits(); }
  const metrics::Histogram& commit_durations() const { return committer_.commit_durations(); }

  // Listeners hear each committed change's events, in commit order per writing thread.
  int add_listener(RegistryListener listener);
  void remove_listener(int id);
  // Events another node committed (its outbox entries, from a storage::EventFeed): the
  // listeners hear them as if this node had made the change.
  void publish_remote(const std::vector<std::string>& payloads);

  // Signs a certificate for the CSR (off the writer thread), then records it.
  Result<CertificateRecord> create_certificate_from_csr(std::string_view csr_pem,
                                                        CertificateStatus status);
  struct CertificateWithKeys {
    CertificateRecord certificate;
    crypto::KeyPair keys;
  };
  Result<CertificateWithKeys> create_keys_and_certificate(const crypto::KeySpec& key,
                                                          CertificateStatus status,
                                                          const crypto::IssueOptions& issue = {});
  // RegisterCertificate: the certificate must chain to a registered CA (ca_pem, if given,
  // must be that CA) or to fleetkey's own issuing CA.
  Result<CertificateRecord> register_certificate(std::string_view pem,
                                                 std::optional<std::string> ca_pem,
                                                 CertificateStatus status);
  Result<CertificateRecord> register_certificate_without_ca(std::string_view pem,
                                                            CertificateStatus status);
  // RegisterCACertificate: verification_pem (CN = registration code, signed by the CA's key)
  // is required unless certificate_mode is SNI_ONLY.
  Result<CaCertificateRecord> register_ca_certificate(std::string_view ca_pem,
                                                      std::optional<std::string> verification_pem,
                                                      bool set_active, bool auto_registration,
                                                      std::string_view certificate_mode,
                                                      std::string registration_config = {});

 private:
  void publish(const std::vector<RegistryEvent>& events);

  storage::Store& store_;
  crypto::CertificateAuthority& ca_;
  const Clock& clock_;
  RegistryConfig config_;
  storage::GroupCommitter committer_;
  std::mutex listeners_mu_;
  std::map<int, RegistryListener> listeners_;
  int next_listener_ = 1;
};

}  // namespace fk::registry
