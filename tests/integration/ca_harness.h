// A running `meshid server` for integration tests, and small helpers around it.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "ca/local_issuer.h"
#include "common/files.h"
#include "common/jwt.h"
#include "nodeagent/ca_client.h"
#include "tests/integration/subprocess.h"

namespace meshid::testing {

inline const std::string& MeshidBinary() {
  static const std::string path = MESHID_BINARY;
  return path;
}

inline std::string Write(const std::string& path, const std::string& content) {
  std::ofstream(path) << content;
  return path;
}

// A running `meshid server` in its own temporary data directory.
class Server {
 public:
  explicit Server(const std::string& dir, std::vector<std::string> extra = {}) : dir_(dir) {
    std::vector<std::string> argv = {MeshidBinary(), "server",      "--data-dir",        dir_,
                                     "--listen",     "127.0.0.1:0", "--monitoring-addr", "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    static std::atomic<int> instances{0};
    proc_ = std::make_unique<Subprocess>(argv, absl::StrCat(dir_, ".", instances++, ".log"));
    auto port = proc_->WaitForLog(R"(listening on 127\.0\.0\.1:(\d+))");
    auto monitoring = proc_->WaitForLog(R"(monitoring on port (\d+))");
    if (port && monitoring) {
      port_ = std::stoi(*port);
      monitoring_port_ = std::stoi(*monitoring);
    }
  }
  bool ok() const { return port_ != 0; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string root_file() const { return dir_ + "/root-cert.pem"; }
  std::string root() const { return *ReadFile(root_file()); }
  std::string Log() const { return proc_->Log(); }
  Subprocess& process() { return *proc_; }

  std::string Token(const std::string& ns = "default", const std::string& sa = "sleep", const std::string& extra = "") {
    auto [rc, out] =
        RunShell(absl::StrCat(MeshidBinary(), " token create --data-dir ", dir_, " -n ", ns, " -s ", sa, " ", extra));
    EXPECT_EQ(rc, 0) << out;
    return std::string(absl::StripAsciiWhitespace(out));
  }
  // A token with arbitrary claims/header, signed by the server's local issuer key.
  std::string CustomToken(nlohmann::json claims, const std::string& kid_override = "") {
    auto issuer = *LocalTokenIssuer::Load(dir_, false);
    return *SignJwt(claims, issuer.key(), kid_override.empty() ? issuer.kid() : kid_override);
  }
  nlohmann::json Claims(int64_t exp_in = 3600) {
    int64_t now = absl::ToUnixSeconds(absl::Now());
    return {{"iss", kLocalTokenIssuer},
            {"sub", "system:serviceaccount:default:sleep"},
            {"aud", "istio-ca"},
            {"iat", now},
            {"exp", now + exp_in}};
  }

  double Metric(const std::string& name) {
    auto [rc, out] = RunShell(absl::StrCat("curl -sf http://127.0.0.1:", monitoring_port_, "/metrics"));
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return -1;
  }
  int monitoring_port() const { return monitoring_port_; }

 private:
  std::string dir_;
  std::unique_ptr<Subprocess> proc_;
  int port_ = 0;
  int monitoring_port_ = 0;
};

// A CA client for `server`, optionally authenticating with a client certificate.
inline std::unique_ptr<CaClient> ClientFor(const Server& server, const std::string& cert = "",
                                           const std::string& key = "") {
  CaClientOptions options;
  options.address = server.address();
  options.root_cert_pem = server.root();
  options.client_cert_chain_pem = cert;
  options.client_key_pem = key;
  options.timeout = absl::Seconds(10);
  return *CaClient::Create(options);
}

}  // namespace meshid::testing
