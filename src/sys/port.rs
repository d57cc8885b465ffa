//! Ethdev ports: virtual devices, ring pairs, a port's setup, link and counters.

use std::ffi::CStr;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{cstring, ffi, Error, Mempool, Result, RxQueue, TxQueue};

/// Counters kept by the driver for a port.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// How a port is set up.
#[derive(Debug, Clone)]
pub struct PortSetup {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub promiscuous: bool,
}

/// An ethdev port: probed, configured, started.
pub struct Port {
    pub(super) id: u16,
    name: String,
    closed: AtomicBool,
    /// The link was down when last looked at ([`Port::refresh_link`]).
    link_down: AtomicBool,
    _pool: Arc<Mempool>,
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Port({} {})", self.id, self.name)
    }
}

/// Creates a virtual device (`net_pcap0`, `net_vhost1`, ...) with its arguments.
pub fn vdev_create(devname: &str, args: &str) -> Result<u16> {
    let op = format!("rte_vdev_init({devname},{args})");
    let n = cstring(&op, devname)?;
    let a = cstring(&op, args)?;
    // SAFETY: both are valid C strings that DPDK copies.
    let rc = unsafe { ffi::rte_vdev_init(n.as_ptr(), a.as_ptr()) };
    if rc < 0 {
        return Err(Error::from_code(op, rc));
    }
    port_by_name(devname)
}

/// Removes virtual device `devname` (its port, if any, closed first).
pub fn vdev_remove(devname: &str) -> Result<()> {
    let op = format!("rte_vdev_uninit({devname})");
    let n = cstring(&op, devname)?;
    // SAFETY: valid C string; uninit of a name that is not a virtual device
    // returns an error, and a device's port is closed by its driver's remove.
    let rc = unsafe { ffi::rte_vdev_uninit(n.as_ptr()) };
    if rc < 0 {
        return Err(Error::from_code(op, rc));
    }
    Ok(())
}

/// Port id of a device probed by EAL (a PCI address or a vdev name).
pub fn port_by_name(devname: &str) -> Result<u16> {
    let op = format!("rte_eth_dev_get_port_by_name({devname})");
    let n = cstring(&op, devname)?;
    let mut id = 0u16;
    // SAFETY: valid C string and a valid out pointer.
    let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(n.as_ptr(), &mut id) };
    if rc < 0 {
        return Err(Error::from_code(op, rc));
    }
    Ok(id)
}

/// Creates two ring ports `a` and `b` wired to each other: what `a` sends, `b`
/// receives, and the other way round.
pub fn ring_pair(a: &str, b: &str, size: u32) -> Result<(u16, u16)> {
    let op = format!("rte_eth_from_rings({a},{b})");
    let mk = |name: String| -> Result<*mut ffi::rte_ring> {
        let c = cstring(&op, &name)?;
        // SAFETY: valid name; single-producer/single-consumer flags since each ring
        // has one sending and one receiving queue.
        let r = unsafe {
            ffi::rte_ring_create(
                c.as_ptr(),
                size,
                -1,
                ffi::RING_F_SP_ENQ | ffi::RING_F_SC_DEQ,
            )
        };
        if r.is_null() {
            Err(Error::from_errno(format!("rte_ring_create({name})")))
        } else {
            Ok(r)
        }
    };
    // Ring names are short (RTE_RING_NAMESIZE); number them.
    static RINGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RINGS.fetch_add(2, Ordering::Relaxed);
    let ab = mk(format!("dvr_ring{n}"))?;
    let ba = mk(format!("dvr_ring{}", n + 1))?;
    let ca = cstring(&op, a)?;
    let cb = cstring(&op, b)?;
    // SAFETY: the ring pointers are valid rings created above; arrays of one ring
    // each; DPDK keeps the ring pointers (the rings live for the process).
    let pa = unsafe { ffi::rte_eth_from_rings(ca.as_ptr(), &ba, 1, &ab, 1, 0) };
    if pa < 0 {
        return Err(Error::from_errno(op));
    }
    // SAFETY: as above, crossed.
    let pb = unsafe { ffi::rte_eth_from_rings(cb.as_ptr(), &ab, 1, &ba, 1, 0) };
    if pb < 0 {
        return Err(Error::from_errno(op));
    }
    Ok((pa as u16, pb as u16))
}

