//! The safe DPDK layer against a real EAL, started once in this test process
//! (`--no-huge --no-pci --no-shconf`, a file prefix of its own).

use std::sync::{Arc, Mutex, OnceLock};

use dvr::sys::{self, Burst, Eal, Mbuf, Mempool, Port, PortSetup};

/// EAL, once per process; the tests share it (and run one at a time: they count
/// pool buffers).
fn eal() -> std::sync::MutexGuard<'static, ()> {
    static EAL: OnceLock<Mutex<()>> = OnceLock::new();
    static HANDLE: OnceLock<Mutex<Option<Eal>>> = OnceLock::new();
    let m = EAL.get_or_init(|| {
        let args: Vec<String> = [
            "-l",
            "0",
            "--no-huge",
            "-m",
            "256",
            "--no-pci",
            "--no-shconf",
            "--log-level",
            "lib.eal:error",
            "--file-prefix",
            &format!("dvr-layer-{}", std::process::id()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = Eal::init("dpdk_layer", &args).expect("EAL starts");
        // This process never calls Eal::cleanup (the tests share EAL until exit):
        // remove its runtime directory now, it is not needed with --no-shconf.
        let _ = std::fs::remove_dir_all(e.runtime_dir());
        HANDLE.get_or_init(|| Mutex::new(Some(e)));
        Mutex::new(())
    });
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn setup() -> PortSetup {
    PortSetup {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 256,
        tx_desc: 256,
        promiscuous: false,
    }
}

/// A burst of copies of `frames` in mbufs of `pool`.
fn burst_of(pool: &Mempool, frames: &[Vec<u8>]) -> Burst {
    let mut out = Burst::new();
    for f in frames {
        Mbuf::from_frame(pool, f)
            .unwrap()
            .push_to(&mut out)
            .ok()
            .unwrap();
    }
    out
}

#[test]
fn eal_starts_only_once() {
    let _g = eal();
    let e = Eal::init("again", &[]).err().expect("second start refused");
    assert!(e.to_string().contains("already started"), "{e}");
}

#[test]
fn mbufs_return_to_their_pool() {
    let _g = eal();
    let pool = Mempool::new("t_return", 1023, 0).unwrap();
    let full = pool.available();
    let m = Mbuf::from_frame(&pool, &[1, 2, 3]).unwrap();
    assert_eq!(m.data(), &[1, 2, 3]);
    assert_eq!(pool.available(), full - 1);
    drop(m);
    assert_eq!(pool.available(), full);

    let mut b = Burst::new();
    pool.alloc_into(&mut b, 40).unwrap();
    assert_eq!(b.len(), 40);
    b.set_frame(7, &[9u8; 100]).unwrap();
    assert_eq!(b.data(7), &[9u8; 100][..]);
    assert!(
        b.set_frame(8, &vec![0u8; 5000]).is_err(),
        "too big for one mbuf"
    );
    assert_eq!(pool.available(), full - 40);
    drop(b);
    assert_eq!(pool.available(), full, "a dropped burst frees its packets");
}

#[test]
fn mempool_errors_are_reported() {
    let _g = eal();
    let _a = Mempool::new("t_dup", 1023, 0).unwrap();
    let e = Mempool::new("t_dup", 1023, 0)
        .err()
        .expect("duplicate name refused");
    assert!(e.to_string().contains("t_dup"), "{e}");
}

#[test]
fn ring_pair_carries_frames_both_ways() {
    let _g = eal();
    let pool = Mempool::new("t_ring", 2047, 0).unwrap();
    let (a, b) = sys::ring_pair("t_ra", "t_rb", 256).unwrap();
    let pa = Port::start(a, "t_ra", &setup(), &pool).unwrap();
    let pb = Port::start(b, "t_rb", &setup(), &pool).unwrap();
    let (mut rxa, mut txa) = pa.queues(1, 1);
    let (mut rxb, mut txb) = pb.queues(1, 1);

    let frames: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 60 + i as usize]).collect();
    let mut out = burst_of(&pool, &frames);
    let r = txa[0].tx(&mut out);
    assert_eq!(r.sent, 20);
    assert_eq!(r.bytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());
    assert!(out.is_empty());

    let mut got = Burst::new();
    assert_eq!(rxb[0].rx(&mut got, 32), 20);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(got.data(i), &f[..]);
        assert_eq!(got.nb_segs(i), 1);
    }
    // And back, through distribute: every frame to output 0, except odd
    // lengths dropped.
    let mut outs = [Burst::new()];
    let mut out_bytes = [0u64];
    let mut drops = Burst::new();
    let to: Vec<u16> = (0..got.len())
        .map(|i| {
            if got.data(i).len().is_multiple_of(2) {
                0
            } else {
                u16::MAX
            }
        })
        .collect();
    let lens: Vec<u32> = (0..got.len()).map(|i| got.pkt_len(i)).collect();
    got.distribute(&to, &lens, &mut outs, &mut out_bytes, &mut drops);
    assert!(got.is_empty());
    assert_eq!(outs[0].len(), 10);
    assert_eq!(drops.len(), 10);
    let even: u64 = frames
        .iter()
        .map(|f| f.len() as u64)
        .filter(|l| l % 2 == 0)
        .sum();
    assert_eq!(out_bytes[0], even);
    drops.clear();
    assert_eq!(txb[0].tx(&mut outs[0]).sent, 10);
    let mut back = Burst::new();
    assert_eq!(rxa[0].rx(&mut back, 32), 10);
    assert!((0..10).all(|i| back.data(i).len().is_multiple_of(2)));
    drop(back);
    assert_eq!(rxa[0].rx(&mut Burst::new(), 32), 0);
    assert_eq!(pb.stats().opackets, 10);
    drop((rxa, txa, rxb, txb));
    pa.close();
    pb.close();
}

