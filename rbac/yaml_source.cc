#include "rbac/yaml_source.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"

namespace meshid::rbac {
namespace {

std::string KindScalar(const YAML::Node& n) { return n.IsDefined() && n.IsScalar() ? n.Scalar() : std::string(); }

int MarkLine(const YAML::Node& n, int fallback) {
  if (!n.IsDefined()) return fallback;
  const YAML::Mark m = n.Mark();
  return m.line >= 0 ? m.line + 1 : fallback;
}

// Looks up `key` in a mapping without yaml-cpp's throwing/inserting operator[].
YAML::Node MapGet(const YAML::Node& map, absl::string_view key) {
  if (!map.IsDefined() || !map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

// "notMethods" → "not_methods".
std::string SnakeCase(absl::string_view key) {
  std::string out;
  for (char c : key) {
    if (absl::ascii_isupper(static_cast<unsigned char>(c))) {
      out.push_back('_');
      out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool IsNullish(const YAML::Node& n) { return !n.IsDefined() || n.IsNull(); }

std::optional<absl::Time> ParseTimestamp(const std::string& s) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return t;
  return std::nullopt;
}

void ReadMeta(const YAML::Node& root, SourceDocument& doc, const ReadOptions& options, Diagnostics& diag) {
  ReadContext ctx(doc, diag, options.max_nodes_per_document);
  YAML::Node meta_node = MapGet(root, "metadata");
  FieldReader meta(ctx, meta_node, "metadata");
  meta.AllowUnknownKeys();  // uid, resourceVersion, generation, ... belong to Kubernetes
  doc.meta.name = meta.String("name").value_or("");
  doc.meta.namespace_ = meta.String("namespace").value_or("");
  doc.meta.labels = meta.StringMap("labels");
  doc.meta.annotations = meta.StringMap("annotations");
  if (auto ts = meta.String("creationTimestamp")) {
    doc.meta.creation_timestamp = ParseTimestamp(*ts);
    if (!doc.meta.creation_timestamp) {
      ctx.Error(MapGet(meta_node, "creationTimestamp"), "metadata.creationTimestamp",
                absl::StrCat("\"", *ts, "\" is not an RFC 3339 time"));
    }
  }
  if (doc.meta.namespace_.empty()) doc.meta.namespace_ = options.default_namespace;
  if (doc.meta.name.empty()) ctx.Error(meta_node.IsDefined() ? meta_node : root, "metadata.name", "required");
}

void AddDocument(const YAML::Node& root, const std::string& file, const ReadOptions& options, Diagnostics& diag,
                 int64_t& order, std::vector<SourceDocument>& out, int depth) {
  if (IsNullish(root)) return;
  SourceDocument doc;
  doc.file = file;
  doc.line = MarkLine(root, 0);
  doc.order = order++;
  if (!root.IsMap()) {
    diag.Add({Diagnostic::Severity::kError, file, doc.line, "", "", "a document must be a mapping"});
    return;
  }
  doc.api_version = KindScalar(MapGet(root, "apiVersion"));
  doc.kind = KindScalar(MapGet(root, "kind"));
  if (doc.kind.empty()) {
    diag.Add({Diagnostic::Severity::kError, file, doc.line, "", "kind", "required"});
    return;
  }
  if (doc.api_version.empty()) {
    diag.Add({Diagnostic::Severity::kError, file, doc.line, doc.kind, "apiVersion", "required"});
    return;
  }
  if (doc.kind == "List" && doc.api_version == "v1") {
    YAML::Node items = MapGet(root, "items");
    if (IsNullish(items)) return;
    if (!items.IsSequence()) {
      diag.Add({Diagnostic::Severity::kError, file, MarkLine(items, doc.line), "List", "items", "must be a list"});
      return;
    }
    if (depth > 0) {
      diag.Add({Diagnostic::Severity::kError, file, doc.line, "List", "items", "nested lists are not supported"});
      return;
    }
    for (const auto& item : items) AddDocument(item, file, options, diag, order, out, depth + 1);
    return;
  }
  std::vector<std::string> seen;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.IsScalar() ? it->first.Scalar() : "";
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      // Usually two documents missing their "---" separator.
      diag.Add({Diagnostic::Severity::kError, file, MarkLine(it->first, doc.line), doc.kind, key,
                "duplicate key (is a \"---\" document separator missing?)"});
    }
    seen.push_back(key);
    if (key != "apiVersion" && key != "kind" && key != "metadata" && key != "spec" && key != "status") {
      diag.Add({Diagnostic::Severity::kError, file, MarkLine(it->first, doc.line), doc.kind, key,
                "unknown top-level field"});
    }
  }
  ReadMeta(root, doc, options, diag);
  if (doc.meta.name.empty()) return;  // reported; an unnamed object cannot be referenced or replaced
  doc.spec = MapGet(root, "spec");
  if (!doc.spec.IsDefined()) doc.spec = YAML::Node(YAML::NodeType::Null);
  out.push_back(std::move(doc));
}

}  // namespace

std::string SourceDocument::ObjectName() const {
  if (kind == "ClusterRbacConfig" || kind == "MeshPolicy") return absl::StrCat(kind, " ", meta.name);
  return absl::StrCat(kind, " ", meta.namespace_, "/", meta.name);
}

std::vector<SourceDocument> ParseDocuments(absl::string_view text, const std::string& file, const ReadOptions& options,
                                           Diagnostics& diag, int64_t first_order) {
  std::vector<SourceDocument> out;
  std::vector<YAML::Node> roots;
  try {
    roots = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    diag.Add({Diagnostic::Severity::kError, file, e.mark.line >= 0 ? e.mark.line + 1 : 0, "", "",
              absl::StrCat("YAML syntax error: ", e.msg)});
    return out;
  }
  int64_t order = first_order;
  for (const auto& root : roots) {
    try {
      AddDocument(root, file, options, diag, order, out, 0);
    } catch (const YAML::Exception& e) {
      diag.Add({Diagnostic::Severity::kError, file, e.mark.line >= 0 ? e.mark.line + 1 : 0, "", "",
                absl::StrCat("malformed document: ", e.msg)});
    }
  }
  return out;
}

std::vector<SourceDocument> ReadDocuments(const std::vector<std::string>& paths, const ReadOptions& options,
                                          Diagnostics& diag) {
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
        if (!entry.is_regular_file(ec)) continue;
        const std::string name = entry.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        if (absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml") || absl::EndsWith(name, ".json")) {
          in_dir.push_back(entry.path().string());
        }
      }
      if (ec) {
        diag.Add(
            {Diagnostic::Severity::kError, path, 0, "", "", absl::StrCat("cannot list directory: ", ec.message())});
        continue;
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else {
      files.push_back(path);
    }
  }
  std::vector<SourceDocument> out;
  for (const auto& file : files) {
    auto text = ReadFile(file, options.max_file_bytes);
    if (!text.ok()) {
      diag.Add({Diagnostic::Severity::kError, file, 0, "", "", std::string(text.status().message())});
      continue;
    }
    auto docs = ParseDocuments(*text, file, options, diag, static_cast<int64_t>(out.size()));
    for (auto& d : docs) out.push_back(std::move(d));
  }
  return out;
}

// ---- ReadContext ----

int ReadContext::LineOf(const YAML::Node& node) const { return MarkLine(node, doc_.line); }

void ReadContext::Error(const YAML::Node& at, const std::string& field, const std::string& message) {
  diag_.Add({Diagnostic::Severity::kError, doc_.file, LineOf(at), doc_.ObjectName(), field, message});
}

void ReadContext::ErrorAtLine(int line, const std::string& field, const std::string& message) {
  diag_.Add({Diagnostic::Severity::kError, doc_.file, line > 0 ? line : doc_.line, doc_.ObjectName(), field, message});
}

bool ReadContext::Spend(size_t n) {
  if (exhausted_) return false;
  if (n > budget_) {
    exhausted_ = true;
    ErrorAtLine(doc_.line, "", "document too large (too many YAML nodes, possibly through aliases)");
    return false;
  }
  budget_ -= n;
  return true;
}

// ---- FieldReader ----

FieldReader::FieldReader(ReadContext& ctx, const YAML::Node& node, std::string path)
    : ctx_(ctx), node_(node), path_(std::move(path)) {
  if (IsNullish(node_)) {
    node_ = YAML::Node(YAML::NodeType::Null);
    return;
  }
  if (!node_.IsMap()) {
    ok_ = false;
    ctx_.Error(node_, path_, "must be a mapping");
    return;
  }
  // Duplicate keys are ambiguous (which one wins differs between parsers): refuse them.
  std::vector<std::string> seen;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (!ctx_.Spend()) {
      ok_ = false;
      return;
    }
    if (!it->first.IsScalar()) {
      ctx_.Error(it->first, path_, "keys must be strings");
      continue;
    }
    const std::string& k = it->first.Scalar();
    if (std::find(seen.begin(), seen.end(), k) != seen.end()) {
      ctx_.Error(it->first, PathOf(k), "duplicate key");
    }
    seen.push_back(k);
  }
}

FieldReader::~FieldReader() { Finish(); }

void FieldReader::Finish() {
  if (finished_) return;
  finished_ = true;
  if (!ok_ || allow_unknown_ || !node_.IsMap()) return;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (!it->first.IsScalar()) continue;
    const std::string& k = it->first.Scalar();
    if (std::find(known_.begin(), known_.end(), k) == known_.end()) {
      ctx_.Error(it->first, PathOf(k), "unknown field");
    }
  }
}

