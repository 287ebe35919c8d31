//! A payload as an OTLP export request, in either wire encoding, written
//! straight from the payload (no copy of the data), and the partial-success
//! part of the response.

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
        trace::v1::ExportTraceServiceResponse,
    },
    logs::v1::ResourceLogs,
    metrics::v1::ResourceMetrics,
    trace::v1::ResourceSpans,
};
use prost::Message as _;
use serde::Serialize;

use crate::{
    component::ExportOutcome,
    payload::{Payload, Signal},
};

/// The protobuf encoding of the payload's export request: every request
/// type is `repeated Resource* = 1`, so the resources are written as field 1.
pub fn encode_protobuf(payload: &Payload) -> Vec<u8> {
    fn write<M: prost::Message>(items: &[M]) -> Vec<u8> {
        let length: usize = items.iter().map(|m| prost::encoding::message::encoded_len(1, m)).sum();
        let mut buf = Vec::with_capacity(length);
        for item in items {
            prost::encoding::message::encode(1, item, &mut buf);
        }
        buf
    }
    match payload {
        Payload::Logs(v) => write(v),
        Payload::Metrics(v) => write(v),
        Payload::Traces(v) => write(v),
        Payload::Encoded(encoded) => encoded.bytes().to_vec(),
    }
}

/// A payload from the protobuf encoding of its signal's export request.
pub fn decode_protobuf(signal: Signal, bytes: &[u8]) -> Result<Payload, prost::DecodeError> {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    };
    Ok(match signal {
        Signal::Logs => Payload::Logs(ExportLogsServiceRequest::decode(bytes)?.resource_logs),
        Signal::Metrics => Payload::Metrics(ExportMetricsServiceRequest::decode(bytes)?.resource_metrics),
        Signal::Traces => Payload::Traces(ExportTraceServiceRequest::decode(bytes)?.resource_spans),
    })
}

/// The payload's export request as OTLP/JSON would write it
/// (`{"resourceLogs": [...]}`, hex ids, 64-bit integers as strings).
#[derive(Serialize)]
#[serde(untagged)]
pub enum JsonRequest<'a> {
    /// `ExportLogsServiceRequest`.
    Logs {
        /// The resources.
        #[serde(rename = "resourceLogs")]
        resource_logs: &'a [ResourceLogs],
    },
    /// `ExportMetricsServiceRequest`.
    Metrics {
        /// The resources.
        #[serde(rename = "resourceMetrics")]
        resource_metrics: &'a [ResourceMetrics],
    },
    /// `ExportTraceServiceRequest`.
    Traces {
        /// The resources.
        #[serde(rename = "resourceSpans")]
        resource_spans: &'a [ResourceSpans],
    },
}

impl<'a> JsonRequest<'a> {
    /// A borrowed view of `payload` as a request. An encoded payload has
    /// no tree to borrow: decode it first ([`Payload::decoded`]); here it
    /// shows as an empty request of its signal.
    pub fn of(payload: &'a Payload) -> Self {
        match payload {
            Payload::Logs(v) => JsonRequest::Logs { resource_logs: v },
            Payload::Metrics(v) => JsonRequest::Metrics { resource_metrics: v },
            Payload::Traces(v) => JsonRequest::Traces { resource_spans: v },
            Payload::Encoded(encoded) => match encoded.signal() {
                Signal::Logs => JsonRequest::Logs { resource_logs: &[] },
                Signal::Metrics => JsonRequest::Metrics { resource_metrics: &[] },
                Signal::Traces => JsonRequest::Traces { resource_spans: &[] },
            },
        }
    }
}

/// OTLP/JSON encoding of the payload's export request.
pub fn encode_json(payload: &Payload) -> Result<Vec<u8>, serde_json::Error> {
    match payload {
        Payload::Encoded(encoded) => serde_json::to_vec(&JsonRequest::of(&encoded.decode())),
        tree => serde_json::to_vec(&JsonRequest::of(tree)),
    }
}

/// Reads the partial success of a protobuf response to an export of
/// `signal`. An empty or unreadable body means full success, as the spec allows.
pub fn outcome_of_protobuf_response(signal: Signal, body: &[u8]) -> ExportOutcome {
    let partial = match signal {
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points, p.error_message)),
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message)),
    };
    match partial {
        Some((rejected, message)) => ExportOutcome {
            rejected_items: u64::try_from(rejected).unwrap_or(0),
            message: (!message.is_empty()).then_some(message),
        },
        None => ExportOutcome::default(),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest,
        logs::v1::{LogRecord, ScopeLogs},
    };

    use super::*;

    #[test]
    fn both_encodings_are_the_standard_request() {
        let resource_logs = vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord { event_name: "network.flow".into(), ..Default::default() }; 3],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let expected = ExportLogsServiceRequest { resource_logs: resource_logs.clone() };
        let payload = Payload::Logs(resource_logs);
        assert_eq!(encode_protobuf(&payload), expected.encode_to_vec());
        let json = encode_json(&payload).expect("json");
        let decoded: ExportLogsServiceRequest = serde_json::from_slice(&json).expect("OTLP/JSON");
        assert_eq!(decoded, expected);
    }
}
