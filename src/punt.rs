//! The exchange between the workers and the control thread, without locks or
//! allocation on the workers' packet path: what the dataplane learned for the
//! control plane (the senders of ARP replies on the underlay, the holders
//! of VIPs announced on VM ports), frames the
//! control plane wants sent (ARP requests for VTEPs), and the SNAT sessions
//! the control plane asks to see ([`SessionQuery`]). Bounded queues: when one
//! is full the newest entry is dropped (learning retries, requests are
//! re-sent, an answer that does not fit is reported missing).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::mac::MacAddr;
use crate::nat::SessionView;

/// The largest frame the control plane injects.
pub const INJECT_MAX: usize = 512;

/// A frame to send on a port.
#[derive(Clone, Copy)]
pub struct Injected {
    pub port: u16,
    pub len: u16,
    pub bytes: [u8; INJECT_MAX],
}

impl Injected {
    /// A frame of at most [`INJECT_MAX`] bytes for `port`.
    pub fn new(port: u16, frame: &[u8]) -> Option<Injected> {
        let mut bytes = [0u8; INJECT_MAX];
        bytes.get_mut(..frame.len())?.copy_from_slice(frame);
        Some(Injected {
            port,
            len: frame.len() as u16,
            bytes,
        })
    }

    pub fn frame(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The largest frame the metadata proxy's queues carry: an Ethernet frame
/// of a 1500-byte IP packet, rounded up (the proxy's TCP/IP stack
/// advertises an MSS that keeps a VM's segments within it).
pub const SEGMENT_MAX: usize = 1536;

/// A frame between a VM port and the metadata proxy, in a fixed-size slot
/// (no allocation on the worker): from the VM, with where it came from;
/// to the VM, with the port to send it on.
#[derive(Clone, Copy)]
pub struct Segment {
    /// The VM's dataplane port.
    pub port: u16,
    pub len: u16,
    /// The network of the VM (its index in the tables) and the router
    /// whose interface on the VM's subnet is its gateway, with that
    /// interface's MAC (from the VM; unused toward it).
    pub net: u32,
    pub router: u32,
    pub gw_mac: MacAddr,
    pub bytes: [u8; SEGMENT_MAX],
}

impl Segment {
    /// A frame of at most [`SEGMENT_MAX`] bytes.
    #[inline]
    pub fn new(port: u16, net: u32, router: u32, gw_mac: MacAddr, frame: &[u8]) -> Option<Segment> {
        let mut s = Segment {
            port,
            len: frame.len() as u16,
            net,
            router,
            gw_mac,
            bytes: [0u8; SEGMENT_MAX],
        };
        s.bytes.get_mut(..frame.len())?.copy_from_slice(frame);
        Some(s)
    }

    pub fn frame(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The metadata proxy's two queues (only with `[metadata]` configured).
pub struct MetadataQueues {
    /// TCP segments from VMs to 169.254.169.254:80.
    pub from_vms: ArrayQueue<Segment>,
    /// The proxy's segments for the VMs.
    pub to_vms: ArrayQueue<Segment>,
    /// The proxy's counters.
    pub stats: std::sync::Arc<MetadataStats>,
}

/// What the metadata proxy did (its own counters, beside the workers'
/// drop reasons): in the counter lines' `metadata` object.
#[derive(Debug, Default)]
pub struct MetadataStats {
    /// Connections accepted, and refused (over `max_connections`, or over
    /// `max_networks`).
    pub connections: AtomicU64,
    pub refused: AtomicU64,
    /// Requests sent on to the server and answers relayed.
    pub requests: AtomicU64,
    pub answered: AtomicU64,
    /// Answered by the proxy itself: the server refused or was not reached
    /// (502), did not answer in time (504); a request it could not read (4xx).
    pub bad_gateway: AtomicU64,
    pub gateway_timeout: AtomicU64,
    pub bad_request: AtomicU64,
    /// Segments for the VMs the workers' queue had no room for (TCP sends
    /// them again).
    pub to_vms_full: AtomicU64,
    /// Requests at the server now (each on a thread of its own), at most
    /// `max_connections`: over it, 503. A VM that resets its connection
    /// does not end its request's thread, which ends by its timeout.
    pub in_flight: AtomicU64,
}

impl MetadataStats {
    /// The counters now.
    pub fn snapshot(&self) -> crate::proto::answers::MetadataCounters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        crate::proto::answers::MetadataCounters {
            connections: g(&self.connections),
            refused: g(&self.refused),
            requests: g(&self.requests),
            answered: g(&self.answered),
            bad_gateway: g(&self.bad_gateway),
            gateway_timeout: g(&self.gateway_timeout),
            bad_request: g(&self.bad_request),
            to_vms_full: g(&self.to_vms_full),
            in_flight: g(&self.in_flight),
        }
    }
}

/// Slots of each metadata queue (about 400 KB each).
pub const METADATA_QUEUE: usize = 256;

pub struct Exchange {
    /// (IP, MAC) of ARP replies seen on the underlay and the external port,
    /// and of neighbour advertisements seen on the external port.
    pub learned: ArrayQueue<(IpAddr, MacAddr)>,
    /// Frames for the workers to send.
    pub inject: ArrayQueue<Injected>,
    /// VIP holders the workers saw announced.
    pub vips: ArrayQueue<crate::pipeline::VipNote>,
    /// `dvr-ctl show sessions`: a question to every worker.
    pub sessions: SessionQuery,
    /// The metadata proxy's queues, when it runs.
    pub metadata: Option<MetadataQueues>,
    /// Live trace: which frames to mark, and the traced ones.
    pub trace: crate::worker::trace::TraceTap,
    /// Packet capture: which frames to copy, and the copies.
    pub capture: crate::worker::capture::CaptureTap,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            learned: ArrayQueue::new(256),
            inject: ArrayQueue::new(64),
            vips: ArrayQueue::new(256),
            sessions: SessionQuery::default(),
            metadata: None,
            trace: Default::default(),
            capture: Default::default(),
        }
    }
}

impl Exchange {
    /// An exchange with the metadata proxy's queues.
    pub fn with_metadata() -> Exchange {
        Exchange {
            metadata: Some(MetadataQueues {
                from_vms: ArrayQueue::new(METADATA_QUEUE),
                to_vms: ArrayQueue::new(METADATA_QUEUE),
                stats: Default::default(),
            }),
            ..Exchange::default()
        }
    }

