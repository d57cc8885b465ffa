//! dvr: the dataplane library of a distributed virtual router on DPDK.
//!
//! `dpdk` is the only module with `unsafe` code; everything else works on safe
//! types: packet bytes, tables, counters.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod dpdk;
pub mod fib;
pub mod flow;
pub mod gen;
pub mod l2;
pub mod mac;
pub mod model;
pub mod nat;
pub mod pcap;
pub mod pipeline;
pub mod pkt;
pub mod proto;
pub mod punt;
pub mod snapshot;
pub mod stats;
#[doc(hidden)]
pub mod testkit;
pub mod wire;
pub mod worker;
