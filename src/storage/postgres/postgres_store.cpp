#include "storage/postgres/postgres_store.h"

#include <libpq-fe.h>
#include <poll.h>

#include <chrono>
#include <cstdlib>
#include <map>

#include "base/log.h"
#include "storage/postgres/schema.h"
#include "storage/sql_rows.h"

namespace fk::storage {

namespace {

// Advisory lock keys: the cluster's one writer, and schema migrations.
constexpr const char* kWriterLock = "SELECT pg_advisory_xact_lock(7381249001)";
constexpr const char* kMigrationLock = "SELECT pg_advisory_lock(7381249002)";
constexpr const char* kMigrationUnlock = "SELECT pg_advisory_unlock(7381249002)";

// The SQL is written with "?" placeholders, as for SQLite; PostgreSQL numbers them.
std::string numbered(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  for (char c : sql) {
    if (c == '?') {
      out += '$';
      out += std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

// The NOTIFY channel of a schema's outbox (identifiers are at most 63 bytes).
std::string outbox_channel(const std::string& schema) {
  return ("fk_events_" + schema).substr(0, 63);
}

std::string quote_identifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// What went wrong, as a Status: lost connections, a server shutting down, serialization
// failures and lack of resources are kUnavailable (retry later), the rest kInternal.
Status pg_error(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string msg = res ? PQresultErrorMessage(res) : "";
  if (msg.empty() && conn) msg = PQerrorMessage(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const std::string code = state ? state : "";
  std::string full = "postgres: " + std::string(what) + ": " + msg;
  if (!code.empty()) full += " (SQLSTATE " + code + ")";
  const bool transient = (conn && PQstatus(conn) == CONNECTION_BAD) || code.rfind("08", 0) == 0 ||
                         code.rfind("53", 0) == 0 || code.rfind("57P", 0) == 0 || code == "40001" ||
                         code == "40P01";
  if (transient) return {ErrorCode::kUnavailable, full};
  return internal_error(full);
}

}  // namespace

// One query's rows, read as text (libpq's text format).
class PgRows {
 public:
  explicit PgRows(PGresult* r) : r_(r) {}
  PgRows(PgRows&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  PgRows(const PgRows&) = delete;
  PgRows& operator=(const PgRows&) = delete;
  ~PgRows() {
    if (r_) PQclear(r_);
  }
  int size() const { return PQntuples(r_); }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(r_, row, col),
                       static_cast<std::size_t>(PQgetlength(r_, row, col)));
  }
  std::int64_t int64(int row, int col) const {
    return std::strtoll(PQgetvalue(r_, row, col), nullptr, 10);
  }

 private:
  PGresult* r_;
};

// One row, with the accessors the row decoders use.
struct Row {
  const PgRows& rows;
  int i;
  std::string text(int col) const { return rows.text(i, col); }
  std::int64_t int64(int col) const { return rows.int64(i, col); }
};

class PostgresConnection {
 public:
  static Result<std::unique_ptr<PostgresConnection>> open(const PostgresOptions& o) {
    std::string conninfo = o.url;
    PGconn* c = nullptr;
    {
      // connect_timeout applies whatever form the connection string has.
      const char* keys[] = {"dbname", "connect_timeout", "application_name", nullptr};
      std::string timeout = std::to_string(o.connect_timeout_seconds);
      const char* values[] = {conninfo.c_str(), timeout.c_str(), "fleetkeyd", nullptr};
      c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    }
    std::unique_ptr<PostgresConnection> conn(new PostgresConnection(c));
    if (c == nullptr || PQstatus(c) != CONNECTION_OK) {
      std::string msg = c ? PQerrorMessage(c) : "out of memory";
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
      return Status{ErrorCode::kUnavailable, "postgres: cannot connect: " + msg};
    }
    FK_RETURN_IF_ERROR(conn->exec("SET client_min_messages TO warning"));
    if (!o.schema.empty()) {
      FK_RETURN_IF_ERROR(conn->exec("SET search_path TO " + quote_identifier(o.schema)));
    }
    return conn;
  }

  ~PostgresConnection() {
    if (c_) PQfinish(c_);
  }

  // Statements without parameters (several may be separated by ';').
  Status exec(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    const auto st = PQresultStatus(r);
    Status out = Status::ok();
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) out = pg_error(c_, r, "exec");
    PQclear(r);
    return out;
  }

  // Each distinct statement is prepared once per connection (parse and plan once: a
  // provisioning transaction runs a dozen statements, and planning them again every time cost
  // more than executing them).
  Result<PgRows> query(std::string_view sql_with_marks, const std::vector<std::string>& params) {
    auto it = prepared_.find(sql_with_marks);
    if (it == prepared_.end()) {
      const std::string name = "s" + std::to_string(prepared_.size() + 1);
      const std::string sql = numbered(sql_with_marks);
      PGresult* r =
          PQprepare(c_, name.c_str(), sql.c_str(), static_cast<int>(params.size()), nullptr);
      if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        Status e = pg_error(c_, r, "prepare");
        PQclear(r);
        return e;
      }
      PQclear(r);
      it = prepared_.emplace(std::string(sql_with_marks), name).first;
    }
    std::vector<const char*> values;
    std::vector<int> lengths;
    values.reserve(params.size());
    for (const auto& p : params) {
      values.push_back(p.c_str());
      lengths.push_back(static_cast<int>(p.size()));
    }
    PGresult* r = PQexecPrepared(c_, it->second.c_str(), static_cast<int>(params.size()),
                                 values.data(), lengths.data(), nullptr, 0);
    const auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      Status e = pg_error(c_, r, "query");
      PQclear(r);
      return e;
    }
    return PgRows(r);
  }

