//! The node configuration (`dvr::config::Config::parse`: TOML, then the
//! checks of the whole) on any text (bytes that are not UTF-8 are read
//! lossily). Never panics; a configuration is accepted, or refused with an
//! error that names what is wrong; an accepted one gives its derived values
//! (EAL arguments, the NAT's port range and timeouts) without panicking.
#![no_main]

use dvr::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, "fuzz.toml") {
        Ok(cfg) => {
            let args = cfg.eal_args();
            assert!(args.len() >= 10, "EAL arguments {args:?}");
            assert!(!cfg.file_prefix().is_empty());
            let ports = cfg.nat.ports();
            assert!(*ports.start() >= 1 && ports.start() <= ports.end());
            let t = cfg.nat.table();
            assert!(t.timeouts.tcp_established_ms >= 1 && t.timeouts.udp_ms >= 1);
            assert!(!cfg.cores.workers.is_empty(), "accepted with no worker");
        }
        Err(e) => {
            match &e {
                ConfigError::Parse { origin, message } => {
                    assert_eq!(origin, "fuzz.toml");
                    assert!(!message.trim().is_empty(), "a parse error with no message");
                }
                ConfigError::Invalid {
                    origin,
                    key,
                    message,
                } => {
                    assert_eq!(origin, "fuzz.toml");
                    assert!(!key.is_empty(), "an error that names no key: {message}");
                    assert!(!message.trim().is_empty(), "`{key}`: no message");
                }
                ConfigError::Read { .. } => panic!("a read error from text: {e}"),
            }
            assert!(e.to_string().starts_with("fuzz.toml: "), "{e}");
        }
    }
});
