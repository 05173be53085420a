// X.509 certificate helpers over OpenSSL: PEM/DER conversion, field accessors, path validation.
#pragma once

#include <string>
#include <utility>
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

// Encoding a certificate OpenSSL parsed or signed fails only when memory runs out; these then
// abort, as any other allocation failure does.
std::string CertToDer(X509* cert);
std::string CertToPem(X509* cert);
X509Ptr CopyCert(X509* cert);

std::string SerialHex(X509* cert);                      // upper-case hex, no separators, as `openssl x509 -serial`
std::string Asn1IntegerHex(const ASN1_INTEGER* value);  // the same form; "" if it does not convert
absl::Time Asn1TimeToAbsl(const ASN1_TIME* t);          // absl::InfinitePast() if absent or malformed
absl::Time NotBefore(X509* cert);
absl::Time NotAfter(X509* cert);
std::vector<std::string> UriSans(X509* cert);
std::vector<std::string> DnsSans(X509* cert);
bool IsCa(X509* cert);
bool IsSelfSigned(X509* cert);

// A GENERAL_NAMES of (type, value) pairs, in order: GEN_URI, GEN_DNS or GEN_EMAIL with the
// name as text. Errors name what OpenSSL refused.
absl::StatusOr<GeneralNamesPtr> MakeGeneralNames(const std::vector<std::pair<int, std::string>>& names);
// An extension `nid` holding `value`, OpenSSL's struct for that extension (GENERAL_NAMES for a
// SAN, BASIC_CONSTRAINTS, ...), DER-encoded.
absl::StatusOr<X509ExtensionPtr> MakeExtension(int nid, bool critical, void* value);

// RFC 5280 path validation of `leaf` through `intermediates` to one of `roots` at time `at`.
// The error names OpenSSL's reason ("certificate has expired", "unable to get local issuer
// certificate", ...).
absl::Status VerifyCertChain(X509* leaf, const std::vector<X509*>& intermediates, const std::vector<X509*>& roots,
                             absl::Time at);

}  // namespace meshid
