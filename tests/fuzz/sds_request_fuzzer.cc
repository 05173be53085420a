// Fuzzes the SDS xDS state machines with what a proxy controls: a sequence of serialized
// DiscoveryRequest / DeltaDiscoveryRequest messages, interleaved with resource updates and
// response generation. Input: byte 0 picks SotW (even) or Delta (odd); then records of
// [op][length][payload]: op % 3 == 0 parses the payload as a request, 1 publishes a resource
// built from it, 2 takes the next response. Invariants: a response only carries watched names,
// with the nonce it was given, and never the version the client just rejected.
#include <cstddef>
#include <cstdint>
#include <string>

#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "sds/resource.h"
#include "tests/fuzz/records.h"
#include "xds/delta_state.h"
#include "xds/sotw_state.h"

namespace {

using meshid::xds::ResourcePtr;
using meshid::xds::ResourceUpdate;

meshid::xds::ResourcePtr Resource(const std::string& payload, uint64_t generation) {
  const bool root = !payload.empty() && (payload[0] & 1);
  if (root) return *meshid::sds::MakeValidationContextResource("ROOTCA", {"ROOT" + payload}, generation);
  return *meshid::sds::MakeTlsCertificateResource("default", "CHAIN" + payload, "KEY" + payload, generation);
}

bool Known(const std::string& name) { return name == "default" || name == "ROOTCA"; }

std::string SecretName(const google::protobuf::Any& any) {
  envoy::extensions::transport_sockets::tls::v3::Secret secret;
  if (!any.UnpackTo(&secret)) __builtin_trap();
  return secret.name();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool delta = data[0] & 1;
  meshid::xds::SotwStreamState sotw{meshid::sds::SecretType()};
  meshid::xds::DeltaStreamState incremental{meshid::sds::SecretType()};
  uint64_t generation = 0;
  int nonce = 0;
  std::string rejected;  // version NACKed by the last request, to be checked against the next response
  meshid::fuzzing::FuzzRecords records(data, size);
  uint8_t op = 0;
  std::string payload;
  while (records.Next(op, payload)) {
    switch (op % 3) {
      case 0: {
        if (delta) {
          envoy::service::discovery::v3::DeltaDiscoveryRequest request;
          if (!request.ParseFromString(payload)) break;
          auto result = incremental.OnRequest(request, Known);
          if (result.ok() && result->nack && !result->applied.empty()) rejected = result->applied[0].second;
        } else {
          envoy::service::discovery::v3::DiscoveryRequest request;
          if (!request.ParseFromString(payload)) break;
          auto result = sotw.OnRequest(request);
          if (result.ok() && result->nack && !result->applied.empty()) rejected = result->applied[0].second;
        }
        break;
      }
      case 1: {
        meshid::xds::ResourcePtr resource = Resource(payload, ++generation);
        meshid::xds::ResourceUpdate update{resource->name, resource, absl::OkStatus()};
        (void)(delta ? incremental.OnUpdate(update) : sotw.OnUpdate(update));
        break;
      }
      case 2: {
        const std::string n = std::to_string(++nonce);
        if (delta) {
          auto response = incremental.TakeResponse(n);
          if (!response) break;
          if (response->nonce() != n) __builtin_trap();
          for (const auto& r : response->resources()) {
            if (!Known(r.name()) || SecretName(r.resource()) != r.name()) __builtin_trap();
            if (!rejected.empty() && r.version() == rejected) __builtin_trap();
          }
        } else {
          auto response = sotw.TakeResponse(n);
          if (!response) break;
          if (response->nonce() != n || response->resources_size() == 0) __builtin_trap();
          const auto names = sotw.names();
          for (const auto& any : response->resources()) {
            if (!names.contains(SecretName(any))) __builtin_trap();
          }
          if (!rejected.empty() && response->version_info() == rejected) __builtin_trap();
        }
        rejected.clear();
        break;
      }
    }
  }
  return 0;
}
