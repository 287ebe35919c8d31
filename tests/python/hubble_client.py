"""A Hubble API client built from flowtel's .proto files with grpcio-tools.

Usage: hubble_client.py <proto dir> <address> <call as JSON>

The call is {"service": "observer"|"peer", "method": "GetFlows", "request":
{...protobuf JSON...}, "field_mask": [paths], "experimental_field_mask":
[paths], "max": N, "timeout": seconds, "pause": seconds, "stop_on": "a
field name, e.g. lost_events", "window": HTTP/2 receive window in bytes,
"repeat_for": seconds}.
Prints each response as one line of protobuf JSON (field names as in the
proto), then {"end": "<how it ended>"}. "pause" waits that long after the
first response before reading on (a stalled follower). With "repeat_for",
the call is made again and again for that long, reading every response, and
only {"end": "repeated", "calls": N, "responses": M} is printed.
"""

import importlib
import json
import os
import sys
import tempfile
import time

import grpc
from google.protobuf import json_format
from grpc_tools import protoc


def generate(proto_dir):
    out = tempfile.mkdtemp(prefix="hubble-stubs-")
    files = ["flow/flow.proto", "relay/relay.proto", "observer/observer.proto", "peer/peer.proto"]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    status = protoc.main(
        ["grpc_tools.protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + files
    )
    if status != 0:
        sys.exit(f"protoc failed: {status}")
    sys.path.insert(0, out)


def main():
    proto_dir, address, call = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    generate(proto_dir)
    service = call.get("service", "observer")
    messages = importlib.import_module(f"{service}.{service}_pb2")
    stubs = importlib.import_module(f"{service}.{service}_pb2_grpc")
    options = []
    if call.get("window"):
        # A small HTTP/2 receive window: a client that stops reading stops the server soon.
        options = [("grpc.http2.lookahead_bytes", call["window"]), ("grpc.http2.bdp_probe", 0)]
    channel = grpc.insecure_channel(address, options=options)
    stub = getattr(stubs, ("Observer" if service == "observer" else "Peer") + "Stub")(channel)
    method = call["method"]
    request_type = {"Notify": "NotifyRequest"}.get(method, method + "Request")
    request = json_format.ParseDict(call.get("request", {}), getattr(messages, request_type)())
    # Field mask paths as the proto names them ("IP.source"): JSON would recase them.
    if "field_mask" in call:
        request.field_mask.paths.extend(call["field_mask"])
    if "experimental_field_mask" in call:
        request.experimental.field_mask.paths.extend(call["experimental_field_mask"])
    timeout = call.get("timeout", 10)
    limit = call.get("max")
    pause = call.get("pause", 0)
    rpc = getattr(stub, method)
    if call.get("repeat_for"):
        deadline = time.monotonic() + call["repeat_for"]
        calls = responses = 0
        try:
            while time.monotonic() < deadline:
                responses += sum(1 for _ in rpc(request, timeout=timeout))
                calls += 1
            print(json.dumps({"end": "repeated", "calls": calls, "responses": responses}), flush=True)
        except grpc.RpcError as error:
            print(json.dumps({"end": error.code().name, "details": error.details()}), flush=True)
        return
    try:
        result = rpc(request, timeout=timeout)
        responses = result if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR") else [result]
        count = 0
        for response in responses:
            print(json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True)), flush=True)
            count += 1
            if count == 1 and pause:
                time.sleep(pause)
            if call.get("stop_on") and response.DESCRIPTOR.oneofs and any(
                response.WhichOneof(oneof.name) == call["stop_on"] for oneof in response.DESCRIPTOR.oneofs
            ):
                print(json.dumps({"end": "stop_on"}), flush=True)
                return
            if limit is not None and count >= limit:
                print(json.dumps({"end": "max"}), flush=True)
                return
        print(json.dumps({"end": "eof"}), flush=True)
    except grpc.RpcError as error:
        print(json.dumps({"end": error.code().name, "details": error.details()}), flush=True)


if __name__ == "__main__":
    main()
