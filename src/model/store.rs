//! Persistence of the model: a base file plus an append-only journal of committed
//! transactions, compacted from time to time.
//!
//! - The base file (`model.json`) is a whole model written by [`Model::save`]; the
//!   journal (`model.json.journal`) holds one line per transaction committed since,
//!   `{"generation":N,"changes":[...]}`, where `N` is the model's generation after
//!   the transaction. A commit writes one line and fdatasyncs it: its cost is the
//!   size of the transaction, not of the model.
//! - When the journal holds more than [`Store::set_compact_every`] transactions
//!   (10 000 by default) or more than 64 MiB, the model is saved whole as the new
//!   base and the journal is truncated to zero length.
//! - Opening loads the base and replays the journal on top of it.
//!
//! Why a crash at any point loses no committed transaction and never leaves a state
//! that cannot be opened:
//!
//! - The base file is replaced atomically ([`Model::save`]: temporary file, fsync,
//!   rename, fsync of the directory): a crash leaves either the old base or the
//!   new one, never a mix.
//! - Until a compaction, the journal only ever grows by whole lines, each fsynced
//!   before the commit returns. A crash in the middle of an append can only leave
//!   an incomplete *last* line (no newline, or bytes that are not JSON): that
//!   transaction was never reported committed, so [`Store::open`] truncates it
//!   away. Anything wrong elsewhere in the journal is corruption, and an error.
//! - A compaction writes the base first and truncates the journal after. A crash
//!   between the two leaves journal lines whose generations are all <= the new
//!   base's generation: they are already in the base, and are skipped on open.
//!   Before the rename, the old base plus the whole journal is still the state.
//! - A commit that fails half-way (a write or fsync error) may leave the journal
//!   without that transaction, or with part of its line, while the model in memory
//!   has it: the journal no longer follows the model, so the next commit compacts
//!   instead of appending (the base then holds everything again).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Change, Model, ModelError};

/// The default number of transactions the journal holds before a compaction.
pub const DEFAULT_COMPACT_EVERY: u64 = 10_000;

/// The journal size above which a commit compacts, whatever the transaction count.
pub const MAX_JOURNAL_BYTES: u64 = 64 << 20;

/// The base file and its journal, open for commits.
#[derive(Debug)]
pub struct Store {
    /// The base file.
    path: PathBuf,
    /// `path` + ".journal".
    journal_path: PathBuf,
    /// Opened for appending (and read once, on open).
    journal: File,
    /// Lines in the journal, stale ones (already in the base) included.
    txns: u64,
    /// The journal's length: always the end of a complete line unless `dirty`.
    bytes: u64,
    /// The generation the base plus the journal reach on disk.
    generation: u64,
    /// The journal may not follow the model any more (a failed append): the next
    /// commit compacts instead of appending.
    dirty: bool,
    compact_every: u64,
    /// Compaction thresholds: `compact_every` and [`MAX_JOURNAL_BYTES`], pushed
    /// further after a compaction failed so that it is not retried on every commit.
    limit_txns: u64,
    limit_bytes: u64,
    /// The line being written, kept to reuse its allocation.
    line: Vec<u8>,
}

/// What [`Store::open`] found besides the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opened {
    /// Journal transactions applied on top of the base (stale ones not counted).
    pub replayed: u64,
    /// Bytes of an incomplete last line (a write torn by a crash), truncated away.
    pub torn_bytes: u64,
}

/// One journal line.
#[derive(Serialize)]
struct RecordRef<'a> {
    generation: u64,
    changes: &'a [Change],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    generation: u64,
    changes: Vec<Change>,
}

