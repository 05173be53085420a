// UpstreamSource's channels: NewChannel per connection attempt (the one CurrentChannel names),
// and CallChannel for unary calls beside the streams, made again only after the credentials
// changed (a connection keeps the client certificate it was opened with).
#include "xds/upstream.h"

#include <gtest/gtest.h>

namespace meshid::xds {
namespace {

// Counts the channels it makes; each is a real (unconnected) channel to a Unix socket.
class CountingUpstream final : public UpstreamSource {
 public:
  absl::StatusOr<CallMetadata> Metadata() override { return CallMetadata(); }
  std::string Describe() const override { return "counting upstream"; }
  void Rotate() { CredentialsChanged(); }
  int made = 0;

 private:
  absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel() override {
    ++made;
    return grpc::CreateChannel("unix:/nonexistent/socket", grpc::InsecureChannelCredentials());
  }
};

TEST(UpstreamSourceTest, CallChannelIsKeptUntilTheCredentialsChange) {
  CountingUpstream upstream;
  EXPECT_EQ(upstream.CurrentChannel(), nullptr);
  auto first = upstream.CallChannel();
  ASSERT_TRUE(first.ok());
  auto again = upstream.CallChannel();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*first, *again);
  EXPECT_EQ(upstream.made, 1);
  // A call channel is not the streams' channel.
  EXPECT_EQ(upstream.CurrentChannel(), nullptr);

  upstream.Rotate();
  auto renewed = upstream.CallChannel();
  ASSERT_TRUE(renewed.ok());
  EXPECT_NE(*renewed, *first);
  EXPECT_EQ(upstream.made, 2);

  // A stream's new channel is not the call channel, and leaves it in place.
  auto stream = upstream.NewChannel();
  ASSERT_TRUE(stream.ok());
  EXPECT_EQ(upstream.CurrentChannel(), *stream);
  EXPECT_EQ(*upstream.CallChannel(), *renewed);
  EXPECT_EQ(upstream.made, 3);
}

}  // namespace
}  // namespace meshid::xds
