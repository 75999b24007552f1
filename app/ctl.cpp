#include "app/ctl.h"

#include <http_parser.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "core/text.h"

namespace sb::app {

using nlohmann::json;

namespace {

constexpr const char* kDefaultAdmin = "127.0.0.1:8080";
constexpr size_t kMaxAnswerBytes = 64 * 1024 * 1024;

const char* const kUsage =
    "usage: switchboard ctl [--admin HOST:PORT] [--json] [--timeout S] COMMAND\n"
    "commands:\n"
    "  health                          is the proxy healthy (exit 1 if not)\n"
    "  stats                           counters and gauges as a table\n"
    "  metrics                         the Prometheus text of GET /metrics\n"
    "  reload                          reload configuration and script (exit 1 if rejected)\n"
    "  location [list [AOR]]           bindings: all, or those of one AOR\n"
    "  location add AOR CONTACT [--q Q] [--expires S]\n"
    "                                  add a static binding (expires 0 = never expires)\n"
    "  location rm AOR [CONTACT]       remove the AOR's bindings, or the one with CONTACT\n"
    "options:\n"
    "  --admin HOST:PORT  admin address ([::1]:8080 for IPv6); default $SWITCHBOARD_ADMIN,\n"
    "                     else 127.0.0.1:8080\n"
    "  --json             print the server's JSON answer as is\n"
    "  --timeout S        seconds to wait for the answer (default 30)\n"
    "exit status: 0 success, 1 refused or failed (error answer, rejected reload, unhealthy),\n"
    "             2 usage error or no usable answer (cannot connect, timeout, malformed answer)\n";

struct Answer {
  int status = 0;
  std::string content_type;
  std::string body;
};

struct AdminAddress {
  std::string host;
  std::string port;
};

// "HOST:PORT", "[V6]:PORT", optionally with "http://" in front and "/" behind.
bool parse_admin(std::string_view s, AdminAddress& out, std::string& err) {
  if (s.substr(0, 7) == "http://") s.remove_prefix(7);
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  std::string_view host, port;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      err = "bad admin address '" + std::string(s) + "' (expected [IPV6]:PORT)";
      return false;
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || s.find(':') != colon) {
      err = "bad admin address '" + std::string(s) + "' (expected HOST:PORT, or [IPV6]:PORT)";
      return false;
    }
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  auto port_num = core::parse_uint(port, 65535);
  if (host.empty() || !port_num || *port_num == 0) {
    err = "bad admin address '" + std::string(s) + "' (expected HOST:PORT with a port from 1 to 65535)";
    return false;
  }
  out.host = host;
  out.port = port;
  return true;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// The response as http-parser sees it.
struct ResponseParse {
  Answer* answer = nullptr;
  bool complete = false;
  bool in_value = false;
  bool is_content_type = false;
  std::string field;
};

const http_parser_settings& response_settings() {
  static const http_parser_settings s = [] {
    http_parser_settings st;
    http_parser_settings_init(&st);
    st.on_header_field = [](http_parser* p, const char* at, size_t len) {
      auto* r = static_cast<ResponseParse*>(p->data);
      if (r->in_value) {
        r->field.clear();
        r->in_value = false;
      }
      r->field.append(at, len);
      return 0;
    };
    st.on_header_value = [](http_parser* p, const char* at, size_t len) {
      auto* r = static_cast<ResponseParse*>(p->data);
      if (!r->in_value) {
        r->in_value = true;
        r->is_content_type = core::iequals(r->field, "content-type");
      }
      if (r->is_content_type) r->answer->content_type.append(at, len);
      return 0;
    };
    st.on_headers_complete = [](http_parser* p) {
      static_cast<ResponseParse*>(p->data)->answer->status = static_cast<int>(p->status_code);
      return 0;
    };
    st.on_body = [](http_parser* p, const char* at, size_t len) {
      auto* r = static_cast<ResponseParse*>(p->data);
      if (r->answer->body.size() + len > kMaxAnswerBytes) return 1;
      r->answer->body.append(at, len);
      return 0;
    };
    st.on_message_complete = [](http_parser* p) {
      auto* r = static_cast<ResponseParse*>(p->data);
      // An interim 1xx is not the answer.
      if (p->status_code >= 200) {
        r->complete = true;
        http_parser_pause(p, 1);
      } else {
        r->answer->body.clear();
        r->answer->content_type.clear();
      }
      return 0;
    };
    return st;
  }();
  return s;
}

// One request, one answer, then the connection is closed. False with `err` set when no
// usable answer came.
bool http_call(const AdminAddress& addr, int timeout_s, std::string_view method, const std::string& target,
               const std::string& body, Answer& answer, std::string& err) {
  std::string where = (addr.host.find(':') != std::string::npos ? "[" + addr.host + "]" : addr.host) + ":" + addr.port;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int r = getaddrinfo(addr.host.c_str(), addr.port.c_str(), &hints, &res); r != 0) {
    err = "cannot resolve " + addr.host + ": " + gai_strerror(r);
    return false;
  }
  Fd fd;
  int last_errno = 0;
  timeval tv{};
  tv.tv_sec = timeout_s;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd.reset(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last_errno = errno;
      continue;
    }
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect()
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0) {
      last_errno = 0;
      break;
    }
    last_errno = errno;
    fd.reset(-1);
  }
  freeaddrinfo(res);
  if (fd.get() < 0) {
    err = "cannot connect to the admin API at " + where + ": " + std::strerror(last_errno ? last_errno : ECONNREFUSED) +
          " (is the proxy running with its admin listener there? see --admin)";
    return false;
  }

  std::string req;
  req.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  req.append("Host: ").append(where).append("\r\n");
  req.append("User-Agent: switchboard-ctl/" SB_VERSION "\r\n");
  req.append("Accept: application/json\r\nConnection: close\r\n");
  if (method == "POST" || !body.empty()) {
    if (!body.empty()) req.append("Content-Type: application/json\r\n");
    req.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  req.append("\r\n").append(body);
  for (size_t off = 0; off < req.size();) {
    ssize_t n = ::send(fd.get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = "cannot send the request to " + where + ": " + std::strerror(errno);
      return false;
    }
    off += static_cast<size_t>(n);
  }

  http_parser parser;
  http_parser_init(&parser, HTTP_RESPONSE);
  ResponseParse rp;
  rp.answer = &answer;
  parser.data = &rp;
  char buf[16 * 1024];
  while (!rp.complete) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        err = "no answer from " + where + " within " + std::to_string(timeout_s) + " s";
      else if (errno == ECONNRESET)
        err = "the admin API at " + where + " closed the connection before answering (reset)";
      else
        err = "reading the answer from " + where + ": " + std::strerror(errno);
      return false;
    }
    size_t len = static_cast<size_t>(n);
    // n == 0: end of stream, which completes a body delimited by the connection's end.
    http_parser_execute(&parser, &response_settings(), n == 0 ? nullptr : buf, len);
    auto e = HTTP_PARSER_ERRNO(&parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
      err = std::string("malformed answer from ") + where + ": " + http_errno_description(e);
      return false;
    }
    if (n == 0 && !rp.complete) {
      err = "the admin API at " + where + " closed the connection before answering";
      return false;
    }
  }
  return true;
}

