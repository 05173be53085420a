// EC_KEY_METHOD and RSA_METHOD are how OpenSSL 3 lets a key sign somewhere else without a
// provider of our own; they are deprecated, not removed.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "pkcs11/token_key.h"

#include <dlfcn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <p11-kit/pkcs11.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/der.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/status_macros.h"

namespace meshid::pkcs11 {
namespace {

std::string ReturnCodeName(CK_RV rv) {
  switch (rv) {
    case CKR_OK:
      return "CKR_OK";
    case CKR_GENERAL_ERROR:
      return "CKR_GENERAL_ERROR";
    case CKR_FUNCTION_FAILED:
      return "CKR_FUNCTION_FAILED";
    case CKR_ARGUMENTS_BAD:
      return "CKR_ARGUMENTS_BAD";
    case CKR_DEVICE_ERROR:
      return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_MEMORY:
      return "CKR_DEVICE_MEMORY";
    case CKR_DEVICE_REMOVED:
      return "CKR_DEVICE_REMOVED";
    case CKR_KEY_HANDLE_INVALID:
      return "CKR_KEY_HANDLE_INVALID";
    case CKR_KEY_TYPE_INCONSISTENT:
      return "CKR_KEY_TYPE_INCONSISTENT";
    case CKR_MECHANISM_INVALID:
      return "CKR_MECHANISM_INVALID";
    case CKR_OBJECT_HANDLE_INVALID:
      return "CKR_OBJECT_HANDLE_INVALID";
    case CKR_PIN_INCORRECT:
      return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED:
      return "CKR_PIN_LOCKED";
    case CKR_SESSION_CLOSED:
      return "CKR_SESSION_CLOSED";
    case CKR_SESSION_COUNT:
      return "CKR_SESSION_COUNT";
    case CKR_SESSION_HANDLE_INVALID:
      return "CKR_SESSION_HANDLE_INVALID";
    case CKR_SLOT_ID_INVALID:
      return "CKR_SLOT_ID_INVALID";
    case CKR_TOKEN_NOT_PRESENT:
      return "CKR_TOKEN_NOT_PRESENT";
    case CKR_TOKEN_NOT_RECOGNIZED:
      return "CKR_TOKEN_NOT_RECOGNIZED";
    case CKR_USER_NOT_LOGGED_IN:
      return "CKR_USER_NOT_LOGGED_IN";
    case CKR_USER_PIN_NOT_INITIALIZED:
      return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return "CKR_CRYPTOKI_NOT_INITIALIZED";
    default:
      return absl::StrFormat("CKR 0x%x", static_cast<unsigned long>(rv));
  }
}

// Return codes that mean the token, the login or the session is gone rather than that this
// one call was wrong: the pool is dropped and rebuilt.
bool MeansTokenGone(CK_RV rv) {
  switch (rv) {
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_DEVICE_ERROR:
    case CKR_GENERAL_ERROR:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_SLOT_ID_INVALID:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return true;
    default:
      return false;
  }
}

absl::Status TokenError(CK_RV rv, absl::string_view what, absl::string_view key) {
  std::string message = absl::StrCat(key, ": ", what, ": ", ReturnCodeName(rv));
  if (MeansTokenGone(rv)) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

// A fixed-width, blank-padded CK_*_INFO field as a string.
template <size_t N>
std::string Field(const unsigned char (&field)[N]) {
  std::string s(reinterpret_cast<const char*>(field), N);
  return std::string(absl::StripTrailingAsciiWhitespace(s));
}

// One loaded and initialised module per file: C_Initialize is per process, so every key of a
// module shares it.
class Module {
 public:
  static absl::StatusOr<std::shared_ptr<Module>> Load(const std::string& path) {
    static std::mutex registry_mu;
    static auto* registry = new std::map<std::string, std::weak_ptr<Module>>();  // never destroyed
    std::lock_guard<std::mutex> lock(registry_mu);
    if (auto it = registry->find(path); it != registry->end()) {
      if (auto existing = it->second.lock()) return existing;
    }
    if (access(path.c_str(), F_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("PKCS#11 module ", path, ": no such file"));
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* error = dlerror();
      return absl::InvalidArgumentError(
          absl::StrCat("PKCS#11 module ", path, ": cannot be loaded: ", error != nullptr ? error : "unknown error"));
    }
    auto get_function_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
    CK_FUNCTION_LIST_PTR functions = nullptr;
    if (get_function_list == nullptr || get_function_list(&functions) != CKR_OK || functions == nullptr) {
      dlclose(handle);
      return absl::InvalidArgumentError(
          absl::StrCat("PKCS#11 module ", path, ": not a PKCS#11 module (no usable C_GetFunctionList)"));
    }
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;  // we call it from many threads
    CK_RV rv = functions->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      dlclose(handle);
      return absl::InternalError(absl::StrCat("PKCS#11 module ", path, ": C_Initialize: ", ReturnCodeName(rv)));
    }
    std::shared_ptr<Module> module(new Module(handle, functions, /*finalize=*/rv == CKR_OK));
    (*registry)[path] = module;
    return module;
  }
  ~Module() {
    if (finalize_) f->C_Finalize(nullptr);
    dlclose(handle_);
  }

  // C_Finalize and C_Initialize again: some modules (SoftHSM among them) read their list of
  // tokens only then, so a token that was removed and put back is found only after it. Every
  // session of every key on this module ends; their next calls fail as "gone" and reconnect.
  // Only when this process initialised the module (otherwise someone else owns it).
  absl::Status Reinitialize() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!finalize_) return absl::FailedPreconditionError("the module was initialised by someone else");
    f->C_Finalize(nullptr);
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    if (CK_RV rv = f->C_Initialize(&args); rv != CKR_OK) {
      return absl::UnavailableError(absl::StrCat("C_Initialize: ", ReturnCodeName(rv)));
    }
    return absl::OkStatus();
  }
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST_PTR const f;

