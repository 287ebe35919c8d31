"""An HTTP/1.1 server and client instrumented with the official
OpenTelemetry Python SDK, for the trace-context tests.

server --address A --port P --body N [--tls CERT KEY] [--otlp ENDPOINT]
    A threaded HTTP/1.1 keep-alive server (HTTPS with --tls) running a WSGI
    app wrapped in opentelemetry-instrumentation-wsgi's middleware,
    answering every request with N bytes. With --otlp its spans go to that
    OTLP/gRPC endpoint. Prints "ready" once listening.

client --url U --threads T --requests R [--otlp ENDPOINT]
    T threads, each with its own requests.Session (one kept-alive
    connection), each making R GETs instrumented by
    opentelemetry-instrumentation-requests, which sends each request's
    client span in a W3C traceparent header (unreadable to the kernel over
    HTTPS). With --otlp the spans go to that endpoint. Prints one JSON line
    per request: the client span's trace and span ids, the connection's
    local port, and the span's start and end (Unix ns; the span ends once
    the whole response is in).
"""

import argparse
import json
import sys
import threading

from traced_common import on_threads, tracer_provider


def serve(args):
    import io
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    tracer_provider("traced-http-server", args.otlp)
    size = args.body
    body = b"x" * size

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        return [body]

    instrumented = OpenTelemetryMiddleware(app)

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1: the connection stays open between requests (werkzeug's
        # and wsgiref's servers close it after each one).
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path, _, query = self.path.partition("?")
            environ = {
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "SERVER_NAME": args.address,
                "SERVER_PORT": str(args.port),
                "SERVER_PROTOCOL": self.request_version,
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_PORT": str(self.client_address[1]),
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "https" if args.tls else "http",
                "wsgi.input": io.BytesIO(),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
            for name, value in self.headers.items():
                environ["HTTP_" + name.upper().replace("-", "_")] = value
            status_and_headers = []

            def start_response(status, headers, exc_info=None):
                status_and_headers[:] = [status, headers]

            # The server span lasts until the body is written.
            result = instrumented(environ, start_response)
            try:
                chunks = iter(result)
                first = next(chunks, b"")
                status, headers = status_and_headers
                self.send_response(int(status.split()[0]))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(first)
                for chunk in chunks:
                    self.wfile.write(chunk)
            finally:
                if hasattr(result, "close"):
                    result.close()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer((args.address, args.port), Handler)
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


def client(args):
    import time

    import requests
    import urllib3
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    provider = tracer_provider("traced-http-client", args.otlp)
    urllib3.disable_warnings()
    local = threading.local()

    # The connection's local port, noted as each request goes out.
    send = urllib3.connection.HTTPConnection.request

    def request(self, *a, **k):
        local.port = self.sock.getsockname()[1] if self.sock else None
        result = send(self, *a, **k)
        local.port = local.port or self.sock.getsockname()[1]
        return result

    urllib3.connection.HTTPConnection.request = request

    def remember(span, _request, _response):
        local.span = span

    RequestsInstrumentor().instrument(response_hook=remember)
    results = []

    def run():
        session = requests.Session()
        for _ in range(args.requests):
            response = session.get(args.url, verify=False)
            assert len(response.content) > 0
            context = local.span.get_span_context()
            results.append(
                {
                    "trace_id": format(context.trace_id, "032x"),
                    "span_id": format(context.span_id, "016x"),
                    "port": local.port,
                    "start": local.span.start_time,
                    "end": local.span.end_time or time.time_ns(),
                }
            )
        session.close()

    on_threads(args.threads, run)
    provider.shutdown()
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("--address")
    parser.add_argument("--port", type=int)
    parser.add_argument("--body", type=int, default=1000)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--url")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1)
    parser.add_argument("--otlp")
    arguments = parser.parse_args()
    serve(arguments) if arguments.mode == "server" else client(arguments)
