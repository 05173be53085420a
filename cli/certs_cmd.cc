// `meshid certs request`: a workload-side client of the CSR API (what istio-agent does once):
// generate a key, send a CSR with a token, write key.pem, cert-chain.pem and root-cert.pem.
#include <filesystem>
#include <iostream>

#include "absl/strings/ascii.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/csr.h"
#include "common/duration.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "nodeagent/ca_client.h"

namespace meshid::cli {
namespace {

struct RequestFlags {
  std::string ca_addr = "127.0.0.1:15012";
  std::string ca_root;
  std::string token;
  std::string token_file;
  std::string out_dir = ".";
  std::string key_type = "ecdsa-p256";
  std::string ttl = "0s";
  std::string tls_server_name;
  std::string renew_cert;
  std::string renew_key;
  bool insecure_plaintext = false;
};

void RunRequest(const RequestFlags& f, CommandContext& ctx) {
  auto algorithm = ParseKeyAlgorithm(f.key_type);
  if (!algorithm.ok()) return Fail(ctx, "--key-type", algorithm.status());
  auto ttl = ParseDuration(f.ttl);
  if (!ttl.ok()) return Fail(ctx, "--ttl", ttl.status());
  std::string token = f.token;
  if (!f.token_file.empty()) {
    auto text = ReadFile(f.token_file, 64 * 1024);
    if (!text.ok()) return Fail(ctx, "--token-file", text.status());
    token = std::string(absl::StripAsciiWhitespace(*text));
  }
  CaClientOptions options;
  options.address = f.ca_addr;
  options.insecure_plaintext = f.insecure_plaintext;
  options.tls_server_name = f.tls_server_name;
  if (!f.insecure_plaintext) {
    auto root = ReadFile(f.ca_root);
    if (!root.ok()) return Fail(ctx, "--ca-root", root.status());
    options.root_cert_pem = *root;
  }
  if (!f.renew_cert.empty()) {
    auto cert = ReadFile(f.renew_cert);
    if (!cert.ok()) return Fail(ctx, "--renew-cert", cert.status());
    auto key = ReadFile(f.renew_key);
    if (!key.ok()) return Fail(ctx, "--renew-key", key.status());
    options.client_cert_chain_pem = *cert;
    options.client_key_pem = *key;
  }
  auto client = CaClient::Create(options);
  if (!client.ok()) return Fail(ctx, "--ca-addr", client.status());
  auto key = GenerateKey(*algorithm);
  if (!key.ok()) return Fail(ctx, "key", key.status());
  auto csr = BuildCsrPem(key->get());
  if (!csr.ok()) return Fail(ctx, "csr", csr.status());
  auto chain = (*client)->CreateCertificate(*csr, token, *ttl);
  if (!chain.ok()) {
    return Fail(ctx, absl::StrCat("CreateCertificate (", absl::StatusCodeToString(chain.status().code()), ")"),
                chain.status());
  }
  auto key_pem = PrivateKeyToPem(key->get());
  if (!key_pem.ok()) return Fail(ctx, "key", key_pem.status());
  std::string chain_pem;
  for (const auto& pem : *chain) chain_pem += pem;
  if (auto s = EnsureDirectory(f.out_dir, 0700); !s.ok()) return Fail(ctx, "--out-dir", s);
  auto path = [&](const char* name) { return (std::filesystem::path(f.out_dir) / name).string(); };
  for (const auto& [file, content, mode] :
       {std::tuple<std::string, std::string, int>{path("key.pem"), std::string(key_pem->view()), 0600},
        {path("cert-chain.pem"), chain_pem, 0644},
        {path("root-cert.pem"), chain->back(), 0644}}) {
    if (auto s = WriteFileAtomic(file, content, mode); !s.ok()) return Fail(ctx, "--out-dir", s);
  }
  auto leaf = CertFromPem(chain->front());
  if (!leaf.ok()) return Fail(ctx, "response", leaf.status());
  std::vector<std::string> uris = UriSans(leaf->get());
  std::cout << "issued " << (uris.empty() ? "(no URI SAN)" : uris.front()) << " serial " << SerialHex(leaf->get())
            << " valid until " << absl::FormatTime(absl::RFC3339_sec, NotAfter(leaf->get()), absl::UTCTimeZone())
            << "\nwrote " << path("key.pem") << ", " << path("cert-chain.pem") << ", " << path("root-cert.pem")
            << std::endl;
}

}  // namespace

void RegisterCertsCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* certs = app.add_subcommand("certs", "Workload certificates");
  certs->require_subcommand(1);
  auto f = std::make_shared<RequestFlags>();
  CLI::App* request =
      certs->add_subcommand("request", "Obtain an SVID from a meshid server (or istiod) and write it to files");
  request->add_option("--ca-addr", f->ca_addr, "CA address")->envname("CA_ADDR")->capture_default_str();
  request->add_option("--ca-root", f->ca_root, "Trust bundle of the CA (e.g. <data-dir>/root-cert.pem)");
  request->add_option("--token", f->token, "Bearer token");
  request->add_option("--token-file", f->token_file, "File holding the bearer token");
  request->add_option("--renew-cert", f->renew_cert, "Authenticate with this certificate chain instead (renewal)");
  request->add_option("--renew-key", f->renew_key, "Private key of --renew-cert");
  request->add_option("--out-dir", f->out_dir, "Where to write key.pem, cert-chain.pem, root-cert.pem")
      ->capture_default_str();
  request->add_option("--key-type", f->key_type, "ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096")
      ->capture_default_str();
  request->add_option("--ttl", f->ttl, "Requested lifetime (0s: the server default)")->capture_default_str();
  request->add_option("--tls-server-name", f->tls_server_name, "Name to check in the CA's certificate");
  request->add_flag("--insecure-plaintext", f->insecure_plaintext, "Talk to a CA started with --insecure-plaintext");
  request->callback([f, &ctx] { RunRequest(*f, ctx); });
}

}  // namespace meshid::cli
