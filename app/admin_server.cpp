#include "app/admin_server.h"

#include <http_parser.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "app/metrics.h"
#include "core/log.h"
#include "core/text.h"
#include "core/uri.h"

namespace sb::app {

using nlohmann::json;

namespace {

// Unparsed bytes held while a request is being answered (pipelining); past it the
// connection stops reading until the answer is out.
constexpr size_t kMaxBuffered = 64 * 1024;
// After a "Connection: close" answer, unread input is drained this long before closing, so
// closing with unread data (an RST) does not destroy the answer before the client reads it.
constexpr uint64_t kLingerMs = 2000;

// Never throws on invalid UTF-8 from the backend (a User-Agent, a script error text).
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; }

std::string error_body(std::string_view msg) { return dump(json{{"error", msg}}); }

using Query = std::vector<std::pair<std::string, std::string>>;

bool parse_query(std::string_view q, Query& out) {
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    // %XX-decoded; '+' stays '+' (SIP URIs have no spaces but do have '+' in telephone numbers).
    std::string k, v;
    if (!core::unescape(part.substr(0, eq), k)) return false;
    if (eq != std::string_view::npos && !core::unescape(part.substr(eq + 1), v)) return false;
    out.emplace_back(std::move(k), std::move(v));
  }
  return true;
}

const std::string* query_param(const Query& q, std::string_view name) {
  for (const auto& [k, v] : q)
    if (k == name) return &v;
  return nullptr;
}

int http_status_for(const core::Error& e) {
  if (e.status >= 500) return 503;
  if (e.status == 403 || e.status == 404 || e.status == 409) return e.status;
  return 400;
}

enum class StatsView { Health, Stats, Metrics };

}  // namespace

struct AdminServer::Listener {
  uv_tcp_t tcp;
  AdminServer* server = nullptr;  // null once closing
  static void on_closed(uv_handle_t* h) { delete static_cast<Listener*>(h->data); }
};

// One client connection: a TCP handle and its timer, freed only when both close callbacks
// have run (STYLE.md 9). `server` is valid until close() starts; nothing after that uses it.
struct AdminServer::Connection {
  explicit Connection(AdminServer* s) : server(s), lim(s->limits_) {
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = this;
  }

  AdminServer* server;
  const AdminLimits lim;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  int open_handles = 0;
  bool closing = false;
  bool reading = false;
  bool draining = false;   // answer sent with Connection: close; discarding input until EOF
  bool peer_eof = false;   // the client half-closed: finish what is in progress, then close
  bool awaiting = false;   // a backend answer is pending
  bool close_after = false;
  int writes = 0;          // uv_write requests in flight
  // Backend callbacks hold a weak reference: once close() starts they do nothing.
  std::shared_ptr<char> alive = std::make_shared<char>(0);

  http_parser parser;
  std::string inbuf;
  char readbuf[16 * 1024];

  // The request being parsed.
  bool in_message = false;
  bool request_ready = false;
  bool header_too_large = false;
  bool body_too_large = false;
  bool keep_alive = true;
  bool head_request = false;  // HEAD: the answer's head only
  bool in_value = false;
  size_t header_bytes = 0;
  unsigned method = 0;
  std::string url, body, field, value;
  std::vector<std::pair<std::string, std::string>> headers;

  struct WriteReq {
    uv_write_t req;
    std::string data;
    Connection* conn;
  };

  // ---- lifetime ----

