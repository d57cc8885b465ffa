//! The control-plane model: hosts, networks, subnets, ports, routers, floating IPs;
//! transactions validated whole and applied whole; persistence.

mod types;

pub use types::*;
