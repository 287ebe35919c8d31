"""An OTLP/gRPC backend that records every request it gets.

Each request is appended to --out as one JSON line: {"signal": ..., "request": <OTLP/JSON>}
(trace and span ids in hex, as OTLP/JSON has them).
The tests read the file to check what arrived, and how often.
"""
import argparse
import base64
import json
import threading
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def hex_ids(value):
    """OTLP/JSON writes trace and span ids in hex, where protobuf's JSON
    mapping writes bytes in base64."""
    if isinstance(value, dict):
        return {k: base64.b64decode(v).hex() if k in ID_FIELDS and isinstance(v, str) else hex_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hex_ids(v) for v in value]
    return value


class Recorder:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8")

    def record(self, signal, request):
        line = json.dumps({"signal": signal, "request": hex_ids(MessageToDict(request))})
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, recorder):
        self.recorder = recorder

    def Export(self, request, context):
        self.recorder.record("logs", request)
        return logs_service_pb2.ExportLogsServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, recorder):
        self.recorder = recorder

    def Export(self, request, context):
        self.recorder.record("metrics", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, recorder):
        self.recorder = recorder

    def Export(self, request, context):
        self.recorder.record("traces", request)
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tls-cert", help="serve TLS with this PEM certificate chain")
    parser.add_argument("--tls-key", help="the certificate's PEM private key")
    parser.add_argument("--client-ca", help="require client certificates signed by this PEM CA")
    args = parser.parse_args()
    recorder = Recorder(args.out)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(recorder), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(recorder), server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(recorder), server)
    address = f"127.0.0.1:{args.port}"
    if args.tls_cert:
        read = lambda path: open(path, "rb").read()
        credentials = grpc.ssl_server_credentials(
            [(read(args.tls_key), read(args.tls_cert))],
            root_certificates=read(args.client_ca) if args.client_ca else None,
            require_client_auth=bool(args.client_ca),
        )
        server.add_secure_port(address, credentials)
    else:
        server.add_insecure_port(address)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