fn journal_path(path: &Path) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(".journal");
    PathBuf::from(s)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Store {
    /// Opens the state at `path` (the base file, e.g. `/var/lib/dvr/cn1/model.json`,
    /// its directory created if needed) and its journal `path` + ".journal": loads
    /// the base with [`Model::load`], then replays the journal. Lines whose
    /// generation is <= the base's are skipped (left by a compaction that crashed
    /// after writing the base); every other line must apply cleanly and yield
    /// exactly its generation. An incomplete last line (no newline, or not JSON) is
    /// a torn write: the journal is truncated to the end of the last complete line
    /// and its size returned in [`Opened::torn_bytes`]. Any other bad line is an
    /// error naming the file and the line.
    pub fn open(path: &Path) -> Result<(Store, Model, Opened), ModelError> {
        let dir = parent_dir(path);
        if let Err(e) = fs::create_dir_all(&dir) {
            bail!("cannot create {}: {e}", dir.display());
        }
        let mut model = Model::load(path)?;
        let journal_path = journal_path(path);
        let shown = journal_path.display();
        let journal = match OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&journal_path)
        {
            Ok(f) => f,
            Err(e) => bail!("cannot open journal {shown}: {e}"),
        };
        // The journal's directory entry must be durable before a commit counts on it.
        if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
            bail!("cannot sync directory {}: {e}", dir.display());
        }

        let base_generation = model.generation;
        let mut opened = Opened::default();
        let mut txns = 0u64;
        // The end of the last complete line read.
        let mut good_end = 0u64;
        {
            let mut reader = BufReader::with_capacity(1 << 20, &journal);
            let mut line = Vec::new();
            let mut line_no = 0u64;
            loop {
                line.clear();
                let n = match reader.read_until(b'\n', &mut line) {
                    Ok(n) => n,
                    Err(e) => bail!("cannot read journal {shown}: {e}"),
                };
                if n == 0 {
                    break;
                }
                line_no += 1;
                if line.last() != Some(&b'\n') {
                    // Only the last line can lack its newline: torn.
                    opened.torn_bytes = n as u64;
                    break;
                }
                let record: Record = match serde_json::from_slice(&line[..n - 1]) {
                    Ok(r) => r,
                    Err(e) => {
                        let at_end = match reader.fill_buf() {
                            Ok(rest) => rest.is_empty(),
                            Err(e) => bail!("cannot read journal {shown}: {e}"),
                        };
                        // Bytes that are not JSON at the very end: a torn write
                        // (e.g. a size extended past the data that made it).
                        // JSON of the wrong shape is not what a crash leaves.
                        if at_end && (e.is_syntax() || e.is_eof()) {
                            opened.torn_bytes = n as u64;
                            break;
                        }
                        bail!("journal {shown} line {line_no}: not a transaction: {e}");
                    }
                };
                if record.generation <= model.generation {
                    if opened.replayed > 0 {
                        bail!(
                            "journal {shown} line {line_no}: generation {} after generation {}: \
                             out of order",
                            record.generation,
                            model.generation
                        );
                    }
                    // Already in the base: a compaction crashed before truncating.
                } else {
                    if let Err(e) = model.apply(&record.changes) {
                        bail!(
                            "journal {shown} line {line_no}: transaction of generation {} does \
                             not apply to generation {}: {}",
                            record.generation,
                            model.generation,
                            e.0
                        );
                    }
                    if model.generation != record.generation {
                        bail!(
                            "journal {shown} line {line_no}: transaction of generation {} \
                             yields generation {} (the base is at {base_generation}): a \
                             transaction is missing",
                            record.generation,
                            model.generation
                        );
                    }
                    opened.replayed += 1;
                }
                txns += 1;
                good_end += n as u64;
            }
        }
        if opened.torn_bytes > 0 {
            if let Err(e) = journal.set_len(good_end).and_then(|()| journal.sync_all()) {
                bail!("cannot truncate the torn end of journal {shown}: {e}");
            }
        }
        let store = Store {
            path: path.to_owned(),
            journal_path,
            journal,
            txns,
            bytes: good_end,
            generation: model.generation,
            dirty: false,
            compact_every: DEFAULT_COMPACT_EVERY,
            limit_txns: DEFAULT_COMPACT_EVERY,
            limit_bytes: MAX_JOURNAL_BYTES,
            line: Vec::new(),
        };
        Ok((store, model, opened))
    }

    /// Records one committed transaction: `changes` as given to [`Model::apply`],
    /// `model` the model after it (its generation is the line's). One line is
    /// appended and fdatasynced before this returns; the cost does not depend on
    /// the model's size. When the journal then holds more than `compact_every`
    /// transactions or more than 64 MiB, compacts (a failed compaction there is
    /// logged and retried later: the transaction itself is durable).
    ///
    /// If the journal does not follow the model (an earlier commit failed, or
    /// `model` is not one generation past the last commit), compacts instead of
    /// appending: the model is saved whole.
    pub fn commit(&mut self, changes: &[Change], model: &Model) -> io::Result<()> {
        if self.dirty || model.generation != self.generation + 1 {
            return self.compact(model);
        }
        self.line.clear();
        serde_json::to_writer(
            &mut self.line,
            &RecordRef {
                generation: model.generation,
                changes,
            },
        )?;
        self.line.push(b'\n');
        let written = self
            .journal
            .write_all(&self.line)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = written {
            // Drop what part of the line got written; either way the journal now
            // lacks a transaction the model has.
            let _ = self.journal.set_len(self.bytes);
            self.dirty = true;
            return Err(e);
        }
        self.bytes += self.line.len() as u64;
        self.txns += 1;
        self.generation = model.generation;
        if self.txns > self.limit_txns || self.bytes > self.limit_bytes {
            if let Err(e) = self.compact(model) {
                tracing::warn!(
                    state = %self.path.display(), error = %e,
                    "cannot compact the model journal; will retry later"
                );
                self.limit_txns = self.txns.saturating_add(self.compact_every.max(1));
                self.limit_bytes = self.bytes.saturating_add(MAX_JOURNAL_BYTES);
            }
        }
        Ok(())
    }

    /// Compacts now: saves `model` whole as the base (atomically), then truncates
    /// the journal to zero length and fsyncs it.
    pub fn compact(&mut self, model: &Model) -> io::Result<()> {
        model.save(&self.path)?;
        // The base holds everything: what the journal holds is stale from here on
        // (skipped on open), so a crash before the truncation is harmless.
        self.generation = model.generation;
        self.journal.set_len(0)?;
        self.txns = 0;
        self.bytes = 0;
        self.dirty = false;
        self.limit_txns = self.compact_every;
        self.limit_bytes = MAX_JOURNAL_BYTES;
        self.journal.sync_all()
    }

    /// Compact when the journal holds more than `n` transactions (default 10 000).
    pub fn set_compact_every(&mut self, n: u64) {
        self.compact_every = n;
        self.limit_txns = n;
    }

    /// The base file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal file: the base file's path + ".journal".
    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// Transactions in the journal (since the last compaction).
    pub fn journal_len(&self) -> u64 {
        self.txns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn changes(vs: &[Value]) -> Vec<Change> {
        vs.iter()
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .collect()
    }

    /// Transactions that exercise generated values (MACs, addresses), so that a
    /// replay that is not deterministic would show.
    fn script() -> Vec<Vec<Change>> {
        vec![
            changes(&[
                json!({"op": "host_set", "name": "cn1", "agent_mode": "dvr", "vtep": "192.0.2.11", "dvr_mac": "fa:16:3f:00:00:11"}),
                json!({"op": "network_create", "name": "n1", "network_type": "vxlan", "segment": 100}),
            ]),
            changes(&[
                json!({"op": "subnet_create", "name": "s1", "network": "n1", "cidr": "10.0.0.0/24"}),
            ]),
            changes(&[
                json!({"op": "network_create", "name": "ext", "network_type": "flat", "external": true}),
                json!({"op": "subnet_create", "name": "ext-sub", "network": "ext", "cidr": "203.0.113.0/24", "gateway_ip": null}),
            ]),
            changes(&[json!({"op": "router_create", "name": "r1"})]),
            changes(&[json!({"op": "router_add_subnet", "router": "r1", "subnet": "s1"})]),
            changes(&[
                json!({"op": "router_set", "name": "r1", "external_gateway": {"network": "ext"}}),
            ]),
            changes(&[json!({"op": "port_create", "name": "p1", "network": "n1"})]),
            changes(&[json!({"op": "floating_ip_create", "network": "ext", "port": "p1"})]),
            changes(&[json!({"op": "port_create", "name": "p2", "network": "n1", "host": "cn1"})]),
        ]
    }

    fn state(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("sub/dir/model.json")
    }

    /// Applies and commits each transaction of `txns`.
    fn run(store: &mut Store, model: &mut Model, txns: &[Vec<Change>]) {
        for t in txns {
            model.apply(t).unwrap();
            store.commit(t, model).unwrap();
        }
    }

    fn as_json(m: &Model) -> String {
        serde_json::to_string(m).unwrap()
    }

    fn journal_lines(store: &Store) -> usize {
        fs::read_to_string(store.journal_path())
            .unwrap()
            .lines()
            .count()
    }

    #[test]
    fn open_commit_reopen_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, opened) = Store::open(&path).unwrap();
        assert_eq!(opened, Opened::default());
        assert_eq!(model, Model::default());
        assert!(store.journal_path().exists(), "journal created");
        run(&mut store, &mut model, &script());
        assert_eq!(model.generation, script().len() as u64);
        assert_eq!(journal_lines(&store), script().len());
        assert!(!path.exists(), "no compaction yet: no base file");
        drop(store);

        let (mut store, mut again, opened) = Store::open(&path).unwrap();
        assert_eq!(opened.replayed, script().len() as u64);
        assert_eq!(opened.torn_bytes, 0);
        assert_eq!(again.generation, model.generation);
        assert_eq!(as_json(&again), as_json(&model));
        again.validate().unwrap();

        // Commits after a reopen continue the same journal.
        let more = changes(&[json!({"op": "router_create", "name": "r2"})]);
        again.apply(&more).unwrap();
        store.commit(&more, &again).unwrap();
        drop(store);
        let (_, third, opened) = Store::open(&path).unwrap();
        assert_eq!(opened.replayed, script().len() as u64 + 1);
        assert_eq!(as_json(&third), as_json(&again));
    }

    #[test]
    fn replay_on_top_of_a_base() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, _) = Store::open(&path).unwrap();
        let s = script();
        run(&mut store, &mut model, &s[..4]);
        store.compact(&model).unwrap();
        run(&mut store, &mut model, &s[4..]);
        drop(store);
        let (_, again, opened) = Store::open(&path).unwrap();
        assert_eq!(opened.replayed, (s.len() - 4) as u64);
        assert_eq!(again.generation, model.generation);
        assert_eq!(as_json(&again), as_json(&model));
    }

    #[test]
    fn torn_last_line_is_truncated_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, _) = Store::open(&path).unwrap();
        run(&mut store, &mut model, &script());
        let journal = store.journal_path().to_owned();
        drop(store);
        let good = fs::read(&journal).unwrap();

        // Half of a line, without its newline.
        let half = br#"{"generation":10,"changes":[{"op":"router_cre"#;
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(half).unwrap();
        drop(f);
        let (mut store, again, opened) = Store::open(&path).unwrap();
        assert_eq!(
            opened,
            Opened {
                replayed: script().len() as u64,
                torn_bytes: half.len() as u64
            }
        );
        assert_eq!(as_json(&again), as_json(&model));
        assert_eq!(
            fs::read(&journal).unwrap(),
            good,
            "truncated to the last line"
        );

        // Commits go on from the clean end.
        let mut again = again;
        let more = changes(&[json!({"op": "router_create", "name": "r2"})]);
        again.apply(&more).unwrap();
        store.commit(&more, &again).unwrap();
        drop(store);

        // Garbage with a newline at the very end is torn too.
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(b"\0\0\0\0\n").unwrap();
        drop(f);
        let (_, third, opened) = Store::open(&path).unwrap();
        assert_eq!(opened.torn_bytes, 5);
        assert_eq!(opened.replayed, script().len() as u64 + 1);
        assert_eq!(as_json(&third), as_json(&again));
    }

    #[test]
    fn corrupt_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, _) = Store::open(&path).unwrap();
        run(&mut store, &mut model, &script());
        let journal = store.journal_path().to_owned();
        drop(store);
        let text = fs::read_to_string(&journal).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let half = lines[2].len() / 2;
        lines[2].truncate(half);
        fs::write(&journal, lines.join("\n") + "\n").unwrap();
        let before = fs::read(&journal).unwrap();
        let err = Store::open(&path).unwrap_err().0;
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains(&journal.display().to_string()), "{err}");
        assert_eq!(fs::read(&journal).unwrap(), before, "left untouched");
    }

    #[test]
    fn bad_transactions_are_errors_not_torn_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, _) = Store::open(&path).unwrap();
        run(&mut store, &mut model, &script()[..2]);
        let journal = store.journal_path().to_owned();
        drop(store);
        let good = fs::read_to_string(&journal).unwrap();
        let cases = [
            // Valid JSON, wrong shape, even as the last line.
            (r#"{"generation":3}"#, "line 3"),
            // A transaction that does not apply.
            (
                r#"{"generation":3,"changes":[{"op":"router_delete","name":"nope"}]}"#,
                "line 3",
            ),
            // A gap in the generations.
            (
                r#"{"generation":4,"changes":[{"op":"router_create","name":"r9"}]}"#,
                "line 3",
            ),
        ];
        for (line, needle) in cases {
            fs::write(&journal, format!("{good}{line}\n")).unwrap();
            let err = Store::open(&path).unwrap_err().0;
            assert!(err.contains(needle), "{line}: {err}");
        }
        // A stale generation after a replayed one is out of order.
        let first = good.lines().next().unwrap();
        fs::write(&journal, format!("{good}{first}\n")).unwrap();
        let err = Store::open(&path).unwrap_err().0;
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn compaction_after_n_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, _) = Store::open(&path).unwrap();
        store.set_compact_every(3);
        let s = script();
        run(&mut store, &mut model, &s[..3]);
        assert_eq!(journal_lines(&store), 3, "not more than 3 yet");
        assert!(!path.exists());
        run(&mut store, &mut model, &s[3..4]);
        assert_eq!(fs::metadata(store.journal_path()).unwrap().len(), 0);
        assert_eq!(store.journal_len(), 0);
        assert_eq!(Model::load(&path).unwrap().generation, 4);
        run(&mut store, &mut model, &s[4..]);
        drop(store);
        let (_, again, opened) = Store::open(&path).unwrap();
        assert_eq!(opened.replayed, (s.len() - 8) as u64);
        assert_eq!(again.generation, s.len() as u64);
        assert_eq!(as_json(&again), as_json(&model));
    }

    #[test]
    fn crash_between_base_write_and_journal_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, _) = Store::open(&path).unwrap();
        let s = script();
        run(&mut store, &mut model, &s[..5]);
        // The first half of a compaction: the base, but the journal kept.
        model.save(&path).unwrap();
        drop(store);
        let (mut store, mut again, opened) = Store::open(&path).unwrap();
        assert_eq!(opened, Opened::default(), "stale lines skipped");
        assert_eq!(as_json(&again), as_json(&model));
        // New commits go after the stale lines and replay after them.
        run(&mut store, &mut again, &s[5..]);
        for t in &s[5..] {
            model.apply(t).unwrap();
        }
        drop(store);
        let (_, third, opened) = Store::open(&path).unwrap();
        assert_eq!(opened.replayed, (s.len() - 5) as u64);
        assert_eq!(as_json(&third), as_json(&model));
    }

    #[test]
    fn commit_writes_one_line_and_never_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, _) = Store::open(&path).unwrap();
        // A model of some size, saved as the base.
        let big: Vec<Vec<Change>> = (0..500)
            .map(|i| changes(&[json!({"op": "router_create", "name": format!("r{i}")})]))
            .collect();
        run(&mut store, &mut model, &big);
        store.compact(&model).unwrap();
        let base = fs::read(&path).unwrap();
        let t = changes(&[json!({"op": "router_create", "name": "one-more"})]);
        model.apply(&t).unwrap();
        store.commit(&t, &model).unwrap();
        assert_eq!(fs::read(&path).unwrap(), base, "the base is not rewritten");
        let text = fs::read_to_string(store.journal_path()).unwrap();
        assert_eq!(
            text.lines().count(),
            1,
            "the journal holds just that transaction"
        );
        assert!(text.ends_with('\n'));
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            line,
            json!({"generation": model.generation, "changes": serde_json::to_value(&t).unwrap()})
        );
    }

    #[test]
    fn a_commit_out_of_step_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = state(&dir);
        let (mut store, mut model, _) = Store::open(&path).unwrap();
        let s = script();
        run(&mut store, &mut model, &s[..2]);
        // Two transactions applied, only the second committed.
        model.apply(&s[2]).unwrap();
        model.apply(&s[3]).unwrap();
        store.commit(&s[3], &model).unwrap();
        assert_eq!(store.journal_len(), 0, "saved whole instead");
        drop(store);
        let (_, again, _) = Store::open(&path).unwrap();
        assert_eq!(as_json(&again), as_json(&model));
    }
}
