#include "storage/memory/memory_store.h"

#include <algorithm>
#include <deque>
#include <map>
#include <set>

namespace fk::storage {

using Pair = std::pair<std::string, std::string>;
using VersionKey = std::pair<std::string, std::int64_t>;

struct MemoryStore::State {
  std::map<std::string, ThingRecord, std::less<>> things;
  std::map<std::string, ThingTypeRecord, std::less<>> thing_types;
  std::map<std::string, ThingGroupRecord, std::less<>> groups;
  std::set<Pair> group_members;  // (group, thing)
  std::map<std::string, CertificateRecord, std::less<>> certificates;
  std::map<std::string, CaCertificateRecord, std::less<>> ca_certificates;
  std::map<std::string, PolicyRecord, std::less<>> policies;
  std::map<VersionKey, PolicyVersionRecord> policy_versions;
  std::set<Pair> policy_targets;    // (policy, target)
  std::set<Pair> thing_principals;  // (thing, principal)
  std::map<std::string, TemplateRecord, std::less<>> templates;
  std::map<VersionKey, TemplateVersionRecord> template_versions;
  std::map<std::string, std::string, std::less<>> settings;
  std::vector<AuditRecord> audit;
  std::deque<DeviceEvent> timeline;  // in sequence order
  std::int64_t timeline_sequence = 0;
};

namespace {

template <typename Map>
auto get_from(const Map& m, std::string_view key)
    -> Result<std::optional<typename Map::mapped_type>> {
  auto it = m.find(key);
  if (it == m.end()) return std::optional<typename Map::mapped_type>();
  return std::optional<typename Map::mapped_type>(it->second);
}

template <typename Map>
auto page_of(const Map& m, const Page& page) -> Result<std::vector<typename Map::mapped_type>> {
  std::vector<typename Map::mapped_type> out;
  for (auto it = m.upper_bound(page.after); it != m.end(); ++it) {
    if (page.limit != 0 && out.size() == page.limit) break;
    out.push_back(it->second);
  }
  return out;
}

// Second elements of the pairs whose first element is `first`, after page.after.
Result<std::vector<std::string>> seconds_of(const std::set<Pair>& s, std::string_view first,
                                            const Page& page) {
  std::vector<std::string> out;
  for (auto it = s.upper_bound(Pair(std::string(first), page.after));
       it != s.end() && it->first == first; ++it) {
    if (page.limit != 0 && out.size() == page.limit) break;
    out.push_back(it->second);
  }
  return out;
}

// First elements of the pairs whose second element is `second`, sorted, after page.after.
Result<std::vector<std::string>> firsts_of(const std::set<Pair>& s, std::string_view second,
                                           const Page& page) {
  std::vector<std::string> all;
  for (const auto& [a, b] : s) {
    if (b == second && a > page.after) all.push_back(a);
  }
  std::sort(all.begin(), all.end());
  if (page.limit != 0 && all.size() > page.limit) all.resize(page.limit);
  return all;
}

template <typename V>
Result<std::vector<V>> versions_of(const std::map<VersionKey, V>& m, std::string_view name) {
  std::vector<V> out;
  for (auto it = m.lower_bound(VersionKey(std::string(name), 0));
       it != m.end() && it->first.first == name; ++it) {
    out.push_back(it->second);
  }
  return out;
}

template <typename V>
void erase_versions(std::map<VersionKey, V>& m, std::string_view name) {
  auto it = m.lower_bound(VersionKey(std::string(name), 0));
  while (it != m.end() && it->first.first == name) it = m.erase(it);
}

bool thing_matches(const ThingRecord& t, const ThingQuery& q) {
  if (!q.type_name.empty() && t.type_name != q.type_name) return false;
  if (!q.name_prefix.empty() && t.name.compare(0, q.name_prefix.size(), q.name_prefix) != 0)
    return false;
  if (!q.attribute_name.empty()) {
    auto it = t.attributes.find(q.attribute_name);
    if (it == t.attributes.end()) return false;
    if (q.attribute_value_prefix) {
      if (it->second.compare(0, q.attribute_value.size(), q.attribute_value) != 0) return false;
    } else if (it->second != q.attribute_value) {
      return false;
    }
  }
  return true;
}

}  // namespace

class MemoryTransaction final : public Transaction {
 public:
  // Write transaction: holds the writer lock and edits a private copy.
  MemoryTransaction(MemoryStore& store, std::unique_lock<std::mutex> writer)
      : store_(store), writer_(std::move(writer)) {
    std::lock_guard<std::mutex> lock(store_.publish_);
    work_ = *store_.committed_;
  }
  // Read transaction: a snapshot of committed state.
  MemoryTransaction(MemoryStore& store, std::shared_ptr<const MemoryStore::State> snap)
      : store_(store), snap_(std::move(snap)) {}

