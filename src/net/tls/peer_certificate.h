// PeerCertificate: what the TLS layer learned about the client's certificate, in our own
// types, read once per handshake so that nobody parses the certificate again per connection.
// describe_certificate() reads a certificate's DER parts (the GnuTLS engine's path; the
// OpenSSL engine reads the X509 its handshake already parsed), in the same words. Pure functions,
// any thread.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fk::net {

struct PeerCertificate {
  std::string certificate_id;  // lowercase hex SHA-256 of the DER (AWS's certificateId)
  std::string subject;         // RFC 2253
  std::string common_name;
  std::string issuer;
  std::string serial_hex;
  // What IoT policy variables read (iot:Certificate.Subject.*, ...).
  using Fields = std::vector<std::pair<std::string, std::string>>;
  Fields subject_fields;  // OpenSSL short names: ("CN", "locker-1"), ...
  Fields issuer_fields;
  Fields subject_alt_names;  // ("DNSName", "a.example"), ...
  Fields issuer_alt_names;
};

// A certificate's parts as DER, split by a TLS library that already parsed it (the GnuTLS
// engine): read without decoding the public key again, which costs OpenSSL 3.0's d2i_X509
// ~40 us per handshake.
struct CertificateParts {
  std::string_view der;                // the whole certificate
  std::string_view subject;            // Name
  std::string_view issuer;             // Name
  std::string_view serial;             // the INTEGER's content octets (big-endian)
  std::string_view subject_alt_names;  // the extension's value (GeneralNames), "" if none
  std::string_view issuer_alt_names;
};

// Empty certificate_id when the parts are not readable.
PeerCertificate describe_certificate(const CertificateParts& parts);

}  // namespace fk::net
