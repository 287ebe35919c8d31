"""A gRPC server and client (grpcio) instrumented with the official
OpenTelemetry Python SDK and opentelemetry-instrumentation-grpc, for the
trace-context tests: the kernel cannot read HTTP/2, so only the span join
gives kernel records their context.

server --address A --port P --body N --otlp ENDPOINT
    Serves /flowtel.Test/Get, answering every call with N bytes; its spans
    go to the OTLP/gRPC endpoint. Prints "ready" once listening.

client --target HOST:PORT --threads T --requests R --otlp ENDPOINT
    T threads, each with its own channel (one HTTP/2 connection), each
    making R calls one after another. Prints one JSON line per call: the
    client span's trace and span ids, start and end (Unix ns).
"""

import argparse
import json
import threading
from concurrent import futures

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from traced_common import on_threads, tracer_provider


class Finished(SpanProcessor):
    """Keeps every span that ends."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()

    def on_end(self, span):
        with self.lock:
            self.spans.append(span)


def serve(args):
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorServer

    tracer_provider("traced-grpc-server", args.otlp)
    GrpcInstrumentorServer().instrument()
    body = b"x" * args.body
    handler = grpc.method_handlers_generic_handler(
        "flowtel.Test", {"Get": grpc.unary_unary_rpc_method_handler(lambda request, context: body)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[handler])
    server.add_insecure_port(f"{args.address}:{args.port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def client(args):
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient

    provider = tracer_provider("traced-grpc-client", args.otlp)
    finished = Finished()
    provider.add_span_processor(finished)
    GrpcInstrumentorClient().instrument()

    def run():
        # A subchannel of its own: grpcio shares connections between
        # channels of a process otherwise.
        with grpc.insecure_channel(args.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            get = channel.unary_unary("/flowtel.Test/Get")
            for _ in range(args.requests):
                assert len(get(b"?", timeout=30)) > 0

    on_threads(args.threads, run)
    provider.shutdown()
    for span in finished.spans:
        if span.kind == trace.SpanKind.CLIENT:
            context = span.get_span_context()
            print(
                json.dumps(
                    {
                        "trace_id": format(context.trace_id, "032x"),
                        "span_id": format(context.span_id, "016x"),
                        "port": None,
                        "start": span.start_time,
                        "end": span.end_time,
                    }
                )
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("--address")
    parser.add_argument("--port", type=int)
    parser.add_argument("--body", type=int, default=1000)
    parser.add_argument("--target")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1)
    parser.add_argument("--otlp", required=True)
    arguments = parser.parse_args()
    serve(arguments) if arguments.mode == "server" else client(arguments)
