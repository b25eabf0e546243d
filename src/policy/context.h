// RequestContext: the facts about one connection that policy variables and condition keys
// read (${iot:ClientId}, ${iot:Connection.Thing.ThingName}, iot:Certificate.Subject.*, ...).
//
// lookup() answers a key with its values, or nothing when the key cannot be resolved; the
// evaluator then follows AWS's rule (the ${...} text stays literal, a condition on a missing
// key does not hold). Plain values; pure; safe to copy across threads.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fk::policy {

using NameFields = std::vector<std::pair<std::string, std::string>>;  // ("CN", "locker-1"), ...

// The thing associated with the connection: the client id names a thing attached to the
// certificate.
struct ThingFacts {
  std::string name;
  std::string type_name;  // empty: no type
  std::map<std::string, std::string> attributes;
};

struct CertificateFacts {
  NameFields subject;  // OpenSSL short names: CN, O, OU, C, ST, serialNumber, title, ...
  NameFields issuer;
  NameFields subject_alt_names;  // (RFC822Name|DNSName|DirectoryName|UniformResourceIdentifier|
                                 //  IPAddress, value)
  NameFields issuer_alt_names;
  std::string serial_number;  // lowercase hex, as the certificate's serial
};

struct RequestContext {
  std::optional<std::string> client_id;
  std::optional<std::string> source_ip;
  std::optional<std::string> domain_name;
  std::optional<ThingFacts> thing;
  // Whether a thing named like the client id is attached to the certificate.
  std::optional<bool> thing_is_attached;
  std::optional<CertificateFacts> certificate;
  // iot:ConnectAttributes ("PersistentConnect", "LastWill"): only on iot:Connect.
  std::optional<std::vector<std::string>> connect_attributes;
};

// Values of a variable or condition key (case-insensitive key names as IAM), or nullopt.
// Certificate values that AWS would not substitute (containing * $ + ? #, over 1,024
// characters, an index out of range) are nullopt.
std::optional<std::vector<std::string>> lookup(const RequestContext& ctx, std::string_view key);

}  // namespace fk::policy
