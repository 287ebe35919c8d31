//! OTLP/gRPC: the three export services, served by tonic with a codec that
//! hands us the raw message, so decoding runs under the receiver's memory
//! budget and a decode failure can be answered with `INVALID_ARGUMENT`, as
//! the OTLP specification asks.

use std::{
    convert::Infallible,
    marker::PhantomData,
    task::{Context, Poll},
};

use bytes::{Buf as _, Bytes};
use futures::future::BoxFuture;
use prost::Message as _;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Status,
    body::Body,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    server::NamedService,
};

use super::{
    GrpcConfig, Intake, Refusal,
    budget::{MeteredBuf, Reservation},
    signal::{Logs, Metrics, OtlpSignal, Traces},
};

pub(super) fn serve(
    listener: TcpListener,
    config: &GrpcConfig,
    intake: Intake,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let max_message = config.max_recv_msg_size_mib as usize * 1024 * 1024;
    // A signal no pipeline takes from this receiver is not served, so its
    // clients get UNIMPLEMENTED, as from the collector.
    let mut routes = tonic::service::Routes::builder();
    if intake.accepts(Logs::SIGNAL) {
        routes.add_service(ExportService::<Logs>::new(intake.clone(), max_message));
    }
    if intake.accepts(Metrics::SIGNAL) {
        routes.add_service(ExportService::<Metrics>::new(intake.clone(), max_message));
    }
    if intake.accepts(Traces::SIGNAL) {
        routes.add_service(ExportService::<Traces>::new(intake, max_message));
    }
    let router = tonic::transport::Server::builder().add_routes(routes.routes());
    tokio::spawn(async move {
        let incoming = TcpListenerStream::new(listener);
        if let Err(err) = router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await {
            tracing::error!(error = %err, "OTLP/gRPC server failed.");
        }
    })
}

/// One signal's `Export` method.
struct ExportService<S> {
    intake: Intake,
    max_message: usize,
    signal: PhantomData<fn() -> S>,
}

impl<S> Clone for ExportService<S> {
    fn clone(&self) -> Self {
        ExportService { intake: self.intake.clone(), max_message: self.max_message, signal: PhantomData }
    }
}

impl<S: OtlpSignal> ExportService<S> {
    fn new(intake: Intake, max_message: usize) -> Self {
        ExportService { intake, max_message, signal: PhantomData }
    }
}

impl<S: OtlpSignal> NamedService for ExportService<S> {
    const NAME: &'static str = S::GRPC_SERVICE;
}

impl<S: OtlpSignal> tower::Service<http::Request<Body>> for ExportService<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if !request.uri().path().ends_with("/Export") {
                return Ok(Status::unimplemented("only Export is served").into_http());
            }
            // The message's size is only known once read: room for the
            // largest allowed is reserved before tonic reads it.
            let reservation = match service.intake.reserve(service.max_message as u64).await {
                Ok(reservation) => reservation,
                Err(refusal) => return Ok(status(refusal).into_http()),
            };
            let mut grpc = tonic::server::Grpc::new(RawCodec::<S::Response>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(service.max_message);
            let intake = service.intake.clone();
            let max_message = service.max_message;
            let response = grpc.unary(ExportCall::<S> { service, reservation: Some(reservation) }, request).await;
            Ok(refuse_oversized(response, &intake, max_message))
        })
    }
}

/// tonic answers a message over the size limit with `OUT_OF_RANGE`, which
/// OTLP clients retry; it can never fit, so it becomes `RESOURCE_EXHAUSTED`
/// without retry information (not retried), and is counted.
fn refuse_oversized(response: http::Response<Body>, intake: &Intake, max_message: usize) -> http::Response<Body> {
    let out_of_range = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|code| code == (Code::OutOfRange as i32).to_string());
    if !out_of_range {
        return response;
    }
    let limit = format!("max_recv_msg_size_mib ({} MiB)", max_message >> 20);
    status(intake.too_large("the request", limit)).into_http()
}

/// The gRPC status of a refusal.
fn status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::Malformed(message) => Status::invalid_argument(message),
        Refusal::TooLarge(message) => Status::resource_exhausted(message),
        Refusal::Unavailable(message) => Status::unavailable(message),
    }
}

/// One `Export` call, with the memory reserved for it.
struct ExportCall<S> {
    service: ExportService<S>,
    reservation: Option<Reservation>,
}

impl<S: OtlpSignal> tower::Service<tonic::Request<Bytes>> for ExportCall<S> {
    type Response = tonic::Response<S::Response>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let intake = self.service.intake.clone();
        let reservation = self.reservation.take();
        Box::pin(async move {
            let Some(mut reservation) = reservation else {
                return Err(Status::internal("one request per call"));
            };
            let peer = request.remote_addr();
            let message = match intake.keep_encoded(S::SIGNAL, request.into_inner()) {
                Ok(encoded) => {
                    let accepted = intake.accept_encoded(encoded, peer).await.map_err(status)?;
                    drop(reservation);
                    return Ok(tonic::Response::new(S::response(accepted.rejected, accepted.message)));
                }
                Err(message) => message,
            };
            let decoded = match reservation.metered(|meter| S::Request::decode(MeteredBuf::new(message, meter))) {
                Ok(Ok(decoded)) => decoded,
                Ok(Err(err)) => return Err(status(intake.malformed::<S>(err))),
                Err(no_room) => return Err(status(intake.no_room(no_room))),
            };
            let accepted = intake.accept::<S>(decoded, peer).await.map_err(status)?;
            drop(reservation);
            Ok(tonic::Response::new(S::response(accepted.rejected, accepted.message)))
        })
    }
}

/// Decodes nothing (hands over the message bytes), encodes a prost message.
struct RawCodec<T>(PhantomData<fn() -> T>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

impl<T: prost::Message + Send + 'static> Codec for RawCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = MessageEncoder<T>;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

struct MessageEncoder<T>(PhantomData<fn() -> T>);

impl<T: prost::Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|err| Status::internal(format!("cannot encode the response: {err}")))
    }
}

struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
