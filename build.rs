//! Generates DPDK bindings with bindgen from `pkg-config libdpdk` and compiles
//! callable wrappers for the `static inline` functions the hot path needs.

use std::env;
use std::path::PathBuf;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .expect("pkg-config not found: run scripts/install-deps");
    if !out.status.success() {
        panic!(
            "pkg-config libdpdk failed (DPDK 22.11 development files missing: run scripts/install-deps): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/dpdk.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=build.rs");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let cflags = pkg_config(&["--cflags"]);

    // Include paths and `-include rte_config.h` / `-march` go to both bindgen and cc,
    // so the wrappers and the bindings see the same struct layouts.
    let mut clang_args: Vec<String> = cflags.clone();
    clang_args.push("-DALLOW_EXPERIMENTAL_API".into());

    let wrappers = out.join("inline_wrappers");
    let bindings = bindgen::Builder::default()
        .header("csrc/dpdk.h")
        .clang_args(&clang_args)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrappers)
        // Without an allowlist bindgen also wraps x86 intrinsics whose C does not compile.
        .allowlist_function("rte_eal_.*")
        .allowlist_function("rte_eth_.*")
        .allowlist_function("rte_pktmbuf_.*")
        .allowlist_function("rte_mempool_.*")
        .allowlist_function("rte_malloc_heap_(create|destroy|memory_add|memory_remove|get_socket)")
        .allowlist_function("rte_ring_(create|free|lookup)")
        .allowlist_function("rte_lcore_.*")
        .allowlist_function("rte_thread_(register|unregister)")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_rdtsc")
        .allowlist_function("rte_get_tsc_hz")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_dev_remove")
        .allowlist_function("rte_vdev_.*")
        .allowlist_function("dvr_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_link")
        .allowlist_type("rte_ether_addr")
        .allowlist_var("RTE_ETH_.*")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RING_F_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen failed on DPDK headers");
    bindings
        .write_to_file(out.join("dpdk_bindings.rs"))
        .expect("writing bindings");

    // The generated wrappers (`<fn>__extern`) plus our tiny shim, compiled with DPDK's flags.
    let mut build = cc::Build::new();
    build
        .file(wrappers.with_extension("c"))
        .file("csrc/shim.c")
        .include(env::current_dir().unwrap())
        .define("ALLOW_EXPERIMENTAL_API", None)
        .opt_level(3)
        .warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("dvr_dpdk_shim");

    for flag in pkg_config(&["--libs"]) {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        }
    }
    // The ring PMD's constructor API (rte_eth_from_rings) is not in libdpdk's link list.
    println!("cargo:rustc-link-lib=rte_net_ring");
    // rte_vdev_init (creating virtual devices after EAL start) lives in the vdev bus.
    println!("cargo:rustc-link-lib=rte_bus_vdev");
}
