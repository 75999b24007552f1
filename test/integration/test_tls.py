"""Issue 10 (TLS part): a TLS listener and outgoing TLS, with certificates made here by the
openssl CLI (a CA; a server certificate for sip:localhost, localhost and 127.0.0.1; a second
CA nobody trusts). Python `ssl` plays the user agents.

- OPTIONS and REGISTER over TLS; a call (INVITE/200/ACK/BYE) between two TLS UAs through
  the proxy, Via and Record-Route saying TLS;
- a client that verifies the proxy with another CA fails the handshake (counted);
- outgoing TLS to transport=tls targets: verified against the CA, the connection reused; a
  server with a certificate of another CA is refused and the caller gets an error;
- a sips request whose only route is UDP gets 480, nothing is sent over UDP;
- a certificate reload (new files, SIGHUP) under a held TLS connection: that connection
  keeps working, the next one is served the new certificate."""
import hashlib
import os
import random
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
import sbtest
from sbtest import Proxy, UdpClient, check


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".crt", "-days", "2", "-subj", "/CN=" + name, cwd=d)
    return os.path.join(d, name + ".crt")


def make_cert(d, name, ca, san="URI:sip:localhost,DNS:localhost,IP:127.0.0.1"):
    """A certificate for `name` signed by CA `ca`; returns (cert path, key path)."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n" % san)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext", cwd=d)
    return os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")


def fingerprint_of_file(path):
    der = ssl.PEM_cert_to_DER_cert(open(path).read())
    return hashlib.sha256(der).hexdigest()


class Pki:
    def __init__(self, d):
        self.dir = d
        self.ca = make_ca(d, "ca")
        self.other_ca = make_ca(d, "otherca")
        self.cert, self.key = make_cert(d, "proxy", "ca")
        self.ua_cert, self.ua_key = make_cert(d, "ua", "ca")
        self.rogue_cert, self.rogue_key = make_cert(d, "rogue", "otherca")


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


class TlsUa:
    """A user agent over TLS: a listening TLS socket (its Contact port) plus the connections it
    opened or accepted; receives from any of them, answers on the one a request came over."""

    def __init__(self, pki, proxy_port, name):
        self.name = name
        self.transport = "TLS"
        self.host = "127.0.0.1"
        self.sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.sctx.load_cert_chain(pki.ua_cert, pki.ua_key)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.conns = []  # [ssl socket, buffer]
        self.proxy = connect_tls(proxy_port, pki.ca, "localhost")
        self.conns.append([self.proxy, b""])

    def via_host(self):
        return self.host

    def contact(self):
        return "<sip:%s@127.0.0.1:%d;transport=tls>" % (self.name, self.port)

    def send(self, data, conn=None):
        (conn or self.proxy).sendall(data.encode() if isinstance(data, str) else data)

    def _frame(self, entry):
        buf = entry[1]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        m = re.search(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", buf[:end + 2], re.I)
        total = end + 4 + (int(m.group(1)) if m else 0)
        if len(buf) < total:
            return None
        entry[1] = buf[total:]
        return buf[:total]

    def recv(self, timeout=3.0):
        """(message, connection) or (None, None)."""
        deadline = time.time() + timeout
        while True:
            for e in self.conns:
                msg = self._frame(e)
                if msg is not None:
                    return sbtest.Response(msg), e[0]
            left = deadline - time.time()
            if left <= 0:
                return None, None
            pending = [e for e in self.conns if e[0].pending()]
            if not pending:
                r, _, _ = select.select([self.listener] + [e[0] for e in self.conns], [], [], left)
                if self.listener in r:
                    s, _ = self.listener.accept()
                    s.settimeout(5)
                    self.conns.append([self.sctx.wrap_socket(s, server_side=True), b""])
                    continue
                pending = [e for e in self.conns if e[0] in r]
            for e in pending:
                try:
                    chunk = e[0].recv(65536)
                except (ssl.SSLError, OSError):
                    chunk = b""
                if not chunk:
                    self.conns.remove(e)
                    if e[0] is self.proxy:
                        self.proxy = None
                else:
                    e[1] += chunk

    def close(self):
        for e in self.conns:
            e[0].close()
        self.listener.close()


def connect_tls(port, cafile, server_hostname):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return client_context(cafile).wrap_socket(s, server_hostname=server_hostname)
    except Exception:
        s.close()
        raise


def reply(req, status, reason, extra=(), to_tag=None):
    lines = ["SIP/2.0 %d %s" % (status, reason)]
    for n in ("Via", "v"):
        lines += ["Via: " + v for v in req.all(n)]
    lines += ["Record-Route: " + v for v in req.all("Record-Route")]
    to = req.header("To")
    if to_tag and ";tag=" not in to:
        to += ";tag=" + to_tag
    lines += ["From: " + req.header("From"), "To: " + to, "Call-ID: " + req.header("Call-ID"),
              "CSeq: " + req.header("CSeq")]
    lines += list(extra)
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


class TlsServer(threading.Thread):
    """A SIP server over TLS answering every request 200; counts connections and requests."""

    def __init__(self, cert, key):
        super().__init__(daemon=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.handshake_failures = 0
        self.requests = []
        self.stopping = False

    def run(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        s.settimeout(10)
        try:
            c = self.ctx.wrap_socket(s, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_failures += 1
            s.close()
            return
        self.connections += 1
        buf = b""
        try:
            while not self.stopping:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    m = re.search(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", buf[:end + 2], re.I)
                    total = end + 4 + (int(m.group(1)) if m else 0)
                    if len(buf) < total:
                        break
                    req = sbtest.Response(buf[:total])
                    buf = buf[total:]
                    self.requests.append(req)
                    if not req.is_response and not req.start.startswith("ACK"):
                        c.sendall(reply(req, 200, "OK", to_tag="srv").encode())
        except (ssl.SSLError, OSError):
            return
        finally:
            c.close()

    def stop(self):
        self.stopping = True
        self.sock.close()


def tls_proxy(pki, workers=2, script=None, cert=None, key=None):
    tls_port = sbtest.free_port()
    p = Proxy(workers=workers, ipv6=False, extra={
        "tls": {"certificate": cert or pki.cert, "private_key": key or pki.key, "ca_file": pki.ca},
        "limits": {"tls_handshake_timeout_ms": 3000},
    })
    p.config["listen"].append({"transport": "tls", "address": "127.0.0.1", "port": tls_port})
    p.tls_port = tls_port
    if script:
        path = os.path.join(p.tmp.name, "route.lua")
        with open(path, "w") as f:
            f.write(script)
        p.config["script"] = {"path": path}
    return p


metric = sbtest.metric


def test_options_register_and_call_over_tls(pki):
    with tls_proxy(pki) as p:
        alice = TlsUa(pki, p.tls_port, "alice")
        bob = TlsUa(pki, p.tls_port, "bob")
        try:
            # OPTIONS to the proxy itself.
            alice.send(sbtest.options("sip:127.0.0.1:%d;transport=tls" % p.tls_port, alice))
            r, _ = alice.recv()
            check(r and r.status == 200, "OPTIONS over TLS: %r\n%s" % (r, p.read_log()[-2000:]))
            # REGISTER both over TLS.
            for ua in (alice, bob):
                ua.send(sbtest.request("REGISTER", "sip:localhost", ua,
                                       extra_headers=["Contact: " + ua.contact(), "Expires: 600"],
                                       from_uri="sip:%s@localhost" % ua.name, to_uri="sip:%s@localhost" % ua.name))
                r, _ = ua.recv()
                check(r and r.status == 200, "REGISTER %s over TLS: %r" % (ua.name, r))
                check(";transport=tls" in (r.header("Contact") or ""), "binding keeps transport=tls: %r" % r.header("Contact"))

            # INVITE alice -> bob through the proxy.
            call_id = "tls-call-%08x@test" % random.getrandbits(32)
            alice.send(sbtest.request("INVITE", "sip:bob@localhost", alice, call_id=call_id,
                                      extra_headers=["Contact: " + alice.contact()],
                                      from_uri="sip:alice@localhost", to_uri="sip:bob@localhost"))
            inv, conn = bob.recv()
            check(inv and inv.start.startswith("INVITE "), "bob got the INVITE: %r\n%s" % (inv, p.read_log()[-2000:]))
            vias = inv.all("Via")
            check(vias[0].startswith("SIP/2.0/TLS 127.0.0.1:%d;" % p.tls_port), "our Via says TLS: %r" % vias)
            rr = inv.all("Record-Route")
            check(rr and "transport=tls" in rr[0] and ":%d" % p.tls_port in rr[0],
                  "Record-Route names the TLS listener: %r" % rr)
            bob.send(reply(inv, 180, "Ringing", to_tag="b0b"), conn)
            bob.send(reply(inv, 200, "OK", extra=["Contact: " + bob.contact()], to_tag="b0b"), conn)
            got = []
            while True:
                r, _ = alice.recv()
                check(r is not None, "alice got the responses: %r" % got)
                got.append(r.status)
                if r.status >= 200:
                    break
            check(got[-1] == 200 and 180 in got, "alice saw 180 and 200: %r" % got)
            ok = r
            # ACK and BYE follow the Record-Route (reversed for the caller) to bob's Contact.
            route = ["Route: " + v for v in reversed(ok.all("Record-Route"))]
            to = ok.header("To")
            frm = ok.header("From")
            for method, cseq in (("ACK", 1), ("BYE", 2)):
                lines = ["%s sip:bob@127.0.0.1:%d;transport=tls SIP/2.0" % (method, bob.port),
                         "Via: SIP/2.0/TLS 127.0.0.1:%d;branch=%s;rport" % (alice.port, sbtest.branch()),
                         "Max-Forwards: 70", "From: " + frm, "To: " + to, "Call-ID: " + call_id,
                         "CSeq: %d %s" % (cseq, method)] + route + ["Content-Length: 0"]
                alice.send("\r\n".join(lines) + "\r\n\r\n")
                m, conn = bob.recv()
                check(m and m.start.startswith(method + " "), "bob got the %s: %r\n%s" % (method, m, p.read_log()[-2000:]))
                if method == "BYE":
                    bob.send(reply(m, 200, "OK"), conn)
                    r, _ = alice.recv()
                    check(r and r.status == 200, "BYE answered: %r" % r)
            check(metric(p, "switchboard_tls_handshakes_ok_total") >= 2, "handshakes counted")
        finally:
            alice.close()
            bob.close()


def test_client_with_wrong_ca_is_refused(pki):
    with tls_proxy(pki) as p:
        before = metric(p, "switchboard_tls_handshakes_failed_total")
        refused = False
        try:
            connect_tls(p.tls_port, pki.other_ca, "localhost").close()
        except ssl.SSLCertVerificationError:
            refused = True
        check(refused, "a client trusting another CA refuses the proxy's certificate")
        check(sbtest.poll(lambda: metric(p, "switchboard_tls_handshakes_failed_total") > before, 5),
              "the failed handshake is counted")
        # Hostname check on the client side: the certificate is for localhost/127.0.0.1.
        try:
            connect_tls(p.tls_port, pki.ca, "sip.example.org").close()
            check(False, "a name the certificate lacks must not verify")
        except ssl.SSLCertVerificationError:
            pass
        # Plain text on the TLS port is not SIP: nothing answers, the connection closes.
        s = socket.create_connection(("127.0.0.1", p.tls_port), timeout=5)
        s.sendall(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n")
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        s.close()
        check(b"SIP/2.0" not in data, "no SIP over a failed handshake: %r" % data)
        # A client that never starts its handshake is closed after tls_handshake_timeout_ms.
        s = socket.create_connection(("127.0.0.1", p.tls_port), timeout=10)
        t0 = time.time()
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        s.close()
        check(data == b"" and time.time() - t0 < 9, "a silent client is closed by the handshake timeout")
        check(sbtest.poll(lambda: metric(p, "switchboard_tls_handshake_timeouts_total") >= 1, 5),
              "the handshake timeout is counted")


OUT_SCRIPT = """
function on_request(req)
  if req.method == "REGISTER" then return registrar.save(req) end
  if req:in_dialog() then return req:relay() end
  if req.uri.user == "good" then return req:relay("sip:svc@127.0.0.1:%(good)d;transport=tls") end
  if req.uri.user == "rogue" then return req:relay("sip:svc@127.0.0.1:%(rogue)d;transport=tls") end
  if req.uri.user == "udponly" then return req:relay("sip:svc@127.0.0.1:%(udp)d") end
  return req:reply(404, "Not Found")
