"""An HTTP/1.1 server and client instrumented with the official
OpenTelemetry Python SDK, for the trace-context tests.

server <address> <port> <body bytes>
    A threaded HTTP/1.1 keep-alive server running a WSGI app wrapped in
    opentelemetry-instrumentation-wsgi's middleware, answering every request
    with <body bytes> bytes. Prints "ready" once listening.

client <url> <threads> <requests>
    <threads> threads, each with its own requests.Session (one kept-alive
    connection), each making <requests> GETs instrumented by
    opentelemetry-instrumentation-requests, which sends each request's
    client span in a W3C traceparent header. Prints one JSON line per
    request: the client span's trace and span ids, the connection's local
    port, the span's start and when the whole response was in (Unix ns).
"""

import json
import sys
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider


def serve(address, port, size):
    import io
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    trace.set_tracer_provider(TracerProvider())
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
                "SERVER_NAME": address,
                "SERVER_PORT": str(port),
                "SERVER_PROTOCOL": self.request_version,
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_PORT": str(self.client_address[1]),
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
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

            chunks = list(instrumented(environ, start_response))
            status, headers = status_and_headers
            self.send_response(int(status.split()[0]))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    print("ready", flush=True)
    server.serve_forever()


def client(url, threads, requests_per_thread):
    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    trace.set_tracer_provider(TracerProvider())
    local = threading.local()
    results = []

    def remember(span, request, response):
        # The response is streamed, so its connection is still attached.
        local.span = span
        local.port = response.raw._fp.fp.raw._sock.getsockname()[1]

    RequestsInstrumentor().instrument(response_hook=remember)

    def run():
        session = requests.Session()
        for _ in range(requests_per_thread):
            response = session.get(url, stream=True)
            assert len(response.content) > 0
            # The span ends when the headers are in; the request is in
            # flight until the whole body is.
            context = local.span.get_span_context()
            results.append(
                {
                    "trace_id": format(context.trace_id, "032x"),
                    "span_id": format(context.span_id, "016x"),
                    "port": local.port,
                    "start": local.span.start_time,
                    "end": time.time_ns(),
                }
            )
        session.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