#[test]
fn bad_vdev_names_the_device() {
    let _g = eal();
    let e = sys::vdev_create("net_nosuchdriver0", "").expect_err("unknown driver refused");
    assert!(e.to_string().contains("net_nosuchdriver0"), "{e}");
    let e = sys::vdev_create("net_pcap9", "rx_pcap=/nonexistent.pcap")
        .expect_err("missing file refused");
    assert!(e.to_string().contains("net_pcap9"), "{e}");
}

#[test]
fn null_port_sends_and_counts() {
    let _g = eal();
    let pool = Mempool::new("t_null", 1023, 0).unwrap();
    let id = sys::vdev_create("net_null7", "").unwrap();
    let info = sys::dev_info(id).unwrap();
    assert_eq!(info.driver, "net_null");
    let p: Arc<Port> = Port::start(id, "null7", &setup(), &pool).unwrap();
    let (_rx, mut tx) = p.queues(1, 1);
    let mut b = Burst::new();
    pool.alloc_into(&mut b, 5).unwrap();
    for i in 0..5 {
        b.set_frame(i, &[0u8; 64]).unwrap();
    }
    assert_eq!(tx[0].tx(&mut b).sent, 5);
    assert!(p.link_up());
}

#[test]
fn a_pool_on_transparent_huge_pages_carries_frames_and_goes_away() {
    use dvr::pkt::InPlace;
    let _g = eal();
    for round in 0..2 {
        // The same names twice: the first pool's heap and memory were released.
        let pool = Mempool::new_thp("t_thp", 4095, 0).unwrap();
        assert!(pool.on_thp());
        let full = pool.available();
        assert_eq!(full, 4095);
        let (a, b) = sys::ring_pair(&format!("t_ta{round}"), &format!("t_tb{round}"), 256).unwrap();
        let pa = Port::start(a, "t_ta", &setup(), &pool).unwrap();
        let pb = Port::start(b, "t_tb", &setup(), &pool).unwrap();
        let (_, mut txa) = pa.queues(1, 1);
        let (mut rxb, _) = pb.queues(1, 1);
        let frames: Vec<Vec<u8>> = (0..32u8).map(|i| vec![i; 60 + i as usize]).collect();
        let mut out = burst_of(&pool, &frames);
        assert_eq!(txa[0].tx(&mut out).sent, 32);
        let mut got = Burst::new();
        assert_eq!(rxb[0].rx(&mut got, 32), 32);
        for (i, f) in frames.iter().enumerate() {
            let mut p = got.pkt(i);
            assert_eq!(p.bytes().unwrap(), &f[..]);
            // A packet grows into its headroom in place: its bytes then, the
            // old ones at the end; more than the headroom leaves it as it was.
            let b = p.prepend(50).unwrap();
            assert_eq!(b.len(), f.len() + 50);
            assert_eq!(&b[50..], &f[..]);
            b[..50].fill(0xee);
            assert!(p.prepend(4096).is_none());
            assert_eq!(p.len() as usize, f.len() + 50);
            assert_eq!(&got.data(i)[50..], &f[..]);
            assert_eq!(got.data(i)[..50], [0xee; 50]);
        }
        assert_eq!(pool.available(), full - 32);
        drop(got);
        assert_eq!(pool.available(), full);
        drop((pa, pb));
    }
}