 private:
  Module(void* handle, CK_FUNCTION_LIST_PTR functions, bool finalize)
      : f(functions), handle_(handle), finalize_(finalize) {}
  std::mutex mu_;
  void* handle_;
  bool finalize_;
};

bool Matches(const std::string& wanted, const std::string& actual) { return wanted.empty() || wanted == actual; }

// Reads one attribute of variable length. NotFound when the object does not have it.
absl::StatusOr<std::string> ReadAttribute(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                          CK_ATTRIBUTE_TYPE type, absl::string_view what, absl::string_view key) {
  CK_ATTRIBUTE attribute{type, nullptr, 0};
  CK_RV rv = f->C_GetAttributeValue(session, object, &attribute, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return absl::NotFoundError(absl::StrCat(key, ": the key has no ", what));
  }
  if (rv != CKR_OK) return TokenError(rv, absl::StrCat("reading the ", what), key);
  if (attribute.ulValueLen > 16384)
    return absl::InvalidArgumentError(absl::StrCat(key, ": the ", what, " is too long"));
  std::string value(attribute.ulValueLen, '\0');
  attribute.pValue = value.data();
  rv = f->C_GetAttributeValue(session, object, &attribute, 1);
  if (rv != CKR_OK) return TokenError(rv, absl::StrCat("reading the ", what), key);
  value.resize(attribute.ulValueLen);
  return value;
}

// The objects of `object_class` that the URI's label and id select (at most 2: enough to tell
// "one" from "several").
absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjects(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE session,
                                                          const Uri& uri, CK_OBJECT_CLASS object_class,
                                                          absl::string_view key) {
  std::vector<CK_ATTRIBUTE> query;
  query.push_back({CKA_CLASS, &object_class, sizeof(object_class)});
  std::string label = uri.object, id = uri.id.value_or("");
  if (!label.empty()) query.push_back({CKA_LABEL, label.data(), label.size()});
  if (uri.id.has_value()) query.push_back({CKA_ID, id.data(), id.size()});
  CK_RV rv = f->C_FindObjectsInit(session, query.data(), query.size());
  if (rv != CKR_OK) return TokenError(rv, "searching the token", key);
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count = 0;
  rv = f->C_FindObjects(session, found, 2, &count);
  f->C_FindObjectsFinal(session);
  if (rv != CKR_OK) return TokenError(rv, "searching the token", key);
  return std::vector<CK_OBJECT_HANDLE>(found, found + count);
}

// SubjectPublicKeyInfo DER of a key as the token describes it.
absl::StatusOr<EvpPkeyPtr> PublicKeyFromSpki(const std::string& spki, absl::string_view key) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(spki.data());
  EvpPkeyPtr pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(key, ": the token's public key cannot be read"));
  }
  return pkey;
}

