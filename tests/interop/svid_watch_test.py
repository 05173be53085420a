#!/usr/bin/python3
"""`meshid svid watch` feeding a real consumer through rotations: a real `meshid server` and
`meshid agent --mode node` (40 s certificates, so one renews about every 20 s), an entry for the
user daemon running meshid's binary (unix:user:daemon + unix:path:<meshid>), and, as daemon
(runuser):

    meshid svid watch --out-dir D --signal D/../nginx.pid:HUP
    nginx (Debian's) serving TLS with ssl_certificate D/cert-chain.pem, ssl_certificate_key D/key.pem

While the SVID rotates, a loop of TLS handshakes (Python's ssl, verifying against the bundle
the watch wrote) checks that no handshake fails, that the served certificate is always the
entry's SPIFFE ID, and that its serial changes at least once; on every round the three files
parse completely (never half-written) and key.pem is 0600 and daemon's. At the end the files
match each other and nginx serves the certificate on disk; a root added to the agent's trust
anchors (a bundle change without a new certificate) reaches root-cert.pem; and `svid watch`
exits 0 on SIGTERM.

Needs root (runuser) and nginx. Run with Debian's /usr/bin/python3."""
import argparse
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload_harness as h  # noqa: E402

USER = "daemon"
SPIFFE_ID = h.TRUST_DOMAIN + "/ns/wl/sa/nginx"
SECRET_TTL = "40s"  # the agent renews at about half: a rotation about every 20 s
LOOP_SECONDS = 60.0  # long enough for a rotation; the loop stops once nginx served a second certificate


