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

/// Flows seen per node since flowtel started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Flows from the node.
    pub seen_flows: u64,
}

struct Ring {
    flows: VecDeque<Arc<Flow>>,
    nodes: BTreeMap<String, NodeStats>,
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
            ring: Mutex::new(Ring { flows: VecDeque::with_capacity(max_flows), nodes }),
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
            }
            let flow = Arc::new(flow);
            if ring.flows.len() == self.max_flows {
                ring.flows.pop_front();
            }
            ring.flows.push_back(flow.clone());
            self.seen.fetch_add(1, Ordering::Relaxed);
            // No follower: nothing to do. A slow one lags; the broadcast never blocks.
            let _ = self.live.send(flow);
        }
    }

    /// The flows held now, oldest first, and (when `follow`) a subscription
    /// to every flow after them — taken together, so none is missed or repeated.
    pub fn history(&self, follow: bool) -> (Vec<Arc<Flow>>, Option<broadcast::Receiver<Arc<Flow>>>) {
        let ring = self.lock();
        (ring.flows.iter().cloned().collect(), follow.then(|| self.live.subscribe()))
    }

    /// `(held, capacity, seen since start, uptime in ns)`.
    pub fn status(&self) -> (u64, u64, u64, u64) {
        let held = self.lock().flows.len() as u64;
        (held, self.max_flows as u64, self.seen.load(Ordering::Relaxed), self.started.elapsed().as_nanos() as u64)
    }

    /// Every node known, with its stats and the flows of it held now.
    pub fn nodes(&self) -> Vec<(String, NodeStats, u64)> {
        let ring = self.lock();
        ring.nodes
            .iter()
            .map(|(name, stats)| {
                let held = ring.flows.iter().filter(|f| &f.node_name == name).count() as u64;
                (name.clone(), stats.clone(), held)
            })
            .collect()
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
            .flat_map(|f| [f.source.as_ref(), f.destination.as_ref()])
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
        let names: Vec<String> = store.nodes().into_iter().map(|(name, _, _)| name).collect();
        assert_eq!(names, ["gw-peer", "local"]);
    }
}
