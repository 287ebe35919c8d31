//! Log and span requests kept in their protobuf encoding, for pipelines
//! where nothing reads the records (`otlp` → `batch` → `otlp_grpc`): they
//! are checked as a decoder would check them, counted, concatenated into
//! batches and sent as they came, never decoded into the OTLP tree.
//!
//! The check walks the wire format against the OTLP schema without
//! allocating: every known field must have its wire type, every string be
//! UTF-8, every message end where its length says, trace and span ids have
//! OTLP's lengths, nesting stay within prost's limit. What fails is decoded
//! instead, with the usual errors. Two requests concatenated are one valid
//! request (their `resource_*` lists joined), which is how batches form.

use super::{Payload, Signal};
use crate::export::decode_protobuf;

/// prost's nesting limit.
const MAX_DEPTH: u32 = 100;
/// What one decoded message (a key-value, a value, a record) takes at
/// most in the OTLP tree, besides its strings and bytes.
const DECODED_MESSAGE_BYTES: usize = 128;

/// An export request of logs or traces in its protobuf encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    signal: Signal,
    bytes: Vec<u8>,
    items: usize,
}

impl Encoded {
    /// The request in `bytes` if it passes the check (see the module) and
    /// its decoded tree would take at most `max_decoded` bytes (so that
    /// decoding it later, to split it, stays within the memory the
    /// receiver allows a request); the bytes back otherwise. Metrics are
    /// never kept encoded.
    pub fn check(signal: Signal, bytes: Vec<u8>, max_decoded: usize) -> Result<Encoded, Vec<u8>> {
        let root = match signal {
            Signal::Logs => Kind::LogsRequest,
            Signal::Traces => Kind::TracesRequest,
            Signal::Metrics => return Err(bytes),
        };
        let mut count = Count::default();
        let decoded = |count: &Count| count.messages.saturating_mul(DECODED_MESSAGE_BYTES).saturating_add(bytes.len());
        match walk(root, &bytes, 0, &mut count) {
            Some(()) if decoded(&count) <= max_decoded => Ok(Encoded { signal, bytes, items: count.items }),
            _ => Err(bytes),
        }
    }

    /// The signal.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Log records or spans.
    pub fn items(&self) -> usize {
        self.items
    }

    /// The protobuf encoding of the export request.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Joins another request of the same signal after this one.
    pub(super) fn append(&mut self, other: Encoded) {
        self.bytes.extend_from_slice(&other.bytes);
        self.items += other.items;
    }

    /// The request decoded into the OTLP tree (empty should the bytes not
    /// decode, which the check rules out).
    pub fn decode(&self) -> Payload {
        decode_protobuf(self.signal, &self.bytes).unwrap_or_else(|error| {
            tracing::error!(%error, "A checked request did not decode; dropping it.");
            Payload::empty(self.signal)
        })
    }
}

/// The messages of the logs and traces requests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    LogsRequest,
    TracesRequest,
    ResourceLogs,
    ResourceSpans,
    Resource,
    EntityRef,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    Scope,
    ScopeLogs,
    ScopeSpans,
    LogRecord,
    Span,
    Event,
    Link,
    Status,
}

/// What a known field holds.
#[derive(Clone, Copy)]
enum Field {
    Varint,
    Fixed64,
    Fixed32,
    Text,
    Bytes,
    /// A trace or span id of `len` bytes; `required` ones may not be empty.
    Id {
        len: usize,
        required: bool,
    },
    Message(Kind),
    /// A log record or a span: counted.
    Item(Kind),
}

