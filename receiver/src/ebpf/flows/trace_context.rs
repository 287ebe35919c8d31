//! The kernel's per-connection trace contexts (read by the TC programs from
//! HTTP/1.x `traceparent` headers; each flow's key carries the one its
//! packets were seen with): removing those whose connection has gone.

use std::collections::{HashMap, HashSet};

use aya::maps::{HashMap as BpfHashMap, MapData};
use flowtel_ebpf_common::{ConnectionKey, ConnectionTrace, FlowKey, FlowStats, TRACE_CONTEXTS_MAP, ipproto};

use crate::ebpf::kernel::loader::{EbpfError, Probes, map_error};

/// The TCP connection a flow belongs to (`None` for other protocols).
pub fn connection_of(key: &FlowKey) -> Option<ConnectionKey> {
    (key.protocol == ipproto::TCP)
        .then(|| ConnectionKey::new(key.ip_version, &key.src_addr, key.src_port, &key.dst_addr, key.dst_port))
}

/// Each connection's current context, by connection.
pub type Contexts = HashMap<ConnectionKey, ConnectionTrace>;

/// Contexts to forget: those whose connection has no flow left in the
/// kernel's table and whose latest request is older than `idle_ns`.
pub fn gone(contexts: &Contexts, flows: &[(FlowKey, FlowStats)], now_ns: u64, idle_ns: u64) -> Vec<ConnectionKey> {
    let live: HashSet<ConnectionKey> = flows.iter().filter_map(|(key, _)| connection_of(key)).collect();
    contexts
        .iter()
        .filter(|(key, trace)| !live.contains(key) && now_ns.saturating_sub(trace.updated_ns) > idle_ns)
        .map(|(key, _)| *key)
        .collect()
}

impl Probes {
    /// Every connection's current context.
    pub fn trace_contexts(&self) -> Result<Contexts, EbpfError> {
        let fail = map_error(TRACE_CONTEXTS_MAP);
        let map = self.ebpf.map(TRACE_CONTEXTS_MAP).ok_or_else(|| fail("missing".into()))?;
        let contexts: BpfHashMap<&MapData, ConnectionKey, ConnectionTrace> =
            BpfHashMap::try_from(map).map_err(|e| fail(e.to_string()))?;
        // An entry removed while iterating is skipped.
        Ok(contexts.iter().filter_map(Result::ok).collect())
    }

    /// Forgets these connections' contexts.
    pub fn forget_trace_contexts(&mut self, keys: &[ConnectionKey]) {
        let Some(map) = self.ebpf.map_mut(TRACE_CONTEXTS_MAP) else { return };
        let Ok(mut contexts) = BpfHashMap::<&mut MapData, ConnectionKey, ConnectionTrace>::try_from(map) else {
            return;
        };
        for key in keys {
            let _ = contexts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use flowtel_ebpf_common::{IP_V4, TraceContext};

    use super::*;

    fn flow(src_port: u16, dst_port: u16, protocol: u8) -> FlowKey {
        FlowKey {
            src_addr: [10; 16],
            dst_addr: [20; 16],
            src_port,
            dst_port,
            protocol,
            ip_version: IP_V4,
            ..FlowKey::default()
        }
    }

    fn traced(updated_ns: u64) -> ConnectionTrace {
        ConnectionTrace { context: TraceContext { trace_id: [7; 16], ..TraceContext::default() }, updated_ns }
    }

    #[test]
    fn both_directions_of_a_connection_are_one_and_udp_none() {
        let request = flow(40_000, 80, ipproto::TCP);
        let response = FlowKey {
            src_addr: request.dst_addr,
            dst_addr: request.src_addr,
            src_port: 80,
            dst_port: 40_000,
            ..request
        };
        assert_eq!(connection_of(&request), connection_of(&response));
        assert_eq!(connection_of(&flow(40_000, 80, ipproto::UDP)), None);
    }

    #[test]
    fn only_contexts_of_idle_connections_without_flows_are_forgotten() {
        let (live, idle, recent) =
            (flow(1000, 80, ipproto::TCP), flow(1001, 80, ipproto::TCP), flow(1002, 80, ipproto::TCP));
        let contexts: Contexts = [
            (connection_of(&live).unwrap(), traced(0)),
            (connection_of(&idle).unwrap(), traced(0)),
            (connection_of(&recent).unwrap(), traced(90)),
        ]
        .into();
        let flows = [(live, FlowStats::default())];
        assert_eq!(gone(&contexts, &flows, 100, 50), vec![connection_of(&idle).unwrap()]);
    }
}