/// What a device supports.
#[derive(Debug, Clone)]
pub struct DevInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// The flow types its RSS can hash (`RTE_ETH_RSS_*` bits; 0: no RSS).
    pub rss_offloads: u64,
}

/// What RSS hashes when a port has several RX queues: IPv4 and IPv6, with
/// TCP and UDP ports (`RTE_ETH_RSS_IPV4`, `FRAG_IPV4`, `NONFRAG_IPV4_TCP`,
/// `_UDP`, `_OTHER`, and the same for IPv6: bits 2-5, 7, 8-11, 13 of
/// rte_ethdev.h), as far as the device can.
const RSS_HF: u64 = (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 13);

/// The limits of probed port `id`.
pub fn dev_info(id: u16) -> Result<DevInfo> {
    let mut info = ffi::rte_eth_dev_info::default();
    // SAFETY: out pointer to our local; DPDK fills it.
    let rc = unsafe { ffi::rte_eth_dev_info_get(id, &mut info) };
    if rc < 0 {
        return Err(Error::from_code(format!("rte_eth_dev_info_get({id})"), rc));
    }
    let driver = if info.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: driver_name points to the driver's static NUL-terminated name.
        unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned()
    };
    Ok(DevInfo {
        driver,
        max_rx_queues: info.max_rx_queues,
        max_tx_queues: info.max_tx_queues,
        rss_offloads: info.flow_type_rss_offloads,
    })
}

impl Port {
    /// Configures and starts port `id` with `setup`, RX buffers from `pool`.
    /// With several RX queues, a device that has RSS spreads flows over them
    /// by their addresses and ports ([`RSS_HF`]); a virtual device without
    /// RSS (vhost-user: the guest picks its queue) is left as it is.
    pub fn start(id: u16, name: &str, setup: &PortSetup, pool: &Arc<Mempool>) -> Result<Arc<Port>> {
        match Self::configure(id, name, setup, pool) {
            Ok(()) => {}
            Err(e) => {
                // The device lets go of what its queues hold (a pcap replay's
                // mbufs) now, while their pool is alive: left for EAL's
                // cleanup, after the pool is freed, they crash it.
                // SAFETY: a probed port that is not started and has no queue
                // handle (none was made); closing releases its queues.
                unsafe { ffi::rte_eth_dev_close(id) };
                return Err(e);
            }
        }
        let port = Arc::new(Port {
            id,
            name: name.to_owned(),
            closed: AtomicBool::new(false),
            link_down: AtomicBool::new(false),
            _pool: pool.clone(),
        });
        port.refresh_link();
        Ok(port)
    }