absl::StatusOr<EvpPkeyPtr> EcPublicKey(const std::string& params, const std::string& point, absl::string_view key) {
  // CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 2.40); some tokens give the
  // bare point. An uncompressed point starts with 04 too, so tell them apart by the length.
  std::string raw_point = point;
  if (point.size() >= 2 && point[0] == 0x04) {
    der::Reader reader(point);
    if (auto element = reader.Next(); element.ok() && reader.empty() && element->tag == der::kOctetString) {
      raw_point = std::string(element->value);
    }
  }
  constexpr absl::string_view kIdEcPublicKey("\x06\x07\x2a\x86\x48\xce\x3d\x02\x01", 9);
  std::string algorithm = der::Tlv(der::kSequence, absl::StrCat(kIdEcPublicKey, params));
  std::string spki =
      der::Tlv(der::kSequence,
               absl::StrCat(algorithm, der::Tlv(der::kBitString, absl::StrCat(std::string(1, '\0'), raw_point))));
  return PublicKeyFromSpki(spki, key);
}

absl::StatusOr<EvpPkeyPtr> RsaPublicKey(const std::string& modulus, const std::string& exponent,
                                        absl::string_view key) {
  constexpr absl::string_view kRsaAlgorithm("\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00", 15);
  std::string rsa_key =
      der::Tlv(der::kSequence, absl::StrCat(der::UnsignedIntegerTlv(modulus), der::UnsignedIntegerTlv(exponent)));
  std::string spki =
      der::Tlv(der::kSequence,
               absl::StrCat(kRsaAlgorithm, der::Tlv(der::kBitString, absl::StrCat(std::string(1, '\0'), rsa_key))));
  return PublicKeyFromSpki(spki, key);
}

// DigestInfo prefixes (RFC 8017 9.2, note 1) for the digests a CA signs with.
absl::StatusOr<absl::string_view> DigestInfoPrefix(int md_type) {
  switch (md_type) {
    case NID_sha256:
      return absl::string_view("\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20", 19);
    case NID_sha384:
      return absl::string_view("\x30\x41\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x02\x05\x00\x04\x30", 19);
    case NID_sha512:
      return absl::string_view("\x30\x51\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x03\x05\x00\x04\x40", 19);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("RSA signing with digest ", OBJ_nid2sn(md_type), " is not supported"));
  }
}

absl::StatusOr<SecretString> ReadPinFile(const std::string& path) {
  MESHID_ASSIGN_OR_RETURN(std::string pin, ReadFile(path, 4096));
  SecretString secret(std::string(absl::StripTrailingAsciiWhitespace(pin)));
  OPENSSL_cleanse(pin.data(), pin.size());
  if (secret.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": the PIN file is empty"));
  return secret;
}

}  // namespace

class TokenKey::Impl {
 public:
  Impl(std::shared_ptr<Module> module, Uri uri, TokenKeyOptions options, const Clock& clock)
      : module_(std::move(module)),
        f_(module_->f),
        uri_(std::move(uri)),
        description_(uri_.ToString()),
        options_(std::move(options)),
        clock_(clock) {}

  ~Impl() {
    std::lock_guard<std::mutex> lock(mu_);
    for (CK_SESSION_HANDLE session : idle_) f_->C_CloseSession(session);
  }

  // Finds the token and the key, logs in and fills the pool. On the first connection the
  // public key is taken from the token; afterwards it must be the same one.
  absl::Status Connect() {
    struct Connection {
      CK_SLOT_ID slot = 0;
      CK_OBJECT_HANDLE key = 0;
      CK_KEY_TYPE key_type = 0;
      std::vector<CK_SESSION_HANDLE> sessions;
      EvpPkeyPtr public_key;
    } c;
    auto close_all = [&] {
      for (CK_SESSION_HANDLE s : c.sessions) f_->C_CloseSession(s);
    };
    MESHID_ASSIGN_OR_RETURN(c.slot, FindSlot());
    for (int i = 0; i < std::max(1, options_.sessions); ++i) {
      CK_SESSION_HANDLE session = 0;
      CK_RV rv = f_->C_OpenSession(c.slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session);
      if (rv != CKR_OK) {
        close_all();
        return TokenError(rv, "opening a session", description_);
      }
      c.sessions.push_back(session);
    }
    if (absl::Status s = Login(c.sessions.front()); !s.ok()) {
      close_all();
      return s;
    }
    absl::Status found = [&]() -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(auto keys, FindObjects(f_, c.sessions.front(), uri_, CKO_PRIVATE_KEY, description_));
      if (keys.empty()) return absl::NotFoundError(absl::StrCat(description_, ": no private key in the token matches"));
      if (keys.size() > 1) {
        return absl::FailedPreconditionError(
            absl::StrCat(description_, ": several private keys match; name one with both object= and id="));
      }
      c.key = keys.front();
      MESHID_ASSIGN_OR_RETURN(std::string key_type,
                              ReadAttribute(f_, c.sessions.front(), c.key, CKA_KEY_TYPE, "key type", description_));
      if (key_type.size() != sizeof(CK_KEY_TYPE)) {
        return absl::InternalError(absl::StrCat(description_, ": the key type has an unexpected size"));
      }
      std::memcpy(&c.key_type, key_type.data(), sizeof(CK_KEY_TYPE));
      MESHID_ASSIGN_OR_RETURN(c.public_key, ReadPublicKey(c.sessions.front(), c.key, c.key_type));
      return absl::OkStatus();
    }();
    if (!found.ok()) {
      close_all();
      return found;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (public_key_ == nullptr) {
      public_key_ = std::move(c.public_key);
      public_key_der_ = PublicKeyDer(public_key_.get()).value_or("");
      key_type_ = c.key_type;
    } else if (PublicKeyDer(c.public_key.get()).value_or("?") != public_key_der_) {
      close_all();
      return absl::FailedPreconditionError(
          absl::StrCat(description_, ": the token now holds a different key under this name; not signing with it"));
    }
    slot_ = c.slot;
    key_ = c.key;
    idle_ = std::move(c.sessions);
    connected_ = true;
    ++generation_;
    broken_ = absl::OkStatus();
    available_.notify_all();
    return absl::OkStatus();
  }

