//! Bad configuration files are rejected with a message that names the key, and a
//! non-zero exit code; nothing starts.

mod common;

use std::process::{Command, Stdio};

use common::{dvr_pmd, node_head};

fn good(dir: &std::path::Path) -> String {
    format!(
        r#"{head}
[[ports]]
name = "vm-a"
role = "vm"
kind = "pcap"
generate = {{ src_mac = "fa:16:3e:00:00:0a", dst_mac = "fa:16:3e:00:00:0b" }}
[[ports]]
name = "vm-b"
role = "vm"
kind = "null"
[[l2.fdb]]
mac = "fa:16:3e:00:00:0b"
port = "vm-b"
"#,
        head = node_head("cfg", &dir.join("run"))
    )
}

/// Runs dvr-pmd on `text`; returns exit code and standard error.
fn run(dir: &std::path::Path, text: &str, extra: &[&str]) -> (i32, String) {
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(dvr_pmd())
        .arg("--config")
        .arg(&path)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_config_checks_ok() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(dir.path(), &good(dir.path()), &["--check"]);
    assert_eq!(code, 0, "{err}");
    let out = Command::new(dvr_pmd()).arg("--check").output().unwrap();
    assert!(out.status.success(), "the embedded default is valid");
    let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut n = 0;
    for f in std::fs::read_dir(configs).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(dvr_pmd())
                .arg("--check")
                .arg("--config")
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 3, "configs/ holds the example configurations");
}

#[test]
fn rejected_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path());
    let cases: Vec<(String, &str)> = vec![
        (
            g.replace("agent_mode = \"dvr\"", "agent_mode = \"dvr\"\ncolour = 3"),
            "unknown field `colour`",
        ),
        (
            g.replace("kind = \"null\"", "kind = \"null\"\niface = \"x\""),
            "`ports[1].iface`: does not apply",
        ),
        (
            g.replace("kind = \"null\"", "kind = \"null\"\nspeed = 10"),
            "unknown field `speed`",
        ),
        (
            g.replace("agent_mode = \"dvr\"", "agent_mode = \"dvrx\""),
            "agent_mode = \"dvrx\"",
        ),
        (
            g.replace(
                "poll_mode = \"adaptive\"",
                "poll_mode = \"adaptive\"\nburst = 1000",
            ),
            "`dataplane.burst`",
        ),
        (
            g.replace("port = \"vm-b\"", "port = \"vm-c\""),
            "`l2.fdb[0].port`",
        ),
        (
            g.replace("kind = \"null\"", "kind = \"nul\""),
            "`ports[1].kind`: unknown port kind \"nul\"",
        ),
        (
            g.replace("workers = [1]", "workers = [1, 1]"),
            "`cores.workers`",
        ),
        (g.replace("[cores]", "[cores"), "line"),
        (
            g.replace("mac = \"fa:16:3e:00:00:0b\"", "mac = \"fa:16:3e:00:0b\""),
            "invalid MAC address",
        ),
        (
            format!("{g}\n[metadata]\nserver = \"https://192.0.2.10:8775\"\n"),
            "`metadata.server`: \"https://192.0.2.10:8775\" is not http://HOST",
        ),
        (
            format!("{g}\n[metadata]\nserver = \"http://192.0.2.10:8775\"\ntimeout = 0\n"),
            "`metadata.timeout`",
        ),
        (format!("{g}\n[metadata]\n"), "missing field `server`"),
    ];
    for (text, want) in cases {
        let (code, err) = run(dir.path(), &text, &[]);
        assert_eq!(code, 2, "exit code for {want}: {err}");
        assert!(err.contains("invalid configuration"), "{err}");
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
}

#[test]
fn missing_file_is_named() {
    let out = Command::new(dvr_pmd())
        .args(["--config", "/nonexistent/node.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/node.toml"));
}

#[test]
fn start_errors_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path());
    // A core this machine does not have.
    let (code, err) = run(
        dir.path(),
        &g.replace("workers = [1]", "workers = [4095]"),
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`cores.workers`: core 4095 is not available"),
        "{err}"
    );
    // A capture that does not exist.
    let text = g.replace(
        "generate = { src_mac = \"fa:16:3e:00:00:0a\", dst_mac = \"fa:16:3e:00:00:0b\" }",
        "rx_pcap = \"/nonexistent.pcap\"",
    );
    let (code, err) = run(dir.path(), &text, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot start: port vm-a:"), "{err}");
    // Two workers replaying a capture of 3,000 frames into 4,095 buffers:
    // the second queue cannot be set up. A clean refusal, not a crash (the
    // device's first queue held buffers of a pool freed before it was).
    let text = g.replace("workers = [1]", "workers = [0, 1]").replace(
        "dst_mac = \"fa:16:3e:00:00:0b\" }",
        "dst_mac = \"fa:16:3e:00:00:0b\", flows = 3000 }\ninfinite_rx = true",
    );
    let (code, err) = run(dir.path(), &text, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot start: port vm-a") && err.contains("rte_eth_rx_queue_setup(vm-a, 1)"),
        "{err}"
    );
}
