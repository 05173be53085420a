// A strict PEM (RFC 7468) reader for untrusted input.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid {

struct PemBlock {
  std::string type;  // the label, e.g. "CERTIFICATE REQUEST"
  std::string der;   // decoded body
};

struct PemParseOptions {
  size_t max_input_bytes = 1 << 20;
  size_t max_blocks = 64;
  // RFC 7468 allows explanatory text between blocks (e.g. `openssl x509 -text` output). Off for
  // network input, where only whitespace may surround the blocks.
  bool allow_text_outside_blocks = false;
};

// Splits `text` into its PEM blocks. Fails with InvalidArgument naming the problem (size,
// unterminated block, mismatched labels, bad base64, headers, stray text). An input without
// any block is an error too.
absl::StatusOr<std::vector<PemBlock>> ParsePemBlocks(absl::string_view text, const PemParseOptions& options = {});

// Encodes one block with 64-character lines and a trailing newline.
std::string EncodePem(absl::string_view type, absl::string_view der);

}  // namespace meshid
