#include "authz/request_json.h"

#include <initializer_list>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace meshid::authz {

using json = nlohmann::json;

namespace {

absl::Status Bad(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status OnlyKeys(const json& obj, absl::string_view path, std::initializer_list<const char*> keys) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool known = false;
    for (const char* k : keys) known = known || it.key() == k;
    if (!known) return Bad(path.empty() ? it.key() : absl::StrCat(path, ".", it.key()), "unknown field");
  }
  return absl::OkStatus();
}

absl::StatusOr<const json*> Object(const json& parent, const char* key, absl::string_view path) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return nullptr;
  if (!it->is_object()) return Bad(path, "must be an object");
  return &*it;
}

absl::Status String(const json& obj, const char* key, std::string& out, absl::string_view path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return Bad(absl::StrCat(path, ".", key), "must be a string");
  out = it->get<std::string>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RequestInput> ParseRequestJson(absl::string_view line) {
  if (line.size() > kMaxRequestLineBytes) return absl::InvalidArgumentError("request line is larger than 1 MiB");
  json root;
  try {
    root = json::parse(line.begin(), line.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!root.is_object()) return absl::InvalidArgumentError("a request must be a JSON object");
  if (auto st = OnlyKeys(root, "", {"protocol", "destination", "source", "connection", "request"}); !st.ok()) return st;
  RequestInput in;
  std::string protocol = "http";
  if (auto st = String(root, "protocol", protocol, ""); !st.ok()) return Bad("protocol", "must be a string");
  if (protocol == "http") {
    in.protocol = rbac::Protocol::kHttp;
  } else if (protocol == "tcp") {
    in.protocol = rbac::Protocol::kTcp;
  } else {
    return Bad("protocol", absl::StrCat("\"", protocol, "\" is not http or tcp"));
  }

  auto dest = Object(root, "destination", "destination");
  if (!dest.ok()) return dest.status();
  if (!*dest) return Bad("destination", "required");
  const json& d = **dest;
  if (auto st = OnlyKeys(d, "destination", {"service", "namespace", "labels", "ip", "port", "principal"}); !st.ok()) {
    return st;
  }
  for (auto [key, out] : {std::pair<const char*, std::string*>{"service", &in.destination_service},
                          {"namespace", &in.destination_namespace},
                          {"ip", &in.destination_ip},
                          {"principal", &in.destination_principal}}) {
    if (auto st = String(d, key, *out, "destination"); !st.ok()) return st;
  }
  if (auto it = d.find("labels"); it != d.end() && !it->is_null()) {
    if (!it->is_object()) return Bad("destination.labels", "must be an object of strings");
    for (auto l = it->begin(); l != it->end(); ++l) {
      if (!l->is_string()) return Bad(absl::StrCat("destination.labels.", l.key()), "must be a string");
      in.destination_labels[l.key()] = l->get<std::string>();
    }
  }
  if (auto it = d.find("port"); it != d.end() && !it->is_null()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() > 65535) {
      return Bad("destination.port", "must be an integer 0-65535");
    }
    in.destination_port = static_cast<uint32_t>(it->get<uint64_t>());
  }

  auto src = Object(root, "source", "source");
  if (!src.ok()) return src.status();
  if (*src) {
    if (auto st = OnlyKeys(**src, "source", {"principal", "ip"}); !st.ok()) return st;
    if (auto st = String(**src, "principal", in.source_principal, "source"); !st.ok()) return st;
    if (auto st = String(**src, "ip", in.source_ip, "source"); !st.ok()) return st;
  }

  auto conn = Object(root, "connection", "connection");
  if (!conn.ok()) return conn.status();
  if (*conn) {
    if (auto st = OnlyKeys(**conn, "connection", {"mtls", "sni"}); !st.ok()) return st;
    if (auto it = (*conn)->find("mtls"); it != (*conn)->end() && !it->is_null()) {
      if (!it->is_boolean()) return Bad("connection.mtls", "must be true or false");
      in.mtls = it->get<bool>();
    }
    if (auto st = String(**conn, "sni", in.sni, "connection"); !st.ok()) return st;
  }

  auto req = Object(root, "request", "request");
  if (!req.ok()) return req.status();
  if (*req) {
    const json& r = **req;
    if (auto st = OnlyKeys(r, "request", {"method", "path", "host", "headers"}); !st.ok()) return st;
    if (auto st = String(r, "method", in.method, "request"); !st.ok()) return st;
    if (auto st = String(r, "path", in.path, "request"); !st.ok()) return st;
    if (auto st = String(r, "host", in.host, "request"); !st.ok()) return st;
    if (auto it = r.find("headers"); it != r.end() && !it->is_null()) {
      if (!it->is_object()) return Bad("request.headers", "must be an object");
      for (auto h = it->begin(); h != it->end(); ++h) {
        const std::string field = absl::StrCat("request.headers.", h.key());
        if (h.key().empty()) return Bad("request.headers", "header names must not be empty");
        if (h->is_string()) {
          in.headers.emplace_back(h.key(), h->get<std::string>());
        } else if (h->is_array()) {
          for (const auto& v : *h) {
            if (!v.is_string()) return Bad(field, "must be a string or a list of strings");
            in.headers.emplace_back(h.key(), v.get<std::string>());
          }
        } else {
          return Bad(field, "must be a string or a list of strings");
        }
      }
    }
  }
  return in;
}

namespace {
using ordered = nlohmann::ordered_json;  // keeps the documented member order
std::string Dump(const ordered& j) { return j.dump(-1, ' ', false, ordered::error_handler_t::replace); }
}  // namespace

std::string DecisionToJson(const Decision& d) {
  ordered j = ordered::object();
  j["allowed"] = d.allowed;
  j["status"] = d.status;
  j["policy"] = d.policy;
  j["rule"] = d.rule;
  j["reason"] = d.reason;
  if (d.shadow) {
    ordered shadow = ordered::object();
    shadow["allowed"] = d.shadow->allowed;
    shadow["policy"] = d.shadow->policy;
    shadow["rule"] = d.shadow->rule;
    j["shadow"] = std::move(shadow);
  }
  return Dump(j);
}

std::string ErrorDecisionJson(const absl::Status& status) {
  ordered j = ordered::object();
  j["allowed"] = false;
  j["status"] = 403;
  j["policy"] = "";
  j["rule"] = "";
  j["reason"] = absl::StrCat("request denied: it could not be evaluated (", status.message(), ")");
  j["error"] = std::string(status.message());
  return Dump(j);
}

}  // namespace meshid::authz
