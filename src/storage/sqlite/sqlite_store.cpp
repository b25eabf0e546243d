#include "storage/sqlite/sqlite_store.h"

#include <sqlite3.h>

#include <cstdlib>
#include <unordered_map>

#include "base/log.h"
#include "storage/sql_rows.h"
#include "storage/sqlite/schema.h"

namespace fk::storage {

namespace {

Status sqlite_error(sqlite3* db, int rc, std::string_view what) {
  std::string msg =
      "sqlite: " + std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return {ErrorCode::kUnavailable, msg};
  if (primary == SQLITE_FULL) return internal_error(msg + " (disk full)");
  return internal_error(msg);
}

}  // namespace

// A prepared statement in use: binds, steps and reads columns; reset when it goes out of scope.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

  Stmt& bind(std::string_view v) {
    sqlite3_bind_text(s_, ++n_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(std::int64_t v) {
    sqlite3_bind_int64(s_, ++n_, v);
    return *this;
  }
  Stmt& bind(bool v) { return bind(static_cast<std::int64_t>(v ? 1 : 0)); }
  Stmt& bind(int v) { return bind(static_cast<std::int64_t>(v)); }

  // true: a row is ready; false: done. Errors come back through `status`.
  bool step(Status& status) {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) status = sqlite_error(db_, rc, "step");
    return false;
  }
  Status run() {
    Status st;
    while (step(st)) {
    }
    return st;
  }

  std::string text(int i) const {
    const unsigned char* p = sqlite3_column_text(s_, i);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(s_, i)))
             : std::string();
  }
  std::int64_t int64(int i) const { return sqlite3_column_int64(s_, i); }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_;
  int n_ = 0;
};

class SqliteConnection {
 public:
  static Result<std::unique_ptr<SqliteConnection>> open(const std::string& path,
                                                        const SqliteOptions& options) {
    sqlite3* db = nullptr;
    int rc =
        sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    std::unique_ptr<SqliteConnection> conn(new SqliteConnection(db));
    if (rc != SQLITE_OK) return sqlite_error(db, rc, "open " + path);
    sqlite3_busy_timeout(db, options.busy_timeout_ms);
    sqlite3_extended_result_codes(db, 1);
    FK_RETURN_IF_ERROR(conn->exec("PRAGMA journal_mode=WAL"));
    FK_RETURN_IF_ERROR(conn->exec(options.synchronous_full ? "PRAGMA synchronous=FULL"
                                                           : "PRAGMA synchronous=NORMAL"));
    FK_RETURN_IF_ERROR(conn->exec("PRAGMA foreign_keys=ON"));
    // A large page cache keeps a group commit's dirty pages in memory until the commit instead
    // of spilling them to the WAL mid-transaction; checkpoints run every ~16 MB of WAL rather
    // than every 4 MB, off most commits' path.
    FK_RETURN_IF_ERROR(conn->exec("PRAGMA cache_size=-65536"));
    FK_RETURN_IF_ERROR(conn->exec("PRAGMA wal_autocheckpoint=4000"));
    FK_RETURN_IF_ERROR(conn->exec("PRAGMA temp_store=MEMORY"));
    return conn;
  }

  ~SqliteConnection() {
    for (auto& [sql, s] : cache_) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  Status exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      Status st = sqlite_error(db_, rc, std::string("exec: ") + msg);
      return st;
    }
    return Status::ok();
  }

  Result<sqlite3_stmt*> prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return it->second;
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) return sqlite_error(db_, rc, "prepare");
    cache_.emplace(sql, s);
    return s;
  }

  sqlite3* db() const { return db_; }

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

namespace {

using namespace sql;  // NOLINT(google-build-using-namespace): the shared SQL rows

}  // namespace

class SqliteTransaction final : public Transaction {
 public:
  SqliteTransaction(SqliteStore& store, SqliteConnection& conn,
                    std::unique_lock<std::mutex> writer_lock,
                    std::unique_ptr<SqliteConnection> owned_reader)
      : store_(store),
        conn_(conn),
        writer_lock_(std::move(writer_lock)),
        reader_(std::move(owned_reader)) {}