  struct Borrowed {
    CK_SESSION_HANDLE session;
    CK_OBJECT_HANDLE key;
    uint64_t generation;
  };

  // A session from the pool, waiting while every session is in use. Unavailable at once while
  // the token is gone (after a reconnect attempt when one is due).
  absl::StatusOr<Borrowed> Borrow() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      if (!connected_) {
        if (pin_refused_ || reconnecting_ || clock_.Now() - last_attempt_ < options_.reconnect_interval) {
          return broken_;
        }
        reconnecting_ = true;
        last_attempt_ = clock_.Now();
        CK_SLOT_ID old_slot = slot_;
        const bool none_in_use = borrowed_ == 0;
        lock.unlock();
        f_->C_CloseAllSessions(old_slot);  // whatever is left of the old connection; errors are expected
        absl::Status reconnected = Connect();
        if (absl::IsNotFound(reconnected) && none_in_use && module_->Reinitialize().ok()) {
          reconnected = Connect();
        }
        lock.lock();
        reconnecting_ = false;
        if (!reconnected.ok()) {
          // A refused PIN is not tried again: tokens lock a PIN after a few wrong tries.
          pin_refused_ = absl::IsPermissionDenied(reconnected);
          broken_ = absl::UnavailableError(
              absl::StrCat("the CA key's token is unavailable (reconnecting failed: ", reconnected.message(),
                           pin_refused_ ? "; not retried: restart with the right PIN)" : ")"));
          return broken_;
        }
        continue;
      }
      if (!idle_.empty()) {
        Borrowed b{idle_.back(), key_, generation_};
        idle_.pop_back();
        ++borrowed_;
        return b;
      }
      available_.wait(lock);
    }
  }

  // Puts a session back; `result` is what the token answered. A "gone" answer drops the pool.
  void Return(const Borrowed& b, CK_RV result) {
    std::lock_guard<std::mutex> lock(mu_);
    --borrowed_;
    if (b.generation != generation_) return;  // the pool it came from was dropped
    if (MeansTokenGone(result)) {
      if (connected_) {
        connected_ = false;
        last_attempt_ = clock_.Now();
        broken_ = absl::UnavailableError(
            absl::StrCat(description_, ": the CA key's token is unavailable (", ReturnCodeName(result), ")"));
        idle_.clear();  // closed when reconnecting (C_CloseAllSessions)
        available_.notify_all();
      }
      return;
    }
    idle_.push_back(b.session);
    available_.notify_one();
  }

  // Signs `data` with `mechanism`; the output is at most `max_output` bytes.
  absl::StatusOr<std::string> Sign(CK_MECHANISM_TYPE mechanism, absl::string_view data, size_t max_output) {
    MESHID_ASSIGN_OR_RETURN(Borrowed b, Borrow());
    CK_MECHANISM mech{mechanism, nullptr, 0};
    CK_RV rv = f_->C_SignInit(b.session, &mech, b.key);
    std::string signature(max_output, '\0');
    CK_ULONG length = signature.size();
    if (rv == CKR_OK) {
      rv = f_->C_Sign(b.session, reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(data.data())), data.size(),
                      reinterpret_cast<CK_BYTE_PTR>(signature.data()), &length);
    }
    Return(b, rv);
    if (rv != CKR_OK) {
      absl::Status s = TokenError(rv, "signing", description_);
      return s;
    }
    signature.resize(length);
    return signature;
  }

  absl::Status Health() {
    MESHID_ASSIGN_OR_RETURN(Borrowed b, Borrow());
    // The session's login state, then one attribute of the key itself: a session can outlive
    // its token in the module's memory, the key object cannot.
    CK_SESSION_INFO info{};
    CK_RV rv = f_->C_GetSessionInfo(b.session, &info);
    if (rv == CKR_OK && info.state != CKS_RO_USER_FUNCTIONS && info.state != CKS_RW_USER_FUNCTIONS) {
      rv = CKR_USER_NOT_LOGGED_IN;  // logged out behind our back (a token reset)
    }
    if (rv == CKR_OK) {
      CK_KEY_TYPE key_type = 0;
      CK_ATTRIBUTE attribute{CKA_KEY_TYPE, &key_type, sizeof(key_type)};
      rv = f_->C_GetAttributeValue(b.session, b.key, &attribute, 1);
    }
    Return(b, rv);
    if (rv != CKR_OK) return TokenError(rv, "checking the key", description_);
    return absl::OkStatus();
  }

  EVP_PKEY* public_key() const { return public_key_.get(); }
  CK_KEY_TYPE key_type() const { return key_type_; }
  const std::string& description() const { return description_; }

 private:
  absl::StatusOr<CK_SLOT_ID> FindSlot() {
    CK_ULONG count = 0;
    CK_RV rv = f_->C_GetSlotList(CK_TRUE, nullptr, &count);
    if (rv != CKR_OK) return TokenError(rv, "listing the slots", description_);
    std::vector<CK_SLOT_ID> slots(count);
    rv = f_->C_GetSlotList(CK_TRUE, slots.data(), &count);
    if (rv != CKR_OK) return TokenError(rv, "listing the slots", description_);
    slots.resize(count);
    std::vector<CK_SLOT_ID> matching;
    std::vector<std::string> present;
    for (CK_SLOT_ID slot : slots) {
      CK_SLOT_INFO slot_info{};
      CK_TOKEN_INFO token_info{};
      if (f_->C_GetSlotInfo(slot, &slot_info) != CKR_OK || f_->C_GetTokenInfo(slot, &token_info) != CKR_OK) continue;
      std::string label = Field(token_info.label);
      if ((token_info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
      present.push_back(absl::StrCat("\"", label, "\""));
      if (Matches(uri_.token, label) && Matches(uri_.manufacturer, Field(token_info.manufacturerID)) &&
          Matches(uri_.model, Field(token_info.model)) && Matches(uri_.serial, Field(token_info.serialNumber)) &&
          Matches(uri_.slot_description, Field(slot_info.slotDescription)) &&
          Matches(uri_.slot_manufacturer, Field(slot_info.manufacturerID)) &&
          (!uri_.slot_id.has_value() || *uri_.slot_id == slot)) {
        matching.push_back(slot);
      }
    }
    if (matching.empty()) {
      return absl::NotFoundError(absl::StrCat(description_, ": no token matches (tokens present: ",
                                              present.empty() ? "none" : absl::StrJoin(present, ", "), ")"));
    }
    if (matching.size() > 1) {
      return absl::FailedPreconditionError(
          absl::StrCat(description_, ": ", matching.size(), " tokens match; name one with token= or serial="));
    }
    return matching.front();
  }

  absl::Status Login(CK_SESSION_HANDLE session) {
    if (options_.pin.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          description_,
          ": no PIN given (--pkcs11-pin-file, the MESHID_PKCS11_PIN environment variable, or pin-source)"));
    }
    CK_RV rv =
        f_->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(options_.pin.view().data())),
                    options_.pin.size());
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) return absl::OkStatus();
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID ||
        rv == CKR_PIN_LEN_RANGE) {
      return absl::PermissionDeniedError(
          absl::StrCat(description_, ": the token refused the PIN (", ReturnCodeName(rv), ")"));
    }
    return TokenError(rv, "logging in", description_);
  }

  absl::StatusOr<EvpPkeyPtr> ReadPublicKey(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE private_key,
                                           CK_KEY_TYPE key_type) {
    MESHID_ASSIGN_OR_RETURN(auto publics, FindObjects(f_, session, uri_, CKO_PUBLIC_KEY, description_));
    if (key_type == CKK_EC) {
      if (publics.size() != 1) {
        return absl::NotFoundError(absl::StrCat(
            description_, ": ", publics.empty() ? "no" : "more than one",
            " public key object with the same label and id; the CA needs exactly one (pkcs11-tool --write-object "
            "pub.der --type pubkey with the same --label and --id)"));
      }
      MESHID_ASSIGN_OR_RETURN(std::string params, ReadAttribute(f_, session, publics.front(), CKA_EC_PARAMS,
                                                                "EC parameters", description_));
      MESHID_ASSIGN_OR_RETURN(std::string point,
                              ReadAttribute(f_, session, publics.front(), CKA_EC_POINT, "EC point", description_));
      return EcPublicKey(params, point, description_);
    }
    if (key_type == CKK_RSA) {
      CK_OBJECT_HANDLE holder = publics.size() == 1 ? publics.front() : private_key;
      MESHID_ASSIGN_OR_RETURN(std::string modulus,
                              ReadAttribute(f_, session, holder, CKA_MODULUS, "RSA modulus", description_));
      MESHID_ASSIGN_OR_RETURN(std::string exponent, ReadAttribute(f_, session, holder, CKA_PUBLIC_EXPONENT,
                                                                  "RSA public exponent", description_));
      return RsaPublicKey(modulus, exponent, description_);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(description_, ": the key is neither EC nor RSA (CKA_KEY_TYPE ", key_type, ")"));
  }

  const std::shared_ptr<Module> module_;
  CK_FUNCTION_LIST_PTR const f_;
  const Uri uri_;
  const std::string description_;
  const TokenKeyOptions options_;
  const Clock& clock_;
  // Set by the first Connect (before the key is shared) and never changed.
  EvpPkeyPtr public_key_;
  std::string public_key_der_;
  CK_KEY_TYPE key_type_ = 0;

  std::mutex mu_;
  std::condition_variable available_;
  bool connected_ = false;     // guarded by mu_, as is everything below
  bool reconnecting_ = false;  // one thread reconnects; the others fail fast meanwhile
  bool pin_refused_ = false;   // a reconnect's login was refused: no more attempts
  absl::Status broken_;        // why, while !connected_
  absl::Time last_attempt_;    // of the last reconnect, or when the pool broke
  uint64_t generation_ = 0;    // one more per connection: stale sessions are not returned
  CK_SLOT_ID slot_ = 0;
  CK_OBJECT_HANDLE key_ = 0;
  std::vector<CK_SESSION_HANDLE> idle_;
  int borrowed_ = 0;  // sessions of any generation not yet returned
};

