//! The gRPC services: Observer, Peer, health and reflection.

use std::{pin::Pin, sync::Arc, time::Duration};

use flowtel_core::self_telemetry::Counter;
use prost_types::Timestamp;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    field_mask::FieldMask,
    filter::Filters,
    proto::{
        flow::{Flow, LostEvent, LostEventSource},
        observer::{
            GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
            GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest,
            GetNodesResponse, Namespace, Node, ServerStatusRequest, ServerStatusResponse, Tls,
            get_flows_response::ResponseTypes, observer_server::Observer,
        },
        peer::{self, ChangeNotification, ChangeNotificationType, NotifyRequest, peer_server::Peer},
        relay::NodeState,
    },
    store::FlowStore,
};

/// Responses waiting for a slow client, per stream.
const STREAM_BUFFER: usize = 256;
/// Flows a request filters before it lets other requests run.
const YIELD_EVERY: usize = 256;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// What the services say about this server.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// This node's name.
    pub node_name: String,
    /// Where clients reach the server (`host:port`).
    pub address: String,
    /// The TLS server name when TLS is on.
    pub tls_server_name: Option<String>,
    /// The cluster name for `GetNamespaces`.
    pub cluster_name: String,
}

/// The Observer service over a [`FlowStore`].
pub struct ObserverService {
    /// The flows.
    pub store: Arc<FlowStore>,
    /// This server.
    pub info: ServerInfo,
    /// Flows live followers lost by falling behind.
    pub follower_lost: Counter,
}

fn unix_nanos(timestamp: &Timestamp) -> i128 {
    i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos)
}

fn response(flow: &Flow, mask: &FieldMask) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(mask.apply(flow))),
    }
}

/// The checked parts of a `GetFlowsRequest`.
struct Query {
    filters: Filters,
    mask: FieldMask,
    since: Option<i128>,
    until: Option<i128>,
}

impl Query {
    fn new(request: &GetFlowsRequest) -> Result<Self, Status> {
        if request.first && request.follow {
            return Err(Status::invalid_argument("first cannot be combined with follow"));
        }
        let filters = Filters::new(request.whitelist.clone(), request.blacklist.clone())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let paths = request
            .field_mask
            .as_ref()
            .or_else(|| request.experimental.as_ref().and_then(|e| e.field_mask.as_ref()))
            .map(|mask| mask.paths.clone())
            .unwrap_or_default();
        let mask = FieldMask::new(&paths).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let since = request.since.as_ref().map(unix_nanos);
        let until = request.until.as_ref().map(unix_nanos);
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            return Err(Status::invalid_argument("since is after until"));
        }
        Ok(Query { filters, mask, since, until })
    }

    fn in_time(&self, flow: &Flow) -> bool {
        let time = flow.time.as_ref().map_or(0, unix_nanos);
        self.since.is_none_or(|since| time >= since) && self.until.is_none_or(|until| time <= until)
    }

    fn wants(&self, flow: &Flow) -> bool {
        self.in_time(flow) && self.filters.allow(flow)
    }

    /// The flows of `history` the request asks for, in order. Yields to
    /// other requests every [`YIELD_EVERY`] flows, so a request over the
    /// whole ring never holds a thread for long.
    async fn select<'h>(&self, history: &'h [Arc<Flow>], request: &GetFlowsRequest) -> Vec<&'h Arc<Flow>> {
        let number = usize::try_from(request.number).unwrap_or(usize::MAX);
        // number 0: everything in range, except that a plain follow starts from now.
        if number == 0 && request.follow && self.since.is_none() {
            return Vec::new();
        }
        let mut matching = Vec::new();
        for (index, flow) in history.iter().enumerate() {
            if index % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
            if self.wants(flow) {
                matching.push(flow);
                if request.first && matching.len() == number {
                    break;
                }
            }
        }
        if number != 0 && !request.first {
            matching.drain(..matching.len().saturating_sub(number));
        }
        matching
    }
}

#[tonic::async_trait]
impl Observer for ObserverService {
    type GetFlowsStream = BoxStream<GetFlowsResponse>;
    type GetAgentEventsStream = BoxStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = BoxStream<GetDebugEventsResponse>;

