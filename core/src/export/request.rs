//! A payload as an OTLP export request, in either wire encoding, and the
//! partial-success part of the response.

use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
    trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use prost::Message as _;

use crate::{component::ExportOutcome, payload::Payload};

/// The OTLP export request of one signal.
#[derive(Clone, Debug, PartialEq)]
pub enum ExportRequest {
    /// `ExportLogsServiceRequest`.
    Logs(ExportLogsServiceRequest),
    /// `ExportMetricsServiceRequest`.
    Metrics(ExportMetricsServiceRequest),
    /// `ExportTraceServiceRequest`.
    Traces(ExportTraceServiceRequest),
}

impl ExportRequest {
    /// The request carrying a copy of `payload`.
    pub fn from_payload(payload: &Payload) -> Self {
        match payload {
            Payload::Logs(v) => ExportRequest::Logs(ExportLogsServiceRequest { resource_logs: v.clone() }),
            Payload::Metrics(v) => ExportRequest::Metrics(ExportMetricsServiceRequest { resource_metrics: v.clone() }),
            Payload::Traces(v) => ExportRequest::Traces(ExportTraceServiceRequest { resource_spans: v.clone() }),
        }
    }

    /// Protobuf encoding.
    pub fn encode_protobuf(&self) -> Vec<u8> {
        match self {
            ExportRequest::Logs(r) => r.encode_to_vec(),
            ExportRequest::Metrics(r) => r.encode_to_vec(),
            ExportRequest::Traces(r) => r.encode_to_vec(),
        }
    }

    /// OTLP/JSON encoding (hex ids, lowerCamelCase field names).
    pub fn encode_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            ExportRequest::Logs(r) => serde_json::to_vec(r),
            ExportRequest::Metrics(r) => serde_json::to_vec(r),
            ExportRequest::Traces(r) => serde_json::to_vec(r),
        }
    }

    /// Reads the partial success of a protobuf response to this request.
    /// An empty or unreadable body means full success, as the spec allows.
    pub fn outcome_of_protobuf_response(&self, body: &[u8]) -> ExportOutcome {
        let partial = match self {
            ExportRequest::Logs(_) => ExportLogsServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_log_records, p.error_message)),
            ExportRequest::Metrics(_) => ExportMetricsServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_data_points, p.error_message)),
            ExportRequest::Traces(_) => ExportTraceServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_spans, p.error_message)),
        };
        outcome(partial)
    }
}

/// An outcome from a partial success's `(rejected, message)`.
pub fn outcome(partial: Option<(i64, String)>) -> ExportOutcome {
    match partial {
        Some((rejected, message)) => ExportOutcome {
            rejected_items: u64::try_from(rejected).unwrap_or(0),
            message: (!message.is_empty()).then_some(message),
        },
        None => ExportOutcome::default(),
    }
}
