// The SQLite schema, as an ordered list of migrations. Migration i (0-based) moves the file
// from user_version i to i+1. Never edit a migration that has shipped: append a new one.
#pragma once

#include <array>

namespace fk::storage::sqlite_schema {

inline constexpr std::array<const char*, 4> kMigrations = {
    // 1: the registry
    R"sql(
CREATE TABLE things (
  name TEXT PRIMARY KEY, thing_id TEXT NOT NULL, type_name TEXT NOT NULL,
  attributes TEXT NOT NULL, version INTEGER NOT NULL, created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX things_by_type ON things (type_name, name);

CREATE TABLE thing_types (
  name TEXT PRIMARY KEY, thing_type_id TEXT NOT NULL, description TEXT NOT NULL,
  searchable_attributes TEXT NOT NULL, deprecated INTEGER NOT NULL,
  deprecated_at INTEGER NOT NULL, created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE thing_groups (
  name TEXT PRIMARY KEY, group_id TEXT NOT NULL, parent_name TEXT NOT NULL,
  description TEXT NOT NULL, attributes TEXT NOT NULL, version INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE group_members (
  group_name TEXT NOT NULL, thing_name TEXT NOT NULL, PRIMARY KEY (group_name, thing_name)
) WITHOUT ROWID;
CREATE INDEX group_members_by_thing ON group_members (thing_name, group_name);

CREATE TABLE certificates (
  certificate_id TEXT PRIMARY KEY, pem TEXT NOT NULL, status TEXT NOT NULL,
  ca_certificate_id TEXT NOT NULL, certificate_mode TEXT NOT NULL, subject TEXT NOT NULL,
  issuer TEXT NOT NULL, serial_hex TEXT NOT NULL, not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  customer_version INTEGER NOT NULL, generation_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX certificates_by_created ON certificates (created_at, certificate_id);
CREATE INDEX certificates_by_ca ON certificates (ca_certificate_id, created_at, certificate_id);
CREATE INDEX certificates_by_not_after ON certificates (not_after);

CREATE TABLE ca_certificates (
  certificate_id TEXT PRIMARY KEY, pem TEXT NOT NULL, status TEXT NOT NULL,
  auto_registration INTEGER NOT NULL, certificate_mode TEXT NOT NULL, subject TEXT NOT NULL,
  not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL, customer_version INTEGER NOT NULL, generation_id TEXT NOT NULL,
  registration_config TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE policies (
  name TEXT PRIMARY KEY, default_version_id INTEGER NOT NULL, next_version_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, generation_id TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE policy_versions (
  policy_name TEXT NOT NULL, version_id INTEGER NOT NULL, document TEXT NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY (policy_name, version_id)
) WITHOUT ROWID;

CREATE TABLE policy_targets (
  policy_name TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (policy_name, target)
) WITHOUT ROWID;
CREATE INDEX policy_targets_by_target ON policy_targets (target, policy_name);

CREATE TABLE thing_principals (
  thing_name TEXT NOT NULL, principal TEXT NOT NULL, PRIMARY KEY (thing_name, principal)
) WITHOUT ROWID;
CREATE INDEX thing_principals_by_principal ON thing_principals (principal, thing_name);

CREATE TABLE templates (
  name TEXT PRIMARY KEY, template_id TEXT NOT NULL, description TEXT NOT NULL,
  type TEXT NOT NULL, enabled INTEGER NOT NULL, provisioning_role_arn TEXT NOT NULL,
  pre_provisioning_hook TEXT NOT NULL, default_version_id INTEGER NOT NULL,
  next_version_id INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE template_versions (
  template_name TEXT NOT NULL, version_id INTEGER NOT NULL, body TEXT NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY (template_name, version_id)
) WITHOUT ROWID;

CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
)sql",
    // 2: revocation data (OCSP answers by serial; the CRL lists REVOKED certificates)
    R"sql(
CREATE INDEX certificates_by_serial ON certificates (serial_hex);
CREATE INDEX certificates_by_status ON certificates (status, created_at, certificate_id);
)sql",
    // 3: the audit log of control-plane changes (append-only)
    R"sql(
CREATE TABLE audit (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, access_key TEXT NOT NULL,
  source TEXT NOT NULL, operation TEXT NOT NULL, resource TEXT NOT NULL, request TEXT NOT NULL,
  status INTEGER NOT NULL, error_code TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit (at_ms, sequence);
)sql",
    // 4: the device timeline (bounded by age and size; app/timeline_recorder prunes it)
    R"sql(
CREATE TABLE timeline (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, thing TEXT NOT NULL,
  certificate_id TEXT NOT NULL, client_id TEXT NOT NULL, source TEXT NOT NULL,
  event TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, actor TEXT NOT NULL
);
CREATE INDEX timeline_by_time ON timeline (at_ms);
CREATE INDEX timeline_by_thing ON timeline (thing, sequence) WHERE thing <> '';
CREATE INDEX timeline_by_certificate ON timeline (certificate_id, sequence)
  WHERE certificate_id <> '';
CREATE INDEX timeline_by_client ON timeline (client_id, sequence) WHERE client_id <> '';
)sql",
};

}  // namespace fk::storage::sqlite_schema
