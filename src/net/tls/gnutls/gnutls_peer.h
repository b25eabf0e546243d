// Reads a DER certificate with GnuTLS into our PeerCertificate, in the same words as the
// OpenSSL engine (the parts are formatted by net/tls/openssl/peer.cpp) without decoding its
// public key again. Any thread.
#pragma once

#include <string_view>

#include "net/tls/peer_certificate.h"

namespace fk::net {

// Empty certificate_id when `der` is not a certificate.
PeerCertificate describe_with_gnutls(std::string_view der);

}  // namespace fk::net
