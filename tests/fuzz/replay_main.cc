// Without libFuzzer (gcc builds), a fuzz target becomes a regression test: every file under the
// given directories (or the given files) is fed to LLVMFuzzerTestOneInput once, plus a bounded
// number of deterministic mutations of each, so the sanitizer build checks the corpus on every
// test run.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void Run(const std::string& bytes) {
  // Copy into an exactly-sized heap buffer so ASan catches reads past the end.
  std::vector<uint8_t> buf(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(buf.empty() ? nullptr : buf.data(), buf.size());
}

void RunWithMutations(const std::string& input, std::mt19937& rng) {
  Run(input);
  for (int i = 0; i < 64; ++i) {
    std::string m = input;
    switch (rng() % 4) {
      case 0:
        if (!m.empty()) m[rng() % m.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:
        if (!m.empty()) m.resize(rng() % m.size());
        break;
      case 2:
        m.insert(m.begin() + (m.empty() ? 0 : rng() % m.size()), static_cast<char>(rng() % 256));
        break;
      case 3:
        if (m.size() > 2) m.erase(rng() % m.size(), 1 + rng() % 8);
        break;
    }
    Run(m);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::mt19937 rng(12345);
  size_t inputs = 0;
  for (int i = 1; i < argc; ++i) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(argv[i])) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(argv[i])) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else {
      files.emplace_back(argv[i]);
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      std::ifstream in(file, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      RunWithMutations(bytes, rng);
      ++inputs;
    }
  }
  std::printf("replayed %zu corpus inputs (each with 64 mutations)\n", inputs);
  return inputs > 0 ? 0 : 1;
}
