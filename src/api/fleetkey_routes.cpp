// fleetkey's own operations (no AWS equivalent), under /fleetkey/: a template's allow-list of
// parameter values and single use; counters, status, expiring certificates and the root CA for
// the fleetkey CLI; certificate rotation for direct certificates.
#include <algorithm>
#include <cerrno>
#include <functional>
#include <limits>

#include "api/routing.h"
#include "provisioning/register_thing.h"
#include "provisioning/rotation.h"

namespace fk::api {

using registry::Txn;

namespace {

constexpr std::size_t kScanPage = 1000;

// Every certificate of the registry, a page at a time, in one read transaction.
Status for_each_certificate(Txn& txn,
                            const std::function<void(const storage::CertificateRecord&)>& fn) {
  storage::CertificateQuery cq;
  cq.page.limit = kScanPage;
  for (;;) {
    FK_ASSIGN_OR_RETURN(auto list, txn.store().list_certificates(cq));
    for (const auto& c : list) fn(c);
    if (list.size() < kScanPage) return Status::ok();
    cq.page.after = storage::certificate_page_key(list.back());
  }
}

// The certificate a rotation starts from: `certificateId`, or the thing's one ACTIVE certificate
// that is not itself the new side of a rotation under way.
Result<std::string> rotation_source(ApiContext& ctx, const Call& c) {
  FK_ASSIGN_OR_RETURN(auto id, c.optional_member("certificateId"));
  FK_ASSIGN_OR_RETURN(auto thing, c.optional_member("thingName"));
  if (id.has_value() == thing.has_value())
    return invalid_request("give certificateId or thingName (one of them)");
  if (id) return *id;
  std::vector<std::string> active;
  FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
    FK_RETURN_IF_ERROR(txn.describe_thing(*thing).status());
    FK_ASSIGN_OR_RETURN(auto principals, txn.store().list_thing_principals(*thing, {}));
    for (const auto& arn : principals) {
      const auto slash = arn.rfind(":cert/");
      if (slash == std::string::npos) continue;
      const std::string cert_id = arn.substr(slash + 6);
      FK_ASSIGN_OR_RETURN(auto cert, txn.store().get_certificate(cert_id));
      if (!cert || cert->status != storage::CertificateStatus::kActive) continue;
      FK_ASSIGN_OR_RETURN(bool newer,
                          provisioning::CertificateRotation::completes_rotation(txn, cert_id));
      if (!newer) active.push_back(cert_id);
    }
    return Status::ok();
  }));
  if (active.size() != 1)
    return invalid_request("thing " + *thing + " has " + std::to_string(active.size()) +
                           " ACTIVE certificates to rotate from: name one with certificateId");
  return active.front();
}

}  // namespace

