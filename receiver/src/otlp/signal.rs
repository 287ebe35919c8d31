//! What the gRPC and HTTP servers share per signal: the request and response
//! types, the paths, and how a request becomes a [`Payload`].

use flowtel_core::{Payload, Signal};
use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse},
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use serde::{Serialize, de::DeserializeOwned};

/// One OTLP signal's export service.
pub(crate) trait OtlpSignal: Send + Sync + 'static {
    /// The export request.
    type Request: prost::Message + DeserializeOwned + Default + Send + 'static;
    /// The (empty) export response.
    type Response: prost::Message + Serialize + Default + Send + 'static;
    /// The signal.
    const SIGNAL: Signal;
    /// The gRPC service name.
    const GRPC_SERVICE: &'static str;
    /// Turns a request into a payload.
    fn into_payload(request: Self::Request) -> Payload;
    /// The response: full success, or a partial one naming what was rejected.
    fn response(rejected: u64, message: String) -> Self::Response;
}

/// Logs.
pub(crate) struct Logs;
/// Metrics.
pub(crate) struct Metrics;
/// Traces.
pub(crate) struct Traces;

impl OtlpSignal for Logs {
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    const SIGNAL: Signal = Signal::Logs;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    fn into_payload(request: Self::Request) -> Payload {
        Payload::Logs(request.resource_logs)
    }
    fn response(rejected: u64, message: String) -> Self::Response {
        let partial_success = (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message,
        });
        ExportLogsServiceResponse { partial_success }
    }
}

impl OtlpSignal for Metrics {
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    const SIGNAL: Signal = Signal::Metrics;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    fn into_payload(request: Self::Request) -> Payload {
        Payload::Metrics(request.resource_metrics)
    }
    fn response(rejected: u64, message: String) -> Self::Response {
        let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message,
        });
        ExportMetricsServiceResponse { partial_success }
    }
}

impl OtlpSignal for Traces {
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    fn into_payload(request: Self::Request) -> Payload {
        Payload::Traces(request.resource_spans)
    }
    fn response(rejected: u64, message: String) -> Self::Response {
        let partial_success = (rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message,
        });
        ExportTraceServiceResponse { partial_success }
    }
}