def nginx_conf(base, port):
    d = os.path.join
    temp = "".join(f"  {name}_temp_path {d(base, 'tmp', name)};\n"
                   for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""worker_processes 1;
pid {d(base, 'nginx.pid')};
error_log {d(base, 'error.log')} info;
events {{ worker_connections 256; }}
http {{
  access_log off;
{temp}  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {d(base, 'certs', 'cert-chain.pem')};
    ssl_certificate_key {d(base, 'certs', 'key.pem')};
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""


def check_files(certs):
    """The three files parse completely; key.pem is 0600 and USER's. Returns the chain's leaf
    serial. Raises on any problem."""
    chain_file, key_file, root_file = (os.path.join(certs, n) for n in ("cert-chain.pem", "key.pem", "root-cert.pem"))
    st = os.stat(key_file)
    if stat.S_IMODE(st.st_mode) != 0o600 or st.st_uid != h.uid_of(USER):
        raise AssertionError(f"key.pem: mode {oct(stat.S_IMODE(st.st_mode))} owner {st.st_uid}, want 0o600 {USER}")
    key = open(key_file, "rb").read()
    chain = open(chain_file).read()
    roots = open(root_file).read()
    if not key.startswith(b"-----BEGIN PRIVATE KEY-----\n") or not key.endswith(b"-----END PRIVATE KEY-----\n"):
        raise AssertionError(f"key.pem is not one whole PKCS#8 PEM block ({len(key)} bytes)")
    rc, out = h.openssl(["pkey", "-noout"], key)
    if rc != 0:
        raise AssertionError("key.pem does not parse: " + out)
    for name, text in (("cert-chain.pem", chain), ("root-cert.pem", roots)):
        blocks = h.pem_certs(text)
        if not blocks or text.count("-----BEGIN") != len(blocks) or not text.endswith("-----END CERTIFICATE-----\n"):
            raise AssertionError(f"{name} is not whole PEM certificates ({len(text)} bytes)")
        try:
            ssl.create_default_context().load_verify_locations(cadata=text)  # OpenSSL parses every one
        except ssl.SSLError as e:
            raise AssertionError(f"{name} does not parse: {e}") from None
    return h.serial_of(h.pem_certs(chain)[0])


def handshake(port, cafile):
    """One TLS handshake and request, verifying the chain against `cafile`. Returns the served
    leaf's (serial, URI SANs)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # an SVID names a SPIFFE ID (URI SAN), not a host
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            cert = tls.getpeercert()
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
    if not reply.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"nginx answered {reply[:40]!r}")
    sans = [f"{kind}:{value}" for kind, value in cert.get("subjectAltName", ())]
    return cert["serialNumber"].upper().lstrip("0"), sans


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshid", required=True)
    args = ap.parse_args()
    meshid = os.path.abspath(args.meshid)
    h.require_root("meshid svid watch and nginx")

    work = h.Work("meshid-watch-")
    mesh = None
    procs = []
    failures = []
    try:
        anchors = work.join("trust-anchors.pem")  # extra roots for the agent's bundle, added below
        open(anchors, "w").close()
        mesh = h.Mesh(meshid, work, secret_ttl=SECRET_TTL, agent_args=("--trust-anchors", anchors))
        watcher = h.readable_copy(work, meshid, "meshid")  # what daemon runs (and the entry selects)
        mesh.create_entry(SPIFFE_ID, f"unix:user:{USER}", "unix:path:" + watcher)

        base = work.mkdir("nginx", owner=USER)
        for name in ("tmp",):
            work.mkdir(os.path.join("nginx", name), owner=USER)
        certs = os.path.join(base, "certs")
        pidfile = os.path.join(base, "nginx.pid")
        port = h.free_port()
        with open(os.path.join(base, "nginx.conf"), "w") as f:
            f.write(nginx_conf(base, port))

        watch_log = work.join("watch.log")
        with open(watch_log, "w") as log:
            watch = subprocess.Popen(["runuser", "-u", USER, "--", watcher, "svid", "watch", "--socket", mesh.target,
                                      "--out-dir", certs, "--signal", pidfile + ":HUP"],
                                     stdout=log, stderr=subprocess.STDOUT, cwd="/")
        procs.append(watch)
        # The entry reaches the agent, the watch retries until it is there, then writes.
        h.wait_until("svid watch writing " + certs,
                     lambda: all(os.path.exists(os.path.join(certs, n))
                                 for n in ("cert-chain.pem", "key.pem", "root-cert.pem")))
        first = check_files(certs)
        print(f"ok   svid watch (as {USER}) wrote {certs}: serial {first}, key.pem 0600")

        nginx = subprocess.Popen(["runuser", "-u", USER, "--", "nginx", "-p", base, "-c",
                                  os.path.join(base, "nginx.conf"), "-e", os.path.join(base, "error.log"),
                                  "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd="/")
        procs.append(nginx)

        def serving():
            if nginx.poll() is not None:
                raise RuntimeError("nginx exited:\n" + open(os.path.join(base, "error.log")).read())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return os.path.exists(pidfile)
            except OSError:
                return False
        h.wait_until("nginx listening on %d" % port, serving)
        print(f"ok   nginx (as {USER}) serves TLS on 127.0.0.1:{port} from those files")

        # The loops, while the SVID rotates: handshakes back to back in one thread, the files
        # checked in another (each round runs openssl), until nginx served a second certificate.
        root_file = os.path.join(certs, "root-cert.pem")
        served = []  # the served serial at every change, in order (an old worker may still answer
        # for a moment after a reload, so a serial can come back)
        counts = {"handshakes": 0, "failed": 0, "file rounds": 0}
        file_problems = []
        stop = threading.Event()

        def handshakes():
            while not stop.is_set():
                counts["handshakes"] += 1
                try:
                    serial, sans = handshake(port, root_file)
                    if sans != ["URI:" + SPIFFE_ID]:
                        failures.append(f"handshake {counts['handshakes']}: nginx served SANs {sans}")
                    if not served or served[-1] != serial:
                        served.append(serial)
                except Exception as e:  # noqa: BLE001
                    counts["failed"] += 1
                    failures.append(f"handshake {counts['handshakes']} failed: {type(e).__name__}: {e}")

        def files():
            while not stop.is_set():
                counts["file rounds"] += 1
                try:
                    check_files(certs)
                except Exception as e:  # noqa: BLE001
                    file_problems.append(f"file round {counts['file rounds']}: {e}")

        threads = [threading.Thread(target=fn) for fn in (handshakes, files)]
        for t in threads:
            t.start()
        try:
            h.wait_until("a rotation served by nginx", lambda: len(set(served)) >= 2, timeout=LOOP_SECONDS, interval=0.2)
        except TimeoutError:
            pass  # judged below: at least one change is required
        stop.set()
        for t in threads:
            t.join()
        failures.extend(file_problems[:5])
        if len(file_problems) > 5:
            failures.append(f"... {len(file_problems)} file rounds found a problem")
        if len(set(served)) < 2:
            failures.append(f"the served serial never changed in {LOOP_SECONDS:.0f} s ({served})")
        good = len(set(served)) >= 2 and not counts["failed"] and not file_problems
        print(f"{'ok  ' if good else 'FAIL'} {counts['handshakes']} handshakes, {counts['failed']} failed; "
              f"{counts['file rounds']} file rounds, {len(file_problems)} with a problem; "
              f"served serials {' -> '.join(dict.fromkeys(served))} (by first appearance)")

        # A bundle change without a new certificate (the agent's --trust-anchors gains a root):
        # root-cert.pem must follow, or a consumer that checks peers against it keeps the old
        # trust until the next rotation.
        rc, out = h.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                             "-subj", "/CN=meshid interop extra anchor", "-days", "2", "-keyout", work.join("extra.key"),
                             "-out", work.join("extra.pem"), "-addext", "basicConstraints=critical,CA:TRUE",
                             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        assert rc == 0, out
        extra = h.pem_certs(open(work.join("extra.pem")).read())[0]
        with open(anchors, "w") as f:
            f.write(open(work.join("extra.pem")).read())
        # The loop ended just after a rotation: the next one is about half a lifetime away, and
        # the agent reads its trust anchors within a few seconds.
        serial_then = check_files(certs)
        try:
            h.wait_until("root-cert.pem holding the added trust anchor",
                         lambda: extra in h.pem_certs(open(os.path.join(certs, "root-cert.pem")).read()), timeout=12)
            if check_files(certs) != serial_then:
                failures.append("root-cert.pem gained the added trust anchor only with the next rotation, not when "
                                "the bundle changed")
            else:
                print("ok   a trust anchor added to the agent: root-cert.pem follows, before any new certificate")
        except TimeoutError as e:
            # Whether the agent has it: FetchX509Bundles (no entry needed) with the spec's client.
            c = h.Client(h.generate_spec_messages(work), mesh.target, "bundles", "root")
            try:
                event = c.next()
            finally:
                c.close()
            agent_has = "message" in event and extra in h.split_certs(h.unb64(event["message"]["bundles"].get(
                h.TRUST_DOMAIN, "")))
            failures.append(f"{e}: root-cert.pem holds "
                            f"{len(h.pem_certs(open(os.path.join(certs, 'root-cert.pem')).read()))} root(s), "
                            f"cert-chain.pem is unchanged (serial {serial_then}); the agent's FetchX509Bundles "
                            + ("has the anchor: svid watch does not rewrite root-cert.pem when only the bundle changes"
                               if agent_has else f"does not have it either: {event}"))


        # Settled: the files match each other and nginx serves what is on disk.
        def settled():
            on_disk = check_files(certs)
            return on_disk if handshake(port, root_file)[0] == on_disk else None
        try:
            h.wait_until("nginx serving the certificate on disk", settled, timeout=20)
            key_pub = h.pubkey_of_key(open(os.path.join(certs, "key.pem"), "rb").read(), "PEM")
            cert_pub = h.pubkey_of_cert(open(os.path.join(certs, "cert-chain.pem")).read())
            if key_pub != cert_pub:
                failures.append("key.pem does not match cert-chain.pem")
            else:
                print("ok   key.pem matches cert-chain.pem; nginx serves the certificate on disk")
        except Exception as e:  # noqa: BLE001
            failures.append(str(e))
        reloads = len(re.findall(r"signal 1 \(SIGHUP\) received", open(os.path.join(base, "error.log")).read()))
        print(f"     nginx reloaded {reloads} time(s) on svid watch's SIGHUP")
        if reloads < 1:
            failures.append("nginx never received SIGHUP from svid watch")

        # SIGTERM to svid watch itself (runuser's child; runuser would end with the signal),
        # then runuser exits with its status.
        children = open(f"/proc/{watch.pid}/task/{watch.pid}/children").read().split()
        if len(children) != 1:
            raise AssertionError(f"runuser {watch.pid} has children {children}, want svid watch only")
        os.kill(int(children[0]), signal.SIGTERM)
        try:
            code = watch.wait(timeout=15)
            if code != 0:
                failures.append(f"svid watch exited {code} on SIGTERM")
        except subprocess.TimeoutExpired:
            failures.append("svid watch did not exit within 15 s of SIGTERM")
    except Exception:  # noqa: BLE001
        failures.append(traceback.format_exc())
    finally:
        h.stop_processes(procs)
        if mesh:
            mesh.stop()
    if failures:
        for name in ("watch.log", "nginx/error.log"):
            if os.path.exists(work.join(name)):
                print(f"---- {work.join(name)}\n" + open(work.join(name)).read())
        if mesh:
            print(mesh.logs())
    else:
        import shutil
        shutil.rmtree(work.path, ignore_errors=True)
    for f in failures:
        print("FAIL " + f)
    print("svid watch + nginx: %s" % ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
