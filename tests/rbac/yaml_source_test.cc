// The YAML document reader: multi-document files, directories, List kinds, line numbers, and
// FieldReader's typed, path-tracking access with unknown-key reporting.
#include "rbac/yaml_source.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/temp_dir.h"

namespace meshid::rbac {
namespace {

TEST(ParseDocuments, MultiDocumentWithLines) {
  Diagnostics diag;
  auto docs = ParseDocuments(
      "# comment\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Service\n"
      "metadata:\n  name: b\n  namespace: x\n  creationTimestamp: '2020-01-02T03:04:05Z'\n  labels: {k: v}\n",
      "f.yaml", {}, diag);
  EXPECT_FALSE(diag.has_errors());
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].line, 2);
  EXPECT_EQ(docs[0].meta.namespace_, "default");
  EXPECT_EQ(docs[1].line, 7);
  EXPECT_EQ(docs[1].meta.namespace_, "x");
  EXPECT_EQ(docs[1].meta.labels.at("k"), "v");
  ASSERT_TRUE(docs[1].meta.creation_timestamp.has_value());
  EXPECT_EQ(absl::ToUnixSeconds(*docs[1].meta.creation_timestamp), 1577934245);
  EXPECT_LT(docs[0].order, docs[1].order);
}

TEST(ParseDocuments, BrokenDocumentsAreReported) {
  Diagnostics diag;
  auto docs = ParseDocuments("kind: X\n---\napiVersion: v1\n---\n[1, 2]\n---\napiVersion: v1\nkind: Service\n",
                             "f.yaml", {}, diag);
  EXPECT_TRUE(docs.empty());
  auto errors = diag.errors();
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0].ToString(), "f.yaml:1: X: apiVersion: required");
  EXPECT_EQ(errors[1].ToString(), "f.yaml:3: kind: required");
  EXPECT_EQ(errors[2].ToString(), "f.yaml:5: a document must be a mapping");
  EXPECT_EQ(errors[3].ToString(), "f.yaml:7: Service default/: metadata.name: required");
}

TEST(ReadDocuments, DirectoryIsSortedAndFiltered) {
  testing::TempDir temp_dir("meshid-yaml");
  const std::filesystem::path dir = temp_dir.path();
  std::filesystem::create_directories(dir / "sub");
  std::ofstream(dir / "b.yaml") << "apiVersion: v1\nkind: Service\nmetadata: {name: b}\n";
  std::ofstream(dir / "a.yml") << "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n";
  std::ofstream(dir / "c.json") << R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"c"}})";
  std::ofstream(dir / "notes.txt") << "not yaml: [";
  std::ofstream(dir / ".hidden.yaml") << "broken: [";
  std::ofstream(dir / "sub" / "d.yaml") << "apiVersion: v1\nkind: Service\nmetadata: {name: d}\n";
  Diagnostics diag;
  auto docs = ReadDocuments({dir.string(), (dir / "missing.yaml").string()}, {}, diag);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].meta.name, "a");
  EXPECT_EQ(docs[1].meta.name, "b");
  EXPECT_EQ(docs[2].meta.name, "c");
  ASSERT_EQ(diag.errors().size(), 1u);
  EXPECT_NE(diag.errors()[0].ToString().find("missing.yaml"), std::string::npos);
}

TEST(FieldReader, TypedAccessAndUnknownKeys) {
  Diagnostics diag;
  auto docs = ParseDocuments(
      "apiVersion: v1\nkind: Thing\nmetadata: {name: t}\nspec:\n  s: hello\n  n: '42'\n  b: TRUE\n  list: [a, b]\n"
      "  ints: [1, '2']\n  map: {k: v}\n  notCamel: x\n  typo: 1\n  badlist: scalar\n  badint: abc\n",
      "f.yaml", {}, diag);
  ASSERT_EQ(docs.size(), 1u);
  {
    ReadContext ctx(docs[0], diag, 1000);
    FieldReader r(ctx, docs[0].spec, "spec");
    EXPECT_EQ(r.String("s").value_or(""), "hello");
    EXPECT_EQ(r.Int("n", 0, 100).value_or(-1), 42);
    EXPECT_EQ(r.Bool("b").value_or(false), true);
    EXPECT_EQ(r.StringList("list"), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(r.IntList("ints", 0, 10), (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(r.StringMap("map").at("k"), "v");
    EXPECT_EQ(r.String("notCamel").value_or(""), "x");
    EXPECT_FALSE(r.String("absent").has_value());
    EXPECT_TRUE(r.StringList("badlist").empty());
    EXPECT_FALSE(r.Int("badint", 0, 10).has_value());
  }
  std::vector<std::string> errors;
  for (const auto& d : diag.errors()) errors.push_back(d.ToString());
  ASSERT_EQ(errors.size(), 3u) << ::testing::PrintToString(errors);
  EXPECT_EQ(errors[0], "f.yaml:13: Thing default/t: spec.badlist: must be a list of strings");
  EXPECT_EQ(errors[1], "f.yaml:14: Thing default/t: spec.badint: must be an integer");
  EXPECT_EQ(errors[2], "f.yaml:12: Thing default/t: spec.typo: unknown field");
}

TEST(FieldReader, SnakeCaseAlias) {
  Diagnostics diag;
  auto docs =
      ParseDocuments("apiVersion: v1\nkind: T\nmetadata: {name: t}\nspec: {not_methods: [GET]}\n", "f.yaml", {}, diag);
  ASSERT_EQ(docs.size(), 1u);
  ReadContext ctx(docs[0], diag, 1000);
  FieldReader r(ctx, docs[0].spec, "spec");
  EXPECT_EQ(r.StringList("notMethods"), std::vector<std::string>{"GET"});
  r.Finish();
  EXPECT_FALSE(diag.has_errors());
}

TEST(FieldReader, NodeBudget) {
  Diagnostics diag;
  std::string yaml = "apiVersion: v1\nkind: T\nmetadata: {name: t}\nspec:\n  list: [";
  for (int i = 0; i < 100; ++i) yaml += "x, ";
  yaml += "x]\n";
  auto docs = ParseDocuments(yaml, "f.yaml", {}, diag);
  ASSERT_EQ(docs.size(), 1u);
  ReadContext ctx(docs[0], diag, 50);
  FieldReader r(ctx, docs[0].spec, "spec");
  EXPECT_LT(r.StringList("list").size(), 50u);
  r.Finish();
  ASSERT_TRUE(diag.has_errors());
  EXPECT_NE(diag.errors()[0].message.find("too large"), std::string::npos);
}

}  // namespace
}  // namespace meshid::rbac
