// Reads a certificate OpenSSL already parsed into our PeerCertificate (the OpenSSL engine's
// path: no second parse per handshake). Any thread.
#pragma once

#include <openssl/x509.h>

#include "net/tls/peer_certificate.h"

namespace fk::net {

PeerCertificate describe_x509(X509* cert);

}  // namespace fk::net
