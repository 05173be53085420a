#include "common/pem.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base64.h"

namespace meshid {
namespace {

constexpr absl::string_view kBegin = "-----BEGIN ";
constexpr absl::string_view kEnd = "-----END ";
constexpr absl::string_view kDashes = "-----";

bool IsBlank(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Reads the label of a "-----BEGIN X-----" / "-----END X-----" line starting at `pos`.
absl::StatusOr<absl::string_view> ReadLabel(absl::string_view text, size_t pos, absl::string_view prefix,
                                            size_t* line_end) {
  size_t eol = text.find('\n', pos);
  if (eol == absl::string_view::npos) eol = text.size();
  absl::string_view line = text.substr(pos, eol - pos);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (!absl::StartsWith(line, prefix) || !absl::EndsWith(line, kDashes) ||
      line.size() < prefix.size() + kDashes.size()) {
    return absl::InvalidArgumentError("PEM: malformed encapsulation boundary");
  }
  absl::string_view label = line.substr(prefix.size(), line.size() - prefix.size() - kDashes.size());
  for (char c : label) {
    if (c == '-' || c < 0x20 || c > 0x7e) return absl::InvalidArgumentError("PEM: malformed label");
  }
  *line_end = eol;
  return label;
}

}  // namespace

absl::StatusOr<std::vector<PemBlock>> ParsePemBlocks(absl::string_view text, const PemParseOptions& options) {
  if (text.size() > options.max_input_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("PEM input is ", text.size(), " bytes, more than the limit of ", options.max_input_bytes));
  }
  std::vector<PemBlock> blocks;
  size_t pos = 0;
  while (true) {
    size_t begin = text.find(kBegin, pos);
    absl::string_view between = text.substr(pos, begin == absl::string_view::npos ? text.size() - pos : begin - pos);
    if (!options.allow_text_outside_blocks && !IsBlank(between)) {
      return absl::InvalidArgumentError("PEM: unexpected text outside a BEGIN/END block");
    }
    if (begin == absl::string_view::npos) break;
    if (begin > 0 && text[begin - 1] != '\n') {
      return absl::InvalidArgumentError("PEM: BEGIN line does not start a line");
    }
    if (blocks.size() >= options.max_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("PEM: more than ", options.max_blocks, " blocks"));
    }
    size_t header_end = 0;
    auto label = ReadLabel(text, begin, kBegin, &header_end);
    if (!label.ok()) return label.status();
    size_t end = text.find(kEnd, header_end);
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("PEM: block \"", *label, "\" has no END line"));
    }
    size_t footer_end = 0;
    auto end_label = ReadLabel(text, end, kEnd, &footer_end);
    if (!end_label.ok()) return end_label.status();
    if (*end_label != *label) {
      return absl::InvalidArgumentError(absl::StrCat("PEM: BEGIN \"", *label, "\" closed by END \"", *end_label, "\""));
    }
    // The base64 text without its line breaks, copied a line at a time (a CRL's PEM is megabytes).
    const absl::string_view encoded = text.substr(header_end, end - header_end);
    if (encoded.find(':') != absl::string_view::npos) {
      return absl::InvalidArgumentError("PEM: encapsulated headers are not supported");
    }
    std::string body;
    body.reserve(encoded.size());
    for (size_t i = 0; i < encoded.size();) {
      size_t j = i;
      while (j < encoded.size() && !absl::ascii_isspace(static_cast<unsigned char>(encoded[j]))) ++j;
      body.append(encoded.data() + i, j - i);
      while (j < encoded.size() && absl::ascii_isspace(static_cast<unsigned char>(encoded[j]))) ++j;
      i = j;
    }
    auto der = Base64Decode(body);
    if (!der.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("PEM: block \"", *label, "\": ", der.status().message()));
    }
    if (der->empty()) return absl::InvalidArgumentError(absl::StrCat("PEM: block \"", *label, "\" is empty"));
    blocks.push_back(PemBlock{std::string(*label), std::move(*der)});
    pos = footer_end;
  }
  if (blocks.empty()) return absl::InvalidArgumentError("PEM: no BEGIN/END block found");
  return blocks;
}

std::string EncodePem(absl::string_view type, absl::string_view der) {
  std::string b64 = Base64Encode(der);
  std::string out = absl::StrCat(kBegin, type, kDashes, "\n");
  for (size_t i = 0; i < b64.size(); i += 64) absl::StrAppend(&out, b64.substr(i, 64), "\n");
  absl::StrAppend(&out, kEnd, type, kDashes, "\n");
  return out;
}

}  // namespace meshid