std::string fmt_double(double v, int precision = 3) {
  std::ostringstream o;
  o << std::setprecision(precision) << v;
  return o.str();
}

std::string fmt_duration(int64_t s) {
  if (s < 0) s = 0;
  int64_t d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
  std::ostringstream o;
  if (d) o << d << "d ";
  o << std::setfill('0') << std::setw(2) << h << ":" << std::setw(2) << m << ":" << std::setw(2) << sec;
  return o.str();
}

// "INVITE 10, REGISTER 5" from a JSON object of counts; "none" when empty.
std::string fmt_counts(const json& obj) {
  if (!obj.is_object() || obj.empty()) return "none";
  std::string out;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!out.empty()) out += ", ";
    out += it.key() + " " + it.value().dump();
  }
  return out;
}

uint64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->is_number_unsigned() ? it->get<uint64_t>() : static_cast<uint64_t>(std::max<double>(0, it->get<double>()));
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

void print_stats(const json& s, std::ostream& out) {
  auto row = [&](const char* label, const std::string& value) {
    out << std::left << std::setw(14) << label << value << "\n";
  };
  bool healthy = !s.contains("healthy") || s["healthy"] == true;
  out << "switchboard " << str(s, "version") << "  generation " << num(s, "generation") << "  up "
      << fmt_duration(static_cast<int64_t>(num(s, "uptime_s"))) << "  " << num(s, "workers") << " worker(s)  "
      << (healthy ? "healthy" : "UNHEALTHY: " + str(s, "health_detail")) << "\n";
  row("bindings", std::to_string(num(s, "bindings")) + " (" + std::to_string(num(s, "aors")) + " AORs)");
  row("reloads", std::to_string(num(s, "reloads_ok")) + " ok, " + std::to_string(num(s, "reloads_failed")) + " failed");
  row("requests", fmt_counts(s.value("requests_by_method", json::object())));
  row("responses", fmt_counts(s.value("responses_by_code", json::object())));
  row("transactions", fmt_counts(s.value("transactions_active", json::object())));
  row("retransmits", std::to_string(num(s, "retransmissions")) + " sent, " + std::to_string(num(s, "absorbed")) +
                         " absorbed");
  json h = s.value("script_seconds", json::object());
  uint64_t calls = num(h, "count");
  double sum = h.contains("sum") && h["sum"].is_number() ? h["sum"].get<double>() : 0.0;
  std::string script = std::to_string(calls) + " calls";
  if (calls) script += ", avg " + fmt_double(sum * 1000.0 / static_cast<double>(calls)) + " ms";
  script += ", " + std::to_string(num(s, "script_errors")) + " errors";
  row("script", script);
  row("parse errors", fmt_counts(s.value("parse_errors", json::object())));
  row("drops", fmt_counts(s.value("drops", json::object())));
  if (s.contains("counters") && s["counters"].is_object() && !s["counters"].empty())
    row("counters", fmt_counts(s["counters"]));
  json workers = s.value("per_worker", json::array());
  if (workers.is_array() && !workers.empty()) {
    out << std::left << std::setw(8) << "worker" << std::setw(8) << "queue" << "transactions\n";
    for (const auto& w : workers)
      out << std::left << std::setw(8) << num(w, "id") << std::setw(8) << num(w, "queue_depth")
          << num(w, "transactions") << "\n";
  }
}

