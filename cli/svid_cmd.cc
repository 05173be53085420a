// `meshid svid fetch|watch`: the SPIFFE Workload API for programs that cannot speak gRPC. The
// agent identifies the caller by what the kernel says about this process, so these commands
// get the identity of the user and program that run them, as any Workload API client does.
#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/duration.h"
#include "common/files.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "common/secret.h"
#include "common/x509.h"
#include "nlohmann/json.hpp"
#include "spiffe/workload/workload.grpc.pb.h"

namespace meshid::cli {
namespace {

// The agent's default: beside its default SDS socket.
constexpr char kDefaultSocket[] = "./var/run/secrets/workload-spiffe-uds/workload-api.sock";

struct SvidFlags {
  std::string socket;  // empty: SPIFFE_ENDPOINT_SOCKET, else kDefaultSocket
  std::string output = "pem";
  std::string spiffe_id;
  std::string out_dir;
  std::string exec;
  std::string signal;
  std::string timeout = "30s";
};

// One SVID in the forms files need.
struct SvidFiles {
  std::string spiffe_id;
  std::string chain_pem;
  SecretString key_pem;
  std::string bundle_pem;
  absl::Time not_after;
};

std::string Target(const std::string& flag) {
  std::string value = flag;
  if (value.empty()) {
    const char* env = std::getenv("SPIFFE_ENDPOINT_SOCKET");
    value = env != nullptr && *env != '\0' ? env : kDefaultSocket;
  }
  absl::string_view v = value;
  if (absl::ConsumePrefix(&v, "unix://") || absl::ConsumePrefix(&v, "unix:")) return absl::StrCat("unix:", v);
  return absl::StrCat("unix:", value);
}

// Concatenated DER certificates as PEM, one block each.
absl::StatusOr<std::string> DerCertsToPem(const std::string& der, absl::string_view what) {
  std::string pem;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  while (p < end) {
    const unsigned char* start = p;
    X509Ptr cert(d2i_X509(nullptr, &p, end - p));
    if (cert == nullptr || p <= start) return absl::InvalidArgumentError(absl::StrCat(what, ": not DER certificates"));
    pem += EncodePem("CERTIFICATE", absl::string_view(reinterpret_cast<const char*>(start), p - start));
  }
  if (pem.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": empty"));
  return pem;
}

absl::StatusOr<SvidFiles> ToFiles(const X509SVID& svid) {
  SvidFiles files;
  files.spiffe_id = svid.spiffe_id();
  auto chain = DerCertsToPem(svid.x509_svid(), "x509_svid");
  if (!chain.ok()) return chain.status();
  files.chain_pem = std::move(*chain);
  auto bundle = DerCertsToPem(svid.bundle(), "bundle");
  if (!bundle.ok()) return bundle.status();
  files.bundle_pem = std::move(*bundle);
  if (svid.x509_svid_key().empty()) return absl::InvalidArgumentError("x509_svid_key: empty");
  files.key_pem = SecretString(EncodePem("PRIVATE KEY", svid.x509_svid_key()));
  auto leaf = CertsFromPem(files.chain_pem, "x509_svid");
  if (!leaf.ok()) return leaf.status();
  files.not_after = NotAfter(leaf->front().get());
  return files;
}

// The SVID to use from a response: --spiffe-id's, else the first.
absl::StatusOr<SvidFiles> Pick(const X509SVIDResponse& response, const std::string& spiffe_id) {
  for (const auto& svid : response.svids()) {
    if (spiffe_id.empty() || svid.spiffe_id() == spiffe_id) return ToFiles(svid);
  }
  if (response.svids().empty()) return absl::NotFoundError("the agent sent no SVID");
  return absl::NotFoundError(absl::StrCat("the agent sent no SVID for ", spiffe_id));
}

void WipeResponse(X509SVIDResponse& response) {
  for (auto& svid : *response.mutable_svids()) {
    std::string* key = svid.mutable_x509_svid_key();
    if (!key->empty()) OPENSSL_cleanse(key->data(), key->size());
  }
}

absl::Status ToAbsl(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// Writes the three files, each atomically (a temporary file, fsync, rename): a reader sees the
// old file or the new one, never half of one, and the key is 0600 from its first byte.
absl::Status WriteFiles(const std::string& dir, const SvidFiles& files) {
  if (auto s = EnsureDirectory(dir, 0755); !s.ok()) return s;
  // The key first: a consumer that reloads on the certificate's change finds a matching key.
  if (auto s = WriteFileAtomic(dir + "/key.pem", files.key_pem.view(), 0600); !s.ok()) return s;
  if (auto s = WriteFileAtomic(dir + "/cert-chain.pem", files.chain_pem, 0644); !s.ok()) return s;
  return WriteFileAtomic(dir + "/root-cert.pem", files.bundle_pem, 0644);
}

absl::StatusOr<int> ParseSignal(absl::string_view name) {
  int number = 0;
  if (absl::SimpleAtoi(name, &number) && number > 0 && number < 65) return number;
  std::string upper = absl::AsciiStrToUpper(name);
  absl::string_view n = upper;
  absl::ConsumePrefix(&n, "SIG");
  static const std::pair<const char*, int> kSignals[] = {{"HUP", SIGHUP},    {"INT", SIGINT},   {"QUIT", SIGQUIT},
                                                         {"USR1", SIGUSR1},  {"USR2", SIGUSR2}, {"TERM", SIGTERM},
                                                         {"WINCH", SIGWINCH}};
  for (const auto& [signal_name, value] : kSignals) {
    if (n == signal_name) return value;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("\"", name, "\" is not a signal (HUP, USR1, USR2, TERM, ... or a number)"));
}

// What to do after the files changed.
struct Notify {
  std::string exec;     // run with /bin/sh -c
  std::string pidfile;  // with `signal`
  int signal = 0;
};

absl::StatusOr<Notify> ParseNotify(const SvidFlags& flags) {
  Notify notify;
  notify.exec = flags.exec;
  if (!flags.signal.empty()) {
    const size_t colon = flags.signal.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", flags.signal, "\": want PIDFILE:SIGNAL, e.g. /run/nginx.pid:HUP"));
    }
    notify.pidfile = flags.signal.substr(0, colon);
    auto signal = ParseSignal(absl::string_view(flags.signal).substr(colon + 1));
    if (!signal.ok()) return signal.status();
    notify.signal = *signal;
  }
  return notify;
}

