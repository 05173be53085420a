"""Shared by the Workload API interop tests (workload_api_test.py, svid_watch_test.py): a real
`meshid server` (SQLite) and `meshid agent --mode node` in a temporary directory other users can
reach, registration entries made with the CLI, Workload API clients generated from the
specification's proto and run as other users (runuser), and DER/PEM helpers around the openssl
command line. Runs under Debian's /usr/bin/python3 (python3-grpcio)."""
import base64
import json
import os
import pwd
import queue
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC_PROTO_DIR = os.path.join(HERE, "spiffe")
CLIENT = os.path.join(HERE, "workload_api_client.py")
SYSTEM_PYTHON = "/usr/bin/python3"
TRUST_DOMAIN = "spiffe://cluster.local"
AGENT_ID = TRUST_DOMAIN + "/ns/istio-system/sa/node-agent"
GUARD = 30.0  # upper bound of any wait (reaching it is a failure, not a timing check)


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stdout}{p.stderr}")
    return p.stdout


def require_root(what):
    """Running clients as other users (runuser) needs root: without it the test is skipped, or
    fails under MESHID_REQUIRE_ALL_TESTS=1 (tests/support/run-with-dependencies.sh's rule)."""
    if os.geteuid() == 0:
        return
    need = f"root (runuser, to run {what} as other users)"
    if os.environ.get("MESHID_REQUIRE_ALL_TESTS") == "1":
        print(f"missing dependency: {need}; MESHID_REQUIRE_ALL_TESTS=1, so this test fails instead of skipping")
        sys.exit(1)
    print(f"missing dependency: {need}; test skipped (MESHID_REQUIRE_ALL_TESTS=1 would fail it)")
    sys.exit(77)


def uid_of(user):
    return pwd.getpwnam(user).pw_uid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, predicate, timeout=GUARD, interval=0.1):
    """Polls `predicate` until it returns a true value (returned) or `timeout` passes (raises)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


class Work:
    """A temporary directory every user can enter (sockets, generated code, copied binaries),
    removed at the end unless the test failed."""

    def __init__(self, prefix):
        self.path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Unix socket paths ≤ 107 bytes
        os.chmod(self.path, 0o755)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def mkdir(self, name, mode=0o755, owner=None):
        p = self.join(name)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        if owner:
            os.chown(p, uid_of(owner), pwd.getpwnam(owner).pw_gid)
        return p


def readable_copy(work, path, subdir="bin"):
    """A copy of `path` in the work directory, which every user can enter: the checkout and the
    build may be where only root can (a clone under /root, a CI job's 0700 temporary directory),
    and clients run as other users. Returns the copy's path (mode 0755)."""
    d = work.mkdir(subdir)
    copy = os.path.join(d, os.path.basename(path))
    shutil.copyfile(path, copy)
    os.chmod(copy, 0o755)
    return copy


def generate_spec_messages(work):
    """workload_pb2.py from the specification's proto (not meshid's api/ tree) with Debian's
    protoc, and the client script beside it (Client runs it from there), in a directory every
    user can read. Returns the directory."""
    out = work.mkdir("pb")
    run(["protoc", f"--proto_path={SPEC_PROTO_DIR}", "--proto_path=/usr/include", f"--python_out={out}",
         "workload.proto"])
    shutil.copyfile(CLIENT, os.path.join(out, os.path.basename(CLIENT)))
    for name in os.listdir(out):
        os.chmod(os.path.join(out, name), 0o644)
    return out


def copy_python(work, name="bin"):
    """A copy of the system interpreter at its own path with a byte appended (an ELF file runs
    the same with trailing bytes), so that its path and its SHA-256 select it and nothing else.
    Returns (path, sha256 hex)."""
    d = work.mkdir(name)
    path = os.path.join(d, "python3")
    shutil.copyfile(os.path.realpath(SYSTEM_PYTHON), path)
    with open(path, "ab") as f:
        f.write(b"\0meshid-interop\0" + os.urandom(16))
    os.chmod(path, 0o755)
    digest = run(["sha256sum", path]).split()[0]
    return path, digest


def stop_processes(procs):
    """Terminates the processes still running, newest first (KILL after 10 s)."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Mesh:
    """`meshid server` and `meshid agent --mode node` on loopback; the Workload API socket path
    is given to the agent as SPIFFE_ENDPOINT_SOCKET=unix://<path>, as the specification names it."""

    def __init__(self, meshid, work, secret_ttl="20s", agent_args=()):
        """`secret_ttl` None: no --secret-ttl, the agent's default."""
        self.meshid = meshid
        self.work = work
        self.data = work.join("data")
        self.procs = []
        self.run_dir = work.mkdir("run")
        self.api_socket = os.path.join(self.run_dir, "api.sock")
        self.target = "unix://" + self.api_socket
        self.server_log = work.join("server.log")
        self.agent_log = work.join("agent.log")
        self.server = self._start(["server", "--data-dir", self.data, "--listen", "127.0.0.1:0",
                                   "--monitoring-addr", "127.0.0.1:0"], self.server_log)
        self.ca_port = int(self.wait_log(self.server, self.server_log, r"listening on 127\.0\.0\.1:(\d+)"))
        self.root_file = os.path.join(self.data, "root-cert.pem")
        token = self.cli("token", "create", "--namespace", "istio-system", "--service-account", "node-agent").strip()
        token_file = work.join("agent.token")
        with open(token_file, "w") as f:
            f.write(token)
        self.agent = self._start(["agent", "--mode", "node", "--ca-addr", f"127.0.0.1:{self.ca_port}",
                                  "--ca-root", self.root_file, "--token-file", token_file,
                                  "--sds-socket", os.path.join(self.run_dir, "sds.sock"),
                                  "--monitoring-addr", "127.0.0.1:0", "--crl-file", work.join("crl.pem"),
                                  "--trust-bundle-file", work.join("trust-bundle.pem"),
                                  *(("--secret-ttl", secret_ttl) if secret_ttl else ()), *agent_args],
                                 self.agent_log,
                                 env={"SPIFFE_ENDPOINT_SOCKET": self.target})
        self.wait_log(self.agent, self.agent_log, r"Workload API on (\S+)")

    def _start(self, args, log_path, env=None):
        log = open(log_path, "w")
        proc = subprocess.Popen([self.meshid, *args], stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, **(env or {})))
        log.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def wait_log(proc, log_path, pattern):
        def found():
            m = re.search(pattern, open(log_path).read())
            if m:
                return m
            if proc.poll() is not None:
                raise RuntimeError(f"{os.path.basename(log_path)}: exited:\n" + open(log_path).read())
            return None
        return wait_until(f"{pattern!r} in {log_path}", found, interval=0.05).group(1)

    def cli(self, *args):
        return run([self.meshid, *args, "--data-dir", self.data])

    def create_entry(self, spiffe_id, *selectors, parent=AGENT_ID):
        cmd = ["entry", "create", "--spiffe-id", spiffe_id, "--parent", parent]
        for s in selectors:
            cmd += ["--selector", s]
        self.cli(*cmd)

    def delete_entry(self, spiffe_id, parent=AGENT_ID):
        self.cli("entry", "delete", "--spiffe-id", spiffe_id, "--parent", parent)

    def certs(self):
        return [json.loads(line) for line in self.cli("certs", "list", "--json").splitlines() if line.strip()]

    def stop(self):
        stop_processes(self.procs)

    def logs(self):
        return "".join(f"---- {p}\n{open(p).read()}" for p in (self.server_log, self.agent_log) if os.path.exists(p))