TokenKey::TokenKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenKey::~TokenKey() = default;

absl::StatusOr<std::shared_ptr<TokenKey>> TokenKey::Open(TokenKeyOptions options, const Clock& clock) {
  MESHID_ASSIGN_OR_RETURN(Uri uri, ParseUri(options.uri));
  if (uri.object.empty() && !uri.id.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(uri.ToString(), ": names no key; add object= (the label) or id="));
  }
  if (!uri.type.empty() && uri.type != "private") {
    return absl::InvalidArgumentError(
        absl::StrCat(uri.ToString(), ": type=", uri.type, ": the CA key is a private key (type=private)"));
  }
  if (options.module_path.empty()) options.module_path = uri.module_path;
  if (options.module_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(uri.ToString(), ": no PKCS#11 module (give --pkcs11-module or module-path in the URI)"));
  }
  if (options.pin.empty() && options.pin_file.empty()) options.pin_file = uri.pin_source;
  if (options.pin.empty() && !options.pin_file.empty()) {
    MESHID_ASSIGN_OR_RETURN(options.pin, ReadPinFile(options.pin_file));
  }
  MESHID_ASSIGN_OR_RETURN(std::shared_ptr<Module> module, Module::Load(options.module_path));
  auto impl = std::make_unique<Impl>(std::move(module), std::move(uri), std::move(options), clock);
  MESHID_RETURN_IF_ERROR(impl->Connect());
  return std::shared_ptr<TokenKey>(new TokenKey(std::move(impl)));
}