  bool broken() const { return PQstatus(c_) != CONNECTION_OK; }
  int socket() const { return PQsocket(c_); }
  // Reads what the server sent; true if a notification came (all are consumed).
  bool take_notifications() {
    if (PQconsumeInput(c_) == 0) return false;
    bool any = false;
    while (PGnotify* n = PQnotifies(c_)) {
      any = true;
      PQfreemem(n);
    }
    return any;
  }
  // Idle in a clean state (no transaction left open).
  bool idle() const { return PQtransactionStatus(c_) == PQTRANS_IDLE; }

 private:
  explicit PostgresConnection(PGconn* c) : c_(c) {}
  PGconn* c_;
  std::map<std::string, std::string, std::less<>> prepared_;  // SQL -> statement name
};

namespace {

using namespace sql;  // NOLINT(google-build-using-namespace): the shared SQL rows

// "INSERT ... ON CONFLICT (key) DO UPDATE SET every column": put_* replaces the whole record.
std::string upsert(const char* table, const char* cols, const char* key) {
  std::string marks, sets;
  std::string list = cols;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t comma = list.find(',', start);
    std::string col =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!col.empty() && col.front() == ' ') col.erase(0, 1);
    marks += marks.empty() ? "?" : ",?";
    if (!sets.empty()) sets += ", ";
    sets += col + "=EXCLUDED." + col;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return std::string("INSERT INTO ") + table + " (" + cols + ") VALUES (" + marks +
         ") ON CONFLICT (" + key + ") DO UPDATE SET " + sets;
}

}  // namespace

class PostgresTransaction final : public Transaction {
 public:
  PostgresTransaction(PostgresStore& store, std::unique_ptr<PostgresConnection> conn,
                      std::unique_lock<std::mutex> writer_lock)
      : store_(store), conn_(std::move(conn)), writer_lock_(std::move(writer_lock)) {}

  ~PostgresTransaction() override {
    if (open_) (void)conn_->exec("ROLLBACK");
    store_.release(std::move(conn_));
  }

