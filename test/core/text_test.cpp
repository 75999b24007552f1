#include "core/text.h"

#include <doctest/doctest.h>

using namespace sb::core;

TEST_CASE("text: quotable refuses what a quoted-string cannot carry as is") {
  CHECK(quotable("example.com"));
  CHECK(quotable(""));
  CHECK_FALSE(quotable("a\"b"));
  CHECK_FALSE(quotable("a\\b"));
  CHECK_FALSE(quotable("a\r\nb"));
  CHECK_FALSE(quotable("a\x7f"));
}