EVP_PKEY* TokenKey::public_key() const { return impl_->public_key(); }
const std::string& TokenKey::description() const { return impl_->description(); }
absl::Status TokenKey::Health() const { return impl_->Health(); }

absl::StatusOr<std::string> TokenKey::SignDigest(const EVP_MD* md, absl::string_view digest) const {
  if (md == nullptr || digest.size() != static_cast<size_t>(EVP_MD_get_size(md))) {
    return absl::InvalidArgumentError("the digest does not have its algorithm's length");
  }
  if (impl_->key_type() == CKK_RSA) {
    MESHID_ASSIGN_OR_RETURN(absl::string_view prefix, DigestInfoPrefix(EVP_MD_get_type(md)));
    return impl_->Sign(CKM_RSA_PKCS, absl::StrCat(prefix, digest), 1024);
  }
  MESHID_ASSIGN_OR_RETURN(std::string raw, impl_->Sign(CKM_ECDSA, digest, 256));
  // r || s, each as long as the group order, into ECDSA-Sig-Value.
  if (raw.empty() || raw.size() % 2 != 0) {
    return absl::InternalError(absl::StrCat(description(), ": the token returned a malformed ECDSA signature"));
  }
  const size_t half = raw.size() / 2;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(bytes, static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(bytes + half, static_cast<int>(half), nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return OpenSslError("encoding the token's ECDSA signature");
  }
  return EncodeDer([&](unsigned char** out) { return i2d_ECDSA_SIG(sig.get(), out); },
                   "encoding the token's ECDSA signature");
}

namespace {

// The ex_data slot of the EC_KEY / RSA objects made by AsEvpPkey: a heap-held
// shared_ptr<const TokenKey>, deleted with the object.
void FreeTokenKeyRef(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*index*/, long /*argl*/,
                     void* /*argp*/) {
  delete static_cast<std::shared_ptr<const TokenKey>*>(ptr);
}

int EcIndex() {
  static const int index = EC_KEY_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeTokenKeyRef);
  return index;
}

int RsaIndex() {
  static const int index = RSA_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeTokenKeyRef);
  return index;
}