  Status begin() {
    if (writer_lock_.owns_lock()) {
      // One writer in the cluster: the lock is released by COMMIT or ROLLBACK.
      FK_RETURN_IF_ERROR(conn_->exec("BEGIN ISOLATION LEVEL READ COMMITTED"));
      open_ = true;
      return conn_->exec(kWriterLock);
    }
    FK_RETURN_IF_ERROR(conn_->exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    open_ = true;
    return Status::ok();
  }

  // --- things ---
  Maybe<ThingRecord> get_thing(std::string_view name) override {
    return get_one<ThingRecord>(std::string("SELECT ") + kThingCols + " FROM things WHERE name=?",
                                thing_row, name);
  }
  Status put_thing(const ThingRecord& t) override {
    static const std::string sql = upsert("things", kThingCols, "name");
    return write(sql, t.name, t.thing_id, t.type_name, attributes_to_json(t.attributes), t.version,
                 t.created_at);
  }
  Status delete_thing(std::string_view name) override {
    return write("DELETE FROM things WHERE name=?", name);
  }
  List<ThingRecord> list_things(const ThingQuery& q) override {
    std::string sql = std::string("SELECT ") + kThingCols + " FROM things WHERE name > ?";
    std::vector<std::string> params{q.page.after};
    if (!q.type_name.empty()) {
      sql += " AND type_name = ?";
      params.push_back(q.type_name);
    }
    if (!q.name_prefix.empty()) {
      sql += " AND substr(name, 1, ?::int) = ?";
      params.push_back(std::to_string(q.name_prefix.size()));
      params.push_back(q.name_prefix);
    }
    if (!q.attribute_name.empty()) {
      params.push_back(q.attribute_name);
      if (q.attribute_value_prefix) {
        sql += " AND substr(attributes::jsonb ->> ?, 1, ?::int) = ?";
        params.push_back(std::to_string(q.attribute_value.size()));
      } else {
        sql += " AND (attributes::jsonb ->> ?) = ?";
      }
      params.push_back(q.attribute_value);
    }
    sql += " ORDER BY name" + limit_clause(q.page);
    return collect<ThingRecord>(sql, params, thing_row);
  }

  // --- thing types ---
  Maybe<ThingTypeRecord> get_thing_type(std::string_view name) override {
    return get_one<ThingTypeRecord>(
        std::string("SELECT ") + kTypeCols + " FROM thing_types WHERE name=?", type_row, name);
  }
  Status put_thing_type(const ThingTypeRecord& t) override {
    static const std::string sql = upsert("thing_types", kTypeCols, "name");
    return write(sql, t.name, t.thing_type_id, t.description,
                 strings_to_json(t.searchable_attributes), t.deprecated, t.deprecated_at,
                 t.created_at);
  }
  Status delete_thing_type(std::string_view name) override {
    return write("DELETE FROM thing_types WHERE name=?", name);
  }
  List<ThingTypeRecord> list_thing_types(const Page& p) override {
    return list_page<ThingTypeRecord>(
        std::string("SELECT ") + kTypeCols + " FROM thing_types WHERE name > ? ORDER BY name", p,
        type_row);
  }

  // --- thing groups ---
  Maybe<ThingGroupRecord> get_thing_group(std::string_view name) override {
    return get_one<ThingGroupRecord>(
        std::string("SELECT ") + kGroupCols + " FROM thing_groups WHERE name=?", group_row, name);
  }
  Status put_thing_group(const ThingGroupRecord& g) override {
    static const std::string sql = upsert("thing_groups", kGroupCols, "name");
    return write(sql, g.name, g.group_id, g.parent_name, g.description,
                 attributes_to_json(g.attributes), g.version, g.created_at);
  }
  Status delete_thing_group(std::string_view name) override {
    return write("DELETE FROM thing_groups WHERE name=?", name);
  }
  List<ThingGroupRecord> list_thing_groups(const Page& p) override {
    return list_page<ThingGroupRecord>(
        std::string("SELECT ") + kGroupCols + " FROM thing_groups WHERE name > ? ORDER BY name", p,
        group_row);
  }

  Status add_group_member(std::string_view g, std::string_view t) override {
    return write("INSERT INTO group_members VALUES (?,?) ON CONFLICT DO NOTHING", g, t);
  }
  Status remove_group_member(std::string_view g, std::string_view t) override {
    return write("DELETE FROM group_members WHERE group_name=? AND thing_name=?", g, t);
  }
  Names list_group_members(std::string_view g, const Page& p) override {
    return names(
        "SELECT thing_name FROM group_members WHERE group_name=? AND thing_name > ? "
        "ORDER BY thing_name",
        g, p);
  }
  Names list_groups_of_thing(std::string_view t, const Page& p) override {
    return names(
        "SELECT group_name FROM group_members WHERE thing_name=? AND group_name > ? "
        "ORDER BY group_name",
        t, p);
  }

  // --- certificates ---
  Maybe<CertificateRecord> get_certificate(std::string_view id) override {
    return get_one<CertificateRecord>(
        std::string("SELECT ") + kCertCols + " FROM certificates WHERE certificate_id=?", cert_row,
        id);
  }
  Status put_certificate(const CertificateRecord& c) override {
    static const std::string sql = upsert("certificates", kCertCols, "certificate_id");
    return write(sql, c.certificate_id, c.pem, std::string(to_string(c.status)),
                 c.ca_certificate_id, c.certificate_mode, c.subject, c.issuer, c.serial_hex,
                 c.not_before, c.not_after, c.created_at, c.updated_at, c.customer_version,
                 c.generation_id);
  }
  Status delete_certificate(std::string_view id) override {
    return write("DELETE FROM certificates WHERE certificate_id=?", id);
  }
  List<CertificateRecord> list_certificates(const CertificateQuery& q) override {
    std::string sql = std::string("SELECT ") + kCertCols + " FROM certificates WHERE true";
    std::vector<std::string> params;
    if (q.ca_certificate_id) {
      sql += " AND ca_certificate_id = ?";
      params.push_back(*q.ca_certificate_id);
    }
    if (q.serial_hex) {
      sql += " AND serial_hex = ?";
      params.push_back(*q.serial_hex);
    }
    if (q.status) {
      sql += " AND status = ?";
      params.push_back(std::string(to_string(*q.status)));
    }
    if (!q.page.after.empty()) {
      auto colon = q.page.after.find(':');
      if (colon == std::string::npos) return invalid_request("bad certificate page key");
      params.push_back(
          std::to_string(std::strtoll(q.page.after.substr(0, colon).c_str(), nullptr, 10)));
      params.push_back(q.page.after.substr(colon + 1));
      sql += q.ascending ? " AND (created_at, certificate_id) > (?::bigint, ?)"
                         : " AND (created_at, certificate_id) < (?::bigint, ?)";
    }
    sql += q.ascending ? " ORDER BY created_at, certificate_id"
                       : " ORDER BY created_at DESC, certificate_id DESC";
    sql += limit_clause(q.page);
    return collect<CertificateRecord>(sql, params, cert_row);
  }

  Maybe<CaCertificateRecord> get_ca_certificate(std::string_view id) override {
    return get_one<CaCertificateRecord>(
        std::string("SELECT ") + kCaCols + " FROM ca_certificates WHERE certificate_id=?", ca_row,
        id);
  }
  Status put_ca_certificate(const CaCertificateRecord& c) override {
    static const std::string sql = upsert("ca_certificates", kCaCols, "certificate_id");
    return write(sql, c.certificate_id, c.pem, std::string(to_string(c.status)),
                 c.auto_registration, c.certificate_mode, c.subject, c.not_before, c.not_after,
                 c.created_at, c.updated_at, c.customer_version, c.generation_id,
                 c.registration_config);
  }
  Status delete_ca_certificate(std::string_view id) override {
    return write("DELETE FROM ca_certificates WHERE certificate_id=?", id);
  }
  List<CaCertificateRecord> list_ca_certificates(const Page& p) override {
    return list_page<CaCertificateRecord>(std::string("SELECT ") + kCaCols +
                                              " FROM ca_certificates WHERE certificate_id > ? "
                                              "ORDER BY certificate_id",
                                          p, ca_row);
  }

  // --- policies ---
  Maybe<PolicyRecord> get_policy(std::string_view name) override {
    return get_one<PolicyRecord>(
        std::string("SELECT ") + kPolicyCols + " FROM policies WHERE name=?", policy_row, name);
  }
  Status put_policy(const PolicyRecord& p) override {
    static const std::string sql = upsert("policies", kPolicyCols, "name");
    return write(sql, p.name, p.default_version_id, p.next_version_id, p.created_at, p.updated_at,
                 p.generation_id);
  }
  Status delete_policy(std::string_view name) override {
    FK_RETURN_IF_ERROR(write("DELETE FROM policy_versions WHERE policy_name=?", name));
    return write("DELETE FROM policies WHERE name=?", name);
  }
  List<PolicyRecord> list_policies(const Page& p) override {
    return list_page<PolicyRecord>(
        std::string("SELECT ") + kPolicyCols + " FROM policies WHERE name > ? ORDER BY name", p,
        policy_row);
  }
  Maybe<PolicyVersionRecord> get_policy_version(std::string_view name, std::int64_t id) override {
    return get_one<PolicyVersionRecord>(
        "SELECT policy_name, version_id, document, created_at FROM policy_versions "
        "WHERE policy_name=? AND version_id=?::bigint",
        policy_version_row, name, id);
  }
  Status put_policy_version(const PolicyVersionRecord& v) override {
    static const std::string sql =
        upsert("policy_versions", "policy_name, version_id, document, created_at",
               "policy_name, "
               "version_id");
    return write(sql, v.policy_name, v.version_id, v.document, v.created_at);
  }
  Status delete_policy_version(std::string_view name, std::int64_t id) override {
    return write("DELETE FROM policy_versions WHERE policy_name=? AND version_id=?::bigint", name,
                 id);
  }
  List<PolicyVersionRecord> list_policy_versions(std::string_view name) override {
    return collect<PolicyVersionRecord>(
        "SELECT policy_name, version_id, document, created_at FROM policy_versions "
        "WHERE policy_name=? ORDER BY version_id",
        {std::string(name)}, policy_version_row);
  }

  Status attach_policy(std::string_view p, std::string_view t) override {
    return write("INSERT INTO policy_targets VALUES (?,?) ON CONFLICT DO NOTHING", p, t);
  }
  Status detach_policy(std::string_view p, std::string_view t) override {
    return write("DELETE FROM policy_targets WHERE policy_name=? AND target=?", p, t);
  }
  Names list_policy_targets(std::string_view p, const Page& pg) override {
    return names(
        "SELECT target FROM policy_targets WHERE policy_name=? AND target > ? ORDER BY target", p,
        pg);
  }
  Names list_target_policies(std::string_view t, const Page& pg) override {
    return names(
        "SELECT policy_name FROM policy_targets WHERE target=? AND policy_name > ? "
        "ORDER BY policy_name",
        t, pg);
  }

  Status attach_thing_principal(std::string_view t, std::string_view p) override {
    return write("INSERT INTO thing_principals VALUES (?,?) ON CONFLICT DO NOTHING", t, p);
  }
  Status detach_thing_principal(std::string_view t, std::string_view p) override {
    return write("DELETE FROM thing_principals WHERE thing_name=? AND principal=?", t, p);
  }
  Names list_thing_principals(std::string_view t, const Page& pg) override {
    return names(
        "SELECT principal FROM thing_principals WHERE thing_name=? AND principal > ? "
        "ORDER BY principal",
        t, pg);
  }
  Names list_principal_things(std::string_view p, const Page& pg) override {
    return names(
        "SELECT thing_name FROM thing_principals WHERE principal=? AND thing_name > ? "
        "ORDER BY thing_name",
        p, pg);
  }

  // --- templates ---
  Maybe<TemplateRecord> get_template(std::string_view name) override {
    return get_one<TemplateRecord>(
        std::string("SELECT ") + kTemplateCols + " FROM templates WHERE name=?", template_row,
        name);
  }
  Status put_template(const TemplateRecord& t) override {
    static const std::string sql = upsert("templates", kTemplateCols, "name");
    return write(sql, t.name, t.template_id, t.description, t.type, t.enabled,
                 t.provisioning_role_arn, t.pre_provisioning_hook, t.default_version_id,
                 t.next_version_id, t.created_at, t.updated_at);
  }
  Status delete_template(std::string_view name) override {
    FK_RETURN_IF_ERROR(write("DELETE FROM template_versions WHERE template_name=?", name));
    return write("DELETE FROM templates WHERE name=?", name);
  }
  List<TemplateRecord> list_templates(const Page& p) override {
    return list_page<TemplateRecord>(
        std::string("SELECT ") + kTemplateCols + " FROM templates WHERE name > ? ORDER BY name", p,
        template_row);
  }
  Maybe<TemplateVersionRecord> get_template_version(std::string_view name,
                                                    std::int64_t id) override {
    return get_one<TemplateVersionRecord>(
        "SELECT template_name, version_id, body, created_at FROM template_versions "
        "WHERE template_name=? AND version_id=?::bigint",
        template_version_row, name, id);
  }
  Status put_template_version(const TemplateVersionRecord& v) override {
    static const std::string sql =
        upsert("template_versions", "template_name, version_id, body, created_at",
               "template_name, version_id");
    return write(sql, v.template_name, v.version_id, v.body, v.created_at);
  }
  Status delete_template_version(std::string_view name, std::int64_t id) override {
    return write("DELETE FROM template_versions WHERE template_name=? AND version_id=?::bigint",
                 name, id);
  }
  List<TemplateVersionRecord> list_template_versions(std::string_view name) override {
    return collect<TemplateVersionRecord>(
        "SELECT template_name, version_id, body, created_at FROM template_versions "
        "WHERE template_name=? ORDER BY version_id",
        {std::string(name)}, template_version_row);
  }

  Maybe<std::string> get_setting(std::string_view key) override {
    return get_one<std::string>(
        "SELECT value FROM settings WHERE key=?", [](const Row& r) { return r.text(0); }, key);
  }
  Status put_setting(std::string_view key, std::string_view value) override {
    return write(
        "INSERT INTO settings VALUES (?,?) ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value",
        key, value);
  }
  Status delete_setting(std::string_view key) override {
    return write("DELETE FROM settings WHERE key=?", key);
  }
  Status append_audit(const AuditRecord& r) override {
    return write(kAuditInsert, r.at_ms, r.access_key, r.source, r.operation, r.resource, r.request,
                 static_cast<std::int64_t>(r.status), r.error_code);
  }
  List<AuditRecord> list_audit(const AuditQuery& q) override {
    std::string sql = std::string("SELECT ") + kAuditCols +
                      " FROM audit WHERE sequence > ?::bigint AND at_ms >= ?::bigint AND "
                      "at_ms < ?::bigint";
    std::vector<std::string> params = {std::to_string(q.after_sequence), std::to_string(q.from_ms),
                                       std::to_string(q.to_ms)};
    if (q.access_key) {
      sql += " AND access_key = ?";
      params.push_back(*q.access_key);
    }
    if (q.resource) {
      sql += " AND resource = ?";
      params.push_back(*q.resource);
    }
    sql += " ORDER BY sequence";
    if (q.limit != 0) sql += " LIMIT " + std::to_string(q.limit);
    return collect<AuditRecord>(sql, params, audit_row);
  }
  Status append_timeline(const std::vector<DeviceEvent>& events) override {
    if (events.empty()) return Status::ok();
    // One INSERT of many rows: one round trip for a batch.
    std::string sql =
        "INSERT INTO timeline (at_ms, thing, certificate_id, client_id, source, event, reason, "
        "detail, actor) VALUES ";
    std::vector<std::string> params;
    params.reserve(events.size() * 9);
    for (std::size_t i = 0; i < events.size(); ++i) {
      const DeviceEvent& e = events[i];
      sql += i == 0 ? "(?::bigint,?,?,?,?,?,?,?,?)" : ",(?::bigint,?,?,?,?,?,?,?,?)";
      for (const std::string& v : {std::to_string(e.at_ms), e.thing, e.certificate_id, e.client_id,
                                   e.source, e.event, e.reason, e.detail, e.actor})
        params.push_back(v);
    }
    FK_RETURN_IF_ERROR(writable());
    FK_ASSIGN_OR_RETURN(auto rows, conn_->query(sql, params));
    (void)rows;
    return Status::ok();
  }
  List<DeviceEvent> list_timeline(const TimelineQuery& q) override {
    return collect<DeviceEvent>(timeline_select(q, true), timeline_params(q), timeline_row);
  }
  List<TimelineCount> count_timeline(std::int64_t since_ms) override {
    std::string sql = kTimelineCount;
    sql.replace(sql.find('?'), 1, "?::bigint");
    return collect<TimelineCount>(sql, {std::to_string(since_ms)}, timeline_count_row);
  }
  Result<std::int64_t> prune_timeline(std::int64_t before_ms, std::int64_t keep_last) override {
    FK_RETURN_IF_ERROR(writable());
    FK_ASSIGN_OR_RETURN(
        auto rows,
        conn_->query(
            "WITH gone AS (DELETE FROM timeline WHERE at_ms < ?::bigint OR sequence <= "
            "(SELECT max(sequence) FROM timeline) - ?::bigint RETURNING 1) "
            "SELECT count(*) FROM gone",
            {std::to_string(before_ms), std::to_string(std::max<std::int64_t>(keep_last, 0))}));
    return rows.size() > 0 ? rows.int64(0, 0) : 0;
  }
  List<std::pair<std::string, std::string>> list_settings(std::string_view prefix,
                                                          const Page& p) override {
    const std::string from = std::max(std::string(prefix), p.after);
    return collect<std::pair<std::string, std::string>>(
        "SELECT key, value FROM settings WHERE key >= ? AND key > ? AND substr(key, 1, ?::int) = "
        "? ORDER BY key" +
            limit_clause(p),
        {from, p.after, std::to_string(prefix.size()), std::string(prefix)}, [](const Row& r) {
          return std::pair{r.text(0), r.text(1)};
        });
  }

  Status append_outbox(std::string_view payload) override {
    FK_RETURN_IF_ERROR(
        write("INSERT INTO outbox (node, payload, created_at) VALUES (?, ?, "
              "extract(epoch from now())::bigint)",
              store_.options().node_id, payload));
    // Delivered at COMMIT, and only if it commits: the other nodes' doorbell.
    return write("SELECT pg_notify(?, '')", outbox_channel(store_.options().schema));
  }

  Status savepoint() override {
    FK_RETURN_IF_ERROR(writable());
    ++depth_;
    return conn_->exec("SAVEPOINT sp" + std::to_string(depth_));
  }
  Status release_savepoint() override {
    if (depth_ == 0) return internal_error("no savepoint to release");
    return conn_->exec("RELEASE SAVEPOINT sp" + std::to_string(depth_--));
  }
  Status rollback_to_savepoint() override {
    if (depth_ == 0) return internal_error("no savepoint to roll back to");
    std::string name = "sp" + std::to_string(depth_--);
    FK_RETURN_IF_ERROR(conn_->exec("ROLLBACK TO SAVEPOINT " + name));
    return conn_->exec("RELEASE SAVEPOINT " + name);
  }

  Status commit() override {
    if (!open_) return internal_error("transaction already finished");
    Status st = conn_->exec("COMMIT");
    open_ = false;  // committed, or ended by the failure (PostgreSQL rolls back a failed COMMIT)
    if (writer_lock_.owns_lock()) writer_lock_.unlock();
    if (!st.is_ok() && conn_->broken())
      return Status{ErrorCode::kUnavailable,
                    "postgres: the connection was lost during COMMIT; the change may or may not "
                    "have been committed: " +
                        st.message()};
    return st;
  }

 private:
  Status writable() const {
    if (!writer_lock_.owns_lock() || !open_)
      return internal_error("write in a read-only or finished transaction");
    return Status::ok();
  }

  static std::string arg(std::string_view v) { return std::string(v); }
  static std::string arg(const std::string& v) { return v; }
  static std::string arg(std::int64_t v) { return std::to_string(v); }
  static std::string arg(bool v) { return v ? "1" : "0"; }

  template <typename... Args>
  Status write(const std::string& sql, const Args&... args) {
    FK_RETURN_IF_ERROR(writable());
    FK_ASSIGN_OR_RETURN(auto rows, conn_->query(sql, {arg(args)...}));
    (void)rows;
    return Status::ok();
  }

  template <typename T, typename Decode, typename... Args>
  Maybe<T> get_one(const std::string& sql, Decode decode, const Args&... args) {
    FK_ASSIGN_OR_RETURN(auto rows, conn_->query(sql, {arg(args)...}));
    if (rows.size() == 0) return std::optional<T>();
    return std::optional<T>(decode(Row{rows, 0}));
  }

  template <typename T, typename Decode>
  List<T> collect(const std::string& sql, const std::vector<std::string>& params, Decode decode) {
    FK_ASSIGN_OR_RETURN(auto rows, conn_->query(sql, params));
    std::vector<T> out;
    out.reserve(static_cast<std::size_t>(rows.size()));
    for (int i = 0; i < rows.size(); ++i) out.push_back(decode(Row{rows, i}));
    return out;
  }

  template <typename T, typename Decode>
  List<T> list_page(const std::string& sql, const Page& p, Decode decode) {
    return collect<T>(sql + limit_clause(p), {p.after}, decode);
  }

  Names names(const std::string& sql, std::string_view key, const Page& p) {
    return collect<std::string>(sql + limit_clause(p), {std::string(key), p.after},
                                [](const Row& r) { return r.text(0); });
  }

  PostgresStore& store_;
  std::unique_ptr<PostgresConnection> conn_;
  std::unique_lock<std::mutex> writer_lock_;
  bool open_ = false;
  int depth_ = 0;
};

PostgresStore::PostgresStore(PostgresOptions options) : options_(std::move(options)) {}

PostgresStore::~PostgresStore() = default;

int PostgresStore::schema_version() {
  return static_cast<int>(postgres_schema::kMigrations.size());
}

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(PostgresOptions options) {
  std::unique_ptr<PostgresStore> store(new PostgresStore(options));
  PostgresOptions bootstrap = options;
  bootstrap.schema.clear();  // the schema may not exist yet
  FK_ASSIGN_OR_RETURN(auto conn, PostgresConnection::open(bootstrap));
  // Nodes starting together migrate once: the others wait here, then find it done.
  FK_RETURN_IF_ERROR(conn->exec(kMigrationLock));
  auto migrate = [&]() -> Status {
    if (!options.schema.empty()) {
      FK_RETURN_IF_ERROR(
          conn->exec("CREATE SCHEMA IF NOT EXISTS " + quote_identifier(options.schema)));
      FK_RETURN_IF_ERROR(conn->exec("SET search_path TO " + quote_identifier(options.schema)));
    }
    FK_RETURN_IF_ERROR(conn->exec("BEGIN"));
    FK_RETURN_IF_ERROR(
        conn->exec("CREATE TABLE IF NOT EXISTS fleetkey_schema (version BIGINT NOT NULL)"));
    FK_ASSIGN_OR_RETURN(auto rows, conn->query("SELECT max(version) FROM fleetkey_schema", {}));
    const int version = rows.size() > 0 ? static_cast<int>(rows.int64(0, 0)) : 0;
    if (version > schema_version())
      return internal_error("postgres: the registry has schema version " + std::to_string(version) +
                            ", newer than this fleetkeyd's " + std::to_string(schema_version()) +
                            ": upgrade fleetkeyd");
    for (int i = version; i < schema_version(); ++i) {
      FK_RETURN_IF_ERROR(conn->exec(postgres_schema::kMigrations[static_cast<std::size_t>(i)]));
      FK_RETURN_IF_ERROR(
          conn->exec("INSERT INTO fleetkey_schema VALUES (" + std::to_string(i + 1) + ")"));
      log::info("storage.migrated",
                {{"backend", "postgres"}, {"to_version", std::to_string(i + 1)}});
    }
    return conn->exec("COMMIT");
  };
  Status st = migrate();
  if (!st.is_ok()) (void)conn->exec("ROLLBACK");
  (void)conn->exec(kMigrationUnlock);
  FK_RETURN_IF_ERROR(st);
  return store;
}

Result<std::unique_ptr<PostgresConnection>> PostgresStore::acquire() {
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    while (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (!conn->broken()) return conn;
    }
  }
  return PostgresConnection::open(options_);
}

