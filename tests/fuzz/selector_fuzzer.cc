// Workload selectors (`meshid entry create --selector`, entries read back from the store, what
// the node agent derives from a caller): never crashes, errors are one line, and what it accepts
// is canonical: parsing the result again gives the same text, no longer than the input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/selector.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto selector = meshid::ParseSelector(input);
  if (!selector.ok()) {
    if (std::string(selector.status().message()).find('\n') != std::string::npos) __builtin_trap();  // one line
  } else {
    auto again = meshid::ParseSelector(*selector);
    if (!again.ok() || *again != *selector || selector->size() != input.size()) __builtin_trap();
  }
  // One selector a line: the list form is sorted and unique, and matches a workload that has
  // exactly its selectors.
  std::vector<std::string> lines = absl::StrSplit(input, '\n');
  auto list = meshid::ParseSelectors(lines);
  if (list.ok()) {
    for (size_t i = 1; i < list->size(); ++i) {
      if (!((*list)[i - 1] < (*list)[i])) __builtin_trap();
    }
    absl::flat_hash_set<std::string> present(list->begin(), list->end());
    if (meshid::SelectorsMatch(*list, present) == list->empty()) __builtin_trap();
  }
  return 0;
}
