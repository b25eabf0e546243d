// CA certificates: Get/DeleteRegistrationCode, RegisterCACertificate (with the verification
// certificate whose CN is the registration code), Describe, Update, Delete, List. A CA's
// registrationConfig (JITP's template) is checked here (provisioning/just_in_time.h).
#include "api/routing.h"
#include "provisioning/just_in_time.h"

namespace fk::api {

using registry::Txn;
using storage::CertificateStatus;

namespace {

json ca_description(const ApiContext& ctx, const storage::CaCertificateRecord& ca) {
  return {{"certificateArn", ctx.arns().ca_certificate(ca.certificate_id)},
          {"certificateId", ca.certificate_id},
          {"status", storage::to_string(ca.status)},
          {"certificatePem", ca.pem},
          {"ownedBy", ctx.arns().account_id},
          {"creationDate", ca.created_at},
          {"autoRegistrationStatus", ca.auto_registration ? "ENABLE" : "DISABLE"},
          {"lastModifiedDate", ca.updated_at},
          {"customerVersion", ca.customer_version},
          {"generationId", ca.generation_id},
          {"validity", {{"notBefore", ca.not_before}, {"notAfter", ca.not_after}}},
          {"certificateMode", ca.certificate_mode}};
}

Result<std::optional<bool>> auto_registration_query(const Call& c, const std::string& name) {
  auto v = c.q(name);
  if (!v) return std::optional<bool>();
  if (*v == "ENABLE") return std::optional<bool>(true);
  if (*v == "DISABLE") return std::optional<bool>(false);
  return bad_member(name, "ENABLE or DISABLE");
}

// The request's registrationConfig, checked, as the text to store; nullopt when absent.
Result<std::optional<std::string>> registration_config(ApiContext& ctx, const Call& c) {
  auto it = c.body.find("registrationConfig");
  if (it == c.body.end()) return std::optional<std::string>();
  std::string text;
  FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
    FK_ASSIGN_OR_RETURN(text, provisioning::check_registration_config(txn, *it));
    return Status::ok();
  }));
  return std::optional<std::string>(std::move(text));
}

}  // namespace