void PostgresStore::release(std::unique_ptr<PostgresConnection> conn) {
  if (!conn || conn->broken() || !conn->idle()) return;  // a broken one is dropped
  std::lock_guard<std::mutex> lock(pool_mutex_);
  if (idle_.size() < options_.max_idle_connections) idle_.push_back(std::move(conn));
}

Result<std::unique_ptr<Transaction>> PostgresStore::begin(bool write) {
  // A pooled connection may have died with the server (a restart): its BEGIN fails, it is
  // dropped, and the next attempt connects anew. Nothing ran in the failed attempt.
  Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_lock<std::mutex> lock;
    if (write) lock = std::unique_lock<std::mutex>(writer_mutex_);
    FK_ASSIGN_OR_RETURN(auto conn, acquire());
    auto txn = std::make_unique<PostgresTransaction>(*this, std::move(conn), std::move(lock));
    last = txn->begin();
    if (last.is_ok()) return std::unique_ptr<Transaction>(std::move(txn));
    if (last.code() != ErrorCode::kUnavailable) break;
  }
  return last;
}

Result<std::unique_ptr<Transaction>> PostgresStore::begin_write() {
  return begin(/*write=*/true);
}

Result<std::unique_ptr<Transaction>> PostgresStore::begin_read() {
  return begin(/*write=*/false);
}