  Maybe<ThingRecord> get_thing(std::string_view n) override { return get_from(view().things, n); }
  Status put_thing(const ThingRecord& t) override {
    FK_RETURN_IF_ERROR(writable());
    work_.things[t.name] = t;
    return Status::ok();
  }
  Status delete_thing(std::string_view n) override { return erase(work_.things, n); }
  List<ThingRecord> list_things(const ThingQuery& q) override {
    std::vector<ThingRecord> out;
    const auto& m = view().things;
    for (auto it = m.upper_bound(q.page.after); it != m.end(); ++it) {
      if (q.page.limit != 0 && out.size() == q.page.limit) break;
      if (thing_matches(it->second, q)) out.push_back(it->second);
    }
    return out;
  }

  Maybe<ThingTypeRecord> get_thing_type(std::string_view n) override {
    return get_from(view().thing_types, n);
  }
  Status put_thing_type(const ThingTypeRecord& t) override {
    FK_RETURN_IF_ERROR(writable());
    work_.thing_types[t.name] = t;
    return Status::ok();
  }
  Status delete_thing_type(std::string_view n) override { return erase(work_.thing_types, n); }
  List<ThingTypeRecord> list_thing_types(const Page& p) override {
    return page_of(view().thing_types, p);
  }

  Maybe<ThingGroupRecord> get_thing_group(std::string_view n) override {
    return get_from(view().groups, n);
  }
  Status put_thing_group(const ThingGroupRecord& g) override {
    FK_RETURN_IF_ERROR(writable());
    work_.groups[g.name] = g;
    return Status::ok();
  }
  Status delete_thing_group(std::string_view n) override { return erase(work_.groups, n); }
  List<ThingGroupRecord> list_thing_groups(const Page& p) override {
    return page_of(view().groups, p);
  }

  Status add_group_member(std::string_view g, std::string_view t) override {
    return insert_pair(work_.group_members, g, t);
  }
  Status remove_group_member(std::string_view g, std::string_view t) override {
    return erase_pair(work_.group_members, g, t);
  }
  Names list_group_members(std::string_view g, const Page& p) override {
    return seconds_of(view().group_members, g, p);
  }
  Names list_groups_of_thing(std::string_view t, const Page& p) override {
    return firsts_of(view().group_members, t, p);
  }

  Maybe<CertificateRecord> get_certificate(std::string_view id) override {
    return get_from(view().certificates, id);
  }
  Status put_certificate(const CertificateRecord& c) override {
    FK_RETURN_IF_ERROR(writable());
    work_.certificates[c.certificate_id] = c;
    return Status::ok();
  }
  Status delete_certificate(std::string_view id) override { return erase(work_.certificates, id); }
  List<CertificateRecord> list_certificates(const CertificateQuery& q) override {
    std::vector<CertificateRecord> all;
    for (const auto& [id, c] : view().certificates) {
      if (q.ca_certificate_id && c.ca_certificate_id != *q.ca_certificate_id) continue;
      if (q.serial_hex && c.serial_hex != *q.serial_hex) continue;
      if (q.status && c.status != *q.status) continue;
      std::string key = certificate_page_key(c);
      if (!q.page.after.empty() && (q.ascending ? key <= q.page.after : key >= q.page.after))
        continue;
      all.push_back(c);
    }
    std::sort(all.begin(), all.end(), [&](const auto& a, const auto& b) {
      return q.ascending ? certificate_page_key(a) < certificate_page_key(b)
                         : certificate_page_key(a) > certificate_page_key(b);
    });
    if (q.page.limit != 0 && all.size() > q.page.limit) all.resize(q.page.limit);
    return all;
  }

