"""What the traced test clients and servers share: the SDK's tracer
provider, and running a client's connections on threads of their own."""

import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def tracer_provider(service, otlp):
    """The global tracer provider of `service`; with `otlp` (an OTLP/gRPC
    endpoint) its spans are exported there every 200 ms."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp, insecure=True)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    return provider


def on_threads(count, run):
    """Runs `run` on `count` threads at once and waits for them all."""
    workers = [threading.Thread(target=run) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