Status PostgresStore::join(const Node& n, int stale_seconds) {
  FK_ASSIGN_OR_RETURN(auto conn, acquire());
  // One statement: the row is ours if it is new, already ours, or stale.
  auto rows = conn->query(
      "INSERT INTO nodes VALUES (?, ?, ?, ?::bigint, 0, extract(epoch from now())::bigint, "
      "extract(epoch from now())::bigint) ON CONFLICT (node_id) DO UPDATE SET "
      "instance = EXCLUDED.instance, api_url = EXCLUDED.api_url, mqtt_port = EXCLUDED.mqtt_port, "
      "connections = 0, started_at = EXCLUDED.started_at, seen_at = EXCLUDED.seen_at "
      "WHERE nodes.instance = EXCLUDED.instance OR "
      "nodes.seen_at < extract(epoch from now())::bigint - ?::bigint RETURNING node_id",
      {n.node_id, n.instance, n.api_url, std::to_string(n.mqtt_port),
       std::to_string(stale_seconds)});
  release(std::move(conn));
  if (!rows.is_ok()) return rows.status();
  if (rows->size() == 0)
    return already_exists("node id " + n.node_id +
                          " is in use by another running node (seen within the last " +
                          std::to_string(stale_seconds) + " s): give each node its own node_id");
  return Status::ok();
}

