//! Compiles the Hubble API subset in `proto/` (flowtel's own .proto files)
//! with protox (no system protoc) into tonic services and prost messages,
//! and keeps the file descriptor set for gRPC reflection.

use std::path::PathBuf;

use anyhow::Context as _;
use prost::Message as _;

const PROTOS: [&str; 4] = ["flow/flow.proto", "relay/relay.proto", "observer/observer.proto", "peer/peer.proto"];

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR not set")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"]).context("compiling the Hubble protos")?;
    std::fs::write(out.join("hubble_descriptor.bin"), descriptors.encode_to_vec())
        .context("writing the descriptor set")?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)
        .context("generating the Hubble services")?;
    Ok(())
}
