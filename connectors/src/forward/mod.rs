//! The `forward` connector: what the pipelines exporting to it emit enters
//! the pipelines receiving from it, unchanged (the same signal on both
//! sides), so several pipelines can share the tail of a chain or one
//! pipeline's output can split into differently processed ones.

use flowtel_core::{Payload, component::Connector, config::Validate};
use serde::Deserialize;

/// `connectors::forward` takes no settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

impl Validate for ForwardConfig {}

/// The `forward` connector.
pub struct ForwardConnector;

impl Connector for ForwardConnector {
    fn consume(&self, payload: Payload, out: &mut Vec<Payload>) {
        out.push(payload);
    }
}