/// The schema: `None` for a field the message does not know (skipped, as
/// decoders skip unknown fields).
fn field(kind: Kind, tag: u64) -> Option<Field> {
    use Field::{Bytes, Fixed32, Fixed64, Id, Item, Message, Text, Varint};
    Some(match (kind, tag) {
        (Kind::LogsRequest, 1) => Message(Kind::ResourceLogs),
        (Kind::TracesRequest, 1) => Message(Kind::ResourceSpans),
        (Kind::ResourceLogs | Kind::ResourceSpans, 1) => Message(Kind::Resource),
        (Kind::ResourceLogs, 2) => Message(Kind::ScopeLogs),
        (Kind::ResourceSpans, 2) => Message(Kind::ScopeSpans),
        (Kind::ResourceLogs | Kind::ResourceSpans | Kind::ScopeLogs | Kind::ScopeSpans, 3) => Text,
        (Kind::Resource, 1) => Message(Kind::KeyValue),
        (Kind::Resource, 2) => Varint,
        (Kind::Resource, 3) => Message(Kind::EntityRef),
        (Kind::EntityRef, 1..=4) => Text,
        (Kind::KeyValue, 1) => Text,
        (Kind::KeyValue, 2) => Message(Kind::AnyValue),
        (Kind::KeyValue, 3) => Varint,
        (Kind::AnyValue, 1) => Text,
        (Kind::AnyValue, 2 | 3 | 8) => Varint,
        (Kind::AnyValue, 4) => Fixed64,
        (Kind::AnyValue, 5) => Message(Kind::ArrayValue),
        (Kind::AnyValue, 6) => Message(Kind::KeyValueList),
        (Kind::AnyValue, 7) => Bytes,
        (Kind::ArrayValue, 1) => Message(Kind::AnyValue),
        (Kind::KeyValueList, 1) => Message(Kind::KeyValue),
        (Kind::Scope, 1 | 2) => Text,
        (Kind::Scope, 3) => Message(Kind::KeyValue),
        (Kind::Scope, 4) => Varint,
        (Kind::ScopeLogs | Kind::ScopeSpans, 1) => Message(Kind::Scope),
        (Kind::ScopeLogs, 2) => Item(Kind::LogRecord),
        (Kind::ScopeSpans, 2) => Item(Kind::Span),
        (Kind::LogRecord, 1 | 11) => Fixed64,
        (Kind::LogRecord, 2 | 7) => Varint,
        (Kind::LogRecord, 3 | 12) => Text,
        (Kind::LogRecord, 5) => Message(Kind::AnyValue),
        (Kind::LogRecord, 6) => Message(Kind::KeyValue),
        (Kind::LogRecord, 8) => Fixed32,
        (Kind::LogRecord, 9) => Id { len: 16, required: false },
        (Kind::LogRecord, 10) => Id { len: 8, required: false },
        (Kind::Span, 1) => Id { len: 16, required: true },
        (Kind::Span, 2) => Id { len: 8, required: true },
        (Kind::Span, 3 | 5) => Text,
        (Kind::Span, 4) => Id { len: 8, required: false },
        (Kind::Span, 6 | 10 | 12 | 14) => Varint,
        (Kind::Span, 7 | 8) => Fixed64,
        (Kind::Span, 9) => Message(Kind::KeyValue),
        (Kind::Span, 11) => Message(Kind::Event),
        (Kind::Span, 13) => Message(Kind::Link),
        (Kind::Span, 15) => Message(Kind::Status),
        (Kind::Span, 16) => Fixed32,
        (Kind::Event, 1) => Fixed64,
        (Kind::Event, 2) => Text,
        (Kind::Event, 3) => Message(Kind::KeyValue),
        (Kind::Event, 4) => Varint,
        (Kind::Link, 1) => Id { len: 16, required: true },
        (Kind::Link, 2) => Id { len: 8, required: true },
        (Kind::Link, 3) => Text,
        (Kind::Link, 4) => Message(Kind::KeyValue),
        (Kind::Link, 5) => Varint,
        (Kind::Link, 6) => Fixed32,
        (Kind::Status, 2) => Text,
        (Kind::Status, 3) => Varint,
        _ => return None,
    })
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (index, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *buf = &buf[index + 1..];
            return Some(value);
        }
    }
    None
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if buf.len() < len {
        return None;
    }
    let (taken, rest) = buf.split_at(len);
    *buf = rest;
    Some(taken)
}

fn delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).ok()?;
    take(buf, len)
}

/// Skips an unknown field's value (groups are left to the decoder).
fn skip(wire: u64, buf: &mut &[u8]) -> Option<()> {
    match wire {
        0 => varint(buf).map(drop),
        1 => take(buf, 8).map(drop),
        2 => delimited(buf).map(drop),
        5 => take(buf, 4).map(drop),
        _ => None,
    }
}

/// What a walk counts.
#[derive(Default)]
struct Count {
    /// Log records or spans.
    items: usize,
    /// Messages of any kind.
    messages: usize,
}