absl::Status RunNotify(const Notify& notify) {
  if (!notify.exec.empty()) {
    pid_t child = fork();
    if (child < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
    if (child == 0) {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execl("/bin/sh", "sh", "-c", notify.exec.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError(absl::StrCat("--exec \"", notify.exec, "\" failed (status ", status, ")"));
    }
  }
  if (notify.signal != 0) {
    auto text = ReadFile(notify.pidfile, 64);
    if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat("--signal: ", text.status().message()));
    int pid = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) || pid <= 1) {
      return absl::InvalidArgumentError(absl::StrCat("--signal: ", notify.pidfile, " does not hold a process id"));
    }
    if (kill(pid, notify.signal) != 0) {
      return absl::InternalError(absl::StrCat("--signal: kill(", pid, "): ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

std::unique_ptr<SpiffeWorkloadAPI::Stub> Connect(const SvidFlags& flags) {
  return SpiffeWorkloadAPI::NewStub(grpc::CreateChannel(Target(flags.socket), grpc::InsecureChannelCredentials()));
}

void RunFetch(const SvidFlags& flags, CommandContext& ctx) {
  if (flags.output != "pem" && flags.output != "json") {
    return Fail(ctx, "-o", absl::InvalidArgumentError(absl::StrCat("\"", flags.output, "\": want pem or json")));
  }
  auto timeout = ParseDuration(flags.timeout);
  if (!timeout.ok()) return Fail(ctx, "--timeout", timeout.status());
  auto stub = Connect(flags);
  grpc::ClientContext context;
  context.AddMetadata("workload.spiffe.io", "true");
  context.set_deadline(absl::ToChronoTime(absl::Now() + *timeout));
  auto reader = stub->FetchX509SVID(&context, X509SVIDRequest());
  X509SVIDResponse response;
  if (!reader->Read(&response)) {
    return Fail(ctx, "svid fetch", ToAbsl(reader->Finish()));
  }
  context.TryCancel();
  auto files = Pick(response, flags.spiffe_id);
  WipeResponse(response);
  if (!files.ok()) return Fail(ctx, "svid fetch", files.status());
  if (!flags.out_dir.empty()) {
    if (auto s = WriteFiles(flags.out_dir, *files); !s.ok()) return Fail(ctx, "svid fetch --out-dir", s);
  }
  if (flags.output == "json") {
    nlohmann::json out = {{"spiffe_id", files->spiffe_id},
                          {"not_after", absl::FormatTime(absl::RFC3339_sec, files->not_after, absl::UTCTimeZone())},
                          {"cert_chain", files->chain_pem},
                          {"private_key", std::string(files->key_pem.view())},
                          {"bundle", files->bundle_pem}};
    std::cout << out.dump(2) << std::endl;
  } else if (flags.out_dir.empty()) {
    std::cout << files->chain_pem << files->key_pem.view() << files->bundle_pem << std::flush;
  } else {
    std::cout << "wrote " << flags.out_dir << "/{cert-chain,key,root-cert}.pem for " << files->spiffe_id
              << " (valid until " << absl::FormatTime(absl::RFC3339_sec, files->not_after, absl::UTCTimeZone()) << ")"
              << std::endl;
  }
}

void RunWatch(const SvidFlags& flags, CommandContext& ctx) {
  if (flags.out_dir.empty()) return Fail(ctx, "--out-dir", absl::InvalidArgumentError("required"));
  auto notify = ParseNotify(flags);
  if (!notify.ok()) return Fail(ctx, "--signal", notify.status());
  BlockTerminationSignals();
  std::atomic<bool> stop{false};
  std::mutex mu;
  grpc::ClientContext* current = nullptr;
  std::thread signals([&] {
    WaitForTerminationSignal();
    stop = true;
    std::lock_guard<std::mutex> lock(mu);
    if (current != nullptr) current->TryCancel();
  });
  auto stub = Connect(flags);
  absl::Duration backoff = absl::Milliseconds(500);
  std::string last_written;  // chain and bundle: a CRL change alone rewrites nothing
  while (!stop) {
    grpc::ClientContext context;
    context.AddMetadata("workload.spiffe.io", "true");
    {
      std::lock_guard<std::mutex> lock(mu);
      current = &context;
    }
    if (stop) break;
    auto reader = stub->FetchX509SVID(&context, X509SVIDRequest());
    X509SVIDResponse response;
    while (reader->Read(&response)) {
      backoff = absl::Milliseconds(500);
      auto files = Pick(response, flags.spiffe_id);
      WipeResponse(response);
      if (!files.ok()) {
        std::cerr << "svid watch: " << files.status().message() << std::endl;
        continue;
      }
      std::string written = files->chain_pem + files->bundle_pem;
      if (written == last_written) continue;
      if (auto s = WriteFiles(flags.out_dir, *files); !s.ok()) {
        std::cerr << "svid watch: writing " << flags.out_dir << ": " << s.message() << std::endl;
        continue;
      }
      last_written = std::move(written);
      std::cerr << "svid watch: wrote " << files->spiffe_id << " valid until "
                << absl::FormatTime(absl::RFC3339_sec, files->not_after, absl::UTCTimeZone()) << std::endl;
      if (auto s = RunNotify(*notify); !s.ok()) std::cerr << "svid watch: " << s.message() << std::endl;
    }
    grpc::Status status = reader->Finish();
    {
      std::lock_guard<std::mutex> lock(mu);
      current = nullptr;
    }
    if (stop) break;
    std::cerr << "svid watch: the Workload API stream ended (" << status.error_message() << "); again in "
              << absl::FormatDuration(backoff) << std::endl;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(30));
  }
  signals.join();  // the loop ends only once the signal thread has seen SIGINT or SIGTERM
}

}  // namespace

void RegisterSvidCommands(CLI::App& app, CommandContext& ctx) {
  auto flags = std::make_shared<SvidFlags>();
  CLI::App* svid = app.add_subcommand("svid", "This process's X.509-SVID from the node agent's SPIFFE Workload API");
  svid->require_subcommand(1);
  auto add_common = [flags](CLI::App* cmd) {
    cmd->add_option("--socket", flags->socket,
                    std::string("Workload API socket (path or unix:///path) [default: $SPIFFE_ENDPOINT_SOCKET, else ") +
                        kDefaultSocket + "]");
    cmd->add_option("--spiffe-id", flags->spiffe_id, "Which SVID when the agent sends several [default: the first]");
  };
  CLI::App* fetch = svid->add_subcommand("fetch", "Print (or write) the current SVID, key and bundle once");
  add_common(fetch);
  fetch->add_option("-o,--output", flags->output, "pem or json")->capture_default_str();
  fetch->add_option("--out-dir", flags->out_dir, "Also write cert-chain.pem, key.pem (0600), root-cert.pem here");
  fetch->add_option("--timeout", flags->timeout, "How long to wait for the agent")->capture_default_str();
  fetch->callback([flags, &ctx] { RunFetch(*flags, ctx); });
  CLI::App* watch =
      svid->add_subcommand("watch", "Keep cert-chain.pem, key.pem and root-cert.pem current in a directory");
  add_common(watch);
  watch->add_option("--out-dir", flags->out_dir, "Directory for the files")->required();
  watch->add_option("--exec", flags->exec, "Command to run (sh -c) after every change");
  watch->add_option("--signal", flags->signal, "PIDFILE:SIGNAL to send after every change, e.g. /run/nginx.pid:HUP");
  watch->callback([flags, &ctx] { RunWatch(*flags, ctx); });
}

}  // namespace meshid::cli
