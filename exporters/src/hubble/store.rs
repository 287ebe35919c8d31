//! The flows the Hubble API serves: a bounded ring of the newest
//! `max_flows`, a broadcast to live followers that never makes the pipeline
//! wait, and what is known of the nodes the flows came from.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::sync::broadcast;

use super::proto::flow::Flow;

/// Encoded bytes the ring holds at most, whatever the size of its flows: a
/// sender cannot make `max_flows` huge flows take unbounded memory.
pub const MAX_RING_BYTES: usize = 32 << 20;

/// What is known of a node while the ring holds flows of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Flows from the node since it (last) appeared.
    pub seen_flows: u64,
    /// Flows of it the ring holds now.
    pub held_flows: u64,
}

struct Ring {
    /// The flows, oldest first, with their encoded sizes.
    flows: VecDeque<(Arc<Flow>, usize)>,
    bytes: usize,
    /// Nodes with flows in the ring, and the local node: bounded by the ring.
    nodes: BTreeMap<String, NodeStats>,
    local_node: String,
}

impl Ring {
    fn pop_oldest(&mut self) {
        let Some((flow, size)) = self.flows.pop_front() else { return };
        self.bytes -= size;
        if let Some(node) = self.nodes.get_mut(&flow.node_name) {
            node.held_flows -= 1;
            if node.held_flows == 0 && flow.node_name != self.local_node {
                self.nodes.remove(&flow.node_name);
            }
        }
    }
}

/// The ring, the followers' broadcast and the nodes.
pub struct FlowStore {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Flow>>,
    new_nodes: broadcast::Sender<String>,
    max_flows: usize,
    seen: AtomicU64,
    started: Instant,
}

impl FlowStore {
    /// A store keeping `max_flows` flows; followers may fall
    /// `follower_buffer` flows behind before they lose some. `local_node`
    /// is known from the start.
    pub fn new(max_flows: usize, follower_buffer: usize, local_node: &str) -> Self {
        let nodes = BTreeMap::from([(local_node.to_owned(), NodeStats::default())]);
        FlowStore {
            ring: Mutex::new(Ring {
                flows: VecDeque::with_capacity(max_flows),
                bytes: 0,
                nodes,
                local_node: local_node.to_owned(),
            }),
            live: broadcast::channel(follower_buffer).0,
            new_nodes: broadcast::channel(64).0,
            max_flows,
            seen: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic elsewhere never leaves the ring half-written: every update is one push or pop.
        self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds flows (the oldest fall out when full) and hands each to the
    /// live followers.
    pub fn push(&self, flows: impl IntoIterator<Item = Flow>) {
        let mut ring = self.lock();
        for flow in flows {
            if !ring.nodes.contains_key(&flow.node_name) {
                ring.nodes.insert(flow.node_name.clone(), NodeStats::default());
                let _ = self.new_nodes.send(flow.node_name.clone());
            }
            if let Some(node) = ring.nodes.get_mut(&flow.node_name) {
                node.seen_flows += 1;
                node.held_flows += 1;
            }
            let size = prost::Message::encoded_len(&flow);
            let flow = Arc::new(flow);
            while ring.flows.len() >= self.max_flows || (!ring.flows.is_empty() && ring.bytes + size > MAX_RING_BYTES) {
                ring.pop_oldest();
            }
            ring.bytes += size;
            ring.flows.push_back((flow.clone(), size));
            self.seen.fetch_add(1, Ordering::Relaxed);
            // No follower: nothing to do. A slow one lags; the broadcast never blocks.
            let _ = self.live.send(flow);
        }
    }

    /// The flows held now, oldest first, and (when `follow`) a subscription
    /// to every flow after them — taken together, so none is missed or repeated.
    pub fn history(&self, follow: bool) -> (Vec<Arc<Flow>>, Option<broadcast::Receiver<Arc<Flow>>>) {
        let ring = self.lock();
        (ring.flows.iter().map(|(flow, _)| flow.clone()).collect(), follow.then(|| self.live.subscribe()))
    }

    /// `(held, capacity, seen since start, uptime in ns)`.
    pub fn status(&self) -> (u64, u64, u64, u64) {
        let held = self.lock().flows.len() as u64;
        (held, self.max_flows as u64, self.seen.load(Ordering::Relaxed), self.started.elapsed().as_nanos() as u64)
    }

    /// Every node with flows held now, and the local node, with their stats.
    pub fn nodes(&self) -> Vec<(String, NodeStats)> {
        self.lock().nodes.iter().map(|(name, stats)| (name.clone(), stats.clone())).collect()
    }

    /// The node names known now, and a subscription to the ones that appear later.
    pub fn watch_nodes(&self) -> (Vec<String>, broadcast::Receiver<String>) {
        let ring = self.lock();
        (ring.nodes.keys().cloned().collect(), self.new_nodes.subscribe())
    }

    /// The Kubernetes namespaces of the flows held now.
    pub fn namespaces(&self) -> BTreeSet<String> {
        let ring = self.lock();
        ring.flows
            .iter()
            .flat_map(|(f, _)| [f.source.as_ref(), f.destination.as_ref()])
            .flatten()
            .filter(|e| !e.namespace.is_empty())
            .map(|e| e.namespace.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(node: &str, uuid: &str) -> Flow {
        Flow { node_name: node.into(), uuid: uuid.into(), ..Flow::default() }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_counts_all() {
        let store = FlowStore::new(3, 16, "local");
        store.push((0..5).map(|i| flow("local", &i.to_string())));
        let (held, _) = store.history(false);
        let uuids: Vec<&str> = held.iter().map(|f| f.uuid.as_str()).collect();
        assert_eq!(uuids, ["2", "3", "4"]);
        let (num, max, seen, _) = store.status();
        assert_eq!((num, max, seen), (3, 3, 5));
    }

    #[test]
    fn followers_get_what_comes_after_their_history_and_lag_without_blocking() {
        let store = FlowStore::new(100, 2, "local");
        store.push([flow("local", "a")]);
        let (held, live) = store.history(true);
        assert_eq!(held.len(), 1);
        let mut live = live.unwrap();
        store.push((0..5).map(|i| flow("gw-peer", &i.to_string())));
        assert!(matches!(live.try_recv(), Err(broadcast::error::TryRecvError::Lagged(3))));
        assert_eq!(live.try_recv().unwrap().uuid, "3");
        let names: Vec<String> = store.nodes().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["gw-peer", "local"]);
    }

    #[test]
    fn nodes_are_known_while_the_ring_holds_their_flows() {
        let store = FlowStore::new(2, 16, "local");
        store.push([flow("a", "1"), flow("b", "2")]);
        store.push([flow("c", "3"), flow("c", "4")]);
        let nodes: Vec<(String, u64)> = store.nodes().into_iter().map(|(name, s)| (name, s.held_flows)).collect();
        assert_eq!(nodes, [("c".to_owned(), 2), ("local".to_owned(), 0)]);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_too() {
        let store = FlowStore::new(1000, 16, "local");
        let big = |i: usize| Flow { summary: "x".repeat(MAX_RING_BYTES / 4), uuid: i.to_string(), ..Flow::default() };
        store.push((0..10).map(big));
        let (held, _) = store.history(false);
        assert_eq!(held.len(), 3, "three quarters of the byte bound and a bit more do not fit four");
        assert_eq!(held.last().unwrap().uuid, "9");
    }
}
