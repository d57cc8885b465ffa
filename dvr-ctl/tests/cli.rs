//! dvr-ctl without a daemon: usage errors exit 1 with a message, an unreachable
//! daemon exits 2, help exits 0. (With a daemon: dvr-pmd/tests/control.rs.)

use std::process::Command;

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dvr-ctl"))
        .args(args)
        .env_remove("DVR_SOCKET")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_is_exit_0() {
    let (code, out, _) = ctl(&["router", "set", "--help"]);
    assert_eq!(code, 0);
    for opt in [
        "--disable",
        "--no-ha",
        "--distributed",
        "--external-gateway",
        "--route",
        "--ipv6-north-south",
    ] {
        assert!(out.contains(opt), "{opt} in help");
    }
}

#[test]
fn usage_errors_are_exit_1() {
    let cases: &[(&[&str], &str)] = &[
        (&["router", "frobnicate", "r1"], "unrecognized subcommand"),
        (
            &["router", "set", "--enable", "--disable", "r1"],
            "cannot be used with",
        ),
        (
            &["router", "set", "--ipv6-north-south", "snat", "r1"],
            "distributed or central",
        ),
        (
            &[
                "network",
                "create",
                "--provider-network-type",
                "vxlann",
                "n1",
            ],
            "use vxlan, gre, vlan or flat",
        ),
        (
            &[
                "port",
                "create",
                "--network",
                "n1",
                "--fixed-ip",
                "subnet=s1,ip=10.0.0.5",
                "p1",
            ],
            "unknown key \"ip\"",
        ),
        (
            &[
                "port",
                "create",
                "--network",
                "n1",
                "--allowed-address",
                "ip-address=10.0.0.0/33",
                "p1",
            ],
            "not an address or a prefix",
        ),
        (
            &["router", "set", "--route", "destination=10.1.0.0/16", "r1"],
            "gateway is required",
        ),
        (
            &[
                "subnet",
                "create",
                "--network",
                "n1",
                "--subnet-range",
                "10.0.0.0",
                "s1",
            ],
            "subnet-range",
        ),
        (&["floating", "ip", "set", "203.0.113.5"], "--port"),
        // A binding names a dataplane port of the node given by --host:
        // without one, the port would be bound nowhere.
        (
            &[
                "port",
                "create",
                "--network",
                "n1",
                "--binding",
                "vm-a",
                "p1",
            ],
            "--host <HOST>",
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = ctl(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
    }
}

#[test]
fn unreachable_daemon_is_exit_2() {
    let (code, _, err) = ctl(&["--socket", "/nonexistent/dvr.sock", "router", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot reach dvr-pmd at /nonexistent/dvr.sock"),
        "{err}"
    );
}

/// `interface add` has its own `--socket` (the VM's): the control socket's
/// goes before the command, and each reaches its own place.
#[test]
fn interface_add_keeps_the_two_sockets_apart() {
    let (code, _, err) = ctl(&[
        "--socket",
        "/nonexistent/dvr.sock",
        "interface",
        "add",
        "--type",
        "vhost-user",
        "--socket",
        "/run/vm1.sock",
        "vhu1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/dvr.sock"), "{err}");
    for (args, want) in [
        (
            &["interface", "add", "--type", "vhost-user", "vhu1"][..],
            "--socket",
        ),
        (
            &["interface", "add", "--type", "pci", "x"][..],
            "vhost-user, af_packet or tap",
        ),
        (
            &[
                "interface",
                "add",
                "--type",
                "tap",
                "--iface",
                "t0",
                "--queues",
                "0",
                "x",
            ][..],
            "--queues",
        ),
    ] {
        let (code, _, err) = ctl(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
    }
}

/// `completion SHELL` and `man` need no daemon: a bash script that bash
/// reads without a syntax error and that knows the verbs and their options,
/// and a manual page that groff formats.
#[test]
fn completions_and_the_manual_page() {
    let (code, script, err) = ctl(&["completion", "bash"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "complete -F",
        "subnet",
        "--dns-nameserver",
        "--ipv6-ra-mode",
    ] {
        assert!(script.contains(want), "no {want} in the bash completion");
    }
    let st = piped("bash", &["-n"], &script);
    assert!(
        st.status.success(),
        "bash -n on the completion script: {st:?}"
    );
    for shell in ["zsh", "fish"] {
        let (code, out, err) = ctl(&["completion", shell]);
        assert!(code == 0 && out.contains("dvr-ctl"), "{shell}: {err}");
    }
    let (code, _, err) = ctl(&["completion", "tcsh"]);
    assert_eq!(code, 1, "an unknown shell is a usage error: {err}");

    let (code, page, err) = ctl(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH dvr-ctl 1"), "{page}");
    // groff: scripts/install-deps installs groff-base.
    let o = piped("groff", &["-man", "-Tutf8", "-ww", "-P-bcu"], &page);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("NAME") && text.contains("SUBCOMMANDS"),
        "{text}"
    );
}

/// `prog args` with `input` on its standard input; its output.
fn piped(prog: &str, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut c = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}
