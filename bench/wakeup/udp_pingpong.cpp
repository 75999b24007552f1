// What a wake-up costs on this machine: two processes bounce a 500-byte UDP datagram on
// loopback, each blocking in recv() until the other's datagram arrives, as a proxy and
// SIPp do. Reports wall time and the CPU time (user + system, from getrusage) of each side
// per round trip, for the two processes on one CPU, on two CPUs, and placed by the
// scheduler. The difference between "one CPU" and "two CPUs" is the price of waking a
// task on another CPU (an inter-processor interrupt, and an idle CPU halting and resuming,
// which on a virtual machine are exits to the hypervisor); any proxy pays it per datagram
// when it runs on another CPU than its peer, so it bounds what a proxy's own code can save.
//
// Run: build-bench/bench/wakeup/udp_pingpong [round trips, default 200000]
// Loopback only (127.0.0.1, ports picked by the kernel); each run is bounded by its count.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr size_t kDatagram = 500;  // about a SIP response

int bound_socket(sockaddr_in& addr) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  if (s < 0) return -1;
  timeval tv{5, 0};  // a lost datagram ends the run instead of hanging it
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(s);
    return -1;
  }
  return s;
}

void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

double cpu_us(const rusage& ru) {
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

// One run; false when a datagram was lost or a socket failed.
bool run(long n, int cpu_a, int cpu_b, const char* label) {
  sockaddr_in a_addr, b_addr;
  int a = bound_socket(a_addr), b = bound_socket(b_addr);
  if (a < 0 || b < 0) {
    std::perror("socket");
    return false;
  }
  char buf[kDatagram];
  std::memset(buf, 'x', sizeof buf);
  pid_t child = fork();
  if (child < 0) return false;
  if (child == 0) {  // the echo side
    pin(cpu_b);
    for (long i = 0; i < n; ++i) {
      if (recv(b, buf, sizeof buf, 0) <= 0) _exit(1);
      sendto(b, buf, kDatagram, 0, reinterpret_cast<sockaddr*>(&a_addr), sizeof a_addr);
    }
    _exit(0);
  }
  pin(cpu_a);
  usleep(100000);  // the child is pinned and waiting
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  timespec t0{}, t1{};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  bool ok = true;
  for (long i = 0; i < n && ok; ++i) {
    sendto(a, buf, kDatagram, 0, reinterpret_cast<sockaddr*>(&b_addr), sizeof b_addr);
    ok = recv(a, buf, sizeof buf, 0) > 0;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  rusage self{}, echo{};
  getrusage(RUSAGE_SELF, &self);
  int status = 0;
  if (!ok) kill(child, SIGKILL);
  wait4(child, &status, 0, &echo);
  close(a);
  close(b);
  if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "%s: a datagram was lost\n", label);
    return false;
  }
  const double wall = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
  std::printf("%-24s wall %6.2f us, CPU %6.2f us (sender) + %6.2f us (echo) per round trip\n", label,
              wall / n, (cpu_us(self) - cpu_us(before)) / n, cpu_us(echo) / n);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 200000;
  if (n <= 0) {
    std::fprintf(stderr, "usage: %s [round trips > 0]\n", argv[0]);
    return 2;
  }
  bool ok = run(n, 0, 0, "one CPU");
  if (sysconf(_SC_NPROCESSORS_ONLN) > 1) ok = run(n, 0, 1, "two CPUs") && ok;
  ok = run(n, -1, -1, "placed by the scheduler") && ok;
  return ok ? 0 : 1;
}