Status PostgresStore::heartbeat(const std::string& node_id, const std::string& instance,
                                std::int64_t connections) {
  FK_ASSIGN_OR_RETURN(auto conn, acquire());
  auto rows = conn->query(
      "UPDATE nodes SET connections = ?::bigint, seen_at = extract(epoch from now())::bigint "
      "WHERE node_id = ? AND instance = ?",
      {std::to_string(connections), node_id, instance});
  release(std::move(conn));
  return rows.status();
}

Result<std::vector<PostgresStore::Node>> PostgresStore::nodes(int within_seconds) {
  FK_ASSIGN_OR_RETURN(auto conn, acquire());
  auto rows = conn->query(
      "SELECT node_id, instance, api_url, mqtt_port, connections, started_at, seen_at FROM nodes "
      "WHERE seen_at >= extract(epoch from now())::bigint - ?::bigint ORDER BY node_id",
      {std::to_string(within_seconds)});
  release(std::move(conn));
  if (!rows.is_ok()) return rows.status();
  std::vector<Node> out;
  for (int i = 0; i < rows->size(); ++i)
    out.push_back({rows->text(i, 0), rows->text(i, 1), rows->text(i, 2), rows->int64(i, 3),
                   rows->int64(i, 4), rows->int64(i, 5), rows->int64(i, 6)});
  return out;
}