class Client:
    """workload_api_client.py as `user` (runuser) with `python`; its JSON lines are read by a
    thread so that every wait has a deadline."""

    def __init__(self, pb_dir, target, method, user, python=SYSTEM_PYTHON, no_header=False, max_messages=0,
                 timeout=None, supplementary_group=None):
        cmd = ["runuser", "-u", user]
        if supplementary_group:
            cmd += ["-G", supplementary_group]
        cmd += ["--", python, os.path.join(pb_dir, os.path.basename(CLIENT)), "--pb-dir", pb_dir, "--socket", target,
                method]
        if no_header:
            cmd.append("--no-header")
        if max_messages:
            cmd += ["--max-messages", str(max_messages)]
        if timeout:
            cmd += ["--timeout", str(timeout)]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.what = (f"{method} as {user}" + (f" (+ group {supplementary_group})" if supplementary_group else "") +
                     (f" ({python})" if python != SYSTEM_PYTHON else ""))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd="/")
        self.events = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"status": "BAD_OUTPUT", "details": line})
        self.events.put(None)

    def next(self, timeout=GUARD):
        """The next event: {"message": ...} or {"status": ..., "details": ...}."""
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.what}: nothing within {timeout:.0f} s") from None
        if event is None:
            self.events.put(None)
            raise RuntimeError(f"{self.what}: the client exited without a status: {''.join(self.stderr)}")
        return event

    def next_message(self, timeout=GUARD):
        event = self.next(timeout)
        if "message" not in event:
            raise AssertionError(f"{self.what}: expected a message, got {event}")
        return event["message"]

    def wait_message(self, what, predicate, timeout=GUARD):
        """Skips messages until one satisfies `predicate` (returned); a status first fails."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.what}: no message with {what} within {timeout:.0f} s")
            try:
                event = self.next(left)
            except TimeoutError:
                raise TimeoutError(f"{self.what}: no message with {what} within {timeout:.0f} s") from None
            if "message" not in event:
                raise AssertionError(f"{self.what}: the stream ended before a message with {what}: {event}")
            if predicate(event["message"]):
                return event["message"]

    def status(self, timeout=GUARD):
        """Skips messages until the call's final status."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.0, deadline - time.monotonic()))
            if "status" in event:
                return event

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------------
# DER, PEM, openssl


def unb64(text):
    return base64.b64decode(text)


