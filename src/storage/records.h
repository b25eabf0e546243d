// The records the registry keeps, as plain values. Storage backends persist them; the domain
// rules that keep them consistent live in registry/, not here.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/device_events.h"
#include "base/status.h"

namespace fk::storage {

using Attributes = std::map<std::string, std::string>;

struct ThingRecord {
  std::string name;
  std::string thing_id;   // UUID
  std::string type_name;  // empty: no thing type
  Attributes attributes;
  std::int64_t version = 1;
  EpochSeconds created_at = 0;
  bool operator==(const ThingRecord&) const = default;
};

struct ThingTypeRecord {
  std::string name;
  std::string thing_type_id;
  std::string description;
  std::vector<std::string> searchable_attributes;
  bool deprecated = false;
  EpochSeconds deprecated_at = 0;
  EpochSeconds created_at = 0;
  bool operator==(const ThingTypeRecord&) const = default;
};

struct ThingGroupRecord {
  std::string name;
  std::string group_id;
  std::string parent_name;  // empty: a root group
  std::string description;
  Attributes attributes;
  std::int64_t version = 1;
  EpochSeconds created_at = 0;
  bool operator==(const ThingGroupRecord&) const = default;
};

enum class CertificateStatus {
  kActive,
  kInactive,
  kRevoked,
  kPendingTransfer,
  kRegisterInactive,
  kPendingActivation,
};
std::string_view to_string(CertificateStatus s);
Result<CertificateStatus> parse_certificate_status(std::string_view s);

struct CertificateRecord {
  std::string certificate_id;  // SHA-256 of the DER, lowercase hex
  std::string pem;
  CertificateStatus status = CertificateStatus::kInactive;
  std::string ca_certificate_id;             // issuing CA's id; empty when registered without a CA
  std::string certificate_mode = "DEFAULT";  // DEFAULT or SNI_ONLY
  std::string subject;
  std::string issuer;
  std::string serial_hex;
  EpochSeconds not_before = 0;
  EpochSeconds not_after = 0;
  EpochSeconds created_at = 0;
  EpochSeconds updated_at = 0;
  std::int64_t customer_version = 1;  // bumped on every status change
  std::string generation_id;
  bool operator==(const CertificateRecord&) const = default;
};

struct CaCertificateRecord {
  std::string certificate_id;
  std::string pem;
  CertificateStatus status = CertificateStatus::kInactive;  // ACTIVE or INACTIVE
  bool auto_registration = false;
  std::string certificate_mode = "DEFAULT";
  std::string subject;
  EpochSeconds not_before = 0;
  EpochSeconds not_after = 0;
  EpochSeconds created_at = 0;
  EpochSeconds updated_at = 0;
  std::int64_t customer_version = 1;
  std::string generation_id;
  std::string registration_config;  // JSON text, may be empty
  bool operator==(const CaCertificateRecord&) const = default;
};

struct PolicyRecord {
  std::string name;
  std::int64_t default_version_id = 1;
  std::int64_t next_version_id = 2;  // version ids are never reused
  EpochSeconds created_at = 0;
  EpochSeconds updated_at = 0;
  std::string generation_id;
  bool operator==(const PolicyRecord&) const = default;
};

struct PolicyVersionRecord {
  std::string policy_name;
  std::int64_t version_id = 1;
  std::string document;
  EpochSeconds created_at = 0;
  bool operator==(const PolicyVersionRecord&) const = default;
};

struct TemplateRecord {
  std::string name;
  std::string template_id;
  std::string description;
  std::string type = "FLEET_PROVISIONING";  // or JITP
  bool enabled = false;
  std::string provisioning_role_arn;
  std::string pre_provisioning_hook;  // JSON text {targetArn, payloadVersion}, may be empty
  std::int64_t default_version_id = 1;
  std::int64_t next_version_id = 2;
  EpochSeconds created_at = 0;
  EpochSeconds updated_at = 0;
  bool operator==(const TemplateRecord&) const = default;
};

struct TemplateVersionRecord {
  std::string template_name;
  std::int64_t version_id = 1;
  std::string body;
  EpochSeconds created_at = 0;
  bool operator==(const TemplateVersionRecord&) const = default;
};

// Keyset pagination: items strictly after `after` in the list's order, at most `limit`
// (0 = no limit). `after` is the key of the last item of the previous page ("" = start).
struct Page {
  std::string after;
  std::size_t limit = 0;
};

struct ThingQuery {
  std::string type_name;        // "" = any
  std::string attribute_name;   // "" = any
  std::string attribute_value;  // with attribute_name
  bool attribute_value_prefix = false;
  std::string name_prefix;  // "" = any
  Page page;
};

struct CertificateQuery {
  std::optional<std::string> ca_certificate_id;  // only certificates issued by this CA
  std::optional<std::string> serial_hex;         // only this serial (lowercase hex)
  std::optional<CertificateStatus> status;       // only certificates in this status
  bool ascending = true;                         // by creation time, then id
  Page page;  // `after` is certificate_page_key() of the last certificate
};

// One control-plane change as the audit log keeps it (issue 20): append-only.
struct AuditRecord {
  std::int64_t sequence = 0;  // given by the store, increasing in commit order
  std::int64_t at_ms = 0;     // when it was answered, epoch milliseconds
  std::string access_key;
  std::string source;      // the client's address
  std::string operation;   // AWS's operation name ("CreateThing") or fleetkey's route
  std::string resource;    // what it changed (a name or an ARN), "" when none
  std::string request;     // the request's parameters as JSON text, secrets removed
  int status = 0;          // the HTTP status answered
  std::string error_code;  // AWS's error code when it failed, else ""
  bool operator==(const AuditRecord&) const = default;
};

struct AuditQuery {
  std::int64_t from_ms = 0;                                       // at_ms >= from_ms
  std::int64_t to_ms = std::numeric_limits<std::int64_t>::max();  // at_ms < to_ms
  std::optional<std::string> access_key;
  std::optional<std::string> resource;
  std::int64_t after_sequence = 0;  // paging: records with a greater sequence
  std::size_t limit = 100;          // 0 = no limit
};

// The device timeline (issue 20): events of any of these things, certificates or client ids,
// newest first.
struct TimelineQuery {
  std::vector<std::string> things;
  std::vector<std::string> certificate_ids;
  std::vector<std::string> client_ids;
  std::int64_t from_ms = 0;                                       // at_ms >= from_ms
  std::int64_t to_ms = std::numeric_limits<std::int64_t>::max();  // at_ms < to_ms
  std::int64_t before_sequence = 0;  // paging: events with a smaller sequence (0: from newest)
  std::size_t limit = 100;           // at least 1
};

// How many timeline events of each (event, reason) there were since a time (the console's
// overview: connects and provisionings per minute, refusals by cause).
struct TimelineCount {
  std::string event;
  std::string reason;
  std::int64_t count = 0;
  bool operator==(const TimelineCount&) const = default;
};

// The key CertificateQuery pages on: creation time and id.
std::string certificate_page_key(const CertificateRecord& c);

}  // namespace fk::storage
