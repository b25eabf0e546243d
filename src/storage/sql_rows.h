// What the two SQL backends (storage/sqlite, storage/postgres) share: the column list each of
// their SELECTs reads, the decoder of such a row into its record (generic over the backend's row
// type: anything with `std::string text(int)` and `std::int64_t int64(int)`), and the JSON text
// that attribute maps and string lists are stored as. The tables themselves are each backend's
// (storage/*/schema.h); the column names and order are the same in both.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "storage/records.h"

namespace fk::storage::sql {

std::string attributes_to_json(const Attributes& a);
Attributes attributes_from_json(std::string_view text);  // non-strings and bad JSON: dropped
std::string strings_to_json(const std::vector<std::string>& v);
std::vector<std::string> strings_from_json(std::string_view text);

inline constexpr const char* kThingCols =
    "name, thing_id, type_name, attributes, version, created_at";
inline constexpr auto thing_row = [](const auto& s) -> ThingRecord {
  return {s.text(0), s.text(1), s.text(2), attributes_from_json(s.text(3)), s.int64(4), s.int64(5)};
};

inline constexpr const char* kTypeCols =
    "name, thing_type_id, description, searchable_attributes, deprecated, deprecated_at, "
    "created_at";
inline constexpr auto type_row = [](const auto& s) -> ThingTypeRecord {
  return {s.text(0),       s.text(1),  s.text(2), strings_from_json(s.text(3)),
          s.int64(4) != 0, s.int64(5), s.int64(6)};
};

inline constexpr const char* kGroupCols =
    "name, group_id, parent_name, description, attributes, version, created_at";
inline constexpr auto group_row = [](const auto& s) -> ThingGroupRecord {
  return {s.text(0),  s.text(1), s.text(2), s.text(3), attributes_from_json(s.text(4)),
          s.int64(5), s.int64(6)};
};

inline constexpr const char* kCertCols =
    "certificate_id, pem, status, ca_certificate_id, certificate_mode, subject, issuer, "
    "serial_hex, not_before, not_after, created_at, updated_at, customer_version, generation_id";
inline constexpr auto cert_row = [](const auto& s) -> CertificateRecord {
  CertificateRecord c;
  c.certificate_id = s.text(0);
  c.pem = s.text(1);
  auto st = parse_certificate_status(s.text(2));
  c.status = st.is_ok() ? *st : CertificateStatus::kInactive;
  c.ca_certificate_id = s.text(3);
  c.certificate_mode = s.text(4);
  c.subject = s.text(5);
  c.issuer = s.text(6);
  c.serial_hex = s.text(7);
  c.not_before = s.int64(8);
  c.not_after = s.int64(9);
  c.created_at = s.int64(10);
  c.updated_at = s.int64(11);
  c.customer_version = s.int64(12);
  c.generation_id = s.text(13);
  return c;
};

inline constexpr const char* kCaCols =
    "certificate_id, pem, status, auto_registration, certificate_mode, subject, not_before, "
    "not_after, created_at, updated_at, customer_version, generation_id, registration_config";
inline constexpr auto ca_row = [](const auto& s) -> CaCertificateRecord {
  CaCertificateRecord c;
  c.certificate_id = s.text(0);
  c.pem = s.text(1);
  auto st = parse_certificate_status(s.text(2));
  c.status = st.is_ok() ? *st : CertificateStatus::kInactive;
  c.auto_registration = s.int64(3) != 0;
  c.certificate_mode = s.text(4);
  c.subject = s.text(5);
  c.not_before = s.int64(6);
  c.not_after = s.int64(7);
  c.created_at = s.int64(8);
  c.updated_at = s.int64(9);
  c.customer_version = s.int64(10);
  c.generation_id = s.text(11);
  c.registration_config = s.text(12);
  return c;
};

// The audit log: its INSERT (sequence given by the database) and the columns a read selects.
inline constexpr const char* kAuditInsert =
    "INSERT INTO audit (at_ms, access_key, source, operation, resource, request, status, "
    "error_code) VALUES (?,?,?,?,?,?,?,?)";
inline constexpr const char* kAuditCols =
    "sequence, at_ms, access_key, source, operation, resource, request, status, error_code";
inline constexpr auto audit_row = [](const auto& s) -> AuditRecord {
  AuditRecord a;
  a.sequence = s.int64(0);
  a.at_ms = s.int64(1);
  a.access_key = s.text(2);
  a.source = s.text(3);
  a.operation = s.text(4);
  a.resource = s.text(5);
  a.request = s.text(6);
  a.status = static_cast<int>(s.int64(7));
  a.error_code = s.text(8);
  return a;
};

// The device timeline: its INSERT (sequence given by the database), the columns a read selects,
// and the WHERE clause of a query (placeholders bound by timeline_params, in order).
inline constexpr const char* kTimelineInsert =
    "INSERT INTO timeline (at_ms, thing, certificate_id, client_id, source, event, reason, "
    "detail, actor) VALUES (?,?,?,?,?,?,?,?,?)";
inline constexpr const char* kTimelineCols =
    "sequence, at_ms, thing, certificate_id, client_id, source, event, reason, detail, actor";
inline constexpr auto timeline_row = [](const auto& s) -> DeviceEvent {
  DeviceEvent e;
  e.sequence = s.int64(0);
  e.at_ms = s.int64(1);
  e.thing = s.text(2);
  e.certificate_id = s.text(3);
  e.client_id = s.text(4);
  e.source = s.text(5);
  e.event = s.text(6);
  e.reason = s.text(7);
  e.detail = s.text(8);
  e.actor = s.text(9);
  return e;
};
inline constexpr const char* kTimelineCount =
    "SELECT event, reason, count(*) FROM timeline WHERE at_ms >= ? GROUP BY event, reason "
    "ORDER BY event, reason";
inline constexpr auto timeline_count_row = [](const auto& s) -> TimelineCount {
  return {s.text(0), s.text(1), s.int64(2)};
};
// "SELECT <cols> FROM timeline WHERE (thing IN (?..) OR ...) AND at_ms >= ? AND at_ms < ?
// [AND sequence < ?] ORDER BY sequence DESC LIMIT n", every parameter bound as text (integer
// ones cast in SQL). The parameters in the same order: timeline_params().
std::string timeline_select(const TimelineQuery& q, bool postgres);
std::vector<std::string> timeline_params(const TimelineQuery& q);

inline constexpr const char* kPolicyCols =
    "name, default_version_id, next_version_id, created_at, updated_at, generation_id";
inline constexpr auto policy_row = [](const auto& s) -> PolicyRecord {
  return {s.text(0), s.int64(1), s.int64(2), s.int64(3), s.int64(4), s.text(5)};
};

inline constexpr auto policy_version_row = [](const auto& s) -> PolicyVersionRecord {
  return {s.text(0), s.int64(1), s.text(2), s.int64(3)};
};

inline constexpr const char* kTemplateCols =
    "name, template_id, description, type, enabled, provisioning_role_arn, "
    "pre_provisioning_hook, default_version_id, next_version_id, created_at, updated_at";
inline constexpr auto template_row = [](const auto& s) -> TemplateRecord {
  TemplateRecord t;
  t.name = s.text(0);
  t.template_id = s.text(1);
  t.description = s.text(2);
  t.type = s.text(3);
  t.enabled = s.int64(4) != 0;
  t.provisioning_role_arn = s.text(5);
  t.pre_provisioning_hook = s.text(6);
  t.default_version_id = s.int64(7);
  t.next_version_id = s.int64(8);
  t.created_at = s.int64(9);
  t.updated_at = s.int64(10);
  return t;
};

inline constexpr auto template_version_row = [](const auto& s) -> TemplateVersionRecord {
  return {s.text(0), s.int64(1), s.text(2), s.int64(3)};
};

inline std::string limit_clause(const Page& p) {
  return p.limit == 0 ? std::string() : " LIMIT " + std::to_string(p.limit);
}

}  // namespace fk::storage::sql
