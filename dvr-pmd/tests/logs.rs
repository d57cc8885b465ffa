//! The daemon's log: plain lines without colour codes when standard error
//! is not a terminal (a journal, a file), one JSON object a line with
//! `DVR_LOG_FORMAT=json`, a clear refusal of another format, and every
//! committed model change logged with its generation and what it changed.

mod common;

use std::process::{Command, Stdio};

use common::{dvr_ctl, node_head};

/// A node with no ports beyond a null VM port; returns its directory, its
/// configuration and its control socket.
fn node() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let socket = d.join("ctl.sock");
    let cfg = format!(
        "{head}[control]\nsocket = \"{s}\"\nstate_file = \"{st}\"\n\
         [[ports]]\nname = \"vm-a\"\nrole = \"vm\"\nkind = \"null\"\n",
        head = node_head("logs", &d.join("run")),
        s = socket.display(),
        st = d.join("state/model.json").display()
    );
    let config = d.join("node.toml");
    std::fs::write(&config, cfg).unwrap();
    (dir, config, socket)
}

/// Runs dvr-pmd with `DVR_LOG_FORMAT=format` (unset if `None`), creates a
/// network through its socket, stops it; returns its standard error.
fn run(format: Option<&str>) -> String {
    let (_dir, config, socket) = node();
    let mut cmd = Command::new(common::dvr_pmd());
    cmd.arg("--config")
        .arg(&config)
        .env("DVR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match format {
        Some(f) => cmd.env("DVR_LOG_FORMAT", f),
        None => cmd.env_remove("DVR_LOG_FORMAT"),
    };
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
        err
    });
    let mut guard = common::Guard(Some(child));
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let o = Command::new(dvr_ctl())
            .arg("--socket")
            .arg(&socket)
            .args(["network", "create", "--provider-network-type", "vxlan"])
            .args(["--provider-segment", "7", "n1"])
            .output()
            .unwrap();
        if o.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dvr-ctl never got through: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let st = guard.terminate();
    assert!(st.success(), "dvr-pmd exit {st}");
    guard.0 = None;
    reader.join().unwrap()
}

#[test]
fn plain_lines_without_colour_and_model_changes_logged() {
    let err = run(None);
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a piped log:\n{err}"
    );
    // The node registers itself (host_set), then the network: one line
    // each, their generations one after the other.
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("model change committed"))
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("generation=1") && lines[0].contains("host_set logs"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("generation=2") && lines[1].contains("what=network_create n1"),
        "{}",
        lines[1]
    );
}

#[test]
fn json_lines_on_request_and_a_bad_format_refused() {
    let err = run(Some("json"));
    let mut committed = 0;
    // DPDK's own messages (EAL, telemetry) are its plain lines.
    for l in err.lines().filter(|l| !l.trim().is_empty()) {
        if !l.starts_with('{') {
            assert!(
                l.starts_with("EAL: ") || l.starts_with("TELEMETRY: "),
                "neither JSON nor DPDK's: {l}"
            );
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        if v["fields"]["message"] == "model change committed" {
            committed += 1;
            assert_eq!(v["fields"]["generation"], committed, "{l}");
        }
    }
    assert_eq!(committed, 2, "{err}");

    let (_dir, config, _) = node();
    let o = Command::new(common::dvr_pmd())
        .arg("--config")
        .arg(&config)
        .env("DVR_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("DVR_LOG_FORMAT is text or json"), "{e}");
}
