// Certificates: CreateKeysAndCertificate, CreateCertificateFromCsr, RegisterCertificate(WithoutCA),
// Describe, Update, Delete, List, ListByCA; and DescribeEndpoint.
#include "api/routing.h"
#include "crypto/x509.h"

namespace fk::api {

using registry::Txn;
using storage::CertificateStatus;

namespace {

json certificate_description(const ApiContext& ctx, const storage::CertificateRecord& c) {
  return {
      {"certificateArn", ctx.arns().certificate(c.certificate_id)},
      {"certificateId", c.certificate_id},
      {"caCertificateId", c.ca_certificate_id.empty() ? json(nullptr) : json(c.ca_certificate_id)},
      {"status", storage::to_string(c.status)},
      {"certificatePem", c.pem},
      {"ownedBy", ctx.arns().account_id},
      {"creationDate", c.created_at},
      {"lastModifiedDate", c.updated_at},
      {"customerVersion", c.customer_version},
      {"generationId", c.generation_id},
      {"validity", {{"notBefore", c.not_before}, {"notAfter", c.not_after}}},
      {"certificateMode", c.certificate_mode}};
}

// ListCertificates and ListCertificatesByCA: marker/pageSize pages, newest first unless
// isAscendingOrder.
Result<json> list_certificates(ApiContext& ctx, Call& c, std::optional<std::string> ca_id) {
  storage::CertificateQuery query;
  query.ca_certificate_id = std::move(ca_id);
  FK_ASSIGN_OR_RETURN(query.ascending, c.q_bool("isAscendingOrder", false));
  FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "marker", "pageSize"));
  const std::size_t page_size = page.size;
  query.page.limit = page_size + 1;
  query.page.after = page.after;
  json certs = json::array();
  std::string next;
  FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
    FK_ASSIGN_OR_RETURN(auto list, txn.store().list_certificates(query));
    if (list.size() > page_size) {
      list.resize(page_size);
      next = storage::certificate_page_key(list.back());
    }
    for (const auto& cert : list) {
      certs.push_back({{"certificateArn", ctx.arns().certificate(cert.certificate_id)},
                       {"certificateId", cert.certificate_id},
                       {"status", storage::to_string(cert.status)},
                       {"certificateMode", cert.certificate_mode},
                       {"creationDate", cert.created_at}});
    }
    return Status::ok();
  }));
  json out = {{"certificates", certs}};
  if (!next.empty()) out["nextMarker"] = next;
  return out;
}

// RegisterCertificate's status: the body's `status`, or ACTIVE with ?setAsActive=true;
// INACTIVE otherwise (AWS).
Result<CertificateStatus> registration_status(const Call& c) {
  FK_ASSIGN_OR_RETURN(bool active, c.q_bool("setAsActive", false));
  FK_ASSIGN_OR_RETURN(std::optional<std::string> text, c.optional_member("status"));
  if (!text) return active ? CertificateStatus::kActive : CertificateStatus::kInactive;
  FK_ASSIGN_OR_RETURN(CertificateStatus s, storage::parse_certificate_status(*text));
  if (s != CertificateStatus::kActive && s != CertificateStatus::kInactive &&
      s != CertificateStatus::kRevoked && s != CertificateStatus::kPendingActivation)
    return bad_member("status", "one of ACTIVE, INACTIVE, REVOKED, PENDING_ACTIVATION");
  return s;
}

}  // namespace