  Maybe<CaCertificateRecord> get_ca_certificate(std::string_view id) override {
    return get_from(view().ca_certificates, id);
  }
  Status put_ca_certificate(const CaCertificateRecord& c) override {
    FK_RETURN_IF_ERROR(writable());
    work_.ca_certificates[c.certificate_id] = c;
    return Status::ok();
  }
  Status delete_ca_certificate(std::string_view id) override {
    return erase(work_.ca_certificates, id);
  }
  List<CaCertificateRecord> list_ca_certificates(const Page& p) override {
    return page_of(view().ca_certificates, p);
  }

  Maybe<PolicyRecord> get_policy(std::string_view n) override {
    return get_from(view().policies, n);
  }
  Status put_policy(const PolicyRecord& p) override {
    FK_RETURN_IF_ERROR(writable());
    work_.policies[p.name] = p;
    return Status::ok();
  }
  Status delete_policy(std::string_view n) override {
    FK_RETURN_IF_ERROR(erase(work_.policies, n));
    erase_versions(work_.policy_versions, n);
    return Status::ok();
  }
  List<PolicyRecord> list_policies(const Page& p) override { return page_of(view().policies, p); }

  Maybe<PolicyVersionRecord> get_policy_version(std::string_view n, std::int64_t id) override {
    const auto& m = view().policy_versions;
    auto it = m.find(VersionKey(std::string(n), id));
    if (it == m.end()) return std::optional<PolicyVersionRecord>();
    return std::optional<PolicyVersionRecord>(it->second);
  }
  Status put_policy_version(const PolicyVersionRecord& v) override {
    FK_RETURN_IF_ERROR(writable());
    work_.policy_versions[VersionKey(v.policy_name, v.version_id)] = v;
    return Status::ok();
  }
  Status delete_policy_version(std::string_view n, std::int64_t id) override {
    FK_RETURN_IF_ERROR(writable());
    work_.policy_versions.erase(VersionKey(std::string(n), id));
    return Status::ok();
  }
  List<PolicyVersionRecord> list_policy_versions(std::string_view n) override {
    return versions_of(view().policy_versions, n);
  }

  Status attach_policy(std::string_view p, std::string_view t) override {
    return insert_pair(work_.policy_targets, p, t);
  }
  Status detach_policy(std::string_view p, std::string_view t) override {
    return erase_pair(work_.policy_targets, p, t);
  }
  Names list_policy_targets(std::string_view p, const Page& pg) override {
    return seconds_of(view().policy_targets, p, pg);
  }
  Names list_target_policies(std::string_view t, const Page& pg) override {
    return firsts_of(view().policy_targets, t, pg);
  }

  Status attach_thing_principal(std::string_view t, std::string_view p) override {
    return insert_pair(work_.thing_principals, t, p);
  }
  Status detach_thing_principal(std::string_view t, std::string_view p) override {
    return erase_pair(work_.thing_principals, t, p);
  }
  Names list_thing_principals(std::string_view t, const Page& pg) override {
    return seconds_of(view().thing_principals, t, pg);
  }
  Names list_principal_things(std::string_view p, const Page& pg) override {
    return firsts_of(view().thing_principals, p, pg);
  }

  Maybe<TemplateRecord> get_template(std::string_view n) override {
    return get_from(view().templates, n);
  }
  Status put_template(const TemplateRecord& t) override {
    FK_RETURN_IF_ERROR(writable());
    work_.templates[t.name] = t;
    return Status::ok();
  }
  Status delete_template(std::string_view n) override {
    FK_RETURN_IF_ERROR(erase(work_.templates, n));
    erase_versions(work_.template_versions, n);
    return Status::ok();
  }
  List<TemplateRecord> list_templates(const Page& p) override {
    return page_of(view().templates, p);
  }