Status PostgresStore::ping() {
  FK_ASSIGN_OR_RETURN(auto conn, acquire());
  Status st = conn->exec("SELECT 1");
  release(std::move(conn));
  return st;
}

struct PostgresEventFeed::State {
  PostgresOptions options;
  int poll_interval_ms;
  std::string channel;
  OnPayloads on_payloads;
  std::atomic<bool> stopping{false};
  std::atomic<bool> connected{false};
  std::atomic<std::int64_t> lost_at_ms{0};  // steady clock; 0 = connected
  std::thread thread;

  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void set_connected(bool up) {
    connected = up;
    if (up) {
      lost_at_ms = 0;
    } else if (lost_at_ms == 0) {
      lost_at_ms = now_ms();
    }
  }
  std::int64_t last_id = 0;

  Status connect(std::unique_ptr<PostgresConnection>& conn) {
    FK_ASSIGN_OR_RETURN(conn, PostgresConnection::open(options));
    return conn->exec("LISTEN " + quote_identifier(channel));
  }

  // Delivers the rows after last_id written by other nodes, in id (commit) order.
  Status read_new(PostgresConnection& conn) {
    for (;;) {
      FK_ASSIGN_OR_RETURN(auto rows,
                          conn.query("SELECT id, node, payload FROM outbox WHERE id > ?::bigint "
                                     "ORDER BY id LIMIT 1000",
                                     {std::to_string(last_id)}));
      std::vector<std::string> payloads;
      for (int i = 0; i < rows.size(); ++i) {
        last_id = rows.int64(i, 0);
        if (rows.text(i, 1) != options.node_id) payloads.push_back(rows.text(i, 2));
      }
      if (!payloads.empty()) on_payloads(payloads);
      if (rows.size() < 1000) return Status::ok();
    }
  }