  ~SqliteTransaction() override {
    if (open_) (void)conn_.exec("ROLLBACK");
    if (reader_) store_.release_reader(std::move(reader_));
  }

  Status begin() {
    FK_RETURN_IF_ERROR(conn_.exec(writer_lock_.owns_lock() ? "BEGIN IMMEDIATE" : "BEGIN"));
    open_ = true;
    return Status::ok();
  }

  // --- things ---
  Maybe<ThingRecord> get_thing(std::string_view name) override {
    return get_one<ThingRecord>(std::string("SELECT ") + kThingCols + " FROM things WHERE name=?",
                                thing_row, name);
  }
  Status put_thing(const ThingRecord& t) override {
    return write("INSERT OR REPLACE INTO things VALUES (?,?,?,?,?,?)", t.name, t.thing_id,
                 t.type_name, attributes_to_json(t.attributes), t.version, t.created_at);
  }
  Status delete_thing(std::string_view name) override {
    return write("DELETE FROM things WHERE name=?", name);
  }
  List<ThingRecord> list_things(const ThingQuery& q) override {
    std::string sql = std::string("SELECT ") + kThingCols + " FROM things WHERE name > ?";
    if (!q.type_name.empty()) sql += " AND type_name = ?";
    if (!q.name_prefix.empty()) sql += " AND substr(name, 1, ?) = ?";
    if (!q.attribute_name.empty()) {
      sql += q.attribute_value_prefix ? " AND substr(json_extract(attributes, ?), 1, ?) = ?"
                                      : " AND json_extract(attributes, ?) = ?";
    }
    sql += " ORDER BY name" + limit_clause(q.page);
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(sql));
    Stmt s(conn_.db(), raw);
    s.bind(q.page.after);
    if (!q.type_name.empty()) s.bind(q.type_name);
    if (!q.name_prefix.empty())
      s.bind(static_cast<std::int64_t>(q.name_prefix.size())).bind(q.name_prefix);
    if (!q.attribute_name.empty()) {
      s.bind("$.\"" + q.attribute_name + "\"");
      if (q.attribute_value_prefix) s.bind(static_cast<std::int64_t>(q.attribute_value.size()));
      s.bind(q.attribute_value);
    }
    return collect<ThingRecord>(s, thing_row);
  }

  // --- thing types ---
  Maybe<ThingTypeRecord> get_thing_type(std::string_view name) override {
    return get_one<ThingTypeRecord>(
        std::string("SELECT ") + kTypeCols + " FROM thing_types WHERE name=?", type_row, name);
  }
  Status put_thing_type(const ThingTypeRecord& t) override {
    return write("INSERT OR REPLACE INTO thing_types VALUES (?,?,?,?,?,?,?)", t.name,
                 t.thing_type_id, t.description, strings_to_json(t.searchable_attributes),
                 t.deprecated, t.deprecated_at, t.created_at);
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
    return write("INSERT OR REPLACE INTO thing_groups VALUES (?,?,?,?,?,?,?)", g.name, g.group_id,
                 g.parent_name, g.description, attributes_to_json(g.attributes), g.version,
                 g.created_at);
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
    return write("INSERT OR IGNORE INTO group_members VALUES (?,?)", g, t);
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
    return write("INSERT OR REPLACE INTO certificates VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 c.certificate_id, c.pem, to_string(c.status), c.ca_certificate_id,
                 c.certificate_mode, c.subject, c.issuer, c.serial_hex, c.not_before, c.not_after,
                 c.created_at, c.updated_at, c.customer_version, c.generation_id);
  }
  Status delete_certificate(std::string_view id) override {
    return write("DELETE FROM certificates WHERE certificate_id=?", id);
  }
  List<CertificateRecord> list_certificates(const CertificateQuery& q) override {
    std::string sql = std::string("SELECT ") + kCertCols + " FROM certificates WHERE 1";
    if (q.ca_certificate_id) sql += " AND ca_certificate_id = ?";
    if (q.serial_hex) sql += " AND serial_hex = ?";
    if (q.status) sql += " AND status = ?";
    std::int64_t after_time = 0;
    std::string after_id;
    if (!q.page.after.empty()) {
      auto colon = q.page.after.find(':');
      if (colon == std::string::npos) return invalid_request("bad certificate page key");
      after_time = std::strtoll(q.page.after.substr(0, colon).c_str(), nullptr, 10);
      after_id = q.page.after.substr(colon + 1);
      sql += q.ascending ? " AND (created_at, certificate_id) > (?, ?)"
                         : " AND (created_at, certificate_id) < (?, ?)";
    }
    sql += q.ascending ? " ORDER BY created_at, certificate_id"
                       : " ORDER BY created_at DESC, certificate_id DESC";
    sql += limit_clause(q.page);
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(sql));
    Stmt s(conn_.db(), raw);
    if (q.ca_certificate_id) s.bind(*q.ca_certificate_id);
    if (q.serial_hex) s.bind(*q.serial_hex);
    const std::string status = q.status ? std::string(to_string(*q.status)) : std::string();
    if (q.status) s.bind(status);
    if (!q.page.after.empty()) s.bind(after_time).bind(after_id);
    return collect<CertificateRecord>(s, cert_row);
  }

  Maybe<CaCertificateRecord> get_ca_certificate(std::string_view id) override {
    return get_one<CaCertificateRecord>(
        std::string("SELECT ") + kCaCols + " FROM ca_certificates WHERE certificate_id=?", ca_row,
        id);
  }
  Status put_ca_certificate(const CaCertificateRecord& c) override {
    return write("INSERT OR REPLACE INTO ca_certificates VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 c.certificate_id, c.pem, to_string(c.status), c.auto_registration,
                 c.certificate_mode, c.subject, c.not_before, c.not_after, c.created_at,
                 c.updated_at, c.customer_version, c.generation_id, c.registration_config);
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
    return write("INSERT OR REPLACE INTO policies VALUES (?,?,?,?,?,?)", p.name,
                 p.default_version_id, p.next_version_id, p.created_at, p.updated_at,
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
        "WHERE policy_name=? AND version_id=?",
        policy_version_row, name, id);
  }
  Status put_policy_version(const PolicyVersionRecord& v) override {
    return write("INSERT OR REPLACE INTO policy_versions VALUES (?,?,?,?)", v.policy_name,
                 v.version_id, v.document, v.created_at);
  }
  Status delete_policy_version(std::string_view name, std::int64_t id) override {
    return write("DELETE FROM policy_versions WHERE policy_name=? AND version_id=?", name, id);
  }
  List<PolicyVersionRecord> list_policy_versions(std::string_view name) override {
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw,
                        conn_.prepare("SELECT policy_name, version_id, document, created_at FROM "
                                      "policy_versions WHERE policy_name=? ORDER BY version_id"));
    Stmt s(conn_.db(), raw);
    s.bind(name);
    return collect<PolicyVersionRecord>(s, policy_version_row);
  }

  Status attach_policy(std::string_view p, std::string_view t) override {
    return write("INSERT OR IGNORE INTO policy_targets VALUES (?,?)", p, t);
  }
  Status detach_policy(std::string_view p, std::string_view t) override {
    return write("DELETE FROM policy_targets WHERE policy_name=? AND target=?", p, t);
  }
  Names list_policy_targets(std::string_view p, const Page& pg) override {
    return names(
        "SELECT target FROM policy_targets WHERE policy_name=? AND target > ? "
        "ORDER BY target",
        p, pg);
  }
  Names list_target_policies(std::string_view t, const Page& pg) override {
    return names(
        "SELECT policy_name FROM policy_targets WHERE target=? AND policy_name > ? "
        "ORDER BY policy_name",
        t, pg);
  }

  Status attach_thing_principal(std::string_view t, std::string_view p) override {
    return write("INSERT OR IGNORE INTO thing_principals VALUES (?,?)", t, p);
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
    return write("INSERT OR REPLACE INTO templates VALUES (?,?,?,?,?,?,?,?,?,?,?)", t.name,
                 t.template_id, t.description, t.type, t.enabled, t.provisioning_role_arn,
                 t.pre_provisioning_hook, t.default_version_id, t.next_version_id, t.created_at,
                 t.updated_at);
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
        "WHERE template_name=? AND version_id=?",
        template_version_row, name, id);
  }
  Status put_template_version(const TemplateVersionRecord& v) override {
    return write("INSERT OR REPLACE INTO template_versions VALUES (?,?,?,?)", v.template_name,
                 v.version_id, v.body, v.created_at);
  }
  Status delete_template_version(std::string_view name, std::int64_t id) override {
    return write("DELETE FROM template_versions WHERE template_name=? AND version_id=?", name, id);
  }
  List<TemplateVersionRecord> list_template_versions(std::string_view name) override {
    FK_ASSIGN_OR_RETURN(
        sqlite3_stmt * raw,
        conn_.prepare("SELECT template_name, version_id, body, created_at FROM "
                      "template_versions WHERE template_name=? ORDER BY version_id"));
    Stmt s(conn_.db(), raw);
    s.bind(name);
    return collect<TemplateVersionRecord>(s, template_version_row);
  }

  Maybe<std::string> get_setting(std::string_view key) override {
    return get_one<std::string>(
        "SELECT value FROM settings WHERE key=?", [](const Stmt& s) { return s.text(0); }, key);
  }
  Status put_setting(std::string_view key, std::string_view value) override {
    return write("INSERT OR REPLACE INTO settings VALUES (?,?)", key, value);
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
                      " FROM audit WHERE sequence > ? AND at_ms >= ? AND at_ms < ?";
    if (q.access_key) sql += " AND access_key = ?";
    if (q.resource) sql += " AND resource = ?";
    sql += " ORDER BY sequence";
    if (q.limit != 0) sql += " LIMIT " + std::to_string(q.limit);
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(sql));
    Stmt s(conn_.db(), raw);
    s.bind(q.after_sequence).bind(q.from_ms).bind(q.to_ms);
    if (q.access_key) s.bind(*q.access_key);
    if (q.resource) s.bind(*q.resource);
    return collect<AuditRecord>(s, audit_row);
  }
  Status append_timeline(const std::vector<DeviceEvent>& events) override {
    for (const DeviceEvent& e : events)
      FK_RETURN_IF_ERROR(write(kTimelineInsert, e.at_ms, e.thing, e.certificate_id, e.client_id,
                               e.source, e.event, e.reason, e.detail, e.actor));
    return Status::ok();
  }
  List<DeviceEvent> list_timeline(const TimelineQuery& q) override {
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(timeline_select(q, false)));
    Stmt s(conn_.db(), raw);
    for (const std::string& p : timeline_params(q)) s.bind(std::string_view(p));
    return collect<DeviceEvent>(s, timeline_row);
  }
  List<TimelineCount> count_timeline(std::int64_t since_ms) override {
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(kTimelineCount));
    Stmt s(conn_.db(), raw);
    s.bind(since_ms);
    return collect<TimelineCount>(s, timeline_count_row);
  }
  Result<std::int64_t> prune_timeline(std::int64_t before_ms, std::int64_t keep_last) override {
    FK_RETURN_IF_ERROR(write("DELETE FROM timeline WHERE at_ms < ?", before_ms));
    std::int64_t gone = sqlite3_changes(conn_.db());
    FK_RETURN_IF_ERROR(
        write("DELETE FROM timeline WHERE sequence <= (SELECT max(sequence) FROM timeline) - ?",
              std::max<std::int64_t>(keep_last, 0)));
    return gone + sqlite3_changes(conn_.db());
  }
  List<std::pair<std::string, std::string>> list_settings(std::string_view prefix,
                                                          const Page& p) override {
    // A range on the primary key: [max(prefix, after), prefix's successor).
    std::string from = std::max(std::string(prefix), p.after);
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw,
                        conn_.prepare("SELECT key, value FROM settings WHERE key >= ? AND key > ? "
                                      "AND substr(key, 1, ?) = ? ORDER BY key" +
                                      limit_clause(p)));
    Stmt s(conn_.db(), raw);
    s.bind(std::string_view(from))
        .bind(std::string_view(p.after))
        .bind(static_cast<std::int64_t>(prefix.size()))
        .bind(prefix);
    return collect<std::pair<std::string, std::string>>(s, [](const Stmt& r) {
      return std::pair{r.text(0), r.text(1)};
    });
  }

  Status savepoint() override {
    FK_RETURN_IF_ERROR(writable());
    ++depth_;
    return conn_.exec(("SAVEPOINT sp" + std::to_string(depth_)).c_str());
  }
  Status release_savepoint() override {
    if (depth_ == 0) return internal_error("no savepoint to release");
    std::string sql = "RELEASE sp" + std::to_string(depth_--);
    return conn_.exec(sql.c_str());
  }
  Status rollback_to_savepoint() override {
    if (depth_ == 0) return internal_error("no savepoint to roll back to");
    std::string name = "sp" + std::to_string(depth_--);
    FK_RETURN_IF_ERROR(conn_.exec(("ROLLBACK TO " + name).c_str()));
    return conn_.exec(("RELEASE " + name).c_str());
  }

  Status commit() override {
    if (!open_) return internal_error("transaction already finished");
    Status st = conn_.exec("COMMIT");
    if (!st.is_ok()) return st;  // the destructor rolls back
    open_ = false;
    if (writer_lock_.owns_lock()) writer_lock_.unlock();
    return st;
  }

 private:
  Status writable() const {
    if (!writer_lock_.owns_lock() || !open_)
      return internal_error("write in a read-only or finished transaction");
    return Status::ok();
  }

  template <typename... Args>
  Status write(const char* sql, const Args&... args) {
    FK_RETURN_IF_ERROR(writable());
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(sql));
    Stmt s(conn_.db(), raw);
    (bind_arg(s, args), ...);
    return s.run();
  }

  static void bind_arg(Stmt& s, std::string_view v) { s.bind(v); }
  static void bind_arg(Stmt& s, const std::string& v) { s.bind(std::string_view(v)); }
  static void bind_arg(Stmt& s, std::int64_t v) { s.bind(v); }
  static void bind_arg(Stmt& s, bool v) { s.bind(v); }

  template <typename T, typename Row, typename... Args>
  Maybe<T> get_one(const std::string& sql, Row row, const Args&... args) {
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(sql));
    Stmt s(conn_.db(), raw);
    (bind_arg(s, args), ...);
    Status st;
    if (s.step(st)) return std::optional<T>(row(s));
    if (!st.is_ok()) return st;
    return std::optional<T>();
  }

  template <typename T, typename Row>
  List<T> collect(Stmt& s, Row row) {
    std::vector<T> out;
    Status st;
    while (s.step(st)) out.push_back(row(s));
    if (!st.is_ok()) return st;
    return out;
  }

  template <typename T, typename Row>
  List<T> list_page(const std::string& sql, const Page& p, Row row) {
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(sql + limit_clause(p)));
    Stmt s(conn_.db(), raw);
    s.bind(p.after);
    return collect<T>(s, row);
  }

  Names names(const std::string& sql, std::string_view key, const Page& p) {
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn_.prepare(sql + limit_clause(p)));
    Stmt s(conn_.db(), raw);
    s.bind(key).bind(p.after);
    return collect<std::string>(s, [](const Stmt& r) { return r.text(0); });
  }

  SqliteStore& store_;
  SqliteConnection& conn_;
  std::unique_lock<std::mutex> writer_lock_;
  std::unique_ptr<SqliteConnection> reader_;
  bool open_ = false;
  int depth_ = 0;
};