  Maybe<TemplateVersionRecord> get_template_version(std::string_view n, std::int64_t id) override {
    const auto& m = view().template_versions;
    auto it = m.find(VersionKey(std::string(n), id));
    if (it == m.end()) return std::optional<TemplateVersionRecord>();
    return std::optional<TemplateVersionRecord>(it->second);
  }
  Status put_template_version(const TemplateVersionRecord& v) override {
    FK_RETURN_IF_ERROR(writable());
    work_.template_versions[VersionKey(v.template_name, v.version_id)] = v;
    return Status::ok();
  }
  Status delete_template_version(std::string_view n, std::int64_t id) override {
    FK_RETURN_IF_ERROR(writable());
    work_.template_versions.erase(VersionKey(std::string(n), id));
    return Status::ok();
  }
  List<TemplateVersionRecord> list_template_versions(std::string_view n) override {
    return versions_of(view().template_versions, n);
  }

  Maybe<std::string> get_setting(std::string_view k) override {
    return get_from(view().settings, k);
  }
  Status put_setting(std::string_view k, std::string_view v) override {
    FK_RETURN_IF_ERROR(writable());
    work_.settings[std::string(k)] = std::string(v);
    return Status::ok();
  }
  Status append_audit(const AuditRecord& r) override {
    FK_RETURN_IF_ERROR(writable());
    AuditRecord copy = r;
    copy.sequence = work_.audit.empty() ? 1 : work_.audit.back().sequence + 1;
    work_.audit.push_back(std::move(copy));
    return Status::ok();
  }
  List<AuditRecord> list_audit(const AuditQuery& q) override {
    std::vector<AuditRecord> out;
    for (const auto& r : view().audit) {
      if (r.sequence <= q.after_sequence || r.at_ms < q.from_ms || r.at_ms >= q.to_ms) continue;
      if (q.access_key && r.access_key != *q.access_key) continue;
      if (q.resource && r.resource != *q.resource) continue;
      out.push_back(r);
      if (q.limit != 0 && out.size() >= q.limit) break;
    }
    return out;
  }
  Status append_timeline(const std::vector<DeviceEvent>& events) override {
    FK_RETURN_IF_ERROR(writable());
    for (DeviceEvent e : events) {
      e.sequence = ++work_.timeline_sequence;
      work_.timeline.push_back(std::move(e));
    }
    return Status::ok();
  }
  List<DeviceEvent> list_timeline(const TimelineQuery& q) override {
    auto in = [](const std::vector<std::string>& v, const std::string& x) {
      return !x.empty() && std::find(v.begin(), v.end(), x) != v.end();
    };
    std::vector<DeviceEvent> out;
    const auto& all = view().timeline;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      const DeviceEvent& e = *it;
      if (q.before_sequence != 0 && e.sequence >= q.before_sequence) continue;
      if (e.at_ms < q.from_ms || e.at_ms >= q.to_ms) continue;
      if (!in(q.things, e.thing) && !in(q.certificate_ids, e.certificate_id) &&
          !in(q.client_ids, e.client_id))
        continue;
      out.push_back(e);
      if (out.size() >= std::max<std::size_t>(q.limit, 1)) break;
    }
    return out;
  }
  List<TimelineCount> count_timeline(std::int64_t since_ms) override {
    std::map<std::pair<std::string, std::string>, std::int64_t> counts;
    for (const auto& e : view().timeline)
      if (e.at_ms >= since_ms) ++counts[{e.event, e.reason}];
    std::vector<TimelineCount> out;
    for (const auto& [k, n] : counts) out.push_back({k.first, k.second, n});
    return out;
  }
  Result<std::int64_t> prune_timeline(std::int64_t before_ms, std::int64_t keep_last) override {
    FK_RETURN_IF_ERROR(writable());
    auto& t = work_.timeline;
    const auto old_size = static_cast<std::int64_t>(t.size());
    std::erase_if(t, [&](const DeviceEvent& e) { return e.at_ms < before_ms; });
    while (static_cast<std::int64_t>(t.size()) > std::max<std::int64_t>(keep_last, 0))
      t.pop_front();
    return old_size - static_cast<std::int64_t>(t.size());
  }
  Status delete_setting(std::string_view k) override {
    FK_RETURN_IF_ERROR(writable());
    work_.settings.erase(std::string(k));
    return Status::ok();
  }
  List<std::pair<std::string, std::string>> list_settings(std::string_view prefix,
                                                          const Page& p) override {
    std::vector<std::pair<std::string, std::string>> out;
    const auto& all = view().settings;
    for (auto it = all.lower_bound(prefix); it != all.end(); ++it) {
      if (it->first.compare(0, prefix.size(), prefix) != 0) break;
      if (!p.after.empty() && it->first <= p.after) continue;
      out.emplace_back(it->first, it->second);
      if (p.limit != 0 && out.size() >= p.limit) break;
    }
    return out;
  }

