"""Sends traces of two spans each, with one log record inside each trace,
to an OTLP/gRPC endpoint with the official OpenTelemetry Python SDK.

Spans and logs carry `test.trace` (the trace's number) and the SDK puts
the trace id on the log record, so a test can see that a sampler keeps
or drops each trace whole, its log included.
"""
import argparse

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--traces", type=int, required=True)
    args = parser.parse_args()

    resource = Resource.create({"service.name": "flowtel-e2e-sampling"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True)))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=args.endpoint, insecure=True)))
    tracer = tracer_provider.get_tracer("flowtel.e2e.sampling")
    logger = logger_provider.get_logger("flowtel.e2e.sampling")

    for trace in range(args.traces):
        with tracer.start_as_current_span(f"request {trace}", attributes={"test.trace": trace}):
            with tracer.start_as_current_span(f"query {trace}", attributes={"test.trace": trace}):
                logger.emit(body=f"log {trace}", attributes={"test.trace": trace})

    tracer_provider.shutdown()
    logger_provider.shutdown()


if __name__ == "__main__":
    main()
