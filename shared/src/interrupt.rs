//! Ctrl-C while helm runs. Helm is started in a process group of its own (so a timeout can kill what it
//! started), which also means the terminal's SIGINT no longer reaches it: without this module a Ctrl-C
//! during rendering would leave a hung `helm template` running after we are gone. The handler kills every
//! tracked group, then lets SIGINT do what it would have done (or, once the copy engine handles Ctrl-C
//! itself, hands over to it).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Process groups of running child processes; 0 is a free slot. Fixed size so the signal handler
/// needs no allocation or lock.
static GROUPS: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];
/// Set once another handler (the copy engine's) decides what Ctrl-C means.
static HANDLED_ELSEWHERE: AtomicBool = AtomicBool::new(false);

/// A tracked process group; it is forgotten when this is dropped.
pub(crate) struct Tracked(Option<usize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            GROUPS[i].store(0, Ordering::SeqCst);
        }
    }
}

/// Kill the process group `pgid` on Ctrl-C for as long as the result is alive. Installs the handler on
/// first use (only when SIGINT still has its default action, so no other handler is displaced).
pub(crate) fn track(pgid: u32) -> Tracked {
    install();
    let Ok(pgid) = i32::try_from(pgid) else {
        return Tracked(None);
    };
    for (i, slot) in GROUPS.iter().enumerate() {
        if slot
            .compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Tracked(Some(i));
        }
    }
    Tracked(None)
}

/// From now on Ctrl-C is the caller's to handle (it still kills tracked groups first).
pub fn handled_elsewhere() {
    HANDLED_ELSEWHERE.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a null new action only reads the current one into `old`; the
        // handler installed below only calls async-signal-safe functions (kill, signal, raise) and
        // touches atomics.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                return;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigint as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut new.sa_mask);
            new.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGINT, &new, std::ptr::null_mut());
        }
    });
}

#[cfg(not(unix))]
fn install() {}

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    kill_tracked();
    if !HANDLED_ELSEWHERE.load(Ordering::SeqCst) {
        // SAFETY: both are async-signal-safe; the default action ends the process as SIGINT would have.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::raise(libc::SIGINT);
        }
    }
}

/// Sends SIGKILL to every tracked group.
#[cfg(unix)]
fn kill_tracked() {
    for slot in &GROUPS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals that process group only.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_takes_a_slot_and_dropping_frees_it() {
        let t = track(4_000_000);
        let i = t.0.expect("a free slot");
        assert_eq!(GROUPS[i].load(Ordering::SeqCst), 4_000_000);
        drop(t);
        assert_eq!(GROUPS[i].load(Ordering::SeqCst), 0);
    }
}