    /// Worker side: hands frame `f` from a VM (noted in `n`) to the
    /// metadata proxy. The disposition of the frame: taken (a punt), or
    /// dropped when the proxy is not running, its queue is full or the
    /// frame does not fit a slot.
    #[inline]
    pub fn punt_metadata(
        &self,
        n: Option<crate::pipeline::MetadataNote>,
        f: &[u8],
    ) -> crate::pipeline::Disposition {
        use crate::pipeline::{Disposition as D, PuntKind};
        use crate::stats::DropReason as R;
        let (Some(q), Some(n)) = (&self.metadata, n) else {
            return D::Drop(R::Dangling);
        };
        let Some(s) = Segment::new(n.port, n.net, n.router, n.gw_mac, f) else {
            return D::Drop(R::MetadataOversize);
        };
        match q.from_vms.push(s) {
            Ok(()) => D::Punt(PuntKind::Metadata),
            Err(_) => D::Drop(R::MetadataQueueFull),
        }
    }

    /// Records the VIP holders the workers noted in `c` (control thread).
    /// Returns the newest snapshot if one changed, to publish.
    pub fn learn_vips(
        &self,
        c: &mut crate::compile::Compiler,
    ) -> Option<std::sync::Arc<crate::tables::Snapshot>> {
        let mut published = None;
        while let Some(n) = self.vips.pop() {
            if let Some(snap) = c.set_vip_holder(n.net, n.ip, n.mac) {
                tracing::info!(vip = %n.ip, mac = %n.mac, "VIP holder learned");
                published = Some(snap);
            }
        }
        published
    }
}

/// The most sessions one worker lists in an answer (its count is whole).
pub const SESSIONS_MAX: usize = 1000;

/// A question about the SNAT sessions: its number (never 0) and the router
/// (its index in the compiled tables) it is about, if only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    pub number: u32,
    pub router: Option<u32>,
}

/// One worker's answer to question `number`.
#[derive(Debug, Clone)]
pub struct SessionAnswer {
    pub worker: usize,
    pub number: u32,
    /// The live sessions that match, all of them.
    pub total: u64,
    /// The first [`SESSIONS_MAX`] of them.
    pub sessions: Vec<SessionView>,
}

/// The SNAT sessions live in each worker's own table, which only its worker
/// touches. The control thread posts a question (one atomic word: its number
/// and the router); each worker sees it with one relaxed load per poll, scans
/// its table a part at a time between bursts (cold path: the answer is
/// allocated there, nothing per packet) and pushes its answer into a bounded
/// queue; the control thread collects the answers with a deadline, so a
/// worker that does not answer delays it at most that long and is named.
pub struct SessionQuery {
    /// `number << 32 | router + 1` (0: every router); 0 until the first question.
    question: AtomicU64,
    answers: ArrayQueue<SessionAnswer>,
    /// The asking side: one question at a time; the last number used.
    asking: Mutex<u32>,
}

impl Default for SessionQuery {
    fn default() -> Self {
        SessionQuery {
            question: AtomicU64::new(0),
            // Room for every worker's answer and a late one from each for
            // the question before, up to 128 workers.
            answers: ArrayQueue::new(256),
            asking: Mutex::new(0),
        }
    }
}

impl SessionQuery {
    /// Worker side: the question to answer, if there is one other than
    /// `answered` (the number of the last question this worker answered).
    #[inline(always)]
    pub fn pending(&self, answered: u32) -> Option<Question> {
        let q = self.question.load(Ordering::Acquire);
        let number = (q >> 32) as u32;
        (number != 0 && number != answered).then(|| Question {
            number,
            router: (q as u32).checked_sub(1),
        })
    }

