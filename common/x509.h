// X.509 certificate helpers over OpenSSL: PEM/DER conversion, field accessors, path validation.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"

namespace meshid {

absl::StatusOr<X509Ptr> CertFromDer(absl::string_view der);
// Every block must be a CERTIFICATE; at least one is required. `context` (e.g. a file name)
// prefixes error messages.
absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(absl::string_view pem, absl::string_view context = "");
// Exactly one CERTIFICATE block.
absl::StatusOr<X509Ptr> CertFromPem(absl::string_view pem, absl::string_view context = "");

std::string CertToDer(X509* cert);
std::string CertToPem(X509* cert);
X509Ptr CopyCert(X509* cert);

std::string SerialHex(X509* cert);  // upper-case hex, no separators, as `openssl x509 -serial`
absl::Time NotBefore(X509* cert);
absl::Time NotAfter(X509* cert);
std::vector<std::string> UriSans(X509* cert);
std::vector<std::string> DnsSans(X509* cert);
bool IsCa(X509* cert);
bool IsSelfSigned(X509* cert);

// RFC 5280 path validation of `leaf` through `intermediates` to one of `roots` at time `at`.
// The error names OpenSSL's reason ("certificate has expired", "unable to get local issuer
// certificate", ...).
absl::Status VerifyCertChain(X509* leaf, const std::vector<X509*>& intermediates, const std::vector<X509*>& roots,
                             absl::Time at);

}  // namespace meshid