/// Checks one message of `kind`, counting it and what it holds.
fn walk(kind: Kind, mut buf: &[u8], depth: u32, count: &mut Count) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    count.messages += 1;
    // The required ids seen: bit 0 the trace id, bit 1 the span id.
    let mut required = 0u8;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (tag, wire) = (key >> 3, key & 7);
        if tag == 0 {
            return None;
        }
        let Some(field) = field(kind, tag) else {
            skip(wire, &mut buf)?;
            continue;
        };
        match (field, wire) {
            (Field::Varint, 0) => drop(varint(&mut buf)?),
            (Field::Fixed64, 1) => drop(take(&mut buf, 8)?),
            (Field::Fixed32, 5) => drop(take(&mut buf, 4)?),
            (Field::Text, 2) => drop(std::str::from_utf8(delimited(&mut buf)?).ok()?),
            (Field::Bytes, 2) => drop(delimited(&mut buf)?),
            (Field::Id { len, required: must }, 2) => {
                let id = delimited(&mut buf)?;
                if id.len() != len && (must || !id.is_empty()) {
                    return None;
                }
                if must {
                    required |= if len == 16 { 1 } else { 2 };
                }
            }
            (Field::Message(child), 2) => walk(child, delimited(&mut buf)?, depth + 1, count)?,
            (Field::Item(child), 2) => {
                count.items += 1;
                walk(child, delimited(&mut buf)?, depth + 1, count)?;
            }
            _ => return None,
        }
    }
    let needs_ids = matches!(kind, Kind::Span | Kind::Link);
    (!needs_ids || required == 3).then_some(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        trace::v1::{ResourceSpans, ScopeSpans, Span, span::Link},
    };
    use prost::Message as _;

    use super::*;

    fn check(signal: Signal, bytes: Vec<u8>) -> Result<Encoded, Vec<u8>> {
        Encoded::check(signal, bytes, 64 << 20)
    }

    fn logs(records: Vec<LogRecord>) -> Vec<u8> {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    fn record(text: &str) -> LogRecord {
        let nested = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(Value::StringValue(text.into())) }],
            })),
        };
        LogRecord {
            attributes: vec![KeyValue { key: "k".into(), value: Some(nested), ..Default::default() }],
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        }
    }

    #[test]
    fn valid_requests_are_counted_and_concatenate_into_one() {
        let mut first = check(Signal::Logs, logs(vec![record("a"), record("b")])).unwrap();
        let second = check(Signal::Logs, logs(vec![record("c")])).unwrap();
        assert_eq!((first.items(), second.items()), (2, 1));
        first.append(second);
        let decoded = first.decode();
        assert_eq!(decoded.item_count(), 3);
        let Payload::Logs(resources) = decoded else { panic!("logs") };
        assert_eq!(resources.len(), 2, "the two requests' resources, one after the other");
    }

    #[test]
    fn what_a_decoder_or_otlp_refuses_is_not_kept_encoded() {
        // Not UTF-8, deep inside an attribute's array value.
        let mut bytes = logs(vec![record("zz")]);
        let at = bytes.windows(2).position(|w| w == b"zz").unwrap();
        bytes[at] = 0xff;
        assert!(check(Signal::Logs, bytes).is_err());
        // A span id of the wrong length; a span without its trace id; a link's.
        let mut short = record("a");
        short.span_id = vec![2; 3];
        assert!(check(Signal::Logs, logs(vec![short])).is_err());
        let spans = |span: Span| {
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                    ..Default::default()
                }],
            }
            .encode_to_vec()
        };
        let good = Span { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() };
        assert_eq!(check(Signal::Traces, spans(good.clone())).map(|e| e.items()), Ok(1));
        assert!(check(Signal::Traces, spans(Span { trace_id: Vec::new(), ..good.clone() })).is_err());
        let link = Link { trace_id: vec![1; 16], ..Default::default() };
        assert!(check(Signal::Traces, spans(Span { links: vec![link], ..good })).is_err());
        // Cut short; a field of the wrong wire type; nesting past the limit.
        let bytes = logs(vec![record("a")]);
        assert!(check(Signal::Logs, bytes[..bytes.len() - 1].to_vec()).is_err());
        assert!(check(Signal::Logs, vec![0x08, 0x01]).is_err());
        let mut deep = AnyValue::default();
        for _ in 0..120 {
            deep = AnyValue { value: Some(Value::ArrayValue(ArrayValue { values: vec![deep] })) };
        }
        let nested = LogRecord { body: Some(deep), ..Default::default() };
        assert!(check(Signal::Logs, logs(vec![nested])).is_err());
        // More decoded than allowed: 100,000 empty attributes in 200 KB.
        let bomb = LogRecord { attributes: vec![KeyValue::default(); 100_000], ..Default::default() };
        let bytes = logs(vec![bomb]);
        assert!(bytes.len() < 300_000);
        assert!(Encoded::check(Signal::Logs, bytes, 4 << 20).is_err());
        // Unknown fields pass, as decoders skip them.
        let mut extra = logs(vec![record("a")]);
        extra.extend_from_slice(&[0xf8, 0x01, 0x07]);
        assert!(check(Signal::Logs, extra).is_ok());
    }
}