std::string FieldReader::PathOf(absl::string_view key) const {
  return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
}

std::string FieldReader::Index(const std::string& path, size_t i) { return absl::StrCat(path, "[", i, "]"); }

YAML::Node FieldReader::Lookup(absl::string_view key) {
  known_.emplace_back(key);
  // Proto JSON decoding accepts both the lowerCamelCase JSON name and the original name.
  const std::string snake = SnakeCase(key);
  if (snake != key) known_.push_back(snake);
  if (!ok_ || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node camel_node = MapGet(node_, key);
  if (snake == key) return camel_node;
  YAML::Node snake_node = MapGet(node_, snake);
  if (camel_node.IsDefined() && snake_node.IsDefined()) {
    ctx_.Error(snake_node, PathOf(key), absl::StrCat("both ", key, " and ", snake, " are set"));
  }
  return camel_node.IsDefined() ? camel_node : snake_node;
}

bool FieldReader::Has(absl::string_view key) { return !IsNullish(Lookup(key)); }

std::optional<std::string> FieldReader::ScalarAt(const YAML::Node& n, const std::string& path) {
  if (IsNullish(n)) return std::nullopt;
  if (!n.IsScalar()) {
    ctx_.Error(n, path, "must be a string");
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<std::string> FieldReader::String(absl::string_view key) { return ScalarAt(Lookup(key), PathOf(key)); }

std::optional<int64_t> FieldReader::Int(absl::string_view key, int64_t min, int64_t max) {
  YAML::Node n = Lookup(key);
  if (IsNullish(n)) return std::nullopt;
  int64_t v = 0;
  if (!n.IsScalar() || !absl::SimpleAtoi(n.Scalar(), &v)) {
    ctx_.Error(n, PathOf(key), "must be an integer");
    return std::nullopt;
  }
  if (v < min || v > max) {
    ctx_.Error(n, PathOf(key), absl::StrCat(v, " is out of range [", min, ", ", max, "]"));
    return std::nullopt;
  }
  return v;
}

std::optional<bool> FieldReader::Bool(absl::string_view key) {
  YAML::Node n = Lookup(key);
  if (IsNullish(n)) return std::nullopt;
  if (n.IsScalar()) {
    const std::string s = absl::AsciiStrToLower(n.Scalar());
    if (s == "true") return true;
    if (s == "false") return false;
  }
  ctx_.Error(n, PathOf(key), "must be true or false");
  return std::nullopt;
}

std::vector<std::string> ReadStringList(ReadContext& ctx, const YAML::Node& n, const std::string& path) {
  std::vector<std::string> out;
  if (IsNullish(n)) return out;
  if (!n.IsSequence()) {
    ctx.Error(n, path, "must be a list of strings");
    return out;
  }
  size_t i = 0;
  for (const auto& item : n) {
    if (!ctx.Spend()) return out;
    if (!item.IsScalar()) {
      ctx.Error(item, FieldReader::Index(path, i), "must be a string");
    } else {
      out.push_back(item.Scalar());
    }
    ++i;
  }
  return out;
}

std::vector<std::string> FieldReader::StringList(absl::string_view key) {
  return ReadStringList(ctx_, Lookup(key), PathOf(key));
}

std::vector<int64_t> FieldReader::IntList(absl::string_view key, int64_t min, int64_t max) {
  std::vector<int64_t> out;
  YAML::Node n = Lookup(key);
  if (IsNullish(n)) return out;
  const std::string path = PathOf(key);
  if (!n.IsSequence()) {
    ctx_.Error(n, path, "must be a list of integers");
    return out;
  }
  size_t i = 0;
  for (const auto& item : n) {
    if (!ctx_.Spend()) return out;
    int64_t v = 0;
    if (!item.IsScalar() || !absl::SimpleAtoi(item.Scalar(), &v)) {
      ctx_.Error(item, Index(path, i), "must be an integer");
    } else if (v < min || v > max) {
      ctx_.Error(item, Index(path, i), absl::StrCat(v, " is out of range [", min, ", ", max, "]"));
    } else {
      out.push_back(v);
    }
    ++i;
  }
  return out;
}

std::map<std::string, std::string> FieldReader::StringMap(absl::string_view key) {
  std::map<std::string, std::string> out;
  YAML::Node n = Lookup(key);
  if (IsNullish(n)) return out;
  const std::string path = PathOf(key);
  if (!n.IsMap()) {
    ctx_.Error(n, path, "must be a mapping of strings");
    return out;
  }
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (!ctx_.Spend()) return out;
    if (!it->first.IsScalar() || !(it->second.IsScalar() || it->second.IsNull())) {
      ctx_.Error(it->first, path, "keys and values must be strings");
      continue;
    }
    const std::string k = it->first.Scalar();
    if (out.count(k)) ctx_.Error(it->first, absl::StrCat(path, "[", k, "]"), "duplicate key");
    out[k] = it->second.IsNull() ? "" : it->second.Scalar();
  }
  return out;
}

YAML::Node FieldReader::Node(absl::string_view key) { return Lookup(key); }

std::vector<YAML::Node> FieldReader::List(absl::string_view key) {
  std::vector<YAML::Node> out;
  YAML::Node n = Lookup(key);
  if (IsNullish(n)) return out;
  if (!n.IsSequence()) {
    ctx_.Error(n, PathOf(key), "must be a list");
    return out;
  }
  for (const auto& item : n) {
    if (!ctx_.Spend()) return out;
    out.push_back(item);
  }
  return out;
}

std::optional<int> ReadEnum(FieldReader& r, absl::string_view key, const std::vector<std::string>& names) {
  auto v = r.String(key);
  if (!v) return std::nullopt;
  for (size_t i = 0; i < names.size(); ++i)
    if (*v == names[i]) return static_cast<int>(i);
  int n = 0;
  if (absl::SimpleAtoi(*v, &n) && n >= 0 && static_cast<size_t>(n) < names.size()) return n;
  r.ctx().Error(r.Node(key), r.PathOf(key), absl::StrCat("\"", *v, "\" is not one of ", absl::StrJoin(names, ", ")));
  return std::nullopt;
}

std::optional<std::map<std::string, std::string>> ReadWorkloadSelector(ReadContext& ctx, FieldReader& spec) {
  if (!spec.Has("selector")) return std::nullopt;
  FieldReader sel(ctx, spec.Node("selector"), "spec.selector");
  auto labels = sel.StringMap("matchLabels");
  for (const auto& [k, v] : labels) {
    if (k.empty() || v.empty()) {
      ctx.Error(sel.node(), "spec.selector.matchLabels", "label keys and values must not be empty");
    }
  }
  return labels;
}

bool CheckApiVersion(const SourceDocument& doc, const std::vector<std::string>& accepted, Diagnostics& diag) {
  if (std::find(accepted.begin(), accepted.end(), doc.api_version) != accepted.end()) return true;
  diag.Add({Diagnostic::Severity::kError, doc.file, doc.line, doc.ObjectName(), "apiVersion",
            absl::StrCat("\"", doc.api_version, "\" is not valid for kind ", doc.kind, " (expected ",
                         absl::StrJoin(accepted, " or "), ")")});
  return false;
}

bool IsDns1123Label(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s)
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-')) return false;
  return s.front() != '-' && s.back() != '-';
}

}  // namespace meshid::rbac
