//! The index the pipelines of one `trace_correlation` share: per TCP
//! connection, the spans seen on it and the kernel events that happened on
//! it, bounded in connections and per connection.

use std::{collections::VecDeque, net::SocketAddr, num::NonZeroUsize, sync::Arc};

use lru::LruCache;
use opentelemetry_proto::tonic::common::v1::KeyValue;

/// A TCP connection as both a span and a kernel record can name it: the
/// client's address and port, and the server's port. (A server span knows
/// its peer and its own port but often not its own address.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Connection {
    /// The client's end.
    pub client: SocketAddr,
    /// The server's port.
    pub server_port: u16,
}

impl Connection {
    /// The two connections a record between `a` and `b` can be (which end
    /// is the client is not known).
    pub fn candidates(a: SocketAddr, b: SocketAddr) -> [Connection; 2] {
        [Connection { client: a, server_port: b.port() }, Connection { client: b, server_port: a.port() }]
    }
}

/// The context a span gives the kernel records of its connection: its
/// trace, and the span id the kernel would have read from the request's
/// `traceparent` (the calling span's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The calling span's id.
    pub span_id: [u8; 8],
    /// W3C trace flags.
    pub flags: u32,
    /// When the span started (Unix ns).
    pub start: u64,
    /// When it ended (Unix ns).
    pub end: u64,
}

/// A kernel event of a connection, as a span event would show it.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelEvent {
    /// When it happened (Unix ns).
    pub time: u64,
    /// The record's event name (`network.tcp.retransmit`).
    pub name: String,
    /// What the record says besides the connection's addresses.
    pub attributes: Vec<KeyValue>,
}

#[derive(Default)]
struct Entry {
    spans: VecDeque<SpanContext>,
    /// Shared with the entry of the record's other end (either may be the client).
    events: VecDeque<Arc<KernelEvent>>,
}

/// How much slack a record's time gets against a span's window when no
/// span holds it exactly and it can wait no longer (kernel and application
/// clocks are the same clock, converted microseconds apart).
const SLACK_NS: u64 = 1_000_000;

/// The shared index.
pub struct Index {
    connections: LruCache<Connection, Entry>,
    /// Server spans' connections by (trace id, calling span id): how a
    /// client span that names only the server finds its connection.
    calls: LruCache<([u8; 16], [u8; 8]), Connection>,
    /// Client spans that name only the server, by (trace id, span id),
    /// until the server span they called shows their connection.
    unplaced: LruCache<([u8; 16], [u8; 8]), SpanContext>,
    per_connection: usize,
    /// Connections forgotten to stay within the bound.
    pub evicted: u64,
}

impl Index {
    /// An empty index of at most `connections` connections, `per_connection` spans and events each.
    pub fn new(connections: usize, per_connection: usize) -> Self {
        let bound = NonZeroUsize::new(connections).unwrap_or(NonZeroUsize::MIN);
        Index {
            connections: LruCache::new(bound),
            calls: LruCache::new(bound),
            unplaced: LruCache::new(bound),
            per_connection: per_connection.max(1),
            evicted: 0,
        }
    }

    /// Connections indexed now.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    fn entry(&mut self, connection: Connection) -> &mut Entry {
        // A new connection in a full cache pushes out the least recently used.
        if !self.connections.contains(&connection) && self.connections.push(connection, Entry::default()).is_some() {
            self.evicted += 1;
        }
        self.connections.get_mut(&connection).expect("just inserted")
    }

    /// Adds a span seen on `connection`.
    pub fn add_span(&mut self, connection: Connection, span: SpanContext) {
        let limit = self.per_connection;
        let spans = &mut self.entry(connection).spans;
        if spans.len() == limit {
            spans.pop_front();
        }
        spans.push_back(span);
    }

    /// Remembers that the server span called by (`trace_id`, `calling_span`)
    /// was on `connection`, which places the calling client span there too.
    pub fn add_call(&mut self, trace_id: [u8; 16], calling_span: [u8; 8], connection: Connection) {
        self.calls.put((trace_id, calling_span), connection);
        if let Some(client) = self.unplaced.pop(&(trace_id, calling_span)) {
            self.add_span(connection, client);
        }
    }

    /// Adds a client span that names only the server: on the connection
    /// of the server span it called, now or once that is seen.
    pub fn add_client_span(&mut self, span: SpanContext) {
        match self.call(span.trace_id, span.span_id) {
            Some(connection) => self.add_span(connection, span),
            None => {
                self.unplaced.put((span.trace_id, span.span_id), span);
            }
        }
    }

    /// The connection of the call a client span made, where its server span was seen.
    pub fn call(&mut self, trace_id: [u8; 16], span_id: [u8; 8]) -> Option<Connection> {
        self.calls.get(&(trace_id, span_id)).copied()
    }

    /// Adds a kernel event of a connection with `client` at one end (kept
    /// by the client's end alone: a span may not know the server's port).
    pub fn add_event(&mut self, client: SocketAddr, event: Arc<KernelEvent>) {
        let limit = self.per_connection;
        let events = &mut self.entry(Connection { client, server_port: 0 }).events;
        if events.len() == limit {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The span of one of `candidates` whose lifetime holds `time` (the
    /// latest started of them); with `near`, else one that holds it within
    /// the slack (a last resort: the span that holds it exactly may still
    /// be on its way).
    pub fn span_at(&mut self, candidates: &[Connection], time: u64, near: bool) -> Option<SpanContext> {
        let mut exact: Option<SpanContext> = None;
        let mut close: Option<SpanContext> = None;
        for connection in candidates {
            let Some(entry) = self.connections.get(connection) else { continue };
            for span in &entry.spans {
                let latest = |best: &Option<SpanContext>| best.is_none_or(|b| span.start > b.start);
                if (span.start..=span.end).contains(&time) {
                    if latest(&exact) {
                        exact = Some(*span);
                    }
                } else if (span.start.saturating_sub(SLACK_NS)..=span.end.saturating_add(SLACK_NS)).contains(&time)
                    && latest(&close)
                {
                    close = Some(*span);
                }
            }
        }
        exact.or(close.filter(|_| near))
    }

    /// The kernel events of `connection` during `start..=end`.
    pub fn events_during(&mut self, connection: Connection, start: u64, end: u64) -> Vec<Arc<KernelEvent>> {
        let by_client = Connection { server_port: 0, ..connection };
        let Some(entry) = self.connections.get(&by_client) else { return Vec::new() };
        let window = start..=end;
        entry.events.iter().filter(|event| window.contains(&event.time)).cloned().collect()
    }
}