SqliteStore::SqliteStore(std::string path, SqliteOptions options)
    : path_(std::move(path)), options_(options) {}

SqliteStore::~SqliteStore() = default;

int SqliteStore::schema_version() {
  return static_cast<int>(sqlite_schema::kMigrations.size());
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path,
                                                       SqliteOptions options) {
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, options));
  FK_ASSIGN_OR_RETURN(store->writer_, SqliteConnection::open(path, options));
  SqliteConnection& w = *store->writer_;
  FK_RETURN_IF_ERROR(w.exec("BEGIN IMMEDIATE"));
  int version = 0;
  {
    FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, w.prepare("PRAGMA user_version"));
    Stmt s(w.db(), raw);
    Status st;
    if (s.step(st)) version = static_cast<int>(s.int64(0));
    if (!st.is_ok()) {
      (void)w.exec("ROLLBACK");
      return st;
    }
  }
  if (version > schema_version()) {
    (void)w.exec("ROLLBACK");
    return internal_error(path + " has schema version " + std::to_string(version) +
                          ", newer than this fleetkey's " + std::to_string(schema_version()) +
                          ": upgrade fleetkey");
  }
  for (int i = version; i < schema_version(); ++i) {
    Status st = w.exec(sqlite_schema::kMigrations[static_cast<std::size_t>(i)]);
    if (!st.is_ok()) {
      (void)w.exec("ROLLBACK");
      return st;
    }
    log::info("storage.migrated", {{"path", path}, {"to_version", std::to_string(i + 1)}});
  }
  std::string set_version = "PRAGMA user_version=" + std::to_string(schema_version());
  FK_RETURN_IF_ERROR(w.exec(set_version.c_str()));
  FK_RETURN_IF_ERROR(w.exec("COMMIT"));
  return store;
}

