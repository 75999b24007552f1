// libFuzzer entry: Message::parse, every typed header parser, splice and response building
// (logic and invariants in fuzz_targets.h).
#include "test/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sb::fuzz::parser_one(data, size);
}
