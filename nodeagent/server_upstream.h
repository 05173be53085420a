// The node agent's connection to meshid server, shared by every stream the agent takes from the
// centre (policy today): mutual TLS with the agent's own SVID from the secret cache; until the
// cache has one, the agent's token as `authorization: Bearer` over TLS (the CSR API's two ways
// to authenticate). The server's certificate is checked against the trust bundle file, re-read
// on every connect. When the agent's first certificate arrives while the last connection used
// the token, listeners are told to reconnect with it.
//
// Threading: thread-safe (xds::UpstreamSource's contract).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "nodeagent/token_source.h"
#include "xds/provider.h"
#include "xds/upstream.h"

namespace meshid {

struct ServerUpstreamOptions {
  std::string server_address;       // host:port of meshid server, or a list (ParseServerTarget)
  std::string ca_root_file;         // trust bundle for the server's certificate
  std::string pushed_bundle_file;   // and the one the server pushed, when it exists ("" none)
  std::string server_name;          // overrides the name checked, if set
  bool insecure_plaintext = false;  // only for a server started with --insecure-plaintext
  int max_message_bytes = 4 << 20;
};

class ServerUpstream final : public xds::UpstreamSource {
 public:
  // Watches the agent's own certificate ("default" of a stream without a token) in `secrets`.
  // `secrets` and `token` must outlive the upstream. InvalidArgument naming the flag for
  // missing options.
  static absl::StatusOr<std::unique_ptr<ServerUpstream>> Create(ServerUpstreamOptions options,
                                                                xds::ResourceProvider& secrets, TokenSource& token);
  ~ServerUpstream() override;

  absl::StatusOr<xds::CallMetadata> Metadata() override;
  std::string Describe() const override;

 private:
  absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel() override;
  ServerUpstream(ServerUpstreamOptions options, TokenSource& token);
  void OnSvid(const xds::ResourceUpdate& update);

  const ServerUpstreamOptions options_;
  TokenSource& token_;
  std::shared_ptr<xds::ForwardingWatcher> watcher_;  // detached before the upstream goes
  std::unique_ptr<xds::Subscription> subscription_;
  absl::Mutex mu_;
  xds::ResourcePtr svid_ ABSL_GUARDED_BY(mu_);
  bool using_token_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace meshid