  void close() {
    if (closing) return;
    closing = true;
    alive.reset();
    if (server) server->forget(this);
    server = nullptr;
    if (open_handles == 0) {
      delete this;
      return;
    }
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp))) uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_closed);
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer)))
      uv_close(reinterpret_cast<uv_handle_t*>(&timer), on_closed);
  }
  static void on_closed(uv_handle_t* h) {
    auto* c = static_cast<Connection*>(h->data);
    if (--c->open_handles == 0) delete c;
  }

  void arm_timer(uint64_t ms) {
    if (ms == 0) {
      uv_timer_stop(&timer);
      return;
    }
    uv_timer_start(&timer, [](uv_timer_t* t) { static_cast<Connection*>(t->data)->close(); }, ms, 0);
  }

  void start_reading() {
    if (reading || closing) return;
    if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp), on_alloc, on_read) == 0) reading = true;
    else close();
  }
  void stop_reading() {
    if (!reading) return;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp));
    reading = false;
  }

  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* c = static_cast<Connection*>(h->data);
    *buf = uv_buf_init(c->readbuf, sizeof c->readbuf);
  }

  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
    auto* c = static_cast<Connection*>(s->data);
    if (c->closing) return;
    if (nread == UV_EOF && !c->draining) {
      // Half-close: answer what was asked, then close (see finish_if_done()).
      c->peer_eof = true;
      c->stop_reading();
      c->process();
      return;
    }
    if (nread < 0) {  // reset, or EOF while draining: the client is gone
      c->close();
      return;
    }
    if (nread == 0 || c->draining) return;
    c->inbuf.append(c->readbuf, static_cast<size_t>(nread));
    if (c->inbuf.size() >= kMaxBuffered) c->stop_reading();
    c->process();
  }

  // ---- parsing ----

  bool idle() const { return !awaiting && writes == 0; }

  // Feed buffered input to the parser and answer complete requests, one at a time: the next
  // request is looked at only when the previous answer has been written (answers in order).
  void process() {
    while (!closing && idle() && !close_after && !inbuf.empty()) {
      size_t n = http_parser_execute(&parser, &settings(), inbuf.data(), inbuf.size());
      if (closing) return;  // a failed write in a callback (100 Continue) closed us
      auto err = HTTP_PARSER_ERRNO(&parser);
      if (err == HPE_PAUSED) {
        http_parser_pause(&parser, 0);
      } else if (err != HPE_OK) {
        inbuf.clear();
        parse_failed(err);
        break;
      }
      inbuf.erase(0, n);
      if (request_ready) {
        request_ready = false;
        if (parser.upgrade) close_after = true;  // another protocol follows: not ours
        dispatch();
      } else if (err == HPE_OK && n == 0) {
        break;
      }
    }
    if (closing) return;
    if (!peer_eof && !close_after && !draining && inbuf.size() < kMaxBuffered) start_reading();
    finish_if_done();
  }

  void finish_if_done() {
    if (closing || !idle()) return;
    if (close_after) {
      begin_close();
    } else if (peer_eof) {
      close();
    }
  }

  // Answer written with Connection: close: send FIN, drain what the client still sends
  // (bounded by kLingerMs), close on its EOF.
  void begin_close() {
    if (draining || closing) return;
    draining = true;
    inbuf.clear();
    if (peer_eof) {
      close();
      return;
    }
    shutdown_req.data = this;
    if (uv_shutdown(&shutdown_req, reinterpret_cast<uv_stream_t*>(&tcp), [](uv_shutdown_t* r, int status) {
          auto* c = static_cast<Connection*>(r->data);
          if (status < 0 && !c->closing) c->close();
        }) != 0) {
      close();
      return;
    }
    start_reading();
    arm_timer(kLingerMs);
  }

  void parse_failed(http_errno err) {
    close_after = true;
    if (header_too_large || err == HPE_HEADER_OVERFLOW) {
      respond(431, error_body("request header too large (limit " +
                              std::to_string(limits().max_header_bytes) + " bytes)"));
    } else if (body_too_large) {
      respond(413, error_body("request body too large (limit " + std::to_string(limits().max_body_bytes) +
                              " bytes)"));
    } else {
      respond(400, error_body(std::string("bad HTTP request: ") + http_errno_description(err)));
    }
  }

  const AdminLimits& limits() const { return lim; }

  bool count_header_bytes(size_t len) {
    header_bytes += len;
    if (header_bytes > limits().max_header_bytes) {
      header_too_large = true;
      return false;
    }
    return true;
  }

  void end_header() {
    if (!in_value) return;
    headers.emplace_back(std::move(field), std::move(value));
    field.clear();
    value.clear();
    in_value = false;
  }

  const std::string* header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (core::iequals(k, name)) return &v;
    return nullptr;
  }

  static Connection* of(http_parser* p) { return static_cast<Connection*>(p->data); }

  static const http_parser_settings& settings() {
    static const http_parser_settings s = [] {
      http_parser_settings st;
      http_parser_settings_init(&st);
      st.on_message_begin = [](http_parser* p) {
        auto* c = of(p);
        c->in_message = true;
        c->header_too_large = c->body_too_large = c->in_value = c->head_request = false;
        c->header_bytes = 0;
        c->url.clear();
        c->body.clear();
        c->field.clear();
        c->value.clear();
        c->headers.clear();
        return 0;
      };
      st.on_url = [](http_parser* p, const char* at, size_t len) {
        auto* c = of(p);
        if (!c->count_header_bytes(len)) return 1;
        c->url.append(at, len);
        return 0;
      };
      st.on_header_field = [](http_parser* p, const char* at, size_t len) {
        auto* c = of(p);
        if (!c->count_header_bytes(len)) return 1;
        c->end_header();
        c->field.append(at, len);
        return 0;
      };
      st.on_header_value = [](http_parser* p, const char* at, size_t len) {
        auto* c = of(p);
        if (!c->count_header_bytes(len)) return 1;
        c->value.append(at, len);
        c->in_value = true;
        return 0;
      };
      st.on_headers_complete = [](http_parser* p) {
        auto* c = of(p);
        c->end_header();
        c->head_request = p->method == HTTP_HEAD;
        if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->limits().max_body_bytes) {
          c->body_too_large = true;
          return 3;  // anything but 0, 1, 2 is an error: stop before the body
        }
        // curl waits a second for this before sending a body over 1 KiB.
        if (const std::string* e = c->header("Expect"); e && *e == "100-continue" && p->http_major == 1 &&
                                                         p->http_minor >= 1)
          c->write("HTTP/1.1 100 Continue\r\n\r\n");
        return 0;
      };
      st.on_body = [](http_parser* p, const char* at, size_t len) {
        auto* c = of(p);
        if (c->body.size() + len > c->limits().max_body_bytes) {  // chunked bodies
          c->body_too_large = true;
          return 1;
        }
        c->body.append(at, len);
        return 0;
      };
      st.on_message_complete = [](http_parser* p) {
        auto* c = of(p);
        c->in_message = false;
        c->request_ready = true;
        c->keep_alive = http_should_keep_alive(p) != 0;
        c->method = p->method;
        http_parser_pause(p, 1);  // one request at a time; process() resumes
        return 0;
      };
      return st;
    }();
    return s;
  }

  // ---- answering ----

  void write(std::string data) {
    auto* w = new WriteReq{{}, std::move(data), this};
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    ++writes;
    if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &buf, 1, on_written) != 0) {
      delete w;
      --writes;
      close();
    }
  }

  static void on_written(uv_write_t* req, int status) {
    auto* w = reinterpret_cast<WriteReq*>(req);
    Connection* c = w->conn;
    delete w;
    if (c->closing) return;  // cancelled by close(): the memory is still ours until on_closed
    --c->writes;
    if (status < 0) {
      c->close();
      return;
    }
    if (!c->idle()) return;
    if (!c->in_message && !c->close_after) c->arm_timer(c->limits().idle_timeout_ms);
    c->process();
  }

  void respond(int status, std::string body_text, std::string_view content_type = "application/json",
               std::string_view extra_headers = {}) {
    if (closing) return;
    if (!keep_alive) close_after = true;
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                      http_status_str(static_cast<http_status>(status)) + "\r\n";
    out.append("Content-Type: ").append(content_type).append("\r\n");
    out.append("Content-Length: ").append(std::to_string(body_text.size())).append("\r\n");
    out.append("Cache-Control: no-store\r\n");
    out.append(extra_headers);
    if (close_after) out.append("Connection: close\r\n");
    out.append("\r\n");
    if (!head_request) out.append(body_text);
    write(std::move(out));
  }

  void respond_json(int status, const json& j) { respond(status, dump(j)); }
  void respond_error(int status, std::string_view msg, std::string_view extra_headers = {}) {
    respond(status, error_body(msg), "application/json", extra_headers);
  }

  // ---- routing ----

  void dispatch() {
    uv_timer_stop(&timer);  // the request is in: the time to answer is the backend's
    http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url.data(), url.size(), method == HTTP_CONNECT, &u) != 0) {
      respond_error(400, "bad request target");
      return;
    }
    std::string_view path = "/";
    if (u.field_set & (1 << UF_PATH))
      path = std::string_view(url).substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
    Query query;
    if (u.field_set & (1 << UF_QUERY)) {
      auto q = std::string_view(url).substr(u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
      if (!parse_query(q, query)) {
        respond_error(400, "bad query string (a bad %-escape)");
        return;
      }
    }
    // Browsers send Origin; curl, ctl and Prometheus do not. Refusing it keeps a web page
    // from driving the loopback API (cross-site POST, DNS rebinding).
    if (header("Origin")) {
      respond_error(403, "requests from web pages (with an Origin header) are refused");
      return;
    }
    std::string m = http_method_str(static_cast<http_method>(method));
    auto not_allowed = [&](std::string_view allow) {
      respond_error(405,
                    "method " + m + " not allowed on " + std::string(path) + " (allowed: " + std::string(allow) + ")",
                    "Allow: " + std::string(allow) + "\r\n");
    };
    if (path == "/health" || path == "/stats" || path == "/metrics") {
      if (method != HTTP_GET) return not_allowed("GET");
      ask_stats(path == "/health" ? StatsView::Health : path == "/stats" ? StatsView::Stats : StatsView::Metrics);
    } else if (path == "/reload") {
      if (method != HTTP_POST) return not_allowed("POST");
      ask_reload();
    } else if (path == "/location") {
      if (method == HTTP_GET) location_get(query);
      else if (method == HTTP_POST) location_post();
      else if (method == HTTP_DELETE) location_delete(query);
      else not_allowed("GET, POST, DELETE");
    } else {
      respond_error(404, "unknown path " + std::string(path) +
                             " (try /health, /stats, /metrics, /reload, /location)");
    }
  }

  void ask_stats(StatsView view) {
    awaiting = true;
    std::weak_ptr<char> alive_w = alive;
    Connection* self = this;
    server->backend_.stats([alive_w, self, view](StatsSnapshot s) {
      if (alive_w.expired()) return;  // the client went away meanwhile
      self->awaiting = false;
      switch (view) {
        case StatsView::Health:
          // Degraded (e.g. the cluster's Redis is unreachable): still serving, so 200.
          if (s.healthy && !s.health_detail.empty())
            self->respond_json(200, json{{"status", "degraded"}, {"detail", s.health_detail}});
          else if (s.healthy) self->respond_json(200, json{{"status", "ok"}});
          else self->respond_json(503, json{{"status", "unhealthy"}, {"detail", s.health_detail}});
          break;
        case StatsView::Stats:
          self->respond_json(200, stats_json(s));
          break;
        case StatsView::Metrics:
          self->respond(200, prometheus_text(s), kPrometheusContentType);
          break;
      }
    });
  }

  void ask_reload() {
    if (server->reload_in_flight_) {
      respond_json(409, json{{"ok", false}, {"errors", json::array({"a reload is already in progress"})}});
      return;
    }
    server->reload_in_flight_ = true;
    awaiting = true;
    std::weak_ptr<char> alive_w = alive;
    std::weak_ptr<AdminServer*> server_w = server->self_;
    Connection* self = this;
    SB_INFO("admin: reload requested");
    server->backend_.reload([alive_w, server_w, self](ReloadOutcome o) {
      if (auto s = server_w.lock()) (*s)->reload_in_flight_ = false;
      if (alive_w.expired()) return;
      self->awaiting = false;
      if (o.ok) {
        self->respond_json(200, json{{"ok", true}, {"generation", o.generation}});
      } else {
        self->respond_json(422, json{{"ok", false}, {"generation", o.generation}, {"errors", o.errors}});
      }
    });
  }

  void location_get(const Query& q) {
    const std::string* aor = query_param(q, "aor");
    auto entries = server->backend_.location_list(aor ? std::string_view(*aor) : std::string_view{});
    json list = json::array();
    for (const auto& e : entries) {
      list.push_back({{"aor", e.aor},
                      {"contact", e.contact},
                      {"q", e.q},
                      {"expires_in_s", e.expires_in_s},
                      {"static", e.is_static},
                      {"source", e.source},
                      {"user_agent", e.user_agent}});
    }
    respond_json(200, json{{"bindings", std::move(list)}});
  }

  void location_post() {
    // Only JSON: a form post (what a browser can send without asking) is not accepted.
    const std::string* ct = header("Content-Type");
    std::string_view media = ct ? core::trim(std::string_view(*ct).substr(0, ct->find(';'))) : std::string_view{};
    if (!core::iequals(media, "application/json"))
      return respond_error(415, "Content-Type must be application/json");
    json j;
    try {
      j = json::parse(body);
    } catch (const json::parse_error& e) {
      respond_error(400, std::string("bad JSON body: ") + e.what());
      return;
    }
    if (!j.is_object()) return respond_error(400, "bad JSON body: expected an object");
    std::string fields[2];
    const char* names[2] = {"aor", "contact"};
    for (int i = 0; i < 2; ++i) {
      auto it = j.find(names[i]);
      if (it == j.end()) return respond_error(400, std::string("missing field: ") + names[i]);
      if (!it->is_string() || it->get_ref<const std::string&>().empty())
        return respond_error(400, std::string("field ") + names[i] + ": expected a non-empty string");
      fields[i] = it->get<std::string>();
    }
    double q = 1.0;
    if (auto it = j.find("q"); it != j.end()) {
      if (!it->is_number() || !(it->get<double>() >= 0.0 && it->get<double>() <= 1.0))
        return respond_error(400, "field q: expected a number from 0 to 1");
      q = it->get<double>();
    }
    uint32_t expires = 0;
    if (auto it = j.find("expires"); it != j.end()) {
      bool ok = false;
      if (it->is_number_unsigned()) {
        ok = it->get<uint64_t>() <= UINT32_MAX;
      } else if (it->is_number_integer()) {
        ok = false;  // negative
      } else if (it->is_number_float()) {
        double d = it->get<double>();
        ok = d >= 0 && d <= UINT32_MAX && std::floor(d) == d;
      }
      if (!ok) return respond_error(400, "field expires: expected whole seconds from 0 (static) to 4294967295");
      expires = static_cast<uint32_t>(it->get<double>());
    }
    auto st = server->backend_.location_add(fields[0], fields[1], q, expires);
    if (!st) return respond_error(http_status_for(st.error()), core::describe(st.error()));
    respond_json(201, json{{"ok", true}, {"aor", fields[0]}, {"contact", fields[1]}, {"q", q}, {"expires", expires}});
  }

  void location_delete(const Query& q) {
    const std::string* aor = query_param(q, "aor");
    if (!aor || aor->empty()) return respond_error(400, "missing query parameter: aor");
    const std::string* contact = query_param(q, "contact");
    size_t removed = server->backend_.location_remove(*aor, contact ? std::string_view(*contact) : std::string_view{});
    if (removed == 0) return respond_json(404, json{{"error", "no matching binding"}, {"removed", 0}});
    respond_json(200, json{{"removed", removed}});
  }
};

