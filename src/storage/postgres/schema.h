// The PostgreSQL schema, as an ordered list of migrations: migration i (0-based) moves the
// database from version i to i+1 (table fleetkey_schema). Never edit a migration that has
// shipped: append a new one. Text keys use the "C" collation, so that ORDER BY and the
// `name > after` pagination order bytes as the SQLite backend does. Plain SQL types that
// PostgreSQL-compatible distributed databases accept too (no extensions, no triggers).
#pragma once

#include <array>

namespace fk::storage::postgres_schema {

inline constexpr std::array<const char*, 6> kMigrations = {
    // 1: the registry
    R"sql(
CREATE TABLE things (
  name TEXT COLLATE "C" PRIMARY KEY, thing_id TEXT NOT NULL, type_name TEXT COLLATE "C" NOT NULL,
  attributes TEXT NOT NULL, version BIGINT NOT NULL, created_at BIGINT NOT NULL
);
CREATE INDEX things_by_type ON things (type_name, name);

CREATE TABLE thing_types (
  name TEXT COLLATE "C" PRIMARY KEY, thing_type_id TEXT NOT NULL, description TEXT NOT NULL,
  searchable_attributes TEXT NOT NULL, deprecated BIGINT NOT NULL,
  deprecated_at BIGINT NOT NULL, created_at BIGINT NOT NULL
);

CREATE TABLE thing_groups (
  name TEXT COLLATE "C" PRIMARY KEY, group_id TEXT NOT NULL, parent_name TEXT NOT NULL,
  description TEXT NOT NULL, attributes TEXT NOT NULL, version BIGINT NOT NULL,
  created_at BIGINT NOT NULL
);

CREATE TABLE group_members (
  group_name TEXT COLLATE "C" NOT NULL, thing_name TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (group_name, thing_name)
);
CREATE INDEX group_members_by_thing ON group_members (thing_name, group_name);

CREATE TABLE certificates (
  certificate_id TEXT COLLATE "C" PRIMARY KEY, pem TEXT NOT NULL, status TEXT NOT NULL,
  ca_certificate_id TEXT COLLATE "C" NOT NULL, certificate_mode TEXT NOT NULL,
  subject TEXT NOT NULL, issuer TEXT NOT NULL, serial_hex TEXT NOT NULL,
  not_before BIGINT NOT NULL, not_after BIGINT NOT NULL, created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL, customer_version BIGINT NOT NULL, generation_id TEXT NOT NULL
);
CREATE INDEX certificates_by_created ON certificates (created_at, certificate_id);
CREATE INDEX certificates_by_ca ON certificates (ca_certificate_id, created_at, certificate_id);
CREATE INDEX certificates_by_not_after ON certificates (not_after);

CREATE TABLE ca_certificates (
  certificate_id TEXT COLLATE "C" PRIMARY KEY, pem TEXT NOT NULL, status TEXT NOT NULL,
  auto_registration BIGINT NOT NULL, certificate_mode TEXT NOT NULL, subject TEXT NOT NULL,
  not_before BIGINT NOT NULL, not_after BIGINT NOT NULL, created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL, customer_version BIGINT NOT NULL, generation_id TEXT NOT NULL,
  registration_config TEXT NOT NULL
);

CREATE TABLE policies (
  name TEXT COLLATE "C" PRIMARY KEY, default_version_id BIGINT NOT NULL,
  next_version_id BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  generation_id TEXT NOT NULL
);

CREATE TABLE policy_versions (
  policy_name TEXT COLLATE "C" NOT NULL, version_id BIGINT NOT NULL, document TEXT NOT NULL,
  created_at BIGINT NOT NULL, PRIMARY KEY (policy_name, version_id)
);

CREATE TABLE policy_targets (
  policy_name TEXT COLLATE "C" NOT NULL, target TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (policy_name, target)
);
CREATE INDEX policy_targets_by_target ON policy_targets (target, policy_name);

CREATE TABLE thing_principals (
  thing_name TEXT COLLATE "C" NOT NULL, principal TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (thing_name, principal)
);
CREATE INDEX thing_principals_by_principal ON thing_principals (principal, thing_name);

CREATE TABLE templates (
  name TEXT COLLATE "C" PRIMARY KEY, template_id TEXT NOT NULL, description TEXT NOT NULL,
  type TEXT NOT NULL, enabled BIGINT NOT NULL, provisioning_role_arn TEXT NOT NULL,
  pre_provisioning_hook TEXT NOT NULL, default_version_id BIGINT NOT NULL,
  next_version_id BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL
);

CREATE TABLE template_versions (
  template_name TEXT COLLATE "C" NOT NULL, version_id BIGINT NOT NULL, body TEXT NOT NULL,
  created_at BIGINT NOT NULL, PRIMARY KEY (template_name, version_id)
);

CREATE TABLE settings (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
)sql",
    // 2: the outbox of registry events, read by the other nodes (ids in commit order: one
    // writer at a time); rows older than an hour are pruned
    R"sql(
CREATE TABLE outbox (
  id BIGSERIAL PRIMARY KEY, node TEXT NOT NULL, payload TEXT NOT NULL, created_at BIGINT NOT NULL
);
)sql",
    // 3: the nodes sharing the registry, each refreshing its row every few seconds
    R"sql(
CREATE TABLE nodes (
  node_id TEXT COLLATE "C" PRIMARY KEY, instance TEXT NOT NULL, api_url TEXT NOT NULL,
  mqtt_port BIGINT NOT NULL, connections BIGINT NOT NULL, started_at BIGINT NOT NULL,
  seen_at BIGINT NOT NULL
);
)sql",
    // 4: revocation data (OCSP answers by serial; the CRL lists REVOKED certificates)
    R"sql(
CREATE INDEX certificates_by_serial ON certificates (serial_hex);
CREATE INDEX certificates_by_status ON certificates (status, created_at, certificate_id);
)sql",
    // 5: the audit log of control-plane changes (append-only; one writer at a time, so sequences
    // are in commit order)
    R"sql(
CREATE TABLE audit (
  sequence BIGSERIAL PRIMARY KEY, at_ms BIGINT NOT NULL, access_key TEXT NOT NULL,
  source TEXT NOT NULL, operation TEXT NOT NULL, resource TEXT NOT NULL, request TEXT NOT NULL,
  status BIGINT NOT NULL, error_code TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit (at_ms, sequence);
)sql",
    // 6: the device timeline (bounded by age and size; app/timeline_recorder prunes it)
    R"sql(
CREATE TABLE timeline (
  sequence BIGSERIAL PRIMARY KEY, at_ms BIGINT NOT NULL, thing TEXT NOT NULL,
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

}  // namespace fk::storage::postgres_schema
