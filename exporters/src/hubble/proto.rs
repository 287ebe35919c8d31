//! The Hubble API subset flowtel serves, generated from `exporters/proto`.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Package `flow`: flows, filters and their parts.
pub mod flow {
    include!(concat!(env!("OUT_DIR"), "/flow.rs"));
}

/// Package `relay`: node states.
pub mod relay {
    include!(concat!(env!("OUT_DIR"), "/relay.rs"));
}

/// Package `observer`: the Observer service.
pub mod observer {
    include!(concat!(env!("OUT_DIR"), "/observer.rs"));
}

/// Package `peer`: the Peer service.
pub mod peer {
    include!(concat!(env!("OUT_DIR"), "/peer.rs"));
}

/// The encoded file descriptor set of every file above, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hubble_descriptor.bin"));
