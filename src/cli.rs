//! Standard output of the command-line programs (`dvr-ctl`, `dvr-pktgen`,
//! `dvr-pmd --check` and `--print-default-config`) when its reader is gone.
//!
//! A Rust program starts with SIGPIPE ignored: a write to a pipe whose reader
//! has gone (`dvr-ctl show errors | head -1`) fails with EPIPE, and `println!`
//! panics on that. These programs end as `cat` or `ls` end instead: killed by
//! SIGPIPE, with nothing on standard error (status 141 in the shell, which
//! `set -o pipefail` sees as it sees `ls | head -1`'s). Any other write error
//! (a full disk) is one line on standard error and exit status 1.
//!
//! The daemon's counter lines do not come here: a dvr-pmd whose standard
//! output is closed goes on forwarding (dvr-pmd's `report.rs`).

use std::fmt;
use std::io::{self, Write};

/// Writes `args` to standard output; if it cannot, ends the process as the
/// module says.
pub fn print(args: fmt::Arguments) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        stdout_failed(&e)
    }
}

/// Ends the process after the write error `e` on standard output: by SIGPIPE
/// for a closed pipe, else with one line on standard error and status 1.
pub fn stdout_failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        // SIGPIPE's default action, then raised: it does not return.
        let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
    }
    let program = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let _ = writeln!(io::stderr(), "{program}: writing to standard output: {e}");
    std::process::exit(1)
}

/// `println!` through [`print`]: a closed standard output ends the process
/// as `cat`'s ends, never a panic.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