def der_length(data, i):
    """(length, offset of the contents) of the DER element whose length octets start at i."""
    first = data[i]
    if first < 0x80:
        return first, i + 1
    n = first & 0x7F
    if n == 0 or n > 4 or i + 1 + n > len(data):
        raise ValueError("bad DER length")
    return int.from_bytes(data[i + 1:i + 1 + n], "big"), i + 1 + n


def der_elements(data):
    """The top-level DER elements of concatenated DER (tag, whole element, contents)."""
    out = []
    i = 0
    while i < len(data):
        tag = data[i]
        length, start = der_length(data, i + 1)
        end = start + length
        if end > len(data):
            raise ValueError("truncated DER")
        out.append((tag, data[i:end], data[start:end]))
        i = end
    return out


def split_certs(der):
    """Concatenated DER certificates → list of DER certificates (each a SEQUENCE)."""
    elements = der_elements(der)
    if not elements or any(tag != 0x30 for tag, _, _ in elements):
        raise ValueError("not concatenated DER certificates")
    return [whole for _, whole, _ in elements]


def pem(der, kind="CERTIFICATE"):
    b = base64.encodebytes(der).decode().replace("\n", "")
    return f"-----BEGIN {kind}-----\n" + "\n".join(b[i:i + 64] for i in range(0, len(b), 64)) + f"\n-----END {kind}-----\n"


def pem_certs(text):
    """The DER of every CERTIFICATE block of a PEM text."""
    return [base64.b64decode(b) for b in
            re.findall(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", text, re.S)]


def is_pkcs8(der):
    """PrivateKeyInfo: SEQUENCE { INTEGER 0, AlgorithmIdentifier SEQUENCE, OCTET STRING, ... }
    (a SEC1 or PKCS#1 key starts SEQUENCE { INTEGER 1 | 0, OCTET STRING | INTEGER ... })."""
    try:
        (tag, _, body), = der_elements(der)
        parts = der_elements(body)
    except ValueError:
        return False
    return (tag == 0x30 and len(parts) >= 3 and parts[0][0] == 0x02 and parts[0][2] == b"\x00" and
            parts[1][0] == 0x30 and parts[2][0] == 0x04)


def openssl(args, data=None):
    """openssl with `data` (bytes) on stdin; returns (returncode, stdout+stderr text)."""
    p = subprocess.run(["openssl", *args], input=data, capture_output=True)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def cert_text(der_or_pem, *fields):
    fmt = "DER" if isinstance(der_or_pem, bytes) and not der_or_pem.startswith(b"-----") else "PEM"
    data = der_or_pem if isinstance(der_or_pem, bytes) else der_or_pem.encode()
    rc, out = openssl(["x509", "-inform", fmt, "-noout", *fields], data)
    if rc != 0:
        raise ValueError(f"openssl x509 {' '.join(fields)}: {out}")
    return out


def serial_of(der_or_pem):
    return cert_text(der_or_pem, "-serial").strip().split("=", 1)[1].upper().lstrip("0")


def uri_sans(der_or_pem):
    """Every SAN of the certificate as openssl prints them ("URI:spiffe://...", "DNS:...")."""
    out = cert_text(der_or_pem, "-ext", "subjectAltName")
    lines = [line.strip() for line in out.splitlines()[1:] if line.strip()]
    return [s.strip() for line in lines for s in line.split(",")]


def pubkey_of_cert(der):
    return cert_text(der, "-pubkey")


def pubkey_of_key(der_or_pem, fmt):
    rc, out = openssl(["pkey", "-inform", fmt, "-pubout"], der_or_pem)
    if rc != 0:
        raise ValueError("openssl pkey: " + out)
    return out


def verify_chain(work, name, chain, bundle_der):
    """`openssl verify` of the leaf with the rest of the chain as untrusted intermediates and the
    bundle as the only trust anchors. Returns "" when it verifies, else openssl's output."""
    bundle = work.join(name + "-bundle.pem")
    leaf = work.join(name + "-leaf.pem")
    with open(bundle, "w") as f:
        f.write("".join(pem(c) for c in split_certs(bundle_der)))
    with open(leaf, "w") as f:
        f.write(pem(chain[0]))
    cmd = ["verify", "-x509_strict", "-CAfile", bundle]
    if len(chain) > 1:
        untrusted = work.join(name + "-untrusted.pem")
        with open(untrusted, "w") as f:
            f.write("".join(pem(c) for c in chain[1:]))
        cmd += ["-untrusted", untrusted]
    rc, out = openssl(cmd + [leaf])
    return "" if rc == 0 else out


def crl_serials(der):
    """The serials a DER CRL lists, upper-case hex without leading zeros."""
    rc, out = openssl(["crl", "-inform", "DER", "-noout", "-text"], der)
    if rc != 0:
        raise ValueError("openssl crl: " + out)
    return {m.upper().lstrip("0") for m in re.findall(r"Serial Number: ([0-9A-Fa-f]+)", out)}


def socket_mode(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode) if stat.S_ISSOCK(st.st_mode) else None