void print_bindings(const json& j, std::ostream& out) {
  json list = j.value("bindings", json::array());
  if (!list.is_array() || list.empty()) {
    out << "no bindings\n";
    return;
  }
  size_t wa = 0, wc = 0;
  for (const auto& b : list) {
    wa = std::max(wa, str(b, "aor").size());
    wc = std::max(wc, str(b, "contact").size());
  }
  for (const auto& b : list) {
    bool is_static = b.value("static", false);
    double q = b.contains("q") && b["q"].is_number() ? b["q"].get<double>() : 1.0;
    int64_t expires =
        b.contains("expires_in_s") && b["expires_in_s"].is_number() ? b["expires_in_s"].get<int64_t>() : 0;
    out << std::left << std::setw(static_cast<int>(wa)) << str(b, "aor") << "  " << std::setw(static_cast<int>(wc))
        << str(b, "contact") << "  q=" << fmt_double(q) << "  "
        << (is_static ? (expires < 0 ? std::string("static") : "static, expires in " + std::to_string(expires) + "s")
                      : "expires in " + std::to_string(expires) + "s");
    if (!str(b, "source").empty()) out << "  from " << str(b, "source");
    if (!str(b, "user_agent").empty()) out << "  \"" << str(b, "user_agent") << "\"";
    out << "\n";
  }
}

// The error an answer carries, for the human output.
std::string answer_error(const Answer& a, const json& j) {
  std::string msg;
  if (j.is_object() && j.contains("error") && j["error"].is_string()) msg = j["error"].get<std::string>();
  else if (!a.body.empty() && a.body.size() < 512) msg = a.body;
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
  return "HTTP " + std::to_string(a.status) + (msg.empty() ? "" : ": " + msg);
}

bool parse_double01(const std::string& s, double& out) {
  char* end = nullptr;
  errno = 0;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0' && errno == 0 && out >= 0.0 && out <= 1.0;
}

bool parse_u32(const std::string& s, uint32_t& out) {
  auto v = core::parse_uint(s, UINT32_MAX);
  if (v) out = static_cast<uint32_t>(*v);
  return v.has_value();
}

}  // namespace

int ctl_main(const std::vector<std::string>& args) { return ctl_main(args, std::cout, std::cerr); }

