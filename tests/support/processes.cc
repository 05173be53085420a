#include "tests/support/processes.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/files.h"
#include "tests/support/temp_dir.h"

namespace meshid::testing {

const std::string& MeshidBinary() {
  static const std::string path = MESHID_BINARY;
  return path;
}

ServerProcess::ServerProcess(const std::string& data_dir, std::vector<std::string> extra_args) : dir_(data_dir) {
  std::vector<std::string> argv = {MeshidBinary(), "server",      "--data-dir",        dir_,
                                   "--listen",     "127.0.0.1:0", "--monitoring-addr", "127.0.0.1:0"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  // Several servers may share a data directory (replicas); each gets its own log.
  static std::atomic<int> instances{0};
  process_ = std::make_unique<Subprocess>(argv, absl::StrCat(dir_, ".", instances++, ".log"));
  auto port = process_->WaitForLog(R"(listening on 127\.0\.0\.1:(\d+))");
  auto monitoring = process_->WaitForLog(R"(monitoring on port (\d+))");
  if (port && monitoring) {
    port_ = std::stoi(*port);
    monitoring_port_ = std::stoi(*monitoring);
  }
}

std::string ServerProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string ServerProcess::root() const { return ReadFile(root_file()).value_or(""); }

std::string ServerProcess::Token(const std::string& ns, const std::string& sa, const std::string& extra_args) {
  auto [rc, out] = RunShell(
      absl::StrCat(MeshidBinary(), " token create --data-dir ", dir_, " -n ", ns, " -s ", sa, " ", extra_args));
  EXPECT_EQ(rc, 0) << out;
  return std::string(absl::StripAsciiWhitespace(out));
}

double ServerProcess::Metric(const std::string& name) const { return ScrapeMetric(monitoring_port_, name); }

double ScrapeMetric(int port, const std::string& name) {
  auto [rc, out] = RunShell(absl::StrCat("curl -sf http://127.0.0.1:", port, "/metrics"));
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

bool MakePluginCa(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string script = absl::StrReplaceAll(R"(set -e; cd DIR
cat > int.ext <<EOT
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root-key.pem -out root-cert.pem -days 3650 -subj "/O=Istio/CN=Root CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.csr -subj "/O=Istio/CN=Intermediate CA"
openssl x509 -req -in ca.csr -CA root-cert.pem -CAkey root-key.pem -CAcreateserial -days 730 -extfile int.ext -out ca-cert.pem
cat ca-cert.pem root-cert.pem > cert-chain.pem
chmod 600 ca-key.pem)",
                                                 {{"DIR", dir}});
  auto [rc, out] = RunShell("bash -c '" + absl::StrReplaceAll(script, {{"'", "'\\''"}}) + "'");
  EXPECT_EQ(rc, 0) << out;
  return rc == 0;
}

AgentProcess::AgentProcess(ServerProcess& server, AgentProcessOptions options) {
  const std::string base = absl::StrCat(options.dir, "/", options.name);
  const std::string token_file = WriteTestFile(base + ".token", server.Token("istio-system", options.service_account));
  socket_ = base + ".sock";
  const std::string ca_address = options.ca_address.empty() ? server.address() : options.ca_address;
  std::vector<std::string> argv = {MeshidBinary(),        "agent",
                                   "--ca-addr",           ca_address,
                                   "--ca-root",           server.root_file(),
                                   "--token-file",        token_file,
                                   "--sds-socket",        socket_,
                                   "--monitoring-addr",   "127.0.0.1:0",
                                   "--crl-file",          base + ".crl.pem",
                                   "--trust-bundle-file", base + ".trust-bundle.pem"};
  // Its own Workload API socket: the default (beside the SDS socket) is one per directory.
  const bool api_socket_given = std::find(options.extra_args.begin(), options.extra_args.end(),
                                          "--workload-api-socket") != options.extra_args.end();
  if (!api_socket_given) argv.insert(argv.end(), {"--workload-api-socket", base + ".api.sock"});
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  process_ = std::make_unique<Subprocess>(argv, base + ".log");
  ok_ = process_->WaitForLog("sds listening on unix:").has_value();
  if (auto port = process_->WaitForLog(R"(monitoring on port (\d+))"); ok_ && port) monitoring_port_ = std::stoi(*port);
}

double AgentProcess::Metric(const std::string& name) const { return ScrapeMetric(monitoring_port_, name); }

AgentProcess::~AgentProcess() {
  process_->Kill(SIGTERM);
  process_->Wait();  // then SIGKILL by the Subprocess if it has not exited
}

}  // namespace meshid::testing
