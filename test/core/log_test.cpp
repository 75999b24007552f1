#include <doctest/doctest.h>
#include <pthread.h>

#include <string>
#include <thread>

#include "core/log.h"

using namespace sb::core;

TEST_CASE("log: a thread's name is its name in the kernel too") {
  std::string seen, long_seen;
  std::thread t([&] {
    log::set_thread_name("location-db");
    char buf[32] = {};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    seen = buf;
    log::set_thread_name("a-name-longer-than-fifteen");
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    long_seen = buf;
  });
  t.join();
  CHECK(seen == "location-db");
  CHECK(long_seen == "a-name-longer-t");  // the kernel keeps 15 characters
}
