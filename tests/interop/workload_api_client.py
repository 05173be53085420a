#!/usr/bin/python3
"""A SPIFFE Workload API client generated from the specification's proto
(tests/interop/spiffe/workload.proto, compiled by Debian's protoc into --pb-dir), with Debian's
python3-grpcio. The interop tests run it as other users (runuser) and as a copied interpreter,
so that the agent attests a process that is really theirs.

Prints one JSON object per line, flushed at once: {"message": {...}} for every streamed message
(bytes in base64), then {"status": "OK" | "<gRPC code name>", "details": "..."} when the call
ends. Exits 0 whatever the call's outcome (the test judges it); 2 on a usage error.

    workload_api_client.py --pb-dir DIR --socket unix:///path/api.sock {svid|bundles|jwt}
                           [--no-header] [--max-messages N] [--timeout SECONDS]
"""
import argparse
import base64
import json
import sys


def b64(data):
    return base64.b64encode(data).decode()


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pb-dir", required=True)
    ap.add_argument("--socket", required=True, help="a gRPC target: unix:///path or unix:/path")
    ap.add_argument("method", choices=["svid", "bundles", "jwt"])
    ap.add_argument("--no-header", action="store_true", help="omit workload.spiffe.io: true")
    ap.add_argument("--max-messages", type=int, default=0, help="stop after this many messages (0: never)")
    ap.add_argument("--timeout", type=float, default=None, help="deadline of the call in seconds")
    args = ap.parse_args()

    sys.path.insert(0, args.pb_dir)
    import grpc  # noqa: E402
    import workload_pb2 as pb  # noqa: E402  (generated from the specification's proto)

    metadata = () if args.no_header else (("workload.spiffe.io", "true"),)
    channel = grpc.insecure_channel(args.socket)
    if args.method == "svid":
        call = channel.unary_stream("/SpiffeWorkloadAPI/FetchX509SVID",
                                    request_serializer=pb.X509SVIDRequest.SerializeToString,
                                    response_deserializer=pb.X509SVIDResponse.FromString)(
            pb.X509SVIDRequest(), metadata=metadata, timeout=args.timeout)

        def convert(m):
            return {"svids": [{"spiffe_id": s.spiffe_id, "x509_svid": b64(s.x509_svid),
                               "x509_svid_key": b64(s.x509_svid_key), "bundle": b64(s.bundle), "hint": s.hint}
                              for s in m.svids],
                    "crl": [b64(c) for c in m.crl],
                    "federated_bundles": {k: b64(v) for k, v in m.federated_bundles.items()}}
    elif args.method == "bundles":
        call = channel.unary_stream("/SpiffeWorkloadAPI/FetchX509Bundles",
                                    request_serializer=pb.X509BundlesRequest.SerializeToString,
                                    response_deserializer=pb.X509BundlesResponse.FromString)(
            pb.X509BundlesRequest(), metadata=metadata, timeout=args.timeout)

        def convert(m):
            return {"bundles": {k: b64(v) for k, v in m.bundles.items()}, "crl": [b64(c) for c in m.crl]}
    else:
        method = channel.unary_unary("/SpiffeWorkloadAPI/FetchJWTSVID",
                                     request_serializer=pb.JWTSVIDRequest.SerializeToString,
                                     response_deserializer=pb.JWTSVIDResponse.FromString)
        try:
            reply = method(pb.JWTSVIDRequest(audience=["meshid-test"]), metadata=metadata, timeout=args.timeout)
            emit({"message": {"svids": [{"spiffe_id": s.spiffe_id, "svid": s.svid} for s in reply.svids]}})
            emit({"status": "OK", "details": ""})
        except grpc.RpcError as e:
            emit({"status": e.code().name, "details": e.details() or ""})
        return 0

    count = 0
    try:
        for message in call:
            emit({"message": convert(message)})
            count += 1
            if args.max_messages and count >= args.max_messages:
                call.cancel()
                emit({"status": "OK", "details": f"stopped after {count} message(s)"})
                return 0
        emit({"status": "OK", "details": "the server ended the stream"})
    except grpc.RpcError as e:
        emit({"status": e.code().name, "details": e.details() or ""})
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
