#include "trustbundle/wire.h"

#include <openssl/x509.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pem.h"
#include "common/secret.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "xds/resource.h"

namespace meshid::trustbundle {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::trustbundle::v1::TrustBundle;

// Long enough to show two roots' fingerprints in an error.
constexpr size_t kMaxQuotedFingerprint = 160;

absl::string_view View(const std::string& s) { return absl::string_view(s.data(), s.size()); }

std::string Subject(X509* cert) {
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf));
  return buf;
}

// A root of a trust bundle vouches for itself only: a CA certificate whose signature verifies
// with its own key. (A leaf or an intermediate in a bundle would be trusted as an anchor.)
absl::Status CheckRoot(X509* cert) {
  if (!IsCa(cert)) return absl::InvalidArgumentError("not a CA certificate (basicConstraints CA:TRUE is required)");
  if (!IsSelfSigned(cert)) {
    return absl::InvalidArgumentError("not self-signed (a root is issued by itself and verifies with its own key)");
  }
  return absl::OkStatus();
}

// A version as TrustBundleVersion makes it: 16 lower-case hex digits. "" is a client that has
// applied nothing yet.
bool IsVersion(absl::string_view version) {
  if (version.size() != 16) return false;
  return std::all_of(version.begin(), version.end(),
                     [](char c) { return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f'); });
}

absl::Status ValidateRequest(const DiscoveryRequest& request, bool first) {
  if (View(request.type_url()) != kTrustBundleTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("type_url \"", xds::ClipForError(View(request.type_url())),
                                                   "\" is not served here; want ", kTrustBundleTypeUrl));
  }
  if (!request.version_info().empty() && !IsVersion(View(request.version_info()))) {
    return absl::InvalidArgumentError(absl::StrCat("version_info \"", xds::ClipForError(View(request.version_info())),
                                                   "\" is not a trust bundle version (16 lower-case hex digits)"));
  }
  if (first && request.node().id().size() > 256) return absl::InvalidArgumentError("node.id is longer than 256 bytes");
  return absl::OkStatus();
}

}  // namespace

const xds::ResourceType& TrustBundleType() {
  static const xds::ResourceType type{
      .type_url = std::string(kTrustBundleTypeUrl),
      .sotw_method = "/meshid.trustbundle.v1.TrustBundleDistributionService/StreamTrustBundles",
      .sotw =
          {
              .require_node_id = true,
              .wildcard_names = {std::string(kTrustBundleName)},
              .strict_ack = true,
              .validate_request = ValidateRequest,
          },
      .client_acks_unchanged_without_handler = true,
  };
  return type;
}

absl::StatusOr<std::vector<std::string>> RootsFromPem(absl::string_view pem, absl::string_view context) {
  // Room for kMaxTrustBundleRoots roots of kMaxRootBytes in base64, with text between them (as
  // CertsFromPem, whose 1 MiB bound is below that, reads a bundle).
  PemParseOptions options;
  options.max_input_bytes = 2 * kMaxTrustBundleRoots * kMaxRootBytes;
  options.allow_text_outside_blocks = true;
  auto blocks = ParsePemBlocks(pem, options);
  if (!blocks.ok()) return absl::InvalidArgumentError(absl::StrCat(context, ": ", blocks.status().message()));
  // (fingerprint, DER), to sort and deduplicate by fingerprint.
  std::vector<std::pair<std::string, std::string>> roots;
  for (size_t i = 0; i < blocks->size(); ++i) {
    PemBlock& block = (*blocks)[i];
    const std::string what = absl::StrCat(context, ": certificate ", i + 1);
    if (block.type != "CERTIFICATE") {
      return absl::InvalidArgumentError(
          absl::StrCat(context, ": PEM block ", i + 1, " is \"", block.type, "\", expected CERTIFICATE"));
    }
    if (block.der.size() > kMaxRootBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", block.der.size(), " bytes, more than ", kMaxRootBytes));
    }
    auto cert = CertFromDer(block.der);
    if (!cert.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", cert.status().message()));
    if (auto s = CheckRoot(cert->get()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, " (", Subject(cert->get()), "): ", s.message()));
    }
    roots.emplace_back(RootFingerprint(block.der), std::move(block.der));
  }
  std::sort(roots.begin(), roots.end());
  roots.erase(std::unique(roots.begin(), roots.end(), [](const auto& a, const auto& b) { return a.first == b.first; }),
              roots.end());
  if (roots.size() > static_cast<size_t>(kMaxTrustBundleRoots)) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": ", roots.size(), " distinct roots, more than ", kMaxTrustBundleRoots));
  }
  std::vector<std::string> ders;
  ders.reserve(roots.size());
  for (auto& [fingerprint, der] : roots) ders.push_back(std::move(der));
  return ders;
}

