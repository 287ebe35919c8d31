"""Sends one fixed set of metrics to an OTLP/HTTP endpoint with the official
OpenTelemetry Python SDK: a counter, an up-down counter, a histogram and a
gauge, recorded inside a sampled span so that the SDK attaches exemplars.
Prints the span's trace id (hex).
"""
import argparse

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args()

    resource = Resource.create(
        {"service.name": "checkout", "service.namespace": "shop", "service.instance.id": "checkout-1", "deployment.environment": "test"}
    )
    tracer = TracerProvider(resource=resource).get_tracer("sdk_metrics")
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{args.endpoint}/v1/metrics"), export_interval_millis=3_600_000
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("shop.checkout", "2.0.1")
    requests = meter.create_counter("http.server.requests", unit="{request}", description="Requests served.")
    active = meter.create_up_down_counter("http.server.active_requests", unit="{request}", description="Requests in flight.")
    duration = meter.create_histogram(
        "http.server.request.duration",
        unit="s",
        description="Time to serve a request.",
        explicit_bucket_boundaries_advisory=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    )
    meter.create_observable_gauge(
        "process.cpu.utilization",
        callbacks=[lambda _options: [Observation(0.25, {"cpu.mode": "user"})]],
        unit="1",
        description="CPU in use.",
    )
    meter.create_counter("shop.orders.total", description="Orders placed.").add(2, {"shop.region": "eu-1"})
    with tracer.start_as_current_span("GET /cart") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        requests.add(3, {"http.request.method": "GET", "http.response.status_code": 200})
        active.add(2, {"http.request.method": "GET"})
        active.add(-1, {"http.request.method": "GET"})
        for seconds in (0.004, 0.02, 0.02, 0.3):
            duration.record(seconds, {"http.request.method": "GET"})
    # Shutdown collects and exports once.
    provider.shutdown()
    print(trace_id)


if __name__ == "__main__":
    main()
