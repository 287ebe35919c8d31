//! An OTLP/gRPC logs and traces backend in the test process that keeps
//! only what the tests check: how many times each record or span
//! (`test.seq` under a resource's `test.run`) arrived. It takes hundreds of
//! thousands of records a second, where a recorder writing JSON would fall
//! behind.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{KeyValue, any_value::Value},
    resource::v1::Resource,
};
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<BTreeMap<String, BTreeMap<i64, u32>>>>;

/// A running sink.
pub struct Sink {
    seen: Seen,
    spans: Seen,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Service(Seen);

/// Counts the `test.seq` of each item of one resource under its `test.run`.
fn count<'a>(seen: &Seen, resource: Option<&Resource>, items: impl Iterator<Item = &'a [KeyValue]>) {
    let mut seen = seen.lock().unwrap();
    let run = resource
        .iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "test.run")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(run) => Some(run.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let counts = seen.entry(run).or_default();
    for attributes in items {
        let seq = attributes.iter().find(|kv| kv.key == "test.seq").and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                Value::IntValue(seq) => Some(*seq),
                _ => None,
            }
        });
        if let Some(seq) = seq {
            *counts.entry(seq).or_default() += 1;
        }
    }
}

#[tonic::async_trait]
impl LogsService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_logs {
            let records = resource.scope_logs.iter().flat_map(|s| &s.log_records).map(|r| r.attributes.as_slice());
            count(&self.0, resource.resource.as_ref(), records);
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            let spans = resource.scope_spans.iter().flat_map(|s| &s.spans).map(|s| s.attributes.as_slice());
            count(&self.0, resource.resource.as_ref(), spans);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Sink {
    /// Starts a sink on 127.0.0.1:`port` (with gzip and zstd accepted).
    pub fn start(port: u16) -> Sink {
        let (seen, spans) = (Seen::default(), Seen::default());
        let stop = CancellationToken::new();
        let service = LogsServiceServer::new(Service(seen.clone()))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
            .max_decoding_message_size(64 << 20);
        let traces = TraceServiceServer::new(Service(spans.clone()))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
            .max_decoding_message_size(64 << 20);
        let stopped = stop.clone();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                tonic::transport::Server::builder()
                    .add_service(service)
                    .add_service(traces)
                    .serve_with_shutdown(address, stopped.cancelled())
                    .await
                    .unwrap();
            });
        });
        crate::wait_for(std::time::Duration::from_secs(10), "the sink to listen", || {
            std::net::TcpStream::connect(address).ok()
        });
        Sink { seen, spans, stop, thread: Some(thread) }
    }

    /// How many times each record of `run` arrived, by its `test.seq`.
    pub fn seqs(&self, run: &str) -> BTreeMap<i64, u32> {
        self.seen.lock().unwrap().get(run).cloned().unwrap_or_default()
    }

    /// How many times each span of `run` arrived, by its `test.seq`.
    pub fn span_seqs(&self, run: &str) -> BTreeMap<i64, u32> {
        self.spans.lock().unwrap().get(run).cloned().unwrap_or_default()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