  Status savepoint() override {
    FK_RETURN_IF_ERROR(writable());
    savepoints_.push_back(work_);
    return Status::ok();
  }
  Status release_savepoint() override {
    if (savepoints_.empty()) return internal_error("no savepoint to release");
    savepoints_.pop_back();
    return Status::ok();
  }
  Status rollback_to_savepoint() override {
    if (savepoints_.empty()) return internal_error("no savepoint to roll back to");
    work_ = std::move(savepoints_.back());
    savepoints_.pop_back();
    return Status::ok();
  }

  Status commit() override {
    if (!writer_.owns_lock()) {
      snap_.reset();
      return Status::ok();
    }
    auto next = std::make_shared<const MemoryStore::State>(std::move(work_));
    {
      std::lock_guard<std::mutex> lock(store_.publish_);
      store_.committed_ = std::move(next);
    }
    writer_.unlock();
    return Status::ok();
  }

 private:
  const MemoryStore::State& view() const { return snap_ ? *snap_ : work_; }
  Status writable() const {
    if (!writer_.owns_lock()) return internal_error("write in a read-only or finished transaction");
    return Status::ok();
  }
  template <typename Map>
  Status erase(Map& m, std::string_view key) {
    FK_RETURN_IF_ERROR(writable());
    auto it = m.find(key);
    if (it != m.end()) m.erase(it);
    return Status::ok();
  }
  Status insert_pair(std::set<Pair>& s, std::string_view a, std::string_view b) {
    FK_RETURN_IF_ERROR(writable());
    s.emplace(std::string(a), std::string(b));
    return Status::ok();
  }
  Status erase_pair(std::set<Pair>& s, std::string_view a, std::string_view b) {
    FK_RETURN_IF_ERROR(writable());
    s.erase(Pair(std::string(a), std::string(b)));
    return Status::ok();
  }

  MemoryStore& store_;
  std::unique_lock<std::mutex> writer_;
  std::shared_ptr<const MemoryStore::State> snap_;
  MemoryStore::State work_;
  std::vector<MemoryStore::State> savepoints_;
};

MemoryStore::MemoryStore() : committed_(std::make_shared<const State>()) {}
MemoryStore::~MemoryStore() = default;

Result<std::unique_ptr<Transaction>> MemoryStore::begin_write() {
  return std::unique_ptr<Transaction>(
      new MemoryTransaction(*this, std::unique_lock<std::mutex>(writer_)));
}

Result<std::unique_ptr<Transaction>> MemoryStore::begin_read() {
  std::shared_ptr<const State> snap;
  {
    std::lock_guard<std::mutex> lock(publish_);
    snap = committed_;
  }
  return std::unique_ptr<Transaction>(new MemoryTransaction(*this, std::move(snap)));
}

}  // namespace fk::storage
