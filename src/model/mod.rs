//! The control-plane model: hosts, networks, subnets, ports, routers, floating IPs;
//! transactions validated whole and applied whole; persistence.
//!
//! - [`Model::apply`] runs a transaction: each change is validated against the state
//!   the changes before it left, then applied; every object a change replaces or
//!   removes goes into an undo log first, so a failing change rolls the model back
//!   to exactly where it was. One change costs the objects it touches (a router
//!   with its routes, a port): uniqueness (an address, a MAC) and the users of an
//!   object are looked up in a derived index (`index.rs`) that the writes and the
//!   undo log keep in step; never a scan or a copy of a whole map.
//! - The invariants live in `check.rs`, one function per kind, each checking one
//!   object against the objects it refers to; the same functions check a loaded
//!   file whole ([`Model::validate`]). Uniqueness (addresses, MACs, VTEPs,
//!   segments, ...) is expressed as *claims* an object makes: a change checks the
//!   claims its new object adds against the others, a load checks them all at once.
//! - `txn.rs` holds the per-change rules (transitions such as the DVR migration
//!   order, and the refusals to delete an object that is still used); `alloc.rs`
//!   the address arithmetic and MAC generation.

/// `return Err(ModelError(format!(...)))`.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::model::ModelError(format!($($t)*)))
    };
}

mod alloc;
mod check;
mod index;
mod store;
/// Writes a file atomically: `write` fills a temporary file in the same
/// directory, which is fsynced, renamed over `path`, and the directory is
/// fsynced. A crash at any point leaves either the old file or the new one.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let all = || -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    };
    let result = all();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
mod txn;
mod types;

pub use store::*;
pub use types::*;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The version of the file [`Model::save`] writes and [`Model::load`] reads.
pub const FORMAT_VERSION: u64 = 1;

/// The whole control-plane state. Objects are keyed by name (floating IPs by
/// address); the maps' keys always equal the objects' names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub hosts: BTreeMap<String, Host>,
    pub networks: BTreeMap<String, Network>,
    pub subnets: BTreeMap<String, Subnet>,
    pub ports: BTreeMap<String, Port>,
    pub routers: BTreeMap<String, Router>,
    pub floating_ips: BTreeMap<Ipv4Addr, FloatingIp>,
    /// Incremented once per committed transaction.
    pub generation: u64,
    /// Derived from the objects (`index.rs`): not saved, not compared.
    #[serde(skip)]
    index: index::Slot,
}

/// What a committed change created or touched, for the reply: `show` it for the
/// details (the address a floating IP got, the MAC and IPs a port got). Floating
/// IPs are named by their address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub kind: Kind,
    pub name: String,
}

/// A refused change or an unreadable model, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

/// The file format: the model under a version.
#[derive(Serialize)]
struct SavedRef<'a> {
    format: u64,
    model: &'a Model,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    #[allow(dead_code)] // checked before, through `SavedFormat`
    format: u64,
    model: Model,
}

/// The version alone, read first so that a file of another version gets a
/// message about its version rather than about its fields.
#[derive(Deserialize)]
struct SavedFormat {
    format: Option<serde_json::Value>,
}

impl Model {
    /// A transaction: every change is validated against the state left by the ones
    /// before it; if any fails, the model is left exactly as it was (an undo log
    /// holds the previous values of the objects touched) and the error names the
    /// failing change when there are several. On success `generation` grows by one.
    pub fn apply(&mut self, changes: &[Change]) -> Result<Vec<Applied>, ModelError> {
        if changes.is_empty() {
            bail!("empty transaction: nothing to change");
        }
        self.ensure_index();
        let mut log = Vec::new();
        let mut applied = Vec::with_capacity(changes.len());
        for (i, change) in changes.iter().enumerate() {
            match self.apply_one(change, &mut log) {
                Ok(a) => applied.push(a),
                Err(e) => {
                    self.rollback(log);
                    if changes.len() == 1 {
                        return Err(e);
                    }
                    bail!("change {} of {}: {}", i + 1, changes.len(), e.0);
                }
            }
        }
        self.generation += 1;
        Ok(applied)
    }

    /// One object as JSON (its serde form).
    pub fn show(&self, kind: Kind, name: &str) -> Result<serde_json::Value, ModelError> {
        let value = match kind {
            Kind::Host => self.hosts.get(name).map(serde_json::to_value),
            Kind::Network => self.networks.get(name).map(serde_json::to_value),
            Kind::Subnet => self.subnets.get(name).map(serde_json::to_value),
            Kind::Port => self.ports.get(name).map(serde_json::to_value),
            Kind::Router => self.routers.get(name).map(serde_json::to_value),
            Kind::FloatingIp => name
                .parse::<Ipv4Addr>()
                .ok()
                .and_then(|a| self.floating_ips.get(&a))
                .map(serde_json::to_value),
        };
        match value {
            Some(v) => Ok(v.expect("model objects serialize")),
            None if kind == Kind::FloatingIp => bail!("no floating IP {name}"),
            None => bail!("no {kind} named {name}"),
        }
    }

    /// All objects of a kind, in name order (floating IPs in address order), as JSON.
    pub fn list(&self, kind: Kind) -> Vec<serde_json::Value> {
        fn all<'a, T: Serialize + 'a>(it: impl Iterator<Item = &'a T>) -> Vec<serde_json::Value> {
            it.map(|o| serde_json::to_value(o).expect("model objects serialize"))
                .collect()
        }
        match kind {
            Kind::Host => all(self.hosts.values()),
            Kind::Network => all(self.networks.values()),
            Kind::Subnet => all(self.subnets.values()),
            Kind::Port => all(self.ports.values()),
            Kind::Router => all(self.routers.values()),
            Kind::FloatingIp => all(self.floating_ips.values()),
        }
    }

    /// Writes the model atomically ([`write_atomic`]).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        write_atomic(path, |w| {
            let saved = SavedRef {
                format: FORMAT_VERSION,
                model: self,
            };
            serde_json::to_writer_pretty(&mut *w, &saved)?;
            w.write_all(b"\n")
        })
    }

    /// Reads a saved model: a missing file is an empty model; a file that is not
    /// JSON, has another format version or breaks an invariant of the model is an
    /// error naming the file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let shown = path.display();
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Model::default()),
            Err(e) => bail!("cannot read model file {shown}: {e}"),
        };
        let format = match serde_json::from_slice::<SavedFormat>(&text) {
            Ok(f) => f.format,
            Err(e) => bail!("model file {shown} is corrupt (not valid JSON): {e}"),
        };
        match format {
            None => bail!("model file {shown} has no \"format\" field: not a dvr model file"),
            Some(v) if v.as_u64() == Some(FORMAT_VERSION) => {}
            Some(v) => bail!(
                "model file {shown} has format {v}; this dvr reads format {FORMAT_VERSION} only"
            ),
        }
        let mut saved: Saved = match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(e) => bail!("model file {shown} is invalid: {e}"),
        };
        if let Err(e) = saved.model.validate() {
            bail!("model file {shown} is invalid: {}", e.0);
        }
        saved.model.ensure_index();
        Ok(saved.model)
    }

    /// Checks every invariant of the model as a whole (what each change checks for
    /// the objects it touches): for a loaded or hand-edited file.
    pub fn validate(&self) -> Result<(), ModelError> {
        check::validate(self)
    }
}
