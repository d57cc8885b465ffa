//! dvr: the dataplane library of a distributed virtual router on DPDK.
//!
//! `sys` is the only module with `unsafe` code; everything else works on safe
//! types: packet bytes, tables, counters.
#![deny(unsafe_code)]

pub mod cli;
pub mod compile;
pub mod config;
pub mod fastpath;
pub mod fib;
pub mod gen;
pub mod l2;
pub mod mac;
pub mod metrics;
pub mod model;
pub mod nat;
pub mod pcap;
pub mod pcapng;
pub mod pipeline;
pub mod pkt;
pub mod proto;
pub mod punt;
pub mod stats;
pub mod sys;
pub mod tables;
#[doc(hidden)]
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod wire;
pub mod worker;
