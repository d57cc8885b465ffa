//! The underlay neighbours (other hosts' VTEPs) and upstream routers this
//! node resolved, kept beside the model (`<state_file>.neighbors`) so that
//! a restarted node forwards its first frames without asking by ARP first
//! (a restart would otherwise drop them as `vtep_unresolved` /
//! `upstream_unresolved` until the answers come). Written by the resolver
//! when a MAC is new or changed; read at start, by the first publication of
//! the saved model (the workers never see the model without them). A restored MAC is only a head
//! start: the resolver asks for every neighbour at its first tick, as
//! before, and an answer with another MAC replaces it.
//!
//! The file is one `IP MAC` pair a line. A missing or unreadable file, or a
//! bad line, costs only the head start: the line is skipped with a warning.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use dvr::compile::Compiler;
use dvr::mac::MacAddr;

use crate::report::View;

/// Where the neighbours of the model in `state_file` are kept.
pub fn path_of(state_file: &Path) -> PathBuf {
    let mut name = state_file.as_os_str().to_owned();
    name.push(".neighbors");
    PathBuf::from(name)
}

/// Reads the saved pairs; bad lines are skipped (and logged).
pub fn load(path: &Path) -> Vec<(Ipv4Addr, MacAddr)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "saved neighbours not read");
            return Vec::new();
        }
    };
    parse(&text, path)
}

fn parse(text: &str, path: &Path) -> Vec<(Ipv4Addr, MacAddr)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut w = line.split_whitespace();
        match (
            w.next().and_then(|s| s.parse().ok()),
            w.next().and_then(|s| s.parse().ok()),
            w.next(),
        ) {
            (Some(ip), Some(mac), None) => out.push((ip, mac)),
            _ => tracing::warn!(
                file = %path.display(), line = n + 1,
                "saved neighbour line skipped: not `IP MAC`"
            ),
        }
    }
    out
}

/// Writes `pairs` (sorted) to `path` through a temporary file and a rename:
/// a reader sees the old file or the new one. Not synced: losing it to a
/// power cut costs only an ARP round after the next start.
pub fn save(path: &Path, pairs: &BTreeMap<Ipv4Addr, MacAddr>) -> std::io::Result<()> {
    let mut text = String::from("# underlay neighbours and upstream routers resolved by dvr-pmd\n");
    for (ip, mac) in pairs {
        text += &format!("{ip} {mac}\n");
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// What the resolver keeps in step with the published tables.
pub struct Saved {
    path: PathBuf,
    last: BTreeMap<Ipv4Addr, MacAddr>,
    /// Restored at start and not answered by ARP yet.
    unconfirmed: Vec<Ipv4Addr>,
}

impl Saved {
    /// `restored`: the neighbours [`restore`] published.
    pub fn new(path: PathBuf, restored: Vec<Ipv4Addr>) -> Saved {
        Saved {
            path,
            last: BTreeMap::new(),
            unconfirmed: restored,
        }
    }

    /// An answer from `ip` came: true the first time for a restored one
    /// (the resolver then says it resolved it, as it says of a new one).
    pub fn confirm(&mut self, ip: Ipv4Addr) -> bool {
        let before = self.unconfirmed.len();
        self.unconfirmed.retain(|&u| u != ip);
        self.unconfirmed.len() != before
    }

    /// Saves the resolved MACs of the published tables if they changed
    /// since the last save.
    pub fn follow(&mut self, view: &View) {
        let now: BTreeMap<Ipv4Addr, MacAddr> = view
            .tables
            .load()
            .node
            .vtep_macs
            .iter()
            .map(|(ip, mac)| (*ip, *mac))
            .collect();
        if now == self.last {
            return;
        }
        match save(&self.path, &now) {
            Ok(()) => self.last = now,
            Err(e) => {
                // Said once per change; tried again at the next change.
                tracing::warn!(file = %self.path.display(), error = %e, "neighbours not saved");
                self.last = now;
            }
        }
    }
}

/// Sets the saved MACs of the neighbours `c`'s model has (other hosts'
/// VTEPs, upstream routers) in its current snapshot; returns their
/// addresses. Called by the first publication of the saved model, so that
/// the workers never see the model without them (a take-over's workers
/// already run).
pub fn restore(c: &mut Compiler, path: &Path) -> Vec<Ipv4Addr> {
    let saved = load(path);
    if saved.is_empty() {
        return Vec::new();
    }
    let vteps = c.vteps();
    let upstreams = c.upstreams();
    let mut n = Vec::new();
    for (ip, mac) in saved {
        let upstream = upstreams.iter().any(|u| u.0 == ip);
        if !vteps.contains(&ip) && !upstream {
            continue;
        }
        c.set_vtep_mac(ip, mac);
        if upstream {
            tracing::info!(upstream = %ip, %mac, "upstream router restored");
        } else {
            tracing::info!(vtep = %ip, %mac, "underlay neighbour restored");
        }
        n.push(ip);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_pairs_read_back_and_bad_lines_skipped() {
        let dir = std::env::temp_dir().join(format!("dvr-neigh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_of(&dir.join("model.json"));
        assert!(path.ends_with("model.json.neighbors"));
        assert!(load(&path).is_empty(), "no file: nothing");
        let mut m = BTreeMap::new();
        let a: MacAddr = "02:00:00:00:00:02".parse().unwrap();
        let b: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        m.insert(Ipv4Addr::new(192, 0, 2, 2), a);
        m.insert(Ipv4Addr::new(192, 0, 2, 1), b);
        save(&path, &m).unwrap();
        assert_eq!(
            load(&path),
            [
                (Ipv4Addr::new(192, 0, 2, 1), b),
                (Ipv4Addr::new(192, 0, 2, 2), a)
            ]
        );
        let text = "192.0.2.9 02:00:00:00:00:09\nnot a line\n192.0.2.300 02:00:00:00:00:01\n\
                    192.0.2.8 02:00:00:00:00:08 extra\n";
        assert_eq!(
            parse(text, &path),
            [(
                Ipv4Addr::new(192, 0, 2, 9),
                "02:00:00:00:00:09".parse().unwrap()
            )]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_restored_neighbour_is_confirmed_once() {
        let (a, b) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let mut s = Saved::new(PathBuf::from("/nonexistent/n"), vec![a]);
        assert!(!s.confirm(b), "not restored");
        assert!(s.confirm(a));
        assert!(!s.confirm(a), "once");
    }
}
