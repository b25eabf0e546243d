// Store and Transaction: the registry's repository interfaces.
//
// Every registry change runs in one Transaction; a change is visible to others and durable
// only after commit() returns ok (for SQLite: the WAL is fsynced). Destroying an uncommitted
// write transaction rolls it back. Backends: storage/memory (unit tests), storage/sqlite (real
// use); tests/contract runs the same suite on each.
//
// Threads: a Transaction belongs to one thread. Store::begin_write() blocks while another
// write transaction is open (one writer; see GroupCommitter for batching many changes into
// one commit). Read transactions may run concurrently with each other and with the writer,
// and see a consistent snapshot of committed data.
//
// Getters return std::nullopt for a missing record; put_* inserts or replaces; delete_* of a
// missing record is not an error. Lists are ordered by key (names, ids) unless stated.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/records.h"

namespace fk::storage {

template <typename T>
using Maybe = Result<std::optional<T>>;
template <typename T>
using List = Result<std::vector<T>>;
using Names = Result<std::vector<std::string>>;

class Transaction {
 public:
  virtual ~Transaction() = default;

  // Things, thing types, thing groups.
  virtual Maybe<ThingRecord> get_thing(std::string_view name) = 0;
  virtual Status put_thing(const ThingRecord& thing) = 0;
  virtual Status delete_thing(std::string_view name) = 0;
  virtual List<ThingRecord> list_things(const ThingQuery& query) = 0;

  virtual Maybe<ThingTypeRecord> get_thing_type(std::string_view name) = 0;
  virtual Status put_thing_type(const ThingTypeRecord& type) = 0;
  virtual Status delete_thing_type(std::string_view name) = 0;
  virtual List<ThingTypeRecord> list_thing_types(const Page& page) = 0;

  virtual Maybe<ThingGroupRecord> get_thing_group(std::string_view name) = 0;
  virtual Status put_thing_group(const ThingGroupRecord& group) = 0;
  virtual Status delete_thing_group(std::string_view name) = 0;
  virtual List<ThingGroupRecord> list_thing_groups(const Page& page) = 0;

  // Group membership: (group, thing) pairs.
  virtual Status add_group_member(std::string_view group, std::string_view thing) = 0;
  virtual Status remove_group_member(std::string_view group, std::string_view thing) = 0;
  virtual Names list_group_members(std::string_view group, const Page& page) = 0;
  virtual Names list_groups_of_thing(std::string_view thing, const Page& page) = 0;

  // Certificates and CA certificates.
  virtual Maybe<CertificateRecord> get_certificate(std::string_view id) = 0;
  virtual Status put_certificate(const CertificateRecord& cert) = 0;
  virtual Status delete_certificate(std::string_view id) = 0;
  virtual List<CertificateRecord> list_certificates(const CertificateQuery& query) = 0;

  virtual Maybe<CaCertificateRecord> get_ca_certificate(std::string_view id) = 0;
  virtual Status put_ca_certificate(const CaCertificateRecord& ca) = 0;
  virtual Status delete_ca_certificate(std::string_view id) = 0;
  virtual List<CaCertificateRecord> list_ca_certificates(const Page& page) = 0;

  // Policies and their versions.
  virtual Maybe<PolicyRecord> get_policy(std::string_view name) = 0;
  virtual Status put_policy(const PolicyRecord& policy) = 0;
  virtual Status delete_policy(std::string_view name) = 0;  // and all its versions
  virtual List<PolicyRecord> list_policies(const Page& page) = 0;

  virtual Maybe<PolicyVersionRecord> get_policy_version(std::string_view name, std::int64_t id) = 0;
  virtual Status put_policy_version(const PolicyVersionRecord& version) = 0;
  virtual Status delete_policy_version(std::string_view name, std::int64_t id) = 0;
  virtual List<PolicyVersionRecord> list_policy_versions(std::string_view name) = 0;  // by id

  // Policy attachments: (policy, target) where target is a certificate or thing-group ARN.
  virtual Status attach_policy(std::string_view policy, std::string_view target) = 0;
  virtual Status detach_policy(std::string_view policy, std::string_view target) = 0;
  virtual Names list_policy_targets(std::string_view policy, const Page& page) = 0;
  virtual Names list_target_policies(std::string_view target, const Page& page) = 0;

