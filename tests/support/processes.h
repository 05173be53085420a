// The real `meshid` binary as running processes, for integration tests: `meshid server` and
// `meshid agent` on loopback with ports chosen by the OS, started and waited for until ready,
// and stopped when the object goes away.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/support/subprocess.h"

namespace meshid::testing {

// The `meshid` binary of this build.
const std::string& MeshidBinary();

// `meshid server --data-dir <dir> --listen 127.0.0.1:0 --monitoring-addr 127.0.0.1:0 <extra>`,
// waited for until it has logged both ports (ok() says whether it did; Log() tells why not).
// Killed with SIGKILL on destruction. Not thread-safe, except the const accessors.
class ServerProcess {
 public:
  explicit ServerProcess(const std::string& data_dir, std::vector<std::string> extra_args = {});

  bool ok() const { return port_ != 0; }
  const std::string& data_dir() const { return dir_; }
  // host:port of the CA (and policy) gRPC service.
  std::string address() const;
  int monitoring_port() const { return monitoring_port_; }
  std::string root_file() const { return dir_ + "/root-cert.pem"; }
  // The root certificate, PEM ("" if it cannot be read).
  std::string root() const;
  std::string Log() const { return process_->Log(); }
  Subprocess& process() { return *process_; }

  // A token from `meshid token create` for <ns>/<sa>; a failing command is a test failure.
  std::string Token(const std::string& ns = "default", const std::string& sa = "sleep",
                    const std::string& extra_args = "");
  // A sample of the monitoring endpoint's Prometheus text (`name` with its labels as rendered),
  // -1 when absent.
  double Metric(const std::string& name) const;

 private:
  std::string dir_;
  std::unique_ptr<Subprocess> process_;
  int port_ = 0;
  int monitoring_port_ = 0;
};

// Istio's plug-in CA layout in `dir` (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem:
// an intermediate under a root), made with the openssl command line as Istio's docs do. False
// (with openssl's output added as a test failure) if a command failed.
bool MakePluginCa(const std::string& dir);

// How an AgentProcess is laid out: <dir>/<name>.token, <name>.sock, <name>.crl.pem (the CRL it
// keeps) and <name>.log.
struct AgentProcessOptions {
  std::string dir;
  std::string name = "agent";
  // The agent authenticates as istio-system/<service_account>.
  std::string service_account = "meshid-agent";
  std::string ca_address;  // --ca-addr; empty: the server's address
  std::vector<std::string> extra_args;
};

// `meshid agent` for `server`, with a token of its own, waited for until its SDS socket
// listens (ok()). Stopped with SIGTERM (SIGKILL if it does not exit) on destruction.
class AgentProcess {
 public:
  AgentProcess(ServerProcess& server, AgentProcessOptions options);
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  bool ok() const { return ok_; }
  const std::string& socket() const { return socket_; }
  std::string Log() const { return process_->Log(); }
  // As ServerProcess::Metric, from the agent's monitoring endpoint.
  double Metric(const std::string& name) const;

 private:
  std::string socket_;
  std::unique_ptr<Subprocess> process_;
  bool ok_ = false;
  int monitoring_port_ = 0;
};

// A sample of the Prometheus text served on 127.0.0.1:`port`/metrics (`name` with its labels as
// rendered), -1 when absent.
double ScrapeMetric(int port, const std::string& name);

}  // namespace meshid::testing
