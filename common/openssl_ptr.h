// RAII owners for OpenSSL objects, and the helpers every OpenSSL caller uses to turn a failed
// call into a status. Every OpenSSL object meshid creates is held by one of these from the line
// that creates it; no code calls an OpenSSL *_free function itself.
//
// Checking: every OpenSSL return value is checked. A call that fails on input (parsing,
// verification, a key that does not fit) becomes the caller's InvalidArgument (or
// Unauthenticated, ...) naming what was wrong; a call on our own objects that fails becomes
// OpenSslError("<what we were doing>"), an Internal status carrying OpenSSL's error queue.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid {

template <auto Fn>
struct OpenSslDeleter {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};

using Asn1EnumeratedPtr = std::unique_ptr<ASN1_ENUMERATED, OpenSslDeleter<ASN1_ENUMERATED_free>>;
using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, OpenSslDeleter<ASN1_INTEGER_free>>;
using Asn1ObjectPtr = std::unique_ptr<ASN1_OBJECT, OpenSslDeleter<ASN1_OBJECT_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, OpenSslDeleter<ASN1_TIME_free>>;
using Asn1StringPtr =
    std::unique_ptr<ASN1_STRING, OpenSslDeleter<ASN1_STRING_free>>;  // also IA5, bit and octet strings
using AuthorityKeyIdPtr = std::unique_ptr<AUTHORITY_KEYID, OpenSslDeleter<AUTHORITY_KEYID_free>>;
using BasicConstraintsPtr = std::unique_ptr<BASIC_CONSTRAINTS, OpenSslDeleter<BASIC_CONSTRAINTS_free>>;
using BioPtr = std::unique_ptr<BIO, OpenSslDeleter<BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, OpenSslDeleter<BN_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OpenSslDeleter<ECDSA_SIG_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, OpenSslDeleter<EVP_MD_CTX_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpenSslDeleter<EVP_PKEY_CTX_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter<EVP_PKEY_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, OpenSslDeleter<GENERAL_NAME_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OpenSslDeleter<GENERAL_NAMES_free>>;
using OsslParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OpenSslDeleter<OSSL_PARAM_BLD_free>>;
using OsslParamPtr = std::unique_ptr<OSSL_PARAM, OpenSslDeleter<OSSL_PARAM_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpenSslDeleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OpenSslDeleter<SSL_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, OpenSslDeleter<X509_CRL_free>>;
using X509RevokedPtr = std::unique_ptr<X509_REVOKED, OpenSslDeleter<X509_REVOKED_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, OpenSslDeleter<X509_EXTENSION_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, OpenSslDeleter<X509_NAME_free>>;
using X509Ptr = std::unique_ptr<X509, OpenSslDeleter<X509_free>>;
using X509ReqPtr = std::unique_ptr<X509_REQ, OpenSslDeleter<X509_REQ_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OpenSslDeleter<X509_STORE_CTX_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, OpenSslDeleter<X509_STORE_free>>;

// Stacks: the first frees the stack only (its elements are borrowed), the others free the
// elements with it.
struct X509StackDeleter {
  void operator()(STACK_OF(X509) * stack) const;
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackDeleter>;
struct X509ExtensionStackDeleter {
  void operator()(STACK_OF(X509_EXTENSION) * stack) const;
};
using X509ExtensionStackPtr = std::unique_ptr<STACK_OF(X509_EXTENSION), X509ExtensionStackDeleter>;
struct Asn1ObjectStackDeleter {
  void operator()(STACK_OF(ASN1_OBJECT) * stack) const;
};
using Asn1ObjectStackPtr = std::unique_ptr<STACK_OF(ASN1_OBJECT), Asn1ObjectStackDeleter>;  // EXTENDED_KEY_USAGE

// OpenSSL 3 deprecates the low-level key objects, but the CA keeps them on its hot path on
// purpose: signing and verifying through them skips the provider lookups that cost as much as
// the signature (ca/cert_issuer.cc, ca/csr_validator.cc). Their deleters are defined out of
// line so that this header needs no deprecated declarations.
struct EcKeyDeleter {
  void operator()(EC_KEY* key) const;
};
using EcKeyPtr = std::unique_ptr<EC_KEY, EcKeyDeleter>;
struct RsaDeleter {
  void operator()(RSA* key) const;
};
using RsaPtr = std::unique_ptr<RSA, RsaDeleter>;

// Memory OpenSSL allocated for us (i2d_* output, BN_bn2hex, ...).
struct OpenSslFreeDeleter {
  void operator()(void* p) const;
};
template <typename T>
using OpenSslBuffer = std::unique_ptr<T, OpenSslFreeDeleter>;

// Drains OpenSSL's thread-local error queue into one readable string (empty if none).
std::string DrainOpenSslErrors();

// Internal("<what> failed: <OpenSSL's errors>"), draining the error queue. For a call on our
// own objects that OpenSSL refused; input that OpenSSL rejects is the caller's InvalidArgument.
absl::Status OpenSslError(absl::string_view what);

// The DER bytes an i2d-style call produces: `encode(unsigned char** out)` allocates *out and
// returns its length (<= 0 on failure, which is OpenSslError(what)). Example:
//   EncodeDer([&](unsigned char** out) { return i2d_X509_NAME(name, out); }, "encoding the issuer name")
template <typename Encode>
absl::StatusOr<std::string> EncodeDer(Encode encode, absl::string_view what) {
  unsigned char* raw = nullptr;
  const int len = encode(&raw);
  OpenSslBuffer<unsigned char> der(raw);
  if (len <= 0 || der == nullptr) return OpenSslError(what);
  return std::string(reinterpret_cast<const char*>(der.get()), static_cast<size_t>(len));
}

}  // namespace meshid