end
"""


def test_outgoing_tls_verified_reused_and_sips_never_over_udp(pki):
    good = TlsServer(pki.ua_cert, pki.ua_key)
    rogue = TlsServer(pki.rogue_cert, pki.rogue_key)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    good.start()
    rogue.start()
    script = OUT_SCRIPT % {"good": good.port, "rogue": rogue.port, "udp": udp.getsockname()[1]}
    try:
        with tls_proxy(pki, workers=1, script=script) as p:
            c = UdpClient()
            c.dest = ("127.0.0.1", p.port)
            for i in range(2):
                c.send(sbtest.options("sip:good@localhost", c))
                r = c.recv_response(timeout=5, skip_provisional=True)
                check(r and r.status == 200, "OPTIONS %d relayed over TLS: %r\n%s" % (i, r, p.read_log()[-2000:]))
            check(good.connections == 1, "one TLS connection, reused: %d" % good.connections)
            top = good.requests[0].all("Via")[0]
            check(top.startswith("SIP/2.0/TLS 127.0.0.1:%d;" % p.tls_port), "Via of the TLS hop: %r" % top)

            c.send(sbtest.options("sip:rogue@localhost", c))
            r = c.recv_response(timeout=8, skip_provisional=True)
            check(r and r.status >= 500, "a server with an untrusted certificate: error to the caller: %r" % r)
            check(not rogue.requests, "nothing sent to the rogue server")
            log = p.read_log()
            check("certificate verification failed" in log, "the reason is logged:\n" + log[-2000:])

            # RFC 5630: a sips Request-URI never leaves over a non-TLS hop.
            c.send(sbtest.request("INVITE", "sips:udponly@localhost", c))
            r = c.recv_response(timeout=5, skip_provisional=True)
            check(r and r.status == 480, "sips target reachable only over UDP: 480, got %r" % r)
            try:
                data = udp.recv(65536)
            except socket.timeout:
                data = None
            check(data is None, "nothing went out over UDP: %r" % data)
            check("sips request not sent over UDP" in p.read_log(), "the reason is logged")
            c.close()
    finally:
        good.stop()
        rogue.stop()
        udp.close()


def peer_fingerprint(sock):
    return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()


def test_certificate_reload_keeps_connection_serves_new_cert(pki):
    # Files of its own: this test replaces and then breaks them.
    cert_path, key_path = make_cert(pki.dir, "reload", "ca")
    with tls_proxy(pki, cert=cert_path, key=key_path) as p:
        held = connect_tls(p.tls_port, pki.ca, "localhost")
        try:
            old = peer_fingerprint(held)
            check(old == fingerprint_of_file(cert_path), "the first certificate is served")
            # New key and certificate at the same paths; then reload.
            new_cert, new_key = make_cert(pki.dir, "reload2", "ca")
            os.replace(new_key, key_path)
            os.replace(new_cert, cert_path)
            p.proc.send_signal(signal.SIGHUP)
            check(sbtest.poll(lambda: "reload ok: generation 2" in p.read_log(), 10),
                  "reload succeeded:\n" + p.read_log()[-2000:])
            fresh = connect_tls(p.tls_port, pki.ca, "localhost")
            try:
                new = peer_fingerprint(fresh)
            finally:
                fresh.close()
            check(new != old and new == fingerprint_of_file(cert_path), "the next connection gets the new certificate")
            # The held connection still carries SIP, on the certificate it began with.
            ua = sbtest.TcpClient.__new__(sbtest.TcpClient)
            ua.sock, ua.host, ua.port, ua.transport, ua.buf = held, "127.0.0.1", held.getsockname()[1], "TLS", b""
            ua.send(sbtest.options("sip:127.0.0.1:%d;transport=tls" % p.tls_port, ua))
            r = ua.recv_response(timeout=3)
            check(r and r.status == 200, "held connection still works after the reload: %r" % r)
            check(peer_fingerprint(held) == old, "on its old certificate")

            # A broken certificate file is a rejected reload naming the key; nothing changes.
            with open(cert_path, "w") as f:
                f.write("not a certificate\n")
            p.proc.send_signal(signal.SIGHUP)
            check(sbtest.poll(lambda: "reload failed: tls.certificate: cannot load" in p.read_log(), 10),
                  "a bad certificate is refused with its key:\n" + p.read_log()[-2000:])
            again = connect_tls(p.tls_port, pki.ca, "localhost")
            check(peer_fingerprint(again) == new, "still serving the last good certificate")
            again.close()
        finally:
            held.close()


def test_config_errors_name_the_key(pki):
    p = tls_proxy(pki)
    p.config["tls"]["private_key"] = os.path.join(pki.dir, "missing.key")
    p.write_config()
    out = subprocess.run([sbtest.BINARY, "check", "-c", p.config_path], capture_output=True, text=True)
    check(out.returncode != 0 and "tls.private_key: cannot read" in out.stderr, "check: %r" % out.stderr)
    p.config["tls"]["private_key"] = pki.ua_key  # readable, but not the certificate's key
    p.write_config()
    out = subprocess.run([sbtest.BINARY, "check", "-c", p.config_path], capture_output=True, text=True)
    check(out.returncode != 0 and "tls.private_key" in out.stderr,
          "check loads the certificate and key as run does: %r" % out.stderr)
    p.log = open(p.log_path, "ab")
    proc = subprocess.run([sbtest.BINARY, "run", "-c", p.config_path], capture_output=True, text=True, timeout=20)
    check(proc.returncode != 0 and "tls.private_key" in (proc.stdout + proc.stderr),
          "run refuses a key that does not match: %r" % (proc.stdout + proc.stderr)[-800:])
    p.log.close()
    p.tmp.cleanup()


ALIAS_SCRIPT = """
function on_request(req)
  if req.uri.user == nil then return req:reply(200) end
  return req:relay(req:header("X-Target"))