AdminServer::AdminServer(uv_loop_t* loop, AdminBackend& backend, AdminLimits limits)
    : loop_(loop), backend_(backend), limits_(limits), self_(std::make_shared<AdminServer*>(this)) {}

AdminServer::~AdminServer() {
  stop();
  self_.reset();
}

core::Status AdminServer::start(std::string_view address, uint16_t port) {
  if (listener_) return core::Error{"admin server already started"};
  std::string host(address);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  sockaddr_storage ss{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0)
    return core::Error{"admin address is not an IPv4 or IPv6 literal"};

  auto* l = new Listener;
  if (int r = uv_tcp_init(loop_, &l->tcp); r != 0) {
    delete l;
    SB_ERROR("admin: %s", uv_strerror(r));
    return core::Error{"cannot create the admin listener"};
  }
  l->tcp.data = l;
  l->server = this;
  auto fail = [&](int r, const char* what) {
    SB_ERROR("admin: %s %s:%u: %s", what, host.c_str(), static_cast<unsigned>(port), uv_strerror(r));
    l->server = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp), Listener::on_closed);
    return core::Status(core::Error{r == UV_EADDRINUSE ? "admin address already in use"
                                                       : "cannot listen on the admin address"});
  };
  if (int r = uv_tcp_bind(&l->tcp, reinterpret_cast<const sockaddr*>(&ss), 0); r != 0) return fail(r, "bind");
  if (int r = uv_listen(reinterpret_cast<uv_stream_t*>(&l->tcp), 64, on_connection); r != 0)
    return fail(r, "listen");
  sockaddr_storage bound{};
  int len = sizeof bound;
  if (int r = uv_tcp_getsockname(&l->tcp, reinterpret_cast<sockaddr*>(&bound), &len); r != 0)
    return fail(r, "getsockname");
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  listener_ = l;
  SB_INFO("admin: listening on http://%s%s%s:%u", host.find(':') != std::string::npos ? "[" : "", host.c_str(),
          host.find(':') != std::string::npos ? "]" : "", static_cast<unsigned>(port_));
  return {};
}

