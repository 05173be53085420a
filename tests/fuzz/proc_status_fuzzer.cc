// The /proc parsers of workload attestation (workload/proc.h): /proc/<pid>/status's id lines
// and /proc/<pid>/stat's start time, over text that carries a caller-chosen process name.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "workload/proc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  auto ids = meshid::workload::ParseProcStatus(input);
  if (ids.ok()) {
    // What was accepted reads back the same from the kernel's own format.
    const std::string again = absl::StrCat("Uid:\t", ids->real_uid, "\t0\t0\t0\nGid:\t", ids->real_gid,
                                           "\t0\t0\t0\nGroups:\t", absl::StrJoin(ids->groups, " "), " \n");
    auto reparsed = meshid::workload::ParseProcStatus(again);
    if (!reparsed.ok() || reparsed->real_uid != ids->real_uid || reparsed->real_gid != ids->real_gid ||
        reparsed->groups != ids->groups) {
      __builtin_trap();
    }
  }
  (void)meshid::workload::ParseProcStatStartTime(input);
  return 0;
}
