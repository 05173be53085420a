#!/usr/bin/python3
"""Short-lived certificates by default, end to end: a real `meshid server` and `meshid agent`,
both with their default lifetimes (no --secret-ttl, no --default-workload-cert-ttl). The agent
asks for no lifetime, so its certificate lives the server's default (1 h), not the 24 h an
Istio agent asks for; and a --secret-ttl the operator gives still wins. Read from the ledger
(`meshid certs list --json`)."""
import argparse
import datetime
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload_harness as h  # noqa: E402

CLOCK_SKEW = 120  # the CA backdates notBefore by this (ca/cert_issuer.h)


def lifetimes(mesh):
    """Seconds from notBefore to notAfter of every certificate of the node agent, minus the backdating."""
    def seconds(text):
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return [seconds(c["not_after"]) - seconds(c["not_before"]) - CLOCK_SKEW
            for c in mesh.certs() if c["spiffe_id"] == h.AGENT_ID]


def check(meshid, secret_ttl, want_seconds):
    work = h.Work("meshid-ttl-")
    mesh = None
    ok = False
    try:
        mesh = h.Mesh(meshid, work, secret_ttl=secret_ttl)
        got = h.wait_until("the node agent's certificate in the ledger", lambda: lifetimes(mesh))
        assert got == [want_seconds], f"--secret-ttl {secret_ttl or '(default)'}: lifetimes {got}, want [{want_seconds}]"
        ok = True
    finally:
        if mesh:
            mesh.stop()
            if not ok:
                print(mesh.logs())
        if ok:
            shutil.rmtree(work.path, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshid", required=True)
    meshid = parser.parse_args().meshid
    check(meshid, None, 3600)  # the server's default
    check(meshid, "2h", 7200)  # an explicit lifetime is still asked for
    print("default certificate lifetime: passed")


if __name__ == "__main__":
    main()