  // Thing principals: (thing, principal) where principal is a certificate ARN.
  virtual Status attach_thing_principal(std::string_view thing, std::string_view principal) = 0;
  virtual Status detach_thing_principal(std::string_view thing, std::string_view principal) = 0;
  virtual Names list_thing_principals(std::string_view thing, const Page& page) = 0;
  virtual Names list_principal_things(std::string_view principal, const Page& page) = 0;

  // Provisioning templates and their versions.
  virtual Maybe<TemplateRecord> get_template(std::string_view name) = 0;
  virtual Status put_template(const TemplateRecord& tmpl) = 0;
  virtual Status delete_template(std::string_view name) = 0;  // and all its versions
  virtual List<TemplateRecord> list_templates(const Page& page) = 0;

  virtual Maybe<TemplateVersionRecord> get_template_version(std::string_view name,
                                                            std::int64_t id) = 0;
  virtual Status put_template_version(const TemplateVersionRecord& version) = 0;
  virtual Status delete_template_version(std::string_view name, std::int64_t id) = 0;
  virtual List<TemplateVersionRecord> list_template_versions(std::string_view name) = 0;

  // Small named values (e.g. the CA registration code).
  virtual Maybe<std::string> get_setting(std::string_view key) = 0;
  virtual Status put_setting(std::string_view key, std::string_view value) = 0;
  virtual Status delete_setting(std::string_view key) = 0;  // absent: nothing to do

  // The audit log: appended in the writing transaction (the record's sequence is the store's),
  // read by time range, access key and resource, in sequence order.
  virtual Status append_audit(const AuditRecord& record) = 0;
  virtual List<AuditRecord> list_audit(const AuditQuery& query) = 0;
  // The device timeline: appended in batches, read newest first, pruned by age (events older
  // than `before_ms`) and size (all but the newest `keep_last`); returns how many went.
  virtual Status append_timeline(const std::vector<DeviceEvent>& events) = 0;
  virtual List<DeviceEvent> list_timeline(const TimelineQuery& query) = 0;
  virtual Result<std::int64_t> prune_timeline(std::int64_t before_ms, std::int64_t keep_last) = 0;
  // Events at or after `since_ms`, counted by (event, reason), in that order.
  virtual List<TimelineCount> count_timeline(std::int64_t since_ms) = 0;
  // The settings whose key starts with `prefix`, in key order, after page.after (a full key).
  virtual List<std::pair<std::string, std::string>> list_settings(std::string_view prefix,
                                                                  const Page& page) = 0;

  // Records a committed change's events for the other nodes sharing this store, in this
  // transaction (an outbox: the events exist exactly when the change does). Stores that no
  // other node shares (memory, SQLite) keep nothing.
  virtual Status append_outbox(std::string_view /*payload*/) { return Status::ok(); }

  // Nested savepoints inside a write transaction: a failed sub-change is undone alone.
  virtual Status savepoint() = 0;
  virtual Status release_savepoint() = 0;
  virtual Status rollback_to_savepoint() = 0;

  // Makes the changes durable and visible. A read transaction's commit() just ends it.
  virtual Status commit() = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  virtual Result<std::unique_ptr<Transaction>> begin_write() = 0;
  virtual Result<std::unique_ptr<Transaction>> begin_read() = 0;
  // Whether other nodes share this store (and read what Transaction::append_outbox records);
  // when not, nobody needs a change's events encoded for them.
  virtual bool has_outbox() const { return false; }
};

// The other nodes' outbox entries, as they commit (storage/postgres: LISTEN/NOTIFY as the
// doorbell, the outbox table as the truth, read again after a reconnect so that nothing is
// missed). Thread-safety: start()/stop() from one thread; the callback runs on the feed's own
// thread, in commit order.
class EventFeed {
 public:
  using OnPayloads = std::function<void(const std::vector<std::string>& payloads)>;
  virtual ~EventFeed() = default;
  virtual Status start(OnPayloads on_payloads) = 0;
  virtual void stop() = 0;
  // Whether the feed is connected now; if not, for how long it has not been.
  virtual bool connected() const = 0;
  virtual std::chrono::milliseconds disconnected_for() const = 0;
};

}  // namespace fk::storage
