//! `dvr-pmd`: the dvr daemon. Starts EAL and the ports of a node configuration,
//! runs one pinned worker per configured core, prints live counters, and on
//! SIGINT/SIGTERM stops the workers, drains, closes the ports, removes its sockets
//! and exits 0.

mod control;
mod ifaces;
mod metadata;
mod metrics;
mod neighbors;
mod node;
mod report;
mod resolver;
mod service;
mod takeover;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dvr::config::{Config, StatsFormat};

/// The configuration `dvr-pmd` runs when given none.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/default.toml");

#[derive(Parser, Debug)]
#[command(
    name = "dvr-pmd",
    version,
    about = "dvr: distributed virtual router dataplane on DPDK"
)]
struct Args {
    /// Node configuration (TOML). Without it, the embedded default runs: two VM
    /// ports on virtual devices with generated traffic.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Check the configuration and exit (0 if valid); starts nothing.
    #[arg(long)]
    check: bool,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Counter output: text or json (overrides stats.format).
    #[arg(long, value_parser = ["text", "json"])]
    stats_format: Option<String>,
    /// Counter interval in milliseconds, 0 for none (overrides stats.interval_ms).
    #[arg(long)]
    stats_interval_ms: Option<u64>,
    /// Replace the dvr-pmd running this node (the holder of its state file):
    /// start beside it, then stop it and forward in its place within a few
    /// milliseconds. af_packet and vhost-user ports only (see README).
    #[arg(long)]
    take_over: bool,
}

/// The log on standard error: `DVR_LOG` filters (`info` by default),
/// `DVR_LOG_FORMAT` is `text` (the default; colours only on a terminal, so
/// a journal or a file gets plain lines) or `json` (one object a line).
fn logs() -> Result<(), String> {
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DVR_LOG")
                .unwrap_or_else(|_| "info".into()),
        );
    match std::env::var("DVR_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => b.with_ansi(std::io::stderr().is_terminal()).init(),
        Ok("json") => b.json().init(),
        Ok(other) => return Err(format!("DVR_LOG_FORMAT is text or json, not {other:?}")),
    }
    Ok(())
}