int ctl_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  auto usage_error = [&](const std::string& msg) {
    err << "switchboard ctl: " << msg << "\n" << kUsage;
    return 2;
  };
  std::string admin;
  if (const char* env = std::getenv("SWITCHBOARD_ADMIN"); env && *env) admin = env;
  if (admin.empty()) admin = kDefaultAdmin;
  bool json_out = false;
  int timeout_s = 30;
  std::optional<std::string> q_arg, expires_arg;
  std::vector<std::string> pos;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* name, std::string& dst) {
      std::string prefix = std::string(name) + "=";
      if (a.rfind(prefix, 0) == 0) {
        dst = a.substr(prefix.size());
        return true;
      }
      if (a == name && i + 1 < args.size()) {
        dst = args[++i];
        return true;
      }
      return false;
    };
    std::string v;
    if (a == "-h" || a == "--help") {
      out << kUsage;
      return 0;
    } else if (a == "--json") {
      json_out = true;
    } else if (value("--admin", v)) {
      admin = v;
    } else if (value("--timeout", v)) {
      uint32_t t = 0;
      if (!parse_u32(v, t) || t == 0 || t > 3600) return usage_error("--timeout expects seconds from 1 to 3600");
      timeout_s = static_cast<int>(t);
    } else if (value("--q", v)) {
      q_arg = v;
    } else if (value("--expires", v)) {
      expires_arg = v;
    } else if (a.size() > 1 && a[0] == '-') {
      return usage_error("unknown option or missing value: " + a);
    } else {
      pos.push_back(a);
    }
  }
  if (pos.empty()) return usage_error("a command is required");

  AdminAddress addr;
  std::string addr_err;
  if (!parse_admin(admin, addr, addr_err)) return usage_error(addr_err);

  const std::string& cmd = pos[0];
  std::string method = "GET", target, body, sub;
  if ((q_arg || expires_arg) && !(cmd == "location" && pos.size() > 1 && pos[1] == "add"))
    return usage_error("--q and --expires belong to 'location add'");
  if (cmd == "health" || cmd == "stats" || cmd == "metrics" || cmd == "reload") {
    if (pos.size() != 1) return usage_error("'" + cmd + "' takes no arguments");
    target = "/" + cmd;
    if (cmd == "reload") method = "POST";
  } else if (cmd == "location") {
    sub = pos.size() > 1 ? pos[1] : "list";
    if (sub == "list") {
      if (pos.size() > 3) return usage_error("usage: location list [AOR]");
      target = "/location";
      if (pos.size() == 3) target += "?aor=" + url_encode(pos[2]);
    } else if (sub == "add") {
      if (pos.size() != 4) return usage_error("usage: location add AOR CONTACT [--q Q] [--expires S]");
      double q = 1.0;
      uint32_t expires = 0;
      if (q_arg && !parse_double01(*q_arg, q)) return usage_error("--q expects a number from 0 to 1");
      if (expires_arg && !parse_u32(*expires_arg, expires))
        return usage_error("--expires expects whole seconds (0 = never expires)");
      method = "POST";
      target = "/location";
      body = json{{"aor", pos[2]}, {"contact", pos[3]}, {"q", q}, {"expires", expires}}.dump();
    } else if (sub == "rm" || sub == "remove") {
      if (pos.size() < 3 || pos.size() > 4) return usage_error("usage: location rm AOR [CONTACT]");
      method = "DELETE";
      target = "/location?aor=" + url_encode(pos[2]);
      if (pos.size() == 4) target += "&contact=" + url_encode(pos[3]);
    } else {
      return usage_error("unknown location command '" + sub + "' (list, add, rm)");
    }
  } else {
    return usage_error("unknown command '" + cmd + "'");
  }

  Answer a;
  std::string call_err;
  if (!http_call(addr, timeout_s, method, target, body, a, call_err)) {
    err << "switchboard ctl: " << call_err << "\n";
    return 2;
  }
  bool success = a.status >= 200 && a.status < 300;
  if (json_out || cmd == "metrics") {
    out << a.body;
    if (!a.body.empty() && a.body.back() != '\n') out << "\n";
    if (!success && !json_out) err << "switchboard ctl: HTTP " << a.status << "\n";
    return success ? 0 : 1;
  }
  json j = json::parse(a.body, nullptr, false);
  if (j.is_discarded()) j = json();
  if (cmd == "reload" && (a.status == 200 || a.status == 409 || a.status == 422) && j.is_object()) {
    if (success && j.value("ok", false)) {
      out << "reload ok: generation " << num(j, "generation") << "\n";
      return 0;
    }
    err << "reload failed:\n";
    for (const auto& e : j.value("errors", json::array()))
      err << "  - " << (e.is_string() ? e.get<std::string>() : e.dump()) << "\n";
    return 1;
  }
  if (cmd == "health" && (a.status == 200 || a.status == 503) && j.is_object()) {
    if (success) {
      out << "ok\n";
      return 0;
    }
    err << "unhealthy: " << str(j, "detail") << "\n";
    return 1;
  }
  if (!success) {
    err << "switchboard ctl: " << answer_error(a, j) << "\n";
    return 1;
  }
  if (!j.is_object()) {
    err << "switchboard ctl: the answer is not the JSON object expected (HTTP " << a.status << ")\n";
    return 2;
  }
  if (cmd == "stats") {
    print_stats(j, out);
  } else if (sub == "list") {
    print_bindings(j, out);
  } else if (sub == "add") {
    uint64_t expires = num(j, "expires");
    out << "added " << str(j, "aor") << " -> " << str(j, "contact") << " (q "
        << fmt_double(j.contains("q") && j["q"].is_number() ? j["q"].get<double>() : 1.0) << ", "
        << (expires == 0 ? std::string("static, never expires") : "expires in " + std::to_string(expires) + "s")
        << ")\n";
  } else {
    out << "removed " << num(j, "removed") << " binding(s)\n";
  }
  return 0;
}

}  // namespace sb::app