    async fn get_flows(&self, request: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        let request = request.into_inner();
        let query = Query::new(&request)?;
        let (history, live) = self.store.history(request.follow);
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let lost_counter = self.follower_lost.clone();
        let node_name = self.info.node_name.clone();
        tokio::spawn(async move {
            for flow in query.select(&history, &request).await {
                if sender.send(Ok(response(flow, &query.mask))).await.is_err() {
                    return;
                }
            }
            drop(history);
            let Some(mut live) = live else { return };
            loop {
                let flow = tokio::select! {
                    () = sender.closed() => return,
                    next = live.recv() => next,
                };
                let message = match flow {
                    Ok(flow) if query.until.is_some_and(|until| flow.time.as_ref().map_or(0, unix_nanos) > until) => {
                        return;
                    }
                    Ok(flow) if query.wants(&flow) => response(&flow, &query.mask),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(lost)) => {
                        lost_counter.add(lost);
                        tracing::warn!(lost, "A Hubble follower fell behind; it is told how many flows it lost.");
                        GetFlowsResponse {
                            node_name: node_name.clone(),
                            time: Some(now()),
                            response_types: Some(ResponseTypes::LostEvents(LostEvent {
                                source: LostEventSource::HubbleRingBuffer as i32,
                                num_events_lost: lost,
                                cpu: None,
                            })),
                        }
                    }
                    Err(RecvError::Closed) => return,
                };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_agent_events(
        &self,
        _request: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }

    async fn get_debug_events(
        &self,
        _request: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }

    async fn get_nodes(&self, _request: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let (_, max_flows, _, uptime_ns) = self.store.status();
        let tls = Tls {
            enabled: self.info.tls_server_name.is_some(),
            server_name: self.info.tls_server_name.clone().unwrap_or_default(),
        };
        let nodes = self
            .store
            .nodes()
            .into_iter()
            .map(|(name, stats)| Node {
                name,
                version: version(),
                address: self.info.address.clone(),
                state: NodeState::NodeConnected as i32,
                tls: Some(tls.clone()),
                uptime_ns,
                num_flows: stats.held_flows,
                max_flows,
                seen_flows: stats.seen_flows,
            })
            .collect();
        Ok(Response::new(GetNodesResponse { nodes }))
    }

    async fn get_namespaces(
        &self,
        _request: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        let namespaces = self
            .store
            .namespaces()
            .into_iter()
            .map(|namespace| Namespace { cluster: self.info.cluster_name.clone(), namespace })
            .collect();
        Ok(Response::new(GetNamespacesResponse { namespaces }))
    }

    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let (num_flows, max_flows, seen_flows, uptime_ns) = self.store.status();
        let nodes = self.store.nodes().len() as u32;
        Ok(Response::new(ServerStatusResponse {
            num_flows,
            max_flows,
            seen_flows,
            uptime_ns,
            num_connected_nodes: Some(nodes),
            num_unavailable_nodes: Some(0),
            unavailable_nodes: Vec::new(),
            version: version(),
        }))
    }
}

fn version() -> String {
    format!("flowtel {}", env!("CARGO_PKG_VERSION"))
}

fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Timestamp { seconds: since_epoch.as_secs() as i64, nanos: since_epoch.subsec_nanos() as i32 }
}

/// The Peer service: this node and every node flows arrived from.
pub struct PeerService {
    /// The flows (and their nodes).
    pub store: Arc<FlowStore>,
    /// This server.
    pub info: ServerInfo,
}

impl PeerService {
    fn added(&self, name: String) -> ChangeNotification {
        ChangeNotification {
            name,
            address: self.info.address.clone(),
            r#type: ChangeNotificationType::PeerAdded as i32,
            tls: self.info.tls_server_name.clone().map(|server_name| peer::Tls { server_name }),
        }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    type NotifyStream = BoxStream<ChangeNotification>;

    async fn notify(&self, _request: Request<NotifyRequest>) -> Result<Response<Self::NotifyStream>, Status> {
        let (known, mut later) = self.store.watch_nodes();
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let initial: Vec<ChangeNotification> = known.into_iter().map(|name| self.added(name)).collect();
        let template = self.added(String::new());
        tokio::spawn(async move {
            for notification in initial {
                if sender.send(Ok(notification)).await.is_err() {
                    return;
                }
            }
            loop {
                let name = tokio::select! {
                    () = sender.closed() => return,
                    next = later.recv() => match next {
                        Ok(name) => name,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return,
                    },
                };
                if sender.send(Ok(ChangeNotification { name, ..template.clone() })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