const EXIT_CONFIG: u8 = 2;
const EXIT_START: u8 = 1;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = logs() {
        eprintln!("dvr-pmd: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }

    if args.print_default_config {
        // A closed standard output ends this one-shot command as it ends
        // `cat` (`dvr::cli`); the daemon's counter lines do otherwise (report.rs).
        dvr::cli::print(format_args!("{DEFAULT_CONFIG}"));
        return ExitCode::SUCCESS;
    }
    let loaded = match &args.config {
        Some(p) => Config::load(p),
        None => Config::parse(DEFAULT_CONFIG, "embedded default config"),
    };
    let mut cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dvr-pmd: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(f) = &args.stats_format {
        cfg.stats.format = if f == "json" {
            StatsFormat::Json
        } else {
            StatsFormat::Text
        };
    }
    if let Some(ms) = args.stats_interval_ms {
        cfg.stats.interval_ms = ms;
    }
    if args.check {
        dvr::outln!("configuration of node {} is valid", cfg.node);
        return ExitCode::SUCCESS;
    }

    // Signals only set a flag; the main thread does the shutdown.
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, term.clone()) {
            eprintln!("dvr-pmd: cannot install signal handler: {e}");
            return ExitCode::from(EXIT_START);
        }
    }

    // A take-over: the process to replace, if one runs.
    if args.take_over {
        if let Err(e) = takeover::check(&cfg) {
            eprintln!("dvr-pmd: cannot take over: {e}");
            return ExitCode::from(EXIT_START);
        }
    }
    let old = args
        .take_over
        .then(|| takeover::holder(&cfg.state_file))
        .flatten();
    if let Some(pid) = old {
        tracing::info!(pid, "taking over from the running dvr-pmd");
        takeover::own_prefix(&mut cfg);
    }
    let mut node = match node::Node::start(cfg) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("dvr-pmd: cannot start: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    let view = report::View::new(&node);
    if let Some(pid) = old {
        // Ready but for the model: the workers drop what they get until it
        // comes (the old process forwards it), then the old one stops.
        if let Err(e) = node
            .run_workers()
            .map_err(|e| e.0)
            .and_then(|()| takeover::wait_polling(&view, Duration::from_secs(10)))
            .and_then(|()| takeover::stop(pid))
        {
            eprintln!("dvr-pmd: cannot take over: {e}");
            drop(view);
            node.shutdown();
            return ExitCode::from(EXIT_START);
        }
    }
    let control = match control::Control::start(
        &node.cfg.control_socket,
        node.cfg.control_group.as_deref(),
        &node.cfg.state_file,
        view.clone(),
        old.map(|_| takeover::WAIT),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dvr-pmd: cannot start: {e}");
            // The view holds ports (and through them the mempool): release them
            // before EAL ends.
            drop(view);
            node.shutdown();
            return ExitCode::from(EXIT_START);
        }
    };
    // The neighbours resolved before a restart, restored with the model.
    let restored = std::mem::take(&mut *view.restored.lock().unwrap_or_else(|e| e.into_inner()));
    let saved = neighbors::Saved::new(view.neighbors.clone(), restored);
    let resolver = match resolver::Resolver::start(view.clone(), saved) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dvr-pmd: cannot start: the resolver thread: {e}");
            control.shutdown();
            drop(view);
            node.shutdown();
            return ExitCode::from(EXIT_START);
        }
    };
    // The metadata proxy, in a thread of its own (`[metadata]`).
    let proxy = match node
        .cfg
        .metadata
        .as_ref()
        .map(|m| metadata::Proxy::start(m, node.exchange.clone(), node.tables.clone()))
    {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(p))) => Some(p),
        Some(Err(e)) => {
            eprintln!("dvr-pmd: cannot start: the metadata proxy thread: {e}");
            resolver.shutdown();
            control.shutdown();
            drop(view);
            node.shutdown();
            return ExitCode::from(EXIT_START);
        }
    };
    // The Prometheus endpoint (`[metrics]`), in a thread of its own.
    let metrics = match node.cfg.metrics.as_ref() {
        None => None,
        Some(m) => match metrics::Endpoint::start(m.listen, view.clone()) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("dvr-pmd: cannot start: the metrics thread: {e}");
                drop(proxy);
                resolver.shutdown();
                control.shutdown();
                drop(view);
                node.shutdown();
                return ExitCode::from(EXIT_START);
            }
        },
    };
    // The saved model is published: the workers start on it (a take-over's
    // run already).
    if let Err(e) = node.run_workers() {
        eprintln!("dvr-pmd: cannot start: {e}");
        drop(metrics);
        drop(proxy);
        resolver.shutdown();
        control.shutdown();
        drop(view);
        node.shutdown();
        return ExitCode::from(EXIT_START);
    }
    tracing::info!(node = %node.cfg.node, "forwarding; Ctrl-C to stop");
    let mut service = service::Service::from_env();
    service.ready(&view);
    let mut reporter = report::Reporter::new(node.cfg.stats.format);
    let interval = Duration::from_millis(node.cfg.stats.interval_ms);
    let mut next = Instant::now() + interval;
    while !term.load(Ordering::SeqCst) {
        // Short: a restart waits for this loop to see the signal.
        std::thread::sleep(Duration::from_millis(5));
        service.tick(&view);
        view.tick_rates();
        view.tick_capture();
        if !interval.is_zero() && Instant::now() >= next {
            reporter.print(&view, false);
            next += interval;
        }
    }
    tracing::info!("signal received: stopping workers");
    service.stopping();
    // The endpoint holds the view (and through it the ports): gone first.
    drop(metrics);
    if let Some(p) = proxy {
        p.shutdown();
    }
    resolver.shutdown();
    control.shutdown();
    node.stop_workers();
    // A capture still running: what was taken is written, the file closed.
    control::NodeView::capture_stop(&*view);
    reporter.print(&view, true);
    drop(view);
    node.shutdown();
    tracing::info!("stopped cleanly");
    ExitCode::SUCCESS
}