void add_ca_routes(RouteTable& t, ApiContext& ctx) {
  t.add("GET", "/registrationcode", [&ctx](Call&) -> Result<json> {
    std::string code;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(code, txn.registration_code());
      return Status::ok();
    }));
    return json{{"registrationCode", code}};
  });
  t.add("DELETE", "/registrationcode", [&ctx](Call&) -> Result<json> {
    FK_RETURN_IF_ERROR(
        ctx.registry.write([&](Txn& txn) { return txn.delete_registration_code(); }));
    return json::object();
  });
  t.add("POST", "/cacertificate", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string pem, c.member("caCertificate"));
    FK_ASSIGN_OR_RETURN(auto verification, c.optional_member("verificationCertificate"));
    FK_ASSIGN_OR_RETURN(auto mode, c.optional_member("certificateMode"));
    if (mode && *mode != "DEFAULT" && *mode != "SNI_ONLY")
      return bad_member("certificateMode", "DEFAULT or SNI_ONLY");
    FK_ASSIGN_OR_RETURN(bool active, c.q_bool("setAsActive", false));
    FK_ASSIGN_OR_RETURN(bool auto_reg, c.q_bool("allowAutoRegistration", false));
    FK_ASSIGN_OR_RETURN(auto config, registration_config(ctx, c));
    FK_ASSIGN_OR_RETURN(auto ca, ctx.registry.register_ca_certificate(
                                     pem, verification, active, auto_reg, mode.value_or("DEFAULT"),
                                     config.value_or(std::string())));
    return json{{"certificateArn", ctx.arns().ca_certificate(ca.certificate_id)},
                {"certificateId", ca.certificate_id}};
  });
  t.add("GET", "/cacertificate/{caCertificateId}", [&ctx](Call& c) -> Result<json> {
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto ca, txn.describe_ca_certificate(c.labels["caCertificateId"]));
      out = {{"certificateDescription", ca_description(ctx, ca)}};
      if (!ca.registration_config.empty()) {
        json rc = json::parse(ca.registration_config, nullptr, false);
        if (!rc.is_discarded()) out["registrationConfig"] = rc;
      }
      return Status::ok();
    }));
    return out;
  });
  t.add("PUT", "/cacertificate/{caCertificateId}", [&ctx](Call& c) -> Result<json> {
    std::optional<CertificateStatus> status;
    if (auto s = c.q("newStatus")) {
      if (*s != "ACTIVE" && *s != "INACTIVE") return bad_member("newStatus", "ACTIVE or INACTIVE");
      FK_ASSIGN_OR_RETURN(status, storage::parse_certificate_status(*s));
    }
    FK_ASSIGN_OR_RETURN(auto auto_reg, auto_registration_query(c, "newAutoRegistrationStatus"));
    FK_ASSIGN_OR_RETURN(auto config, registration_config(ctx, c));
    // removeAutoRegistration: auto-registration off and its template forgotten.
    if (auto remove = c.body.find("removeAutoRegistration"); remove != c.body.end()) {
      if (!remove->is_boolean()) return bad_member("removeAutoRegistration", "a boolean");
      if (remove->get<bool>()) {
        if (config || (auto_reg && *auto_reg))
          return invalid_request(
              "removeAutoRegistration cannot be combined with registrationConfig or "
              "newAutoRegistrationStatus ENABLE");
        auto_reg = false;
        config = std::string();
      }
    }
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) {
      return txn.update_ca_certificate(c.labels["caCertificateId"], status, auto_reg, config);
    }));
    return json::object();
  });
  t.add("DELETE", "/cacertificate/{caCertificateId}", [&ctx](Call& c) -> Result<json> {
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.delete_ca_certificate(c.labels["caCertificateId"]); }));
    return json::object();
  });
  t.add("GET", "/cacertificates", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "marker", "pageSize"));
    FK_ASSIGN_OR_RETURN(bool ascending, c.q_bool("isAscendingOrder", false));
    std::vector<storage::CaCertificateRecord> all;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      storage::Page p;
      p.limit = 1000;
      for (;;) {
        FK_ASSIGN_OR_RETURN(auto list, txn.store().list_ca_certificates(p));
        all.insert(all.end(), list.begin(), list.end());
        if (list.size() < p.limit) break;
        p.after = list.back().certificate_id;
      }
      return Status::ok();
    }));
    // By creation time (then id), as ListCertificates; the marker is the last id returned.
    std::sort(all.begin(), all.end(), [ascending](const auto& a, const auto& b) {
      if (a.created_at != b.created_at)
        return ascending ? a.created_at < b.created_at : a.created_at > b.created_at;
      return ascending ? a.certificate_id < b.certificate_id : a.certificate_id > b.certificate_id;
    });
    std::size_t start = 0;
    if (!page.after.empty()) {
      auto it = std::find_if(all.begin(), all.end(),
                             [&](const auto& ca) { return ca.certificate_id == page.after; });
      if (it == all.end()) return bad_member("marker", "a marker from an earlier page");
      start = static_cast<std::size_t>(it - all.begin()) + 1;
    }
    json certs = json::array();
    std::size_t i = start;
    for (; i < all.size() && certs.size() < page.size; ++i)
      certs.push_back({{"certificateArn", ctx.arns().ca_certificate(all[i].certificate_id)},
                       {"certificateId", all[i].certificate_id},
                       {"status", storage::to_string(all[i].status)},
                       {"certificateMode", all[i].certificate_mode},
                       {"creationDate", all[i].created_at}});
    json out = {{"certificates", certs}};
    if (i < all.size()) out["nextMarker"] = all[i - 1].certificate_id;
    return out;
  });
}

}  // namespace fk::api
