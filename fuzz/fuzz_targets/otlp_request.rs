//! An OTLP/HTTP or OTLP/gRPC request body, decoded as the `otlp` receiver
//! decodes it (protobuf or JSON; gzip, zstd, deflate or none), then put
//! through what every payload meets: id checks, size accounting, splitting
//! and both export encodings.
//!
//! The first byte picks the signal, the encoding and the compression; the
//! rest is the body.
#![no_main]

use bytes::Bytes;
use flowtel_core::{
    Signal,
    export::{encode_json, encode_protobuf},
};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else { return };
    let signal = [Signal::Logs, Signal::Metrics, Signal::Traces][usize::from(choice % 3)];
    let content_type = if choice & 0x04 == 0 { "application/x-protobuf" } else { "application/json" };
    let encoding = ["identity", "gzip", "zstd", "deflate"][usize::from((choice >> 3) % 4)];
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    headers.insert(http::header::CONTENT_ENCODING, http::HeaderValue::from_static(encoding));
    let Ok(mut payload) = flowtel_receiver::otlp::decode_body(signal, &headers, Bytes::copy_from_slice(body), LIMIT)
    else {
        return;
    };
    payload.remove_malformed_ids();
    let _ = payload.heap_size();
    let items = payload.item_count();
    let front = payload.split_front(items / 2);
    assert_eq!(front.item_count() + payload.item_count(), items, "splitting keeps every item");
    let _ = encode_protobuf(&front);
    let _ = encode_json(&payload);
});
