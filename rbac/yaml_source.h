// Reading Kubernetes-style YAML: multi-document files and directories of them, each document
// with apiVersion, kind, metadata and spec. yaml-cpp's exceptions stay inside this module; what
// comes out is plain data plus Diagnostics with file, line and field path.
//
// FieldReader gives typed, path-tracking access to one mapping and reports every key nobody
// asked for, so a misspelt field is an error instead of a silently ignored one.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "rbac/diagnostics.h"

namespace meshid::rbac {

struct ObjectMeta {
  std::string name;
  std::string namespace_;  // the document's namespace, or the default namespace
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::optional<absl::Time> creation_timestamp;
};

// One Kubernetes object as read from a file.
struct SourceDocument {
  std::string file;
  int line = 0;  // line of the document's first key
  std::string api_version;
  std::string kind;
  ObjectMeta meta;
  YAML::Node spec;    // Null if absent
  int64_t order = 0;  // position across everything loaded (files sorted by path, then document order)

  // "Kind ns/name" or "Kind name" for cluster-scoped kinds.
  std::string ObjectName() const;
};

struct ReadOptions {
  std::string default_namespace = "default";
  size_t max_file_bytes = 8 << 20;
  // Upper bound on YAML nodes visited per document (aliases can multiply work).
  size_t max_nodes_per_document = 1 << 20;
};

// Parses every document in `text` (a file named `file`). Empty documents are skipped.
// Documents of kind List have their items expanded. Syntax errors and malformed headers are
// added to `diag`; well-formed documents are returned even if others fail.
std::vector<SourceDocument> ParseDocuments(absl::string_view text, const std::string& file, const ReadOptions& options,
                                           Diagnostics& diag, int64_t first_order = 0);

// Reads files and directories (the *.yaml, *.yml and *.json files directly inside, sorted by
// name, as `kubectl apply -f DIR` does). An unreadable path is an error in `diag`.
std::vector<SourceDocument> ReadDocuments(const std::vector<std::string>& paths, const ReadOptions& options,
                                          Diagnostics& diag);

// Shared state while reading one document's spec.
class ReadContext {
 public:
  ReadContext(const SourceDocument& doc, Diagnostics& diag, size_t node_budget)
      : doc_(doc), diag_(diag), budget_(node_budget) {}
  const SourceDocument& doc() const { return doc_; }
  void Error(const YAML::Node& at, const std::string& field, const std::string& message);
  void ErrorAtLine(int line, const std::string& field, const std::string& message);
  // Counts `n` visited nodes; false (with one error reported) once the budget is spent.
  bool Spend(size_t n = 1);
  bool exhausted() const { return exhausted_; }
  int LineOf(const YAML::Node& node) const;

 private:
  const SourceDocument& doc_;
  Diagnostics& diag_;
  size_t budget_;
  bool exhausted_ = false;
};

// Typed access to one YAML mapping at `path`. A Null/absent node reads as an empty mapping.
// A node of another type is reported once and reads as empty.
class FieldReader {
 public:
  FieldReader(ReadContext& ctx, const YAML::Node& node, std::string path);
  FieldReader(const FieldReader&) = delete;
  FieldReader& operator=(const FieldReader&) = delete;
  ~FieldReader();

  bool ok() const { return ok_; }
  bool Has(absl::string_view key);  // present and not null; marks the key as known
  // Scalars. Absent or null → nullopt; a type error is reported and gives nullopt.
  std::optional<std::string> String(absl::string_view key);
  std::optional<int64_t> Int(absl::string_view key, int64_t min, int64_t max);
  std::optional<bool> Bool(absl::string_view key);
  // A list of scalars (a single scalar is an error, as in Istio's schema).
  std::vector<std::string> StringList(absl::string_view key);
  // A list of integers within [min, max], accepting quoted numbers.
  std::vector<int64_t> IntList(absl::string_view key, int64_t min, int64_t max);
  // A mapping of scalars to scalars.
  std::map<std::string, std::string> StringMap(absl::string_view key);
  // Sub-nodes: the raw node (marked known), or an invalid node if absent.
  YAML::Node Node(absl::string_view key);
  // The elements of a list at `key` (a type error is reported).
  std::vector<YAML::Node> List(absl::string_view key);

  std::string PathOf(absl::string_view key) const;
  static std::string Index(const std::string& path, size_t i);
  ReadContext& ctx() { return ctx_; }
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  // Reports keys never asked for. Called by the destructor if not called before.
  void Finish();
  // Unknown keys are then not reported (for kinds whose schema is not ours, e.g. Service).
  void AllowUnknownKeys() { allow_unknown_ = true; }

 private:
  YAML::Node Lookup(absl::string_view key);
  std::optional<std::string> ScalarAt(const YAML::Node& n, const std::string& path);

  ReadContext& ctx_;
  YAML::Node node_;
  std::string path_;
  bool ok_ = true;
  bool finished_ = false;
  bool allow_unknown_ = false;
  std::vector<std::string> known_;
};

// Reads a list of scalars from an arbitrary node, reporting type errors at `path`.
std::vector<std::string> ReadStringList(ReadContext& ctx, const YAML::Node& node, const std::string& path);

// Reads an enum given by name or by number (as proto JSON decoding accepts). Anything else is
// reported and gives nullopt.
std::optional<int> ReadEnum(FieldReader& r, absl::string_view key, const std::vector<std::string>& names);

// `spec.selector.matchLabels` (nullopt when there is no selector); empty keys or values are
// reported.
std::optional<std::map<std::string, std::string>> ReadWorkloadSelector(ReadContext& ctx, FieldReader& spec);

// True if the document's apiVersion is one of `accepted`; otherwise reports it.
bool CheckApiVersion(const SourceDocument& doc, const std::vector<std::string>& accepted, Diagnostics& diag);

// A DNS-1123 label, as Kubernetes requires for service names.
bool IsDns1123Label(absl::string_view s);

}  // namespace meshid::rbac