    /// Configures port `id`, sets its queues up and starts it.
    fn configure(id: u16, name: &str, setup: &PortSetup, pool: &Arc<Mempool>) -> Result<()> {
        let mut conf = ffi::rte_eth_conf::default();
        if setup.rx_queues > 1 {
            let hf = RSS_HF & dev_info(id)?.rss_offloads;
            if hf != 0 {
                conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
            }
        }
        // SAFETY: id is a probed port; conf is a zeroed (default) config we own.
        let rc = unsafe { ffi::rte_eth_dev_configure(id, setup.rx_queues, setup.tx_queues, &conf) };
        if rc < 0 {
            return Err(Error::from_code(
                format!("rte_eth_dev_configure({name})"),
                rc,
            ));
        }
        let (mut rxd, mut txd) = (setup.rx_desc, setup.tx_desc);
        // SAFETY: valid port id and out pointers to our locals.
        let rc = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rxd, &mut txd) };
        if rc < 0 {
            return Err(Error::from_code(
                format!("rte_eth_dev_adjust_nb_rx_tx_desc({name})"),
                rc,
            ));
        }
        // SAFETY: valid port id; returns the device's NUMA socket or -1.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..setup.rx_queues {
            // SAFETY: configured port, queue index below the configured count, NULL
            // rxconf means the driver's default, the pool outlives the port (Arc).
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(id, q, rxd, socket, std::ptr::null(), pool.ptr.as_ptr())
            };
            if rc < 0 {
                return Err(Error::from_code(
                    format!("rte_eth_rx_queue_setup({name}, {q})"),
                    rc,
                ));
            }
        }
        for q in 0..setup.tx_queues {
            // SAFETY: as above; NULL txconf = driver default.
            let rc = unsafe { ffi::rte_eth_tx_queue_setup(id, q, txd, socket, std::ptr::null()) };
            if rc < 0 {
                return Err(Error::from_code(
                    format!("rte_eth_tx_queue_setup({name}, {q})"),
                    rc,
                ));
            }
        }
        if setup.promiscuous {
            // SAFETY: valid port; failure (drivers without the mode) is harmless.
            unsafe { ffi::rte_eth_promiscuous_enable(id) };
        }
        // SAFETY: fully configured port.
        let rc = unsafe { ffi::rte_eth_dev_start(id) };
        if rc < 0 {
            return Err(Error::from_code(format!("rte_eth_dev_start({name})"), rc));
        }
        Ok(())
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: valid port, out pointer to our local.
        unsafe { ffi::rte_eth_macaddr_get(self.id, &mut a) };
        a.addr_bytes
    }

    /// Whether the link is up (vhost-user: a guest is connected).
    pub fn link_up(&self) -> bool {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: valid port, out pointer to our local; the call does not wait.
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut l) };
        rc == 0 && l.link_status() != 0
    }

    /// Looks at the link again (a call into the driver: the control thread
    /// does it, a few times a second) and remembers it for
    /// [`Port::link_known_down`]. Returns whether it is up.
    pub fn refresh_link(&self) -> bool {
        let up = self.link_up();
        self.link_down.store(!up, Ordering::Relaxed);
        up
    }

    /// Whether the link was down when last looked at ([`Port::refresh_link`]):
    /// one load, for the workers (a vhost-user port whose guest has not set
    /// up its queues yet is down).
    #[inline]
    pub fn link_known_down(&self) -> bool {
        self.link_down.load(Ordering::Relaxed)
    }

    /// The driver's counters for this port.
    pub fn stats(&self) -> PortStats {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid port, out pointer to our local.
        unsafe { ffi::rte_eth_stats_get(self.id, &mut s) };
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// The queue handles of this port: one RX and one TX handle per queue. Call it
    /// once per port (the handles are the only way to poll its queues).
    pub fn queues(self: &Arc<Self>, rx: u16, tx: u16) -> (Vec<RxQueue>, Vec<TxQueue>) {
        let r = (0..rx)
            .map(|q| RxQueue {
                port: self.clone(),
                queue: q,
            })
            .collect();
        let t = (0..tx)
            .map(|q| TxQueue {
                port: self.clone(),
                queue: q,
            })
            .collect();
        (r, t)
    }

    /// The name DPDK knows the device by (`net_vhost3`, a PCI address).
    pub fn device_name(&self) -> Option<String> {
        let mut buf = [0 as std::ffi::c_char; 64];
        // SAFETY: valid port; the buffer has RTE_ETH_NAME_MAX_LEN (64) bytes,
        // which DPDK fills with a NUL-terminated name.
        let rc = unsafe { ffi::rte_eth_dev_get_name_by_port(self.id, buf.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: DPDK wrote a NUL-terminated string into our buffer.
        let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
        Some(name.to_string_lossy().into_owned())
    }

    /// Stops and closes the port, then removes its virtual device, so that
    /// the device's name can be created again and its socket or interface
    /// is let go of (a port added at run time and deleted). Call it once no
    /// queue handle of the port is in use.
    pub fn remove(&self) -> Result<()> {
        let dev = self.device_name();
        self.close();
        match dev {
            Some(dev) => vdev_remove(&dev),
            None => Ok(()),
        }
    }

    /// Stops and closes the port. Idempotent; also done on drop.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // SAFETY: the port was started by us; no queue handle is polling (they hold
        // an Arc to the port, and callers drop workers first).
        unsafe {
            ffi::rte_eth_dev_stop(self.id);
            ffi::rte_eth_dev_close(self.id);
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.close();
    }
}
