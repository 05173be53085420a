// Fuzzes what the policy stream's peers control. Byte 0 % 3 picks the side:
//  - 0: the receiving side (agent, proxy). The rest is a serialized DiscoveryResponse from
//    the server or agent: it goes through xds::SotwClientState for PolicySnapshotType() with the
//    policy handler, and a snapshot it accepts is parsed and compiled as the proxy does.
//    Invariant: every reply echoes the response's nonce, and a snapshot handed out validates.
//  - 1: the serving side (server, agent): xds::SotwStreamState for PolicySnapshotType(), fed
//    the snapshot as the server's publisher does. Records of [op][length][payload]: op % 3 == 0
//    parses the payload as a DiscoveryRequest, 1 publishes a new snapshot, 2 takes the next
//    response. Invariants: a response carries the nonce it was given and a decodable snapshot,
//    and never the version the client rejected; no response before the first request.
//  - 2: an agent's status report (PolicyStatusReport) as the server checks it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "policy/apply.h"
#include "policy/client.h"
#include "policy/server.h"
#include "policy/wire.h"
#include "tests/fuzz/records.h"
#include "xds/client.h"
#include "xds/sotw_state.h"

namespace {

using meshid::policy::PolicySnapshotPtr;

PolicySnapshotPtr Snapshot(int64_t version, const std::string& payload) {
  meshid::PolicyVersion v;
  v.info.version = version;
  v.documents.push_back({"AuthorizationPolicy", "demo", "p",
                         "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, "
                         "namespace: demo}\nspec: {}\n# " +
                             std::to_string(payload.size()) + "\n",
                         "fuzz"});
  return meshid::policy::MakePolicySnapshot(v);
}

void Receive(const std::string& bytes) {
  envoy::service::discovery::v3::DiscoveryResponse response;
  if (!response.ParseFromString(bytes)) return;
  meshid::xds::SotwClientState client(meshid::policy::PolicySnapshotType(),
                                      meshid::policy::ToXdsNode({"proxy", "svc", "ns"}), {});
  client.StartStream();
  auto compile = [](const PolicySnapshotPtr& snapshot) -> absl::Status {
    if (!meshid::policy::ValidatePolicySnapshot(*snapshot).ok()) __builtin_trap();
    meshid::rbac::Diagnostics diag;
    auto set = meshid::policy::ParseSnapshot(*snapshot, meshid::authz::LoadOptions{}, diag);
    return set.ok() ? meshid::policy::CompileCheck(std::move(*set), {}) : set.status();
  };
  envoy::service::discovery::v3::DiscoveryRequest reply =
      client.OnResponse(response, meshid::policy::PolicyResponseHandler(compile));
  if (reply.response_nonce() != response.nonce()) __builtin_trap();
}

void Report(const std::string& bytes) {
  meshid::policy::v1::PolicyStatusReport report;
  if (!report.ParseFromString(bytes)) return;
  auto rows = meshid::policy::StatusRowsFromReport("spiffe://cluster.local/ns/a/sa/b", report, absl::UnixEpoch());
  if (rows.ok() && rows->size() != static_cast<size_t>(report.proxies_size()) + 1) __builtin_trap();
}

void Serve(const uint8_t* data, size_t size) {
  meshid::xds::SotwStreamState state{meshid::policy::PolicySnapshotType()};
  meshid::xds::ResourcePtr latest;  // what the publisher holds
  bool started = false;
  int64_t version = 0;
  int64_t rejected = 0;
  int nonce = 0;
  meshid::fuzzing::FuzzRecords records(data, size);
  uint8_t op = 0;
  std::string payload;
  while (records.Next(op, payload)) {
    switch (op % 3) {
      case 0: {
        envoy::service::discovery::v3::DiscoveryRequest request;
        if (!request.ParseFromString(payload)) break;
        auto result = state.OnRequest(request);
        if (!result.ok()) break;
        started = started || result->first;
        if (result->nack) {
          rejected = meshid::policy::ParsePolicyVersion(meshid::xds::SotwVersionInfo(result->applied)).value_or(-1);
        }
        // A (re)subscription gets the publisher's current snapshot, as the stream server does.
        if (result->names_changed && latest != nullptr) {
          (void)state.OnUpdate({std::string(meshid::policy::kPolicySnapshotName), latest, absl::OkStatus()});
        }
        break;
      }
      case 1: {
        auto resource = std::make_shared<meshid::xds::Resource>(
            meshid::policy::PolicySnapshotResource(*Snapshot(++version, payload)));
        resource->generation = static_cast<uint64_t>(version);
        latest = resource;
        (void)state.OnUpdate({resource->name, latest, absl::OkStatus()});
        break;
      }
      case 2: {
        const std::string n = std::to_string(++nonce);
        auto response = state.TakeResponse(n);
        if (!response) break;
        if (!started || response->nonce() != n) __builtin_trap();
        auto snapshot = meshid::policy::DecodePolicyResponse(*response);
        if (!snapshot.ok() || (*snapshot)->version() == rejected) __builtin_trap();
        break;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      Receive(rest);
      break;
    case 1:
      Serve(data, size);
      break;
    default:
      Report(rest);
      break;
  }
  return 0;
}