absl::StatusOr<TrustBundle> MakeTrustBundle(absl::string_view trust_domain, absl::string_view roots_pem) {
  if (auto s = ValidateTrustDomain(trust_domain); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("trust_domain: ", s.message()));
  }
  auto roots = RootsFromPem(roots_pem, "roots_pem");
  if (!roots.ok()) return roots.status();
  TrustBundle bundle;
  bundle.set_trust_domain(std::string(trust_domain));
  for (std::string& der : *roots) bundle.add_root_der(std::move(der));
  bundle.set_fingerprint(RootSetFingerprint({bundle.root_der().begin(), bundle.root_der().end()}));
  return bundle;
}

absl::Status ValidateTrustBundle(const TrustBundle& bundle) {
  if (auto s = ValidateTrustDomain(View(bundle.trust_domain())); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("trust_domain: ", s.message()));
  }
  if (bundle.root_der().empty()) return absl::InvalidArgumentError("root_der: empty; a bundle holds at least one root");
  if (bundle.root_der_size() > kMaxTrustBundleRoots) {
    return absl::InvalidArgumentError(
        absl::StrCat("root_der: ", bundle.root_der_size(), " certificates, more than ", kMaxTrustBundleRoots));
  }
  std::vector<std::string> fingerprints;
  for (int i = 0; i < bundle.root_der_size(); ++i) {
    const std::string& der = bundle.root_der(i);
    const std::string field = absl::StrCat("root_der[", i, "]");
    if (der.size() > kMaxRootBytes) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", der.size(), " bytes, more than ", kMaxRootBytes));
    }
    auto cert = CertFromDer(der);
    if (!cert.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ": ", cert.status().message()));
    if (auto s = CheckRoot(cert->get()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, " (", Subject(cert->get()), "): ", s.message()));
    }
    fingerprints.push_back(RootFingerprint(der));
    if (i > 0 && fingerprints[i] == fingerprints[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": the same certificate as root_der[", i - 1, "]"));
    }
    if (i > 0 && fingerprints[i] < fingerprints[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": out of order; roots are sorted by fingerprint (",
                                                     fingerprints[i], " sorts before ", fingerprints[i - 1], ")"));
    }
  }
  const std::string want = absl::StrJoin(fingerprints, ",");  // sorted and unique, as checked
  if (bundle.fingerprint() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("fingerprint \"", xds::ClipForError(View(bundle.fingerprint()), kMaxQuotedFingerprint),
                     "\" differs from the roots' \"", xds::ClipForError(want, kMaxQuotedFingerprint), "\""));
  }
  return absl::OkStatus();
}

std::string TrustBundleVersion(const TrustBundle& bundle) { return xds::ContentVersion(bundle.fingerprint()); }

xds::Resource TrustBundleResource(const TrustBundle& bundle) {
  xds::Resource resource;
  resource.name = std::string(kTrustBundleName);
  resource.version = TrustBundleVersion(bundle);
  resource.body = SecretString(bundle.SerializeAsString());
  return resource;
}

absl::StatusOr<TrustBundle> DecodeTrustBundleResponse(const DiscoveryResponse& response) {
  if (View(response.type_url()) != kTrustBundleTypeUrl) {
    return absl::InvalidArgumentError(
        absl::StrCat("type_url \"", xds::ClipForError(View(response.type_url())), "\" is not ", kTrustBundleTypeUrl));
  }
  if (response.resources_size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources: a trust bundle response carries exactly one, this one ", response.resources_size()));
  }
  const auto& any = response.resources(0);
  if (View(any.type_url()) != kTrustBundleTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("resources[0].type_url \"", xds::ClipForError(View(any.type_url())),
                                                   "\" is not ", kTrustBundleTypeUrl));
  }
  if (any.value().size() > kMaxTrustBundleBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources[0]: ", any.value().size(), " bytes, more than ", kMaxTrustBundleBytes));
  }
  TrustBundle bundle;
  if (!bundle.ParseFromString(any.value())) {
    return absl::InvalidArgumentError("resources[0]: not a serialized meshid.trustbundle.v1.TrustBundle");
  }
  if (auto s = ValidateTrustBundle(bundle); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("resources[0].", s.message()));
  }
  const std::string version = TrustBundleVersion(bundle);
  if (response.version_info() != version) {
    return absl::InvalidArgumentError(absl::StrCat("version_info \"", xds::ClipForError(View(response.version_info())),
                                                   "\" differs from the bundle's version \"", version,
                                                   "\" (a digest of its fingerprint)"));
  }
  return bundle;
}

}  // namespace meshid::trustbundle
