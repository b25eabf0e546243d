#include "policy/context.h"

#include <cctype>

#include "base/strings.h"

namespace fk::policy {
namespace {

bool consume(std::string_view& s, std::string_view prefix) {
  if (s.size() < prefix.size() || !iequals(s.substr(0, prefix.size()), prefix)) return false;
  s.remove_prefix(prefix.size());
  return true;
}

using Values = std::optional<std::vector<std::string>>;

Values one(const std::string& v) {
  return std::vector<std::string>{v};
}

// AWS's certificate fields and the OpenSSL short names they come from.
struct FieldName {
  std::string_view aws;
  std::string_view sn;
};
constexpr FieldName kFields[] = {
    {"DistinguishedNameQualifier", "dnQualifier"},
    {"Country", "C"},
    {"Organization", "O"},
    {"OrganizationalUnit", "OU"},
    {"State", "ST"},
    {"CommonName", "CN"},
    {"SerialNumber", "serialNumber"},
    {"Title", "title"},
    {"Surname", "SN"},
    {"GivenName", "GN"},
    {"Initials", "initials"},
    {"Pseudonym", "pseudonym"},
    {"GenerationQualifier", "generationQualifier"},
};
constexpr std::string_view kAltNames[] = {"RFC822Name", "DNSName", "DirectoryName",
                                          "UniformResourceIdentifier", "IPAddress"};
constexpr std::size_t kMaxCertificateValue = 1024;
constexpr std::size_t kMaxListItems = 5;

// AWS shows , " \ + = < > ; backslash-escaped and does not substitute values with * $ + ? #.
std::optional<std::string> certificate_value(const std::string& v) {
  if (v.size() > kMaxCertificateValue) return std::nullopt;
  if (v.find_first_of("*$+?#") != std::string::npos) return std::nullopt;
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == ',' || c == '"' || c == '\\' || c == '=' || c == '<' || c == '>' || c == ';')
      out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// "<Field>", "<Field>.<N>", "<Field>.List" over the values named `sn` in `fields`.
Values pick(const NameFields& fields, std::string_view sn, std::string_view selector) {
  std::vector<std::string> all;
  for (const auto& [k, v] : fields) {
    if (k == sn) all.push_back(v);
  }
  if (all.empty()) return std::nullopt;
  if (selector.empty())
    return certificate_value(all[0]) ? one(*certificate_value(all[0])) : Values{};
  if (iequals(selector, "List")) {
    std::vector<std::string> out;
    for (const auto& v : all) {
      if (out.size() == kMaxListItems) break;
      if (auto c = certificate_value(v)) out.push_back(*c);
    }
    if (out.empty()) return std::nullopt;
    return out;
  }
  // ".N": AWS's examples make .1 the second value (zero-based).
  std::size_t index = 0;
  for (char c : selector) {
    if (!std::isdigit(static_cast<unsigned char>(c)) || index > kMaxListItems) return std::nullopt;
    index = index * 10 + static_cast<std::size_t>(c - '0');
  }
  if (index >= all.size() || index >= kMaxListItems) return std::nullopt;
  auto c = certificate_value(all[index]);
  return c ? one(*c) : Values{};
}

Values certificate_name(const NameFields& fields, const NameFields& alt_names,
                        std::string_view rest) {
  if (consume(rest, "AlternativeName.")) {
    for (std::string_view t : kAltNames) {
      std::string_view r = rest;
      if (!consume(r, t)) continue;
      if (!r.empty() && !consume(r, ".")) continue;
      return pick(alt_names, t, r);
    }
    return std::nullopt;
  }
  for (const auto& f : kFields) {
    std::string_view r = rest;
    if (!consume(r, f.aws)) continue;
    if (!r.empty() && !consume(r, ".")) continue;
    return pick(fields, f.sn, r);
  }
  return std::nullopt;
}

}  // namespace

Values lookup(const RequestContext& ctx, std::string_view key) {
  std::string_view k = key;
  if (iequals(k, "iot:ClientId")) return ctx.client_id ? one(*ctx.client_id) : Values{};
  if (iequals(k, "aws:SourceIp")) return ctx.source_ip ? one(*ctx.source_ip) : Values{};
  if (iequals(k, "iot:DomainName")) return ctx.domain_name ? one(*ctx.domain_name) : Values{};
  if (iequals(k, "iot:ConnectAttributes")) return ctx.connect_attributes;
  if (consume(k, "iot:Connection.Thing.")) {
    if (iequals(k, "IsAttached"))
      return ctx.thing_is_attached ? one(*ctx.thing_is_attached ? "true" : "false") : Values{};
    if (!ctx.thing) return std::nullopt;
    if (iequals(k, "ThingName")) return one(ctx.thing->name);
    if (iequals(k, "ThingTypeName"))
      return ctx.thing->type_name.empty() ? Values{} : one(ctx.thing->type_name);
    if (consume(k, "Attributes[") && !k.empty() && k.back() == ']') {
      // Attribute names are case-sensitive.
      auto it = ctx.thing->attributes.find(std::string(k.substr(0, k.size() - 1)));
      return it == ctx.thing->attributes.end() ? Values{} : one(it->second);
    }
    return std::nullopt;
  }
  if (consume(k, "iot:Certificate.")) {
    if (!ctx.certificate) return std::nullopt;
    const CertificateFacts& c = *ctx.certificate;
    if (iequals(k, "SerialNumber"))
      return c.serial_number.empty() ? Values{} : one(c.serial_number);
    if (iequals(k, "AvailableKeys")) {
      std::vector<std::string> keys;
      auto add_fields = [&](const NameFields& fields, std::string_view prefix) {
        for (const auto& f : kFields) {
          for (const auto& [sn, v] : fields) {
            if (sn == f.sn) {
              keys.push_back("iot:Certificate." + std::string(prefix) + std::string(f.aws));
              break;
            }
          }
        }
      };
      add_fields(c.subject, "Subject.");
      add_fields(c.issuer, "Issuer.");
      if (!c.serial_number.empty()) keys.push_back("iot:Certificate.SerialNumber");
      return keys;
    }
    if (consume(k, "Subject.")) return certificate_name(c.subject, c.subject_alt_names, k);
    if (consume(k, "Issuer.")) return certificate_name(c.issuer, c.issuer_alt_names, k);
  }
  return std::nullopt;
}

}  // namespace fk::policy