const TokenKey* FromEc(const EC_KEY* ec) {
  auto* ref = static_cast<std::shared_ptr<const TokenKey>*>(EC_KEY_get_ex_data(ec, EcIndex()));
  return ref != nullptr ? ref->get() : nullptr;
}

const TokenKey* FromRsa(const RSA* rsa) {
  auto* ref = static_cast<std::shared_ptr<const TokenKey>*>(RSA_get_ex_data(rsa, RsaIndex()));
  return ref != nullptr ? ref->get() : nullptr;
}

void RaiseTokenError(const absl::Status& status) {
  ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "%s", std::string(status.message()).c_str());
}

// ECDSA signs a bare digest; its length says which hash made it.
const EVP_MD* DigestOfLength(int length) {
  switch (length) {
    case 32:
      return EVP_sha256();
    case 48:
      return EVP_sha384();
    case 64:
      return EVP_sha512();
    default:
      return nullptr;
  }
}

int EcSign(int /*type*/, const unsigned char* digest, int digest_len, unsigned char* sig, unsigned int* sig_len,
           const BIGNUM* /*kinv*/, const BIGNUM* /*r*/, EC_KEY* ec) {
  const TokenKey* key = FromEc(ec);
  const EVP_MD* md = DigestOfLength(digest_len);
  if (key == nullptr || md == nullptr) return 0;
  auto der = key->SignDigest(md, absl::string_view(reinterpret_cast<const char*>(digest), digest_len));
  if (!der.ok()) {
    RaiseTokenError(der.status());
    return 0;
  }
  if (der->size() > static_cast<size_t>(ECDSA_size(ec))) return 0;
  std::memcpy(sig, der->data(), der->size());
  *sig_len = static_cast<unsigned int>(der->size());
  return 1;
}

