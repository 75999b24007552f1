// Runs the fuzz targets' logic (test/fuzz/fuzz_targets.h) over the seed corpus and over
// simple mutations of it, so `make test` exercises the fuzz entry points and their
// invariants without libFuzzer.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test/core/sip_test_util.h"
#include "test/fuzz/fuzz_targets.h"

namespace {

std::vector<std::string> seeds() {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const auto& dir : {fs::path(SB_SOURCE_DIR) / "test/fuzz/corpus",
                          fs::path(SB_SHARED_DIR) / "conformance/rfc4475",
                          fs::path(SB_SHARED_DIR) / "conformance/rfc4475/rfc5118"}) {
    REQUIRE_MESSAGE(fs::is_directory(dir), dir.string());
    for (const auto& e : fs::directory_iterator(dir)) {
      auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".dat" || ext == ".sip"))
        out.push_back(sb::core::test::read_file(e.path().string()));
    }
  }
  return out;
}

// Feed one input through a target as an exact-size heap buffer, as libFuzzer does.
template <class F>
void feed(F&& target, const std::string& s) {
  std::vector<uint8_t> buf(s.begin(), s.end());
  target(buf.data(), buf.size());
}

}  // namespace

TEST_CASE("fuzz replay: the seed corpus through both targets") {
  std::vector<std::string> corpus = seeds();
  CHECK(corpus.size() >= 61 + 6);
  for (const auto& s : corpus) {
    feed(sb::fuzz::parser_one, s);
    feed(sb::fuzz::framing_one, s);
  }
}

TEST_CASE("fuzz replay: truncations, byte flips and splices of the seeds") {
  std::vector<std::string> corpus = seeds();
  uint32_t rng = 12345;
  auto next = [&] { return rng = rng * 1103515245u + 12345u; };
  for (const auto& s : corpus) {
    if (s.empty()) continue;
    for (int round = 0; round < 40; ++round) {
      std::string m = s;
      switch (next() % 4) {
        case 0: m.resize(next() % m.size()); break;
        case 1: m[next() % m.size()] = static_cast<char>(next()); break;
        case 2: {
          static constexpr std::string_view kSpecial = ",;:<>\"\\\r\n @%[";
          m.insert(next() % m.size(), std::string(1 + next() % 3, kSpecial[next() % kSpecial.size()]));
          break;
        }
        case 3: m += corpus[next() % corpus.size()]; break;
      }
      // Vary the knob byte the parser target reads.
      if (!m.empty() && round % 2) m.back() = static_cast<char>(next());
      feed(sb::fuzz::parser_one, m);
      feed(sb::fuzz::framing_one, m);
    }
  }
}
