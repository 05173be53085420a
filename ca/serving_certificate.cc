#include "ca/serving_certificate.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/status_macros.h"

namespace meshid {
namespace {

constexpr char kCurrent[] = "current";
constexpr char kCurrentTmp[] = "current.tmp";

std::string VersionName(int version) { return absl::StrCat("v", version); }

bool IsOurs(const std::string& name) {
  int version = 0;
  return name == kCurrent || name == kCurrentTmp ||
         (absl::StartsWith(name, "v") && absl::SimpleAtoi(name.substr(1), &version));
}

std::string ChainOf(const CertIssuer& issuer) { return absl::StrJoin(issuer.authority().chain_pems, ""); }

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<ServingCertificateFiles> ServingCertificateFiles::Create(ServingCertificateOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("serving certificate directory: must not be empty");
  MESHID_RETURN_IF_ERROR(EnsureDirectory(options.dir, 0700));
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(options.dir, error)) {
    if (!IsOurs(entry.path().filename().string())) continue;
    std::filesystem::remove_all(entry.path(), error);
    if (error) {
      return absl::InternalError(absl::StrCat("removing ", entry.path().string(), ": ", error.message()));
    }
  }
  if (error) return absl::InternalError(absl::StrCat("listing ", options.dir, ": ", error.message()));
  return ServingCertificateFiles(std::move(options));
}

absl::Status ServingCertificateFiles::Renew(const CertIssuer& issuer) {
  MESHID_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateKey(KeyAlgorithm::kEcdsaP256));
  MESHID_ASSIGN_OR_RETURN(IssuedCertificate issued, issuer.IssueServingCert(key.get(), options_.names, options_.ttl));
  MESHID_ASSIGN_OR_RETURN(SecretString key_pem, PrivateKeyToPem(key.get()));
  const std::string above = ChainOf(issuer);

  const int next = version_ + 1;
  const std::string version_dir = absl::StrCat(options_.dir, "/", VersionName(next));
  std::error_code error;
  std::filesystem::remove_all(version_dir, error);
  MESHID_RETURN_IF_ERROR(EnsureDirectory(version_dir, 0700));
  MESHID_RETURN_IF_ERROR(WriteFileAtomic(version_dir + "/key.pem", key_pem.view(), 0600));
  MESHID_RETURN_IF_ERROR(WriteFileAtomic(version_dir + "/chain.pem", issued.pem + above, 0644));
  // One rename swaps the whole pair.
  const std::string tmp = absl::StrCat(options_.dir, "/", kCurrentTmp);
  const std::string current = absl::StrCat(options_.dir, "/", kCurrent);
  if (unlink(tmp.c_str()) != 0 && errno != ENOENT) return ErrnoError("removing", tmp);
  if (symlink(VersionName(next).c_str(), tmp.c_str()) != 0) return ErrnoError("creating the symlink", tmp);
  if (rename(tmp.c_str(), current.c_str()) != 0) return ErrnoError("renaming to", current);
  // The version before stays for a reader that resolved it just before the swap.
  std::filesystem::remove_all(absl::StrCat(options_.dir, "/", VersionName(next - 2)), error);

  version_ = next;
  serial_hex_ = issued.serial_hex;
  chain_ = above;
  renew_after_ = issued.not_before + (issued.not_after - issued.not_before) / 2;
  return absl::OkStatus();
}

absl::StatusOr<bool> ServingCertificateFiles::RenewIfDue(const CertIssuer& issuer, const Clock& clock) {
  if (version_ > 0 && ChainOf(issuer) == chain_ && clock.Now() < renew_after_) return false;
  MESHID_RETURN_IF_ERROR(Renew(issuer));
  return true;
}

}  // namespace meshid
