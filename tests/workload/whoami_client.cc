// A Workload API client for the workload tests: calls FetchX509Bundles on the test server
// (tests/workload/peer_listener_test.cc), whose bundles' keys are the caller's attested
// selectors, and prints
//
//   pid <its own pid>
//   <key>            one line per key of the first response, sorted
//   status OK        or: status <code> <message>
//   end
//
// Usage: whoami_client (--socket <path> | --fd <connected socket>) [--wait] [--calls N]
// --wait reads a line from stdin before each call (and exits at the end of stdin), so a test
// can change the world between calls.
#include <fcntl.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "spiffe/workload/workload.grpc.pb.h"

namespace {

int Usage() {
  std::cerr << "usage: whoami_client (--socket <path> | --fd <fd>) [--wait] [--calls N]\n";
  return 2;
}

void Call(SpiffeWorkloadAPI::Stub& stub) {
  grpc::ClientContext context;
  context.AddMetadata("workload.spiffe.io", "true");
  X509BundlesRequest request;
  auto reader = stub.FetchX509Bundles(&context, request);
  X509BundlesResponse response;
  std::vector<std::string> keys;
  while (reader->Read(&response)) {  // the test server sends one response and finishes
    for (const auto& [key, value] : response.bundles()) keys.push_back(key);
  }
  const grpc::Status status = reader->Finish();
  std::sort(keys.begin(), keys.end());
  for (const std::string& key : keys) std::cout << key << "\n";
  if (status.ok()) {
    std::cout << "status OK\n";
  } else {
    std::cout << "status " << status.error_code() << " " << status.error_message() << "\n";
  }
  std::cout << "end" << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path;
  int fd = -1;
  bool wait = false;
  int calls = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--socket" && i + 1 < argc) {
      socket_path = argv[++i];
    } else if (arg == "--fd" && i + 1 < argc) {
      fd = std::atoi(argv[++i]);
    } else if (arg == "--wait") {
      wait = true;
    } else if (arg == "--calls" && i + 1 < argc) {
      calls = std::atoi(argv[++i]);
    } else {
      return Usage();
    }
  }
  if (socket_path.empty() == (fd < 0)) return Usage();
  std::cout << "pid " << getpid() << std::endl;

  std::shared_ptr<grpc::Channel> channel;
  if (fd >= 0) {
    // gRPC needs a non-blocking socket.
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
      std::cerr << "fcntl: " << std::strerror(errno) << "\n";
      return 1;
    }
    channel = grpc::CreateInsecureChannelFromFd("whoami", fd);
  } else {
    channel = grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials());
  }
  auto stub = SpiffeWorkloadAPI::NewStub(channel);
  for (int i = 0; i < calls; ++i) {
    if (wait) {
      std::string line;
      if (!std::getline(std::cin, line)) return 0;
    }
    Call(*stub);
  }
  return 0;
}
