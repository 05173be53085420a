#include "revocation/wire.h"

#include "absl/strings/str_cat.h"
#include "common/secret.h"
#include "xds/resource.h"

namespace meshid::revocation {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::revocation::v1::RevocationList;

absl::string_view View(const std::string& s) { return absl::string_view(s.data(), s.size()); }

absl::StatusOr<int64_t> ParseVersion(absl::string_view version_info) {
  return xds::ParseNumberedVersion(version_info, "CRL number");
}

absl::Status ValidateRequest(const DiscoveryRequest& request, bool first) {
  if (View(request.type_url()) != kRevocationListTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("type_url \"", xds::ClipForError(View(request.type_url())),
                                                   "\" is not served here; want ", kRevocationListTypeUrl));
  }
  if (auto version = ParseVersion(View(request.version_info())); !version.ok()) return version.status();
  if (first && request.node().id().size() > 256) return absl::InvalidArgumentError("node.id is longer than 256 bytes");
  return absl::OkStatus();
}

}  // namespace

const xds::ResourceType& RevocationListType() {
  static const xds::ResourceType type{
      .type_url = std::string(kRevocationListTypeUrl),
      .sotw_method = "/meshid.revocation.v1.RevocationDistributionService/StreamRevocations",
      .sotw =
          {
              .require_node_id = true,
              .wildcard_names = {std::string(kRevocationListName)},
              .strict_ack = true,
              .validate_request = ValidateRequest,
          },
      .client_acks_unchanged_without_handler = true,
  };
  return type;
}

xds::Resource RevocationListResource(const RevocationList& list) {
  xds::Resource resource;
  resource.name = std::string(kRevocationListName);
  std::string body = list.SerializeAsString();
  resource.version = absl::StrCat(list.crl_number(), ".", xds::ContentVersion(body));
  resource.body = SecretString(std::move(body));
  return resource;
}

absl::StatusOr<RevocationList> DecodeRevocationResponse(const DiscoveryResponse& response) {
  if (View(response.type_url()) != kRevocationListTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("type_url \"", xds::ClipForError(View(response.type_url())),
                                                   "\" is not ", kRevocationListTypeUrl));
  }
  if (response.resources_size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources: a revocation response carries exactly one, this one ", response.resources_size()));
  }
  const auto& any = response.resources(0);
  if (View(any.type_url()) != kRevocationListTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("resources[0].type_url \"", xds::ClipForError(View(any.type_url())),
                                                   "\" is not ", kRevocationListTypeUrl));
  }
  if (any.value().size() > kMaxRevocationListBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources[0]: ", any.value().size(), " bytes, more than ", kMaxRevocationListBytes));
  }
  RevocationList list;
  if (!list.ParseFromString(any.value())) {
    return absl::InvalidArgumentError("resources[0]: not a serialized meshid.revocation.v1.RevocationList");
  }
  if (list.crl_der().empty()) return absl::InvalidArgumentError("resources[0].crl_der: empty");
  if (list.issuer_chain_der_size() > kMaxIssuerChain) {
    return absl::InvalidArgumentError(absl::StrCat("resources[0].issuer_chain_der: ", list.issuer_chain_der_size(),
                                                   " certificates, more than ", kMaxIssuerChain));
  }
  if (list.crl_number() < 0) return absl::InvalidArgumentError("resources[0].crl_number: negative");
  auto version = ParseVersion(View(response.version_info()));
  if (!version.ok()) return version.status();
  if (response.version_info().empty() || *version != list.crl_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("version_info ", *version, " differs from the list's crl_number ", list.crl_number()));
  }
  return list;
}

}  // namespace meshid::revocation