void AdminServer::stop() {
  if (listener_) {
    listener_->server = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_->tcp), Listener::on_closed);
    listener_ = nullptr;
  }
  port_ = 0;
  auto conns = std::move(conns_);
  conns_.clear();
  for (Connection* c : conns) c->close();
}

void AdminServer::on_connection(uv_stream_t* stream, int status) {
  auto* l = static_cast<Listener*>(stream->data);
  AdminServer* self = l->server;
  if (!self) return;
  if (status < 0) {
    SB_LOG_RL(Warn, {}, "admin: accept: %s", uv_strerror(status));
    return;
  }
  auto* c = new Connection(self);
  if (uv_tcp_init(self->loop_, &c->tcp) != 0) {
    delete c;
    return;
  }
  c->tcp.data = c;
  ++c->open_handles;
  uv_timer_init(self->loop_, &c->timer);
  c->timer.data = c;
  ++c->open_handles;
  if (uv_accept(stream, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    c->close();
    return;
  }
  if (self->conns_.size() >= self->limits_.max_connections) {
    SB_LOG_RL(Warn, {}, "admin: %zu connections open, refusing another", self->conns_.size());
    c->close();
    return;
  }
  self->conns_.insert(c);
  c->arm_timer(self->limits_.idle_timeout_ms);
  c->start_reading();
}

}  // namespace sb::app
