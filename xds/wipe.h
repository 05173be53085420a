// Wiping xDS messages that may hold key material (SDS secrets carry private keys): the bytes
// are overwritten with OPENSSL_cleanse before the message is cleared, so they do not linger in
// freed memory. Safe on any message; the caller owns it.
#pragma once

#include <openssl/crypto.h>

#include <string>

#include "envoy/service/discovery/v3/discovery.pb.h"

namespace meshid::xds {

inline void WipeString(std::string* s) {
  if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
}

inline void WipeResponse(envoy::service::discovery::v3::DiscoveryResponse& response) {
  for (auto& any : *response.mutable_resources()) WipeString(any.mutable_value());
  response.Clear();
}

inline void WipeResponse(envoy::service::discovery::v3::DeltaDiscoveryResponse& response) {
  for (auto& resource : *response.mutable_resources()) WipeString(resource.mutable_resource()->mutable_value());
  response.Clear();
}

}  // namespace meshid::xds
