"""A Hubble API client built from flowtel's .proto files with grpcio-tools.

Usage: hubble_client.py <proto dir> <address> <call as JSON>

The call is {"service": "observer"|"peer", "method": "GetFlows", "request":
{...protobuf JSON...}, "max": N, "timeout": seconds, "pause": seconds}.
Prints each response as one line of protobuf JSON (field names as in the
proto), then {"end": "<how it ended>"}. "pause" waits that long after the
first response before reading on (a stalled follower).
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
    channel = grpc.insecure_channel(address)
    stub = getattr(stubs, ("Observer" if service == "observer" else "Peer") + "Stub")(channel)
    method = call["method"]
    request_type = {"Notify": "NotifyRequest"}.get(method, method + "Request")
    request = json_format.ParseDict(call.get("request", {}), getattr(messages, request_type)())
    timeout = call.get("timeout", 10)
    limit = call.get("max")
    pause = call.get("pause", 0)
    rpc = getattr(stub, method)
    try:
        result = rpc(request, timeout=timeout)
        responses = result if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR") else [result]
        count = 0
        for response in responses:
            print(json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True)), flush=True)
            count += 1
            if count == 1 and pause:
                time.sleep(pause)
            if limit is not None and count >= limit:
                print(json.dumps({"end": "max"}), flush=True)
                return
        print(json.dumps({"end": "eof"}), flush=True)
    except grpc.RpcError as error:
        print(json.dumps({"end": error.code().name, "details": error.details()}), flush=True)


if __name__ == "__main__":
    main()
