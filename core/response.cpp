#include "core/response.h"

#include <charconv>

namespace sb::core {

std::string_view default_reason(int s) {
  switch (s) {
    case 100: return "Trying";
    case 180: return "Ringing";
    case 181: return "Call Is Being Forwarded";
    case 182: return "Queued";
    case 183: return "Session Progress";
    case 200: return "OK";
    case 202: return "Accepted";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Moved Temporarily";
    case 305: return "Use Proxy";
    case 380: return "Alternative Service";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Unsupported URI Scheme";
    case 420: return "Bad Extension";
    case 421: return "Extension Required";
    case 423: return "Interval Too Brief";
    case 429: return "Too Many Requests";
    case 439: return "First Hop Lacks Outbound Support";
    case 480: return "Temporarily Unavailable";
    case 481: return "Call/Transaction Does Not Exist";
    case 482: return "Loop Detected";
    case 483: return "Too Many Hops";
    case 484: return "Address Incomplete";
    case 485: return "Ambiguous";
    case 486: return "Busy Here";
    case 487: return "Request Terminated";
    case 488: return "Not Acceptable Here";
    case 491: return "Request Pending";
    case 493: return "Undecipherable";
    case 500: return "Server Internal Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Server Time-out";
    case 505: return "Version Not Supported";
    case 513: return "Message Too Large";
    case 600: return "Busy Everywhere";
    case 603: return "Decline";
    case 604: return "Does Not Exist Anywhere";
    case 606: return "Not Acceptable";
    default: return "";
  }
}

namespace {

// §12.1.1: a response that establishes a dialog carries the request's Record-Route.
bool may_establish_dialog(const Message& req, int status) {
  if (status <= 100 || status >= 300) return false;
  switch (req.method()) {
    case Method::Invite:
    case Method::Subscribe:
    case Method::Refer:
    case Method::Notify:
      return true;
    default:
      return false;
  }
}

void put_line(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

}  // namespace

std::string build_response(const Message& req, const ResponseSpec& spec) {
  std::string out;
  size_t size = 64 + spec.reason.size() + spec.to_tag.size() + spec.body.size();
  for (const Header& h : req.headers()) size += h.name.size() + h.value.size() + 4;
  for (auto line : spec.headers) size += line.size() + 2;
  out.reserve(size);
  char code[24];
  auto r = std::to_chars(code, code + sizeof code, spec.status);
  out += "SIP/2.0 ";
  out.append(code, static_cast<size_t>(r.ptr - code));
  out += ' ';
  std::string_view reason = spec.reason.empty() ? default_reason(spec.status) : spec.reason;
  // A reason phrase may not hold CR or LF.
  for (char c : reason) out += (c == '\r' || c == '\n') ? ' ' : c;
  out += "\r\n";
  // §8.2.6.2: Via (all, in order), From, To, Call-ID, CSeq; §8.2.6.1: Timestamp in a 100.
  const bool record_route = may_establish_dialog(req, spec.status);
  for (const Header& h : req.headers()) {
    switch (h.id) {
      case HeaderId::Via:
      case HeaderId::From:
      case HeaderId::CallId:
      case HeaderId::CSeq:
        put_line(out, h.name, h.value);
        break;
      case HeaderId::To:
        out.append(h.name).append(": ").append(h.value);
        if (spec.status > 100 && !spec.to_tag.empty() && req.has_to() && req.to().tag().empty())
          out.append(";tag=").append(spec.to_tag);
        out += "\r\n";
        break;
      case HeaderId::Timestamp:
        if (spec.status == 100) put_line(out, h.name, h.value);
        break;
      case HeaderId::RecordRoute:
        if (record_route) put_line(out, h.name, h.value);
        break;
      default:
        break;
    }
  }
  for (auto line : spec.headers) out.append(line).append("\r\n");
  out += "Content-Length: ";
  r = std::to_chars(code, code + sizeof code, spec.body.size());
  out.append(code, static_cast<size_t>(r.ptr - code));
  out += "\r\n\r\n";
  out += spec.body;
  return out;
}

}  // namespace sb::core