end
"""


class FrameReader:
    """SIP messages from a TLS socket, framed by Content-Length; what follows a message is kept."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def read(self, timeout=3.0, skip=()):
        """The next message whose start line does not begin with one of `skip`, or None."""
        deadline = time.time() + timeout
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                m = re.search(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)", self.buf[:end + 2], re.I)
                total = end + 4 + (int(m.group(1)) if m else 0)
                if len(self.buf) >= total:
                    msg, self.buf = self.buf[:total], self.buf[total:]
                    if any(msg.startswith(p) for p in skip):
                        continue
                    return msg
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLError, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk


def test_rfc5923_alias_reuses_the_peers_connection(pki):
    # A UA connects over TLS with a certificate proving 127.0.0.1 and offers ";alias" in its
    # Via (RFC 5923): a request the proxy then sends to that sent-by (a port where the UA does
    # not even listen) travels over the UA's own connection, also when another worker sends
    # it. Without a verified client certificate (tls.verify_client off) the alias is not taken.
    for verify_client in (True, False):
        p = tls_proxy(pki, script=ALIAS_SCRIPT)
        p.config["tls"]["verify_client"] = verify_client
        with p:
            sent_by = sbtest.free_port()  # nothing listens there
            ctx = client_context(pki.ca)
            ctx.load_cert_chain(pki.ua_cert, pki.ua_key)
            ua = ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.tls_port), timeout=5),
                                 server_hostname="localhost")
            try:
                opts = "\r\n".join([
                    "OPTIONS sip:127.0.0.1:%d;transport=tls SIP/2.0" % p.tls_port,
                    "Via: SIP/2.0/TLS 127.0.0.1:%d;alias;branch=%s" % (sent_by, sbtest.branch()),
                    "Max-Forwards: 70", "From: <sip:ua@localhost>;tag=a1", "To: <sip:127.0.0.1>",
                    "Call-ID: alias-%08x@test" % random.getrandbits(32), "CSeq: 1 OPTIONS",
                    "Content-Length: 0", "", ""])
                ua.sendall(opts.encode())
                reader = FrameReader(ua)
                r = reader.read()
                check(r is not None and r.startswith(b"SIP/2.0 200"), "OPTIONS over TLS: %r" % r)
                # Callers over UDP (each a new transaction, so both workers get to send).
                results = []
                for i in range(4):
                    c = UdpClient()
                    c.dest = ("127.0.0.1", p.port)
                    c.send(sbtest.request("INVITE", "sip:ua@localhost", c, extra_headers=[
                        "X-Target: sip:ua@127.0.0.1:%d;transport=tls" % sent_by]))
                    # (The ACKs the proxy sends for the 486s are not what we wait for.)
                    got = reader.read(timeout=2 if verify_client else 1, skip=(b"ACK ",))
                    if verify_client:
                        check(got is not None and got.startswith(b"INVITE sip:ua@127.0.0.1:%d" % sent_by),
                              "call %d reached the UA over its own connection: %r\n%s" % (i, got, p.read_log()[-2000:]))
                        # Busy, so the transaction ends.
                        lines = got.decode().split("\r\n\r\n")[0].split("\r\n")
                        keep = [l for l in lines[1:] if re.match(r"(?i)(via|from|to|call-id|cseq):", l)]
                        ua.sendall(("SIP/2.0 486 Busy Here\r\n" + "\r\n".join(keep) +
                                    "\r\nContent-Length: 0\r\n\r\n").encode())
                        final = c.recv_response(timeout=3, skip_provisional=True)
                        results.append(final.status if final else None)
                    else:
                        check(got is None, "without a verified client certificate no alias: %r" % got)
                        final = c.recv_response(timeout=10, skip_provisional=True)
                        results.append(final.status if final else None)
                    c.close()
                if verify_client:
                    check(results == [486] * 4, "each caller got the UA's 486: %r" % results)
                else:
                    check(all(s is not None and s >= 500 for s in results),
                          "the sent-by cannot be reached without the alias: %r" % results)
            finally:
                ua.close()


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory(prefix="sbtls-") as d:
        pki = Pki(d)
        tests = [test_options_register_and_call_over_tls, test_client_with_wrong_ca_is_refused,
                 test_outgoing_tls_verified_reused_and_sips_never_over_udp,
                 test_certificate_reload_keeps_connection_serves_new_cert, test_config_errors_name_the_key,
                 test_rfc5923_alias_reuses_the_peers_connection]

        def bind(t):
            f = lambda: t(pki)  # noqa: E731
            f.__name__ = t.__name__
            return f
        sbtest.run([bind(t) for t in tests])
