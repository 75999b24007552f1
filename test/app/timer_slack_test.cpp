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

TEST_CASE("plan_timer: the worker's timer is armed for the slack's multiple, once per window") {
  constexpr int64_t kNever = INT64_MAX;
  // Nothing pending: an armed timer is stopped, an idle one left alone.
  CHECK(plan_timer(kNever, 1010, 1000, 10).action == TimerArm::Stop);
  CHECK(plan_timer(kNever, 1010, 1000, 10).at_ms == -1);
  CHECK(plan_timer(kNever, -1, 1000, 10).action == TimerArm::Keep);

  // A deadline: armed for the first multiple of the slack at or after it, not the deadline.
  TimerArm a = plan_timer(1003, -1, 1000, 10);
  CHECK(a.action == TimerArm::Start);
  CHECK(a.at_ms == 1010);
  CHECK(a.delay_ms == 10);

  // Another deadline in the same window (the timers of the next transactions) changes
  // nothing: no uv_timer_start per message.
  for (int64_t d = 1001; d <= 1010; ++d) {
    TimerArm k = plan_timer(d, 1010, 1000, 10);
    CHECK(k.action == TimerArm::Keep);
    CHECK(k.at_ms == 1010);
  }
  // An earlier window re-arms earlier; a deadline already past fires at once.
  CHECK(plan_timer(999, 1010, 990, 10).at_ms == 1000);
  TimerArm late = plan_timer(950, -1, 1000, 10);
  CHECK(late.action == TimerArm::Start);
  CHECK(late.delay_ms == 0);
  // Slack 1 (short T1 in tests): exact.
  CHECK(plan_timer(1003, -1, 1000, 1).at_ms == 1003);
}
