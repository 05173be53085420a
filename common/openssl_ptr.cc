// The deleters of the deprecated low-level key objects live here, the one place that needs
// their declarations (see common/openssl_ptr.h).
#define OPENSSL_SUPPRESS_DEPRECATED

#include "common/openssl_ptr.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "absl/strings/str_cat.h"

namespace meshid {

void X509StackDeleter::operator()(STACK_OF(X509) * stack) const { sk_X509_free(stack); }

void X509ExtensionStackDeleter::operator()(STACK_OF(X509_EXTENSION) * stack) const {
  sk_X509_EXTENSION_pop_free(stack, X509_EXTENSION_free);
}

void Asn1ObjectStackDeleter::operator()(STACK_OF(ASN1_OBJECT) * stack) const {
  sk_ASN1_OBJECT_pop_free(stack, ASN1_OBJECT_free);
}

void EcKeyDeleter::operator()(EC_KEY* key) const { EC_KEY_free(key); }

void RsaDeleter::operator()(RSA* key) const { RSA_free(key); }

void OpenSslFreeDeleter::operator()(void* p) const { OPENSSL_free(p); }

std::string DrainOpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

absl::Status OpenSslError(absl::string_view what) {
  std::string errors = DrainOpenSslErrors();
  return absl::InternalError(absl::StrCat(what, " failed", errors.empty() ? "" : ": ", errors));
}

}  // namespace meshid
