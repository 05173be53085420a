#!/usr/bin/python3
"""Interop test: a separate gRPC stack (Python grpcio from Debian) issues certificates from a real
`meshid server`, with keys and CSRs made by the openssl command line, and checks every
certificate with `openssl verify` and Botan. Also renews over mTLS with the issued certificate and
checks that a CSR for a foreign identity is refused. Then node agents mint workload identities
as ztunnel does (Istio's ImpersonatedIdentity request metadata, a google.protobuf.Struct built
with the generated protos): the registry's parent entries and --trusted-node-accounts decide,
every refusal is the same opaque UNAUTHENTICATED, and `meshid certs list --json` shows what was
minted and by whom.

Run with Debian's /usr/bin/python3 (the one that sees python3-grpcio)."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def load_messages(proto_dir, out_dir):
    # protoc from Debian generates code for the Debian python3-protobuf; compile the same .proto
    # the server uses, then load it.
    run(["protoc", f"--proto_path={proto_dir}", "--proto_path=/usr/include", f"--python_out={out_dir}",
         "istio/security/v1alpha1/ca.proto"])
    sys.path.insert(0, out_dir)
    from istio.security.v1alpha1 import ca_pb2  # noqa: E402
    return ca_pb2


def start_server(meshid, data_dir, log_path, env=None):
    log = open(log_path, "w")
    proc = subprocess.Popen([meshid, "server", "--data-dir", data_dir, "--listen", "127.0.0.1:0",
                             "--monitoring-addr", "127.0.0.1:0"], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, **(env or {})))
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+).*monitoring on port (\d+)", open(log_path).read())
        if m:
            return proc, int(m.group(1)), int(m.group(2))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start:\n" + open(log_path).read())


def make_csr(work, name, key_args, san=None):
    key = os.path.join(work, name + ".key")
    csr = os.path.join(work, name + ".csr")
    cmd = ["openssl", "req", "-new", "-nodes", "-subj", "/O=", "-keyout", key, "-out", csr] + key_args
    if san:
        cmd += ["-addext", "subjectAltName=" + san]
    run(cmd)
    return key, open(csr).read()


def impersonation_cases(args, data, call, work, root_file, monitoring_port, failures):
    """Node agents minting workload identities (ImpersonatedIdentity)."""
    td = "spiffe://cluster.local"
    node, other_node, blocked_node, trusted_node = (f"{td}/ns/istio-system/sa/{sa}" for sa in
                                                    ("ztunnel", "other-node", "blocked-node", "trusted-node"))
    workload, blocked_workload, workload_of_blocked_node, unregistered = (
        f"{td}/ns/bookinfo/sa/{sa}" for sa in ("ratings", "blocked", "details", "unregistered"))

    def meshid(*cmd):
        return run([args.meshid, *cmd, "--data-dir", data])

    def token_of(spiffe_id):
        ns, sa = re.fullmatch(r".*/ns/([^/]+)/sa/([^/]+)", spiffe_id).groups()
        return (("authorization", "Bearer " + meshid("token", "create", "-n", ns, "-s", sa).strip()),)

    for w, parent in [(workload, node), (blocked_workload, node), (workload_of_blocked_node, blocked_node)]:
        meshid("entry", "create", "--spiffe-id", w, "--parent", parent, "--selector", "unix:uid:1000")
    meshid("identity", "block", blocked_node, "--reason", "node compromised")
    meshid("identity", "block", blocked_workload, "--reason", "key leaked")

    minted = {}  # serial -> (spiffe_id, minted_by)
    for what, caller, san in [("parent node", node, None), ("parent node, CSR naming the workload", node,
                                                            "URI:" + workload),
                              ("trusted node account", trusted_node, None)]:
        key, csr = make_csr(work, "minted", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], san)
        try:
            chain = list(call(csr, token_of(caller), impersonate=workload).cert_chain)
        except grpc.RpcError as e:
            failures.append(f"impersonation by {what}: {e.code()} {e.details()!r}")
            continue
        chain_file = os.path.join(work, "minted-chain.pem")
        open(chain_file, "w").write("".join(chain))
        b = subprocess.run([args.botan_check, root_file, chain_file, workload], capture_output=True, text=True)
        if b.returncode != 0:
            failures.append(f"impersonation by {what}: botan: {b.stdout}")
            continue
        serial = run(["openssl", "x509", "-in", chain_file, "-noout", "-serial"]).strip().split("=")[1]
        minted[serial.upper().lstrip("0")] = (workload, caller)
        print(f"ok   impersonation by {what}: a certificate for {workload}, checked by Botan")

    _, node_csr = make_csr(work, "node-san", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "URI:" + node)
    _, csr = make_csr(work, "refused", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    refused = "request impersonation authentication failure"
    for what, caller, identity, the_csr, code, text in [
        ("not the parent", other_node, workload, csr, grpc.StatusCode.UNAUTHENTICATED, refused),
        ("blocked node", blocked_node, workload_of_blocked_node, csr, grpc.StatusCode.UNAUTHENTICATED, refused),
        ("blocked identity", node, blocked_workload, csr, grpc.StatusCode.UNAUTHENTICATED, refused),
        ("trusted node account, no entry", trusted_node, unregistered, csr, grpc.StatusCode.UNAUTHENTICATED,
         refused),
        ("a number", node, 42, csr, grpc.StatusCode.UNAUTHENTICATED, refused),
        ("empty", node, "", csr, grpc.StatusCode.UNAUTHENTICATED, refused),
        ("not a SPIFFE ID", node, "bookinfo/ratings", csr, grpc.StatusCode.UNAUTHENTICATED, refused),
        ("another trust domain", node, "spiffe://other.example/ns/bookinfo/sa/ratings", csr,
         grpc.StatusCode.UNAUTHENTICATED, refused),
        ("CSR naming the node", node, workload, node_csr, grpc.StatusCode.INVALID_ARGUMENT,
         "but the caller is authenticated as " + workload),
    ]:
        try:
            call(the_csr, token_of(caller), impersonate=identity)
            failures.append(f"impersonation, {what}: was not refused")
        except grpc.RpcError as e:
            opaque = code != grpc.StatusCode.UNAUTHENTICATED or e.details() == text
            if e.code() != code or text not in e.details() or not opaque:
                failures.append(f"impersonation, {what}: got {e.code()} {e.details()!r}")
            else:
                print(f"ok   impersonation, {what}: {e.code().name} {e.details()}")

    # The ledger holds the minted certificates, with who minted them, and nothing refused.
    records = [json.loads(line) for line in meshid("certs", "list", "--json").splitlines() if line.strip()]
    got = {r["serial"].upper().lstrip("0"): (r["spiffe_id"], r["minted_by"]) for r in records if r["minted_by"]}
    if got != minted:
        failures.append(f"certs list: minted certificates {got}, want {minted}")
    for r in records:
        if r["spiffe_id"] in (blocked_workload, workload_of_blocked_node, unregistered):
            failures.append(f"certs list: a refused request was recorded: {r}")
        if r["spiffe_id"] == workload and r["serial"].upper().lstrip("0") not in minted:
            failures.append(f"certs list: an unexpected certificate for {workload}: {r}")
        if r["minted_by"] and not r["auth_detail"].endswith(
                "sub=system:serviceaccount:istio-system:" + r["minted_by"].rsplit("/", 1)[1]):
            failures.append(f"certs list: the minting node's authentication is not recorded: {r}")
    if got == minted:
        print(f"ok   certs list --json: {len(minted)} minted certificates with minted_by, none refused")

    # The reasons, which the callers were not told, are in the metrics.
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{monitoring_port}/metrics", timeout=10).read().decode()
    for reason, count in [("not_parent", 1), ("blocked_node", 1), ("blocked_identity", 1), ("no_entry", 1),
                          ("malformed", 4)]:
        line = f'meshid_ca_impersonation_denied_total{{reason="{reason}"}} {count}'
        if line not in metrics:
            failures.append(f"metrics: no line {line!r}")
    print("ok   meshid_ca_impersonation_denied_total counts every reason")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshid", required=True)
    ap.add_argument("--botan-check", required=True)
    ap.add_argument("--proto-dir", required=True)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="meshid-py-")
    proc = None
    failures = []
    try:
        ca_pb2 = load_messages(args.proto_dir, work)
        data = os.path.join(work, "data")
        # Istio's variable for --trusted-node-accounts. It does not change the other cases: it
        # only matters to callers that send ImpersonatedIdentity.
        proc, port, monitoring_port = start_server(args.meshid, data, os.path.join(work, "server.log"),
                                                   {"CA_TRUSTED_NODE_ACCOUNTS": "istio-system/trusted-node"})
        root_file = os.path.join(data, "root-cert.pem")
        root = open(root_file, "rb").read()
        token = run([args.meshid, "token", "create", "--data-dir", data, "-n", "bookinfo", "-s", "reviews"]).strip()
        spiffe = "spiffe://cluster.local/ns/bookinfo/sa/reviews"

        def call(csr, metadata=(), creds=None, ttl=0, impersonate=None):
            channel = grpc.secure_channel(f"127.0.0.1:{port}", creds or grpc.ssl_channel_credentials(root_certificates=root),
                                          options=[("grpc.ssl_target_name_override", "localhost")])
            method = channel.unary_unary("/istio.v1.auth.IstioCertificateService/CreateCertificate",
                                         request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
                                         response_deserializer=ca_pb2.IstioCertificateResponse.FromString)
            request = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=ttl)
            if impersonate is not None:
                # As ztunnel sends it: a Struct field named ImpersonatedIdentity, normally a string.
                request.metadata.update({"ImpersonatedIdentity": impersonate})
            try:
                return method(request, metadata=metadata, timeout=10)
            finally:
                channel.close()

        auth = (("authorization", "Bearer " + token),)
        cases = [
            ("ec-p256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], None),
            ("ec-p384-san", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], "URI:" + spiffe),
            ("rsa-2048", ["-newkey", "rsa:2048"], None),
            ("rsa-3072", ["-newkey", "rsa:3072"], "URI:" + spiffe),
        ]
        issued = {}
        for name, key_args, san in cases:
            key, csr = make_csr(work, name, key_args, san)
            resp = call(csr, auth, ttl=1800)
            chain = list(resp.cert_chain)
            if len(chain) != 2 or chain[-1].encode() != root:
                failures.append(f"{name}: chain is not [leaf, root]")
                continue
            chain_file = os.path.join(work, name + "-chain.pem")
            open(chain_file, "w").write("".join(chain))
            v = subprocess.run(["openssl", "verify", "-CAfile", root_file, "-purpose", "sslclient", chain_file],
                               capture_output=True, text=True)
            if v.returncode != 0:
                failures.append(f"{name}: openssl verify: {v.stdout}{v.stderr}")
            b = subprocess.run([args.botan_check, root_file, chain_file, spiffe], capture_output=True, text=True)
            if b.returncode != 0:
                failures.append(f"{name}: botan: {b.stdout}")
            # The certificate holds the CSR's public key.
            cert_pub = run(["openssl", "x509", "-in", chain_file, "-noout", "-pubkey"])
            key_pub = run(["openssl", "pkey", "-in", key, "-pubout"])
            if cert_pub != key_pub:
                failures.append(f"{name}: certificate key differs from the CSR key")
            issued[name] = (key, chain_file)
            print(f"ok   {name}: issued and verified by openssl and Botan")

        # Renewal over mTLS with the issued certificate and no token.
        key, chain_file = issued["ec-p256"]
        mtls = grpc.ssl_channel_credentials(root_certificates=root, private_key=open(key, "rb").read(),
                                            certificate_chain=open(chain_file, "rb").read())
        _, csr = make_csr(work, "renew", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        resp = call(csr, (), creds=mtls)
        open(os.path.join(work, "renewed.pem"), "w").write("".join(resp.cert_chain))
        uri = run(["openssl", "x509", "-in", os.path.join(work, "renewed.pem"), "-noout", "-ext", "subjectAltName"])
        if spiffe not in uri:
            failures.append("renewal changed the identity: " + uri)
        else:
            print("ok   renewal with the client certificate keeps " + spiffe)

        # Refusals through this stack too.
        _, foreign = make_csr(work, "foreign", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                              "URI:spiffe://cluster.local/ns/kube-system/sa/admin")
        for what, csr, md, code, text in [
            ("foreign SAN", foreign, auth, grpc.StatusCode.INVALID_ARGUMENT, "caller is authenticated as " + spiffe),
            ("no token", csr, (), grpc.StatusCode.UNAUTHENTICATED, "no credentials"),
            ("TTL too long", csr, auth, grpc.StatusCode.INVALID_ARGUMENT, "greater than the max allowed TTL"),
        ]:
            try:
                call(csr, md, ttl=10 ** 6 if what == "TTL too long" else 0)
                failures.append(f"{what}: was not refused")
            except grpc.RpcError as e:
                if e.code() != code or text not in e.details():
                    failures.append(f"{what}: got {e.code()} {e.details()!r}")
                else:
                    print(f"ok   {what}: {e.code().name} {e.details()}")

        impersonation_cases(args, data, call, work, root_file, monitoring_port, failures)
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not failures:
            shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print("FAIL " + f)
    print("python grpcio interop: %s" % ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
