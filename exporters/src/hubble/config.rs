//! `exporters::hubble` config.

use std::num::NonZeroUsize;

use flowtel_core::config::{HostPort, Validate};
pub use flowtel_core::export::ServerTls;
use serde::Deserialize;

/// `exporters::hubble`: serves the Hubble API (Observer, Peer) from flow
/// and drop records.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HubbleConfig {
    /// Where the gRPC server listens.
    pub endpoint: HostPort,
    /// Flows kept for `GetFlows` history (the newest; older ones are overwritten).
    pub max_flows: NonZeroUsize,
    /// Flows a live follower may fall behind before it is told it lost some.
    pub follower_buffer: NonZeroUsize,
    /// This node's name, for flows whose records name none (default: the host name).
    pub node_name: Option<String>,
    /// The cluster name reported in `GetNamespaces`.
    pub cluster_name: String,
    /// TLS for the server; plaintext without it.
    pub tls: Option<ServerTls>,
}

impl Default for HubbleConfig {
    fn default() -> Self {
        HubbleConfig {
            endpoint: HostPort::new("127.0.0.1", 4245),
            max_flows: NonZeroUsize::new(4095).unwrap_or(NonZeroUsize::MIN),
            follower_buffer: NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN),
            node_name: None,
            cluster_name: "default".into(),
            tls: None,
        }
    }
}

impl Validate for HubbleConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Some(tls) = &self.tls {
            problems.extend(tls.problems());
        }
        if self.node_name.as_deref() == Some("") {
            problems.push(("node_name".into(), "must not be empty".into()));
        }
        problems
    }
}