Result<std::unique_ptr<Transaction>> SqliteStore::begin_write() {
  std::unique_lock<std::mutex> lock(writer_mutex_);
  auto txn = std::make_unique<SqliteTransaction>(*this, *writer_, std::move(lock), nullptr);
  FK_RETURN_IF_ERROR(txn->begin());
  return std::unique_ptr<Transaction>(std::move(txn));
}

Result<std::unique_ptr<Transaction>> SqliteStore::begin_read() {
  std::unique_ptr<SqliteConnection> conn;
  {
    std::lock_guard<std::mutex> lock(readers_mutex_);
    if (!idle_readers_.empty()) {
      conn = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    }
  }
  if (!conn) {
    FK_ASSIGN_OR_RETURN(conn, SqliteConnection::open(path_, options_));
    FK_RETURN_IF_ERROR(conn->exec("PRAGMA query_only=1"));
  }
  SqliteConnection& ref = *conn;
  auto txn = std::make_unique<SqliteTransaction>(*this, ref, std::unique_lock<std::mutex>(),
                                                 std::move(conn));
  FK_RETURN_IF_ERROR(txn->begin());
  return std::unique_ptr<Transaction>(std::move(txn));
}

Status SqliteStore::check_integrity() {
  FK_ASSIGN_OR_RETURN(auto conn, SqliteConnection::open(path_, options_));
  FK_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn->prepare("PRAGMA integrity_check"));
  Stmt s(conn->db(), raw);
  Status st;
  std::string report;
  while (s.step(st)) {
    if (!report.empty()) report += "; ";
    report += s.text(0);
  }
  FK_RETURN_IF_ERROR(st);
  if (report != "ok") return internal_error("sqlite integrity check of " + path_ + ": " + report);
  return Status::ok();
}

void SqliteStore::release_reader(std::unique_ptr<SqliteConnection> conn) {
  std::lock_guard<std::mutex> lock(readers_mutex_);
  if (idle_readers_.size() < 16) idle_readers_.push_back(std::move(conn));
}

}  // namespace fk::storage
