"""Sends logs, spans and metrics to an OTLP endpoint with the official
OpenTelemetry Python SDK, over gRPC or HTTP.

Every item carries `test.seq` (its number) and the resource carries
`test.run` and `test.transport`, so the test can check each arrived once
with its resource, scope and attributes.
"""
import argparse
import logging

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def exporters(transport, endpoint):
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPLogExporter(endpoint=endpoint, insecure=True),
            OTLPSpanExporter(endpoint=endpoint, insecure=True),
            OTLPMetricExporter(endpoint=endpoint, insecure=True),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"),
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["grpc", "http"], required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--logs", type=int, default=0)
    parser.add_argument("--spans", type=int, default=0)
    parser.add_argument("--metric-points", type=int, default=0)
    args = parser.parse_args()

    resource = Resource.create({"service.name": "flowtel-e2e", "test.run": args.run, "test.transport": args.transport})
    log_exporter, span_exporter, metric_exporter = exporters(args.transport, args.endpoint)

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    logger = logger_provider.get_logger("flowtel.e2e.logs", "1.2.3")
    for seq in range(args.logs):
        logger.emit(
            body=f"record {seq}",
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes={"test.seq": seq, "network.transport": "tcp"},
        )

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    tracer = tracer_provider.get_tracer("flowtel.e2e.traces", "1.2.3")
    for seq in range(args.spans):
        with tracer.start_as_current_span(f"span {seq}", attributes={"test.seq": seq}):
            pass

    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)],
    )
    meter = meter_provider.get_meter("flowtel.e2e.metrics", "1.2.3")
    counter = meter.create_counter("e2e.requests", unit="1")
    for seq in range(args.metric_points):
        counter.add(seq + 1, {"test.seq": seq})

    ok = logger_provider.force_flush() and tracer_provider.force_flush()
    logger_provider.shutdown()
    tracer_provider.shutdown()
    # Shutdown collects and exports the metrics once (a flush before it
    # would export the same cumulative points a second time).
    meter_provider.shutdown()
    if not ok:
        raise SystemExit("flush did not complete")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
