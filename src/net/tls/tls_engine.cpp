#include "net/tls/tls_engine.h"

namespace fk::net {

std::string_view to_string(TlsEngineKind k) {
  return k == TlsEngineKind::kGnuTls ? "gnutls" : "openssl";
}

Result<TlsEngineKind> parse_tls_engine(std::string_view name) {
  if (name == "openssl") return TlsEngineKind::kOpenSsl;
  if (name == "gnutls") return TlsEngineKind::kGnuTls;
  return invalid_request("must be \"openssl\" or \"gnutls\"");
}

Result<std::unique_ptr<TlsEngine>> TlsEngine::create(TlsEngineKind kind,
                                                     const TlsServerSettings& settings) {
  return kind == TlsEngineKind::kGnuTls ? make_gnutls_engine(settings)
                                        : make_openssl_engine(settings);
}

}  // namespace fk::net
