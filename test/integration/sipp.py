"""Running SIPp (Debian sip-tester) peers for integration tests: bounded, on loopback,
each in its own working directory, stopped by PID."""
import os
import subprocess
import sbtest

SCENARIOS = os.path.join(sbtest.SOURCE_DIR, "test", "data", "sipp")


class Sipp:
    def __init__(self, scenario, tmp, port=None, remote=None, calls=1, keys=None, extra=(),
                 transport="u1", service=None, hold_ms=0, timeout_s=30):
        self.port = port or sbtest.free_port()
        self.cwd = os.path.join(tmp, "sipp-%s-%d" % (os.path.basename(scenario), self.port))
        os.makedirs(self.cwd, exist_ok=True)
        cmd = ["sipp"]
        if remote:
            cmd.append(remote)
        cmd += ["-sf", os.path.join(SCENARIOS, scenario), "-i", "127.0.0.1", "-p", str(self.port),
                "-m", str(calls), "-t", transport, "-nostdin", "-trace_err", "-trace_msg",
                "-timeout", "%ds" % timeout_s, "-timeout_error", "-d", str(hold_ms)]
        if service:
            cmd += ["-s", service]
        for k, v in (keys or {}).items():
            cmd += ["-key", k, str(v)]
        cmd += list(extra)
        self.cmd = cmd
        self.proc = None
        self.output = ""

    def start(self):
        self.log = open(os.path.join(self.cwd, "stdout.txt"), "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout=60):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = -9
        self.log.close()
        return rc

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def messages(self):
        """The SIPp message trace (what it sent and received)."""
        out = []
        for f in os.listdir(self.cwd):
            if f.endswith("_messages.log") or f.endswith("_errors.log"):
                with open(os.path.join(self.cwd, f), "rb") as fh:
                    out.append(fh.read().decode("utf-8", "replace"))
        return "\n".join(out)
