// The worker's timer slack (app/sip_worker.h): timers falling due within one slack share one
// wake-up, and none fires early or later than one slack after its deadline.
#include <doctest/doctest.h>

#include "app/sip_worker.h"

using namespace sb::app;

TEST_CASE("timer_slack_ms: t1/50 within 1..10 ms") {
  CHECK(timer_slack_ms(500) == 10);   // the default T1
  CHECK(timer_slack_ms(5000) == 10);  // never more than 10 ms
  CHECK(timer_slack_ms(250) == 5);
  CHECK(timer_slack_ms(100) == 2);
  CHECK(timer_slack_ms(99) == 1);     // short test timers stay exact
  CHECK(timer_slack_ms(1) == 1);
}

TEST_CASE("timer_wake_ms: the first multiple of the slack at or after the deadline") {
  CHECK(timer_wake_ms(1000, 10) == 1000);
  CHECK(timer_wake_ms(1001, 10) == 1010);
  CHECK(timer_wake_ms(1009, 10) == 1010);
  CHECK(timer_wake_ms(1010, 10) == 1010);
  CHECK(timer_wake_ms(1234, 1) == 1234);  // slack 1: exact

  // Every deadline of one slack window wakes at the same time, never before its deadline
  // and less than one slack after it.
  for (int64_t slack : {1, 2, 5, 10}) {
    for (int64_t d = 100000; d < 100100; ++d) {
      const int64_t w = timer_wake_ms(d, slack);
      CHECK(w >= d);
      CHECK(w < d + slack);
      CHECK(w % slack == 0);
      CHECK(timer_wake_ms((w / slack - 1) * slack + 1, slack) == w);  // the window's first
    }
  }
}