  void run(std::unique_ptr<PostgresConnection> conn) {
    auto last_prune = std::chrono::steady_clock::now();
    while (!stopping) {
      if (!conn || conn->broken()) {
        set_connected(false);
        conn.reset();
        if (!connect(conn).is_ok()) {
          conn.reset();
          for (int i = 0; i < 10 && !stopping; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          continue;
        }
        log::info("storage.event_feed_reconnected", {{"after_id", std::to_string(last_id)}});
      }
      // What was committed while we were away (or since the last poll), then wait.
      if (!read_new(*conn).is_ok()) continue;
      set_connected(true);
      if (std::chrono::steady_clock::now() - last_prune > std::chrono::minutes(1)) {
        last_prune = std::chrono::steady_clock::now();
        (void)conn->exec(
            "DELETE FROM outbox WHERE created_at < extract(epoch from now())::bigint - 3600");
      }
      pollfd p{conn->socket(), POLLIN, 0};
      // Short waits, so that stop() is quick; a notification ends the wait at once.
      const int slices = std::max(1, poll_interval_ms / 100);
      for (int i = 0; i < slices && !stopping; ++i) {
        if (::poll(&p, 1, 100) > 0) {
          conn->take_notifications();
          break;
        }
      }
    }
    connected = false;
  }
};

PostgresEventFeed::PostgresEventFeed(PostgresOptions options, int poll_interval_ms)
    : state_(std::make_shared<State>()) {
  state_->options = std::move(options);
  state_->poll_interval_ms = poll_interval_ms;
  state_->channel = outbox_channel(state_->options.schema);
}

PostgresEventFeed::~PostgresEventFeed() {
  stop();
}

Status PostgresEventFeed::start(OnPayloads on_payloads) {
  state_->on_payloads = std::move(on_payloads);
  std::unique_ptr<PostgresConnection> conn;
  FK_RETURN_IF_ERROR(state_->connect(conn));
  // From now on: what committed before this node started is in the registry it reads.
  FK_ASSIGN_OR_RETURN(auto rows, conn->query("SELECT coalesce(max(id), 0) FROM outbox", {}));
  state_->last_id = rows.int64(0, 0);
  state_->connected = true;
  auto state = state_;
  state_->thread = std::thread([state, c = conn.release()]() mutable {
    state->run(std::unique_ptr<PostgresConnection>(c));
  });
  return Status::ok();
}

void PostgresEventFeed::stop() {
  state_->stopping = true;
  if (state_->thread.joinable()) state_->thread.join();
}

bool PostgresEventFeed::connected() const {
  return state_->connected;
}

std::chrono::milliseconds PostgresEventFeed::disconnected_for() const {
  const std::int64_t lost = state_->lost_at_ms;
  return std::chrono::milliseconds(lost == 0 ? 0 : State::now_ms() - lost);
}

}  // namespace fk::storage
