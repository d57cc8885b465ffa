//! The benches' shared harness (`benches/harness.rs`; the benches have no test
//! harness of their own): a window too short for the forwarder's reports is
//! measured longer, and a bench that cannot measure says why in one line.

#[path = "../../benches/harness.rs"]
mod harness;

use harness::{cannot_measure_line, last_line, Window};

#[test]
fn cannot_measure_says_why_in_one_line() {
    let why = format!(
        "l3fwd ended (exit status: 1) before forwarding; its log {}: {}",
        "/tmp/x/l3fwd.log",
        last_line("EAL: Detected 2 lcores\nEAL: Error -\t cannot init\r\nport 0\n\n")
    );
    assert_eq!(
        cannot_measure_line(&why),
        "bench: cannot measure: l3fwd ended (exit status: 1) before forwarding; \
         its log /tmp/x/l3fwd.log: port 0"
    );
    assert_eq!(
        cannot_measure_line("dpdk-testpmd: EAL: Error -\n  cannot init\r\nport 0"),
        "bench: cannot measure: dpdk-testpmd: EAL: Error - cannot init port 0"
    );
    assert_eq!(last_line(""), "(empty)");
}

#[test]
fn a_short_window_waits_for_the_reports_a_rate_needs() {
    // DVR_BENCH_SECONDS=0: over at once, but not before three reports.
    let mut w = Window::new("dvr-pmd", 0, 3);
    assert!(!w.over(1));
    assert!(!w.over(2));
    assert!(w.stretched());
    assert!(w.over(3));
    // A long window is not over for having its reports.
    let mut w = Window::new("dvr-pmd", 3600, 3);
    for n in 1..10 {
        assert!(!w.over(n));
    }
    assert!(!w.stretched());
}
