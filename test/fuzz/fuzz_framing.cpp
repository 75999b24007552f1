// libFuzzer entry: stream framing (next_frame) over the input, whole and in pieces, and
// parsing each frame (logic and invariants in fuzz_targets.h).
#include "test/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sb::fuzz::framing_one(data, size);
}