ECDSA_SIG* EcSignSig(const unsigned char* digest, int digest_len, const BIGNUM* /*kinv*/, const BIGNUM* /*r*/,
                     EC_KEY* ec) {
  std::string der(ECDSA_size(ec), '\0');
  unsigned int len = 0;
  if (EcSign(0, digest, digest_len, reinterpret_cast<unsigned char*>(der.data()), &len, nullptr, nullptr, ec) != 1) {
    return nullptr;
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  return d2i_ECDSA_SIG(nullptr, &p, len);
}

int RsaSign(int type, const unsigned char* digest, unsigned int digest_len, unsigned char* sig, unsigned int* sig_len,
            const RSA* rsa) {
  const TokenKey* key = FromRsa(rsa);
  const EVP_MD* md = EVP_get_digestbynid(type);
  if (key == nullptr || md == nullptr) return 0;
  auto signature = key->SignDigest(md, absl::string_view(reinterpret_cast<const char*>(digest), digest_len));
  if (!signature.ok()) {
    RaiseTokenError(signature.status());
    return 0;
  }
  if (signature->size() > static_cast<size_t>(RSA_size(rsa))) return 0;
  std::memcpy(sig, signature->data(), signature->size());
  *sig_len = static_cast<unsigned int>(signature->size());
  return 1;
}

// Method tables shared by every token key; created once and never freed (like OpenSSL's own).
const EC_KEY_METHOD* TokenEcMethod() {
  static EC_KEY_METHOD* method = [] {
    EC_KEY_METHOD* m = EC_KEY_METHOD_new(EC_KEY_get_default_method());
    if (m != nullptr) EC_KEY_METHOD_set_sign(m, EcSign, nullptr, EcSignSig);
    return m;
  }();
  return method;
}

const RSA_METHOD* TokenRsaMethod() {
  static RSA_METHOD* method = [] {
    RSA_METHOD* m = RSA_meth_dup(RSA_get_default_method());
    if (m != nullptr) {
      RSA_meth_set1_name(m, "meshid PKCS#11 token key");
      RSA_meth_set_sign(m, RsaSign);
    }
    return m;
  }();
  return method;
}

using EcKeyOwner = std::unique_ptr<EC_KEY, OpenSslDeleter<EC_KEY_free>>;
using RsaOwner = std::unique_ptr<RSA, OpenSslDeleter<RSA_free>>;

}  // namespace

absl::StatusOr<EvpPkeyPtr> TokenKey::AsEvpPkey(std::shared_ptr<const TokenKey> key) {
  EVP_PKEY* public_key = key->public_key();
  EvpPkeyPtr pkey(EVP_PKEY_new());
  if (pkey == nullptr) return OpenSslError("creating the token key's EVP_PKEY");
  if (EVP_PKEY_get_base_id(public_key) == EVP_PKEY_EC) {
    const EC_KEY* source = EVP_PKEY_get0_EC_KEY(public_key);
    EcKeyOwner ec(source != nullptr ? EC_KEY_dup(source) : nullptr);
    if (ec == nullptr || TokenEcMethod() == nullptr || EC_KEY_set_method(ec.get(), TokenEcMethod()) != 1) {
      return OpenSslError("attaching the token to an EC key");
    }
    auto ref = std::make_unique<std::shared_ptr<const TokenKey>>(std::move(key));
    if (EC_KEY_set_ex_data(ec.get(), EcIndex(), ref.get()) != 1) return OpenSslError("attaching the token");
    ref.release();  // owned by ec now
    if (EVP_PKEY_assign_EC_KEY(pkey.get(), ec.get()) != 1) return OpenSslError("attaching the token to an EC key");
    ec.release();
    return pkey;
  }
  const RSA* source = EVP_PKEY_get0_RSA(public_key);
  RsaOwner rsa(RSA_new());
  if (source == nullptr || rsa == nullptr || TokenRsaMethod() == nullptr) {
    return OpenSslError("attaching the token to an RSA key");
  }
  BIGNUM* n = BN_dup(RSA_get0_n(source));
  BIGNUM* e = BN_dup(RSA_get0_e(source));
  if (n == nullptr || e == nullptr || RSA_set0_key(rsa.get(), n, e, nullptr) != 1) {
    BN_free(n);
    BN_free(e);
    return OpenSslError("attaching the token to an RSA key");
  }
  if (RSA_set_method(rsa.get(), TokenRsaMethod()) != 1) return OpenSslError("attaching the token to an RSA key");
  auto ref = std::make_unique<std::shared_ptr<const TokenKey>>(std::move(key));
  if (RSA_set_ex_data(rsa.get(), RsaIndex(), ref.get()) != 1) return OpenSslError("attaching the token");
  ref.release();
  if (EVP_PKEY_assign_RSA(pkey.get(), rsa.get()) != 1) return OpenSslError("attaching the token to an RSA key");
  rsa.release();
  return pkey;
}

const TokenKey* TokenKey::Of(EVP_PKEY* pkey) {
  if (pkey == nullptr) return nullptr;
  const int id = EVP_PKEY_get_base_id(pkey);
  if (id == EVP_PKEY_EC) {
    const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(pkey);
    return ec != nullptr && EC_KEY_get_method(ec) == TokenEcMethod() ? FromEc(ec) : nullptr;
  }
  if (id == EVP_PKEY_RSA) {
    const RSA* rsa = EVP_PKEY_get0_RSA(pkey);
    return rsa != nullptr && RSA_get_method(rsa) == TokenRsaMethod() ? FromRsa(rsa) : nullptr;
  }
  return nullptr;
}

}  // namespace meshid::pkcs11
