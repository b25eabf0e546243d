// PeerCertificate: what the TLS layer learned about the client's certificate, in our own
// types, read once per handshake so that nobody parses the certificate again per connection.
// describe_certificate() reads a certificate's DER parts (the GnuTLS engine's path; the
// OpenSSL engine reads the X509 its handshake already parsed), in the same words. Pure functions,
// any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fk::net {

struct PeerCertificate {
  // What IoT policy variables read (iot:Certificate.Subject.*, ...).
  using Fields = std::vector<std::pair<std::string, std::string>>;
  // The issuer's parts: the same for every device of a CA, so kept once per issuer seen lately
  // and shared (intern() below), not once per connection.
  struct Issuer {
    std::string name;  // RFC 2253
    Fields fields;     // OpenSSL short names
    Fields alt_names;  // the certificate's issuer alternative names
  };

  std::string certificate_id;  // lowercase hex SHA-256 of the DER (AWS's certificateId)
  std::string serial_hex;
  Fields subject_fields;     // OpenSSL short names: ("CN", "locker-1"), ...
  Fields subject_alt_names;  // ("DNSName", "a.example"), ...
  std::shared_ptr<const Issuer> issued_by;

  // The subject's first CN ("" if none).
  std::string_view common_name() const {
    for (const auto& [k, v] : subject_fields)
      if (k == "CN") return v;
    return {};
  }
  const std::string& issuer() const { return issuer_part().name; }
  const Fields& issuer_fields() const { return issuer_part().fields; }
  const Fields& issuer_alt_names() const { return issuer_part().alt_names; }

  // The shared copy of `issuer` (an equal one already held by a live certificate, or this).
  static std::shared_ptr<const Issuer> intern(Issuer issuer);

 private:
  const Issuer& issuer_part() const {
    static const Issuer kNone;
    return issued_by ? *issued_by : kNone;
  }
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