void add_certificate_routes(RouteTable& t, ApiContext& ctx) {
  t.add("POST", "/keys-and-certificate", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(bool active, c.q_bool("setAsActive", false));
    FK_ASSIGN_OR_RETURN(auto r,
                        ctx.registry.create_keys_and_certificate(
                            crypto::KeySpec::rsa(2048),
                            active ? CertificateStatus::kActive : CertificateStatus::kInactive));
    return json{{"certificateArn", ctx.arns().certificate(r.certificate.certificate_id)},
                {"certificateId", r.certificate.certificate_id},
                {"certificatePem", r.certificate.pem},
                {"keyPair",
                 {{"PublicKey", r.keys.public_key_pem}, {"PrivateKey", r.keys.private_key_pem}}}};
  });
  t.add("POST", "/certificates", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(bool active, c.q_bool("setAsActive", false));
    if (!c.body.contains("certificateSigningRequest") ||
        !c.body["certificateSigningRequest"].is_string())
      return bad_member("certificateSigningRequest", "a string");
    auto r = ctx.registry.create_certificate_from_csr(
        c.body["certificateSigningRequest"].get<std::string>(),
        active ? CertificateStatus::kActive : CertificateStatus::kInactive);
    if (!r.is_ok() && r.status().code() == ErrorCode::kCertificateValidation)
      return invalid_request(r.status().message());  // AWS: InvalidRequestException
    FK_RETURN_IF_ERROR(r.status());
    return json{{"certificateArn", ctx.arns().certificate(r->certificate_id)},
                {"certificateId", r->certificate_id},
                {"certificatePem", r->pem}};
  });
  t.add("GET", "/certificates/{certificateId}", [&ctx](Call& c) -> Result<json> {
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto cert, txn.describe_certificate(c.labels["certificateId"]));
      out = {{"certificateDescription", certificate_description(ctx, cert)}};
      return Status::ok();
    }));
    return out;
  });
  t.add("PUT", "/certificates/{certificateId}", [&ctx](Call& c) -> Result<json> {
    auto status_text = c.q("newStatus");
    if (!status_text) return bad_member("newStatus", "one of ACTIVE, INACTIVE, REVOKED");
    FK_ASSIGN_OR_RETURN(CertificateStatus status, storage::parse_certificate_status(*status_text));
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) {
      return txn.update_certificate_status(c.labels["certificateId"], status);
    }));
    return json::object();
  });
  t.add("DELETE", "/certificates/{certificateId}", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(bool force, c.q_bool("forceDelete", false));
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.delete_certificate(c.labels["certificateId"], force); }));
    return json::object();
  });
  t.add("GET", "/certificates",
        [&ctx](Call& c) -> Result<json> { return list_certificates(ctx, c, std::nullopt); });
  t.add("GET", "/certificates-by-ca/{caCertificateId}", [&ctx](Call& c) -> Result<json> {
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) {
      return txn.describe_ca_certificate(c.labels["caCertificateId"]).status();
    }));
    return list_certificates(ctx, c, c.labels["caCertificateId"]);
  });
  // RegisterCertificate and RegisterCertificateWithoutCA: a certificate made elsewhere.
  auto register_route = [&ctx](bool with_ca) {
    return [&ctx, with_ca](Call& c) -> Result<json> {
      FK_ASSIGN_OR_RETURN(std::string pem, c.member("certificatePem"));
      FK_ASSIGN_OR_RETURN(CertificateStatus status, registration_status(c));
      Result<storage::CertificateRecord> r = Status{ErrorCode::kInternal, "unset"};
      if (with_ca) {
        FK_ASSIGN_OR_RETURN(std::optional<std::string> ca_pem,
                            c.optional_member("caCertificatePem"));
        r = ctx.registry.register_certificate(pem, ca_pem, status);
      } else {
        r = ctx.registry.register_certificate_without_ca(pem, status);
      }
      FK_RETURN_IF_ERROR(r.status());
      return json{{"certificateArn", ctx.arns().certificate(r->certificate_id)},
                  {"certificateId", r->certificate_id}};
    };
  };
  t.add("POST", "/certificate/register", register_route(true));
  t.add("POST", "/certificate/register-no-ca", register_route(false));
  t.add("GET", "/endpoint", [&ctx](Call&) -> Result<json> {
    return json{{"endpointAddress", ctx.config.mqtt_endpoint}};
  });
}

}  // namespace fk::api
