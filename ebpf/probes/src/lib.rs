//! Empty: the programs are in the `flowtel-probes` binary target. This lib
//! target lets the receiver name the crate as a build dependency, so cargo
//! rebuilds the receiver when the programs change.
#![no_std]