    /// Worker side: hands in an answer. False when the queue is full (the
    /// control thread then reports the worker as not answering).
    pub fn answer(&self, a: SessionAnswer) -> bool {
        self.answers.push(a).is_ok()
    }

    /// Control side: asks `workers` workers about `router` (every router:
    /// None) and waits for their answers, at most `timeout`. Returns each
    /// worker's answer, None for those that did not answer in time.
    pub fn ask(
        &self,
        router: Option<u32>,
        workers: usize,
        timeout: Duration,
    ) -> Vec<Option<SessionAnswer>> {
        let mut last = self.asking.lock().unwrap_or_else(|e| e.into_inner());
        // Late answers to earlier questions.
        while self.answers.pop().is_some() {}
        let number = match last.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        *last = number;
        let filter = router.map_or(0, |r| u64::from(r) + 1) & 0xffff_ffff;
        self.question
            .store(u64::from(number) << 32 | filter, Ordering::Release);
        let mut got: Vec<Option<SessionAnswer>> = vec![None; workers];
        let mut missing = workers;
        let deadline = Instant::now() + timeout;
        while missing > 0 {
            match self.answers.pop() {
                Some(a) if a.number == number && a.worker < workers => {
                    let w = a.worker;
                    if got[w].replace(a).is_none() {
                        missing -= 1;
                    }
                }
                Some(_) => {}
                None if Instant::now() >= deadline => break,
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The holders the workers noted are published, the last one winning;
    /// one already known publishes nothing.
    #[test]
    fn noted_vip_holders_are_published() {
        use crate::pipeline::VipNote;
        use crate::testkit;
        let m = testkit::model();
        let mut c = crate::compile::Compiler::new(&m, testkit::node());
        let x = Exchange::default();
        assert!(x.learn_vips(&mut c).is_none());
        let blue = (0..8u32)
            .find(|&i| c.current().net(i).is_some_and(|n| n.name == "blue"))
            .unwrap();
        let ip = "10.1.99.7".parse().unwrap();
        let pair = MacAddr(testkit::PAIR_MAC);
        let note = |mac| VipNote { net: blue, ip, mac };
        x.vips.push(note(MacAddr(testkit::A_MAC))).unwrap();
        x.vips.push(note(pair)).unwrap();
        let s = x.learn_vips(&mut c).expect("published");
        assert_eq!(s.net(blue).unwrap().holders.get(&ip), Some(&pair));
        assert!(std::sync::Arc::ptr_eq(&s, c.current()));
        x.vips.push(note(pair)).unwrap();
        assert!(x.learn_vips(&mut c).is_none(), "already known");
    }

    fn answer(worker: usize, number: u32, total: u64) -> SessionAnswer {
        SessionAnswer {
            worker,
            number,
            total,
            sessions: Vec::new(),
        }
    }

    #[test]
    fn a_question_is_seen_once_with_its_router() {
        let q = SessionQuery::default();
        assert_eq!(q.pending(0), None, "nothing asked yet");
        std::thread::scope(|s| {
            let asker = s.spawn(|| q.ask(Some(7), 1, Duration::from_secs(10)));
            let seen = loop {
                if let Some(x) = q.pending(0) {
                    break x;
                }
                std::thread::yield_now();
            };
            assert_eq!(seen.router, Some(7));
            assert!(q.answer(answer(0, seen.number, 3)));
            let got = asker.join().unwrap();
            assert_eq!(got[0].as_ref().map(|a| a.total), Some(3));
            assert_eq!(q.pending(seen.number), None, "answered: nothing more");
        });
        // Every router: the filter is None.
        std::thread::scope(|s| {
            let asker = s.spawn(|| q.ask(None, 1, Duration::from_secs(10)));
            let seen = loop {
                if let Some(x) = q.pending(1) {
                    break x;
                }
                std::thread::yield_now();
            };
            assert_eq!(
                seen,
                Question {
                    number: 2,
                    router: None
                }
            );
            q.answer(answer(0, 2, 0));
            asker.join().unwrap();
        });
    }

    #[test]
    fn a_silent_worker_is_missing_after_the_timeout_and_stale_answers_are_ignored() {
        let q = SessionQuery::default();
        // A late answer to an earlier question is left in the queue.
        assert!(q.answer(answer(1, 99, 5)));
        std::thread::scope(|s| {
            let t0 = Instant::now();
            let asker = s.spawn(|| q.ask(None, 2, Duration::from_millis(200)));
            let seen = loop {
                if let Some(x) = q.pending(0) {
                    break x;
                }
                std::thread::yield_now();
            };
            // Worker 1 answers a question that is not this one; worker 0
            // answers this one; worker 1 never does.
            q.answer(answer(1, seen.number + 1, 9));
            q.answer(answer(0, seen.number, 4));
            let got = asker.join().unwrap();
            let waited = t0.elapsed();
            assert_eq!(got[0].as_ref().map(|a| a.total), Some(4));
            assert!(got[1].is_none(), "worker 1 did not answer");
            assert!(
                waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
                "{waited:?}"
            );
        });
    }
}
