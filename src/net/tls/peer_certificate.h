// PeerCertificate: what the TLS layer learned about the client's certificate, in our own
// types, read once per handshake so that nobody parses the certificate again per connection.
// describe_certificate() reads a DER certificate (the GnuTLS engine's path; the OpenSSL engine
// reads the X509 its handshake already parsed). Pure functions, any thread.
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

// Empty certificate_id when `der` is not a certificate.
PeerCertificate describe_certificate(std::string_view der);

}  // namespace fk::net