void add_fleetkey_routes(RouteTable& t, ApiContext& ctx) {
  // The audit log (`fleetkey audit`): changes in [from, to) (epoch ms), by access key and
  // resource, in commit order, a page at a time (`after` = the last sequence seen).
  t.add("GET", "/fleetkey/audit", [&ctx](Call& c) -> Result<json> {
    storage::AuditQuery q;
    const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    FK_ASSIGN_OR_RETURN(q.from_ms, int_param(c, "from", 0, 0, kMax));
    FK_ASSIGN_OR_RETURN(q.to_ms, int_param(c, "to", kMax, 0, kMax));
    if (q.from_ms > q.to_ms) return invalid_request("from must not be after to");
    FK_ASSIGN_OR_RETURN(q.after_sequence, int_param(c, "after", 0, 0, kMax));
    FK_ASSIGN_OR_RETURN(std::int64_t limit, int_param(c, "limit", 100, 1, 1000));
    q.limit = static_cast<std::size_t>(limit);
    if (auto k = c.q("accessKey")) q.access_key = *k;
    if (auto r = c.q("resource")) q.resource = *r;
    std::vector<storage::AuditRecord> found;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(found, txn.store().list_audit(q));
      return Status::ok();
    }));
    json records = json::array();
    for (const auto& a : found) {
      json request = json::parse(a.request, nullptr, false);
      records.push_back({{"sequence", a.sequence},
                         {"time", a.at_ms},
                         {"accessKey", a.access_key},
                         {"source", a.source},
                         {"operation", a.operation},
                         {"resource", a.resource},
                         {"request", request.is_discarded() ? json(a.request) : request},
                         {"status", a.status},
                         {"errorCode", a.error_code}});
    }
    json out = {{"records", records}};
    if (found.size() == q.limit) out["after"] = found.back().sequence;
    return out;
  });
  // A new certificate for the CSR, attached like the one it replaces (docs/rotation.md).
  t.add("POST", "/fleetkey/certificates/rotate", [&ctx](Call& c) -> Result<json> {
    if (ctx.config.rotation == nullptr) return not_found("rotation is not available");
    FK_ASSIGN_OR_RETURN(std::string csr, c.member("certificateSigningRequest"));
    FK_ASSIGN_OR_RETURN(std::string old_id, rotation_source(ctx, c));
    FK_ASSIGN_OR_RETURN(auto rotated, ctx.config.rotation->rotate(old_id, csr));
    const auto& cert = rotated.certificate;
    return json{{"certificateId", cert.certificate_id},
                {"certificateArn", ctx.arns().certificate(cert.certificate_id)},
                {"certificatePem", cert.pem},
                {"previousCertificateId", rotated.previous_certificate_id},
                {"previousCertificateDeactivatesAt", rotated.previous_deactivates_at},
                {"replayed", rotated.replayed}};
  });
  const std::string base = "/fleetkey/provisioning-templates/{templateName}/allow-list";
  t.add("PUT", base, [&ctx](Call& c) -> Result<json> {
    provisioning::AllowList list;
    FK_ASSIGN_OR_RETURN(list.parameter, c.member("parameter"));
    FK_ASSIGN_OR_RETURN(list.single_use, c.bool_member("singleUse", true));
    FK_ASSIGN_OR_RETURN(auto values, string_list_member(c, "values", true));
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) {
      return provisioning::put_allow_list(txn, c.labels["templateName"], list, values);
    }));
    return json{{"templateName", c.labels["templateName"]},
                {"parameter", list.parameter},
                {"singleUse", list.single_use},
                {"count", values.size()}};
  });
  t.add("GET", base, [&ctx](Call& c) -> Result<json> {
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto list, provisioning::get_allow_list(txn, c.labels["templateName"]));
      if (!list) return not_found("template " + c.labels["templateName"] + " has no allow-list");
      FK_ASSIGN_OR_RETURN(auto summary,
                          provisioning::summarize_allow_list(txn, c.labels["templateName"], *list));
      out = {{"templateName", c.labels["templateName"]},
             {"parameter", list->parameter},
             {"singleUse", list->single_use},
             {"values", summary.values},
             {"used", summary.used},
             {"unused", summary.values - summary.used}};
      if (auto v = c.q("value")) {
        FK_ASSIGN_OR_RETURN(
            auto e, provisioning::allow_list_entry(txn, c.labels["templateName"], *list, *v));
        out["value"] = {{"value", *v}, {"listed", e.listed}, {"used", e.used}};
      }
      return Status::ok();
    }));
    return out;
  });
  // The values themselves, a page at a time (nextToken/maxResults as AWS's list calls).
  t.add("GET", base + "/values", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    json values = json::array();
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto list, provisioning::get_allow_list(txn, c.labels["templateName"]));
      if (!list) return not_found("template " + c.labels["templateName"] + " has no allow-list");
      FK_ASSIGN_OR_RETURN(auto rows,
                          provisioning::list_allow_list_values(txn, c.labels["templateName"], *list,
                                                               page.after, page.size + 1));
      if (rows.size() > page.size) {
        rows.resize(page.size);
        next = rows.back().first;
      }
      for (const auto& [value, used] : rows) values.push_back({{"value", value}, {"used", used}});
      return Status::ok();
    }));
    json out = {{"values", values}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });
  t.add("DELETE", base, [&ctx](Call& c) -> Result<json> {
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return provisioning::delete_allow_list(txn, c.labels["templateName"]); }));
    return json::object();
  });
  t.add("POST", base + "/re-enable", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(auto values, string_list_member(c, "values", true));
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) {
      return provisioning::reenable_values(txn, c.labels["templateName"], values);
    }));
    return json::object();
  });
  t.add("GET", "/fleetkey/metrics", [&ctx](Call&) -> Result<json> {
    json out = json::object();
    if (ctx.config.metrics) {
      for (const auto& [k, v] : ctx.config.metrics()) out[k] = v;
    }
    return out;
  });
  // The CA devices trust for the server (what AmazonRootCA1.pem is on AWS), for the CLI's
  // device bundles.
  t.add("GET", "/fleetkey/root-ca", [&ctx](Call&) -> Result<json> {
    return json{{"rootCaPem", ctx.config.root_ca_pem},
                {"issuingCaPem", ctx.config.issuing_ca_pem},
                // root-ca.pem as the CLI writes it: the root, then the issuing CA.
                {"caBundlePem", ctx.config.root_ca_pem + ctx.config.issuing_ca_pem}};
  });
  // Health and counts for `fleetkey status`: things, certificates by status, connections.
  t.add("GET", "/fleetkey/status", [&ctx](Call&) -> Result<json> {
    std::uint64_t things = 0;
    std::map<std::string, std::uint64_t> by_status;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      storage::ThingQuery tq;
      tq.page.limit = kScanPage;
      for (;;) {
        FK_ASSIGN_OR_RETURN(auto list, txn.store().list_things(tq));
        things += list.size();
        if (list.size() < kScanPage) break;
        tq.page.after = list.back().name;
      }
      return for_each_certificate(txn, [&](const storage::CertificateRecord& c) {
        ++by_status[std::string(storage::to_string(c.status))];
      });
    }));
    json certs = json::object();
    for (const char* s : {"ACTIVE", "INACTIVE", "REVOKED", "PENDING_TRANSFER", "PENDING_ACTIVATION",
                          "REGISTER_INACTIVE"})
      certs[s] = by_status[s];
    json out = {{"status", "ok"},
                {"region", ctx.config.region},
                {"mqttEndpoint", ctx.config.mqtt_endpoint},
                {"mqttPort", ctx.config.mqtt_port},
                {"things", things},
                {"certificates", certs}};
    if (ctx.config.metrics) {
      auto m = ctx.config.metrics();
      out["connections"] = m["broker.connections"];
    }
    if (ctx.config.nodes) {
      json nodes = json::array();
      std::uint64_t total = 0;
      for (const auto& n : ctx.config.nodes()) {
        json j = json::object();
        for (const auto& [k, v] : n) j[k] = v;
        total +=
            std::strtoull(n.count("connections") ? n.at("connections").c_str() : "0", nullptr, 10);
        nodes.push_back(j);
      }
      out["nodes"] = nodes;
      out["clusterConnections"] = total;
    }
    return out;
  });
  // Certificates whose notAfter is before now + withinSeconds, with their things, oldest first
  // (`fleetkey expiring`); one scan on the server instead of a Describe per certificate.
  t.add("GET", "/fleetkey/expiring-certificates", [&ctx](Call& c) -> Result<json> {
    std::int64_t within = 30 * 86400;
    if (auto w = c.q("withinSeconds")) {
      char* end = nullptr;
      long long v = std::strtoll(w->c_str(), &end, 10);
      if (w->empty() || *end != '\0' || v < 0) return bad_member("withinSeconds", "a number >= 0");
      within = v;
    }
    const EpochSeconds limit = ctx.clock.now() + within;
    json certs = json::array();
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      std::vector<storage::CertificateRecord> found;
      FK_RETURN_IF_ERROR(for_each_certificate(txn, [&](const storage::CertificateRecord& rec) {
        if (rec.not_after < limit) found.push_back(rec);
      }));
      std::sort(found.begin(), found.end(),
                [](const auto& a, const auto& b) { return a.not_after < b.not_after; });
      for (const auto& rec : found) {
        storage::Page all;
        all.limit = 100;
        FK_ASSIGN_OR_RETURN(auto things, txn.store().list_principal_things(
                                             ctx.arns().certificate(rec.certificate_id), all));
        certs.push_back({{"certificateId", rec.certificate_id},
                         {"certificateArn", ctx.arns().certificate(rec.certificate_id)},
                         {"status", storage::to_string(rec.status)},
                         {"notAfter", rec.not_after},
                         {"things", things}});
      }
      return Status::ok();
    }));
    return json{{"certificates", certs}, {"before", limit}};
  });
}

}  // namespace fk::api
