//! A hand-over restart (`dvr-pmd --take-over`): the new process does the
//! slow part of a start (EAL, the mbuf pool, its devices and ports: about
//! 300 ms here, most of it in DPDK and the kernel) while the old one still
//! forwards, then stops the old one and forwards as soon as it holds the
//! model, a few milliseconds later. A stop and a start instead lose traffic
//! for the whole of the new start.
//!
//! 1. EAL starts under a file prefix of its own (`<prefix>-<pid>`): two
//!    primary processes never share one.
//! 2. The ports start and the workers run on the configuration's tables
//!    alone (no model): they drop what they receive (counted: unknown
//!    destinations and segments), as the old process forwards it. The old
//!    process is told to stop only once every worker has polled a while
//!    (its poll counter moved: 1024 polls): what the new ports received
//!    before is gone, not forwarded a second time with the model.
//! 3. The old process (the pid in `<state_file>.lock`, if it is a dvr-pmd)
//!    gets SIGTERM; it compacts the model, gives up the lock, stops its
//!    workers and closes its ports.
//! 4. The new process takes the lock (tried every millisecond), loads the
//!    model and publishes it: its workers forward from their next burst.
//!
//! Only for ports two processes can have open at once ([`check`], of the
//! configuration and of the interfaces added at run time):
//! `af_packet` (both receive every frame until the old one stops; tested),
//! vhost-user in client mode (QEMU's server socket: the new process's
//! connection waits in its backlog and QEMU takes it the moment the old one
//! closes; tested under real guests), and
//! the in-process `ring` and `null`. Refused for a PCI device (one owner at
//! a time), a `tap` (its interface exists until the old process ends), a
//! vhost-user server socket (the old process removes the path when it
//! ends), a pcap port (two writers of one file), and a static FDB (the new
//! workers would switch frames before the take-over): those need a stop and
//! a start. Nothing to take over (the lock is free): an ordinary start.

use std::path::Path;
use std::time::Duration;

use dvr::config::Config;
use dvr::proto::iface::{IfaceSpec, IfaceType};

/// How long the new process waits for the old one to give up the model.
pub const WAIT: Duration = Duration::from_secs(60);

/// Whether `cfg`'s ports can be taken over; the first that cannot, named.
pub fn check(cfg: &Config) -> Result<(), String> {
    use dvr::config::PortKind;
    for p in &cfg.ports {
        let (kind, why) = match &p.kind {
            PortKind::AfPacket { .. }
            | PortKind::VhostUser { client: true, .. }
            | PortKind::Ring { .. }
            | PortKind::Null => continue,
            PortKind::Pci { .. } => ("pci", "a PCI device has one owner at a time"),
            PortKind::Tap { .. } => ("tap", "its interface exists until the old process ends"),
            PortKind::VhostUser { client: false, .. } => (
                "vhost-user server",
                "the old process removes its socket when it ends (client mode can be taken over)",
            ),
            PortKind::Pcap { .. } => ("pcap", "two processes would write one file"),
        };
        return Err(format!(
            "port {} ({kind}) cannot be taken over: {why}; stop and start instead",
            p.name
        ));
    }
    // The interfaces added at run time, restored at start as well.
    if let Some(saved) = std::fs::read_to_string(crate::ifaces::saved_path(&cfg.state_file))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        let specs = saved["interfaces"].as_array().cloned().unwrap_or_default();
        for spec in specs {
            let Ok(spec) = serde_json::from_value::<IfaceSpec>(spec) else {
                continue;
            };
            let why = match spec.kind {
                IfaceType::AfPacket => continue,
                IfaceType::VhostUser if spec.client => continue,
                IfaceType::Tap => ("tap", "its interface exists until the old process ends"),
                IfaceType::VhostUser => (
                    "vhost-user server",
                    "the old process removes its socket when it ends (client mode can be taken over)",
                ),
            };
            return Err(format!(
                "interface {} ({}) cannot be taken over: {}; stop and start instead",
                spec.name, why.0, why.1
            ));
        }
    }
    if !cfg.l2.fdb.is_empty() {
        return Err(
            "a static FDB ([[l2.fdb]]) would switch frames before the take-over; stop and start instead"
                .into(),
        );
    }
    Ok(())
}

/// An EAL file prefix of this process's own.
pub fn own_prefix(cfg: &mut Config) {
    cfg.eal.file_prefix = Some(format!("{}-{}", cfg.file_prefix(), std::process::id()));
}

/// The pid of the dvr-pmd holding the lock of `state_file`, if one does.
pub fn holder(state_file: &Path) -> Option<u32> {
    let path = crate::control::lock_path(state_file);
    let f = std::fs::File::open(&path).ok()?;
    match f.try_lock_shared() {
        // Free: nobody to take over from.
        Ok(()) => return None,
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(_)) => return None,
    }
    let pid: u32 = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
    // Only ever a dvr-pmd (a pid written by another program, or reused).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dvr-pmd" && pid != std::process::id()).then_some(pid)
}

/// Waits until every worker's poll counter moved (at most `limit`): the
/// workers run their loop, the frames received before are dropped.
pub fn wait_polling(view: &crate::report::View, limit: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + limit;
    while view.counters.iter().any(|c| c.polls.get() == 0) {
        if std::time::Instant::now() >= deadline {
            return Err(format!("the workers did not poll within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Tells the old process to stop (SIGTERM).
pub fn stop(pid: u32) -> Result<(), String> {
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("kill -TERM {pid}: {st}"))
    }
}
