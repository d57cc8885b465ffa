//! The DPDK environment (EAL) of the process, and the registration of the
//! worker threads with it.

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{cstring, ffi, Error, Result};

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// The DPDK environment of this process. Created once; [`Eal::cleanup`] ends it.
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Starts EAL with `args` (without the program name). Fails if EAL was already
    /// started in this process: EAL can start only once.
    pub fn init(program: &str, args: &[String]) -> Result<Eal> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::other(
                "rte_eal_init",
                "EAL already started in this process",
            ));
        }
        let mut argv: Vec<*mut libc::c_char> = Vec::with_capacity(args.len() + 2);
        for a in std::iter::once(program).chain(args.iter().map(String::as_str)) {
            // EAL keeps pointers into argv for the life of the process: leak on purpose.
            argv.push(cstring("rte_eal_init", a)?.into_raw());
        }
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut libc::c_char] = Box::leak(argv.into_boxed_slice());
        // SAFETY: argv is a NULL-terminated array of valid, leaked C strings that
        // outlive EAL; argc excludes the terminating NULL; EAL_STARTED guarantees a
        // single call per process.
        let rc = unsafe { ffi::rte_eal_init((argv.len() - 1) as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(Error::from_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// EAL's runtime directory of this process (`/var/run/dpdk/<file-prefix>`).
    pub fn runtime_dir(&self) -> std::path::PathBuf {
        // SAFETY: EAL is started (we hold an Eal); the function returns a pointer
        // to a static NUL-terminated string, copied at once.
        let s = unsafe { CStr::from_ptr(ffi::rte_eal_get_runtime_dir()) };
        std::path::PathBuf::from(s.to_string_lossy().into_owned())
    }

    /// Releases EAL's resources, then removes its runtime directory (sockets
    /// and config files that 22.11 leaves behind). Call after every port is
    /// closed and every mempool dropped.
    pub fn cleanup(self) {
        let dir = self.runtime_dir();
        // SAFETY: consumes the only Eal; callers have closed ports and pools.
        unsafe {
            ffi::rte_eal_cleanup();
        }
        // Always <base>/dpdk/<file-prefix>; never remove anything else.
        if dir.parent().and_then(|p| p.file_name()) == Some(std::ffi::OsStr::new("dpdk")) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Registers the calling (already pinned) thread with EAL so that it gets an lcore
/// id, and with it the per-lcore mempool caches. Returns the lcore id.
pub fn register_thread() -> Result<u32> {
    // SAFETY: registers the calling thread; EAL must be started (callers hold an Eal).
    let rc = unsafe { ffi::rte_thread_register() };
    if rc < 0 {
        return Err(Error::from_errno("rte_thread_register"));
    }
    // SAFETY: reads the calling thread's lcore id.
    Ok(unsafe { ffi::rte_lcore_id() })
}

/// Undoes [`register_thread`] for the calling thread.
pub fn unregister_thread() {
    // SAFETY: only releases the calling thread's lcore id.
    unsafe { ffi::rte_thread_unregister() }
}
