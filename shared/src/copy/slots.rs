//! Blob transfer slots handed out largest blob first (LPT scheduling): with many images in flight, the
//! few big layers start early instead of finishing last, which shortens the whole run.

use std::collections::BinaryHeap;
use std::sync::Mutex;

use tokio::sync::oneshot;

struct Waiter {
    size: u64,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.size, self.seq) == (other.size, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// Bigger first; among equals, first come first served.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.size.cmp(&other.size).then(other.seq.cmp(&self.seq))
    }
}

struct State {
    free: usize,
    seq: u64,
    waiting: BinaryHeap<Waiter>,
}

/// A counting semaphore whose waiters are served biggest `size` first.
pub(crate) struct Slots {
    state: Mutex<State>,
}

/// A held slot; released on drop.
pub(crate) struct Slot<'a> {
    slots: &'a Slots,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// Waits for a slot; if dropped after a slot was handed to it, gives the slot back.
struct Pending<'a> {
    slots: &'a Slots,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

impl Slots {
    /// `n` slots (at least one).
    pub(crate) fn new(n: usize) -> Slots {
        Slots {
            state: Mutex::new(State {
                free: n.max(1),
                seq: 0,
                waiting: BinaryHeap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self) {
        let mut st = self.lock();
        while let Some(w) = st.waiting.pop() {
            if w.wake.send(()).is_ok() {
                return;
            }
        }
        st.free += 1;
    }

    /// Waits for a slot for a transfer of `size` bytes.
    pub(crate) async fn acquire(&self, size: u64) -> Slot<'_> {
        let rx = {
            let mut st = self.lock();
            if st.free > 0 {
                st.free -= 1;
                return Slot { slots: self };
            }
            let (tx, rx) = oneshot::channel();
            st.seq += 1;
            let seq = st.seq;
            st.waiting.push(Waiter { size, seq, wake: tx });
            rx
        };
        let mut pending = Pending {
            slots: self,
            rx: Some(rx),
        };
        if let Some(rx) = pending.rx.as_mut() {
            // The sender is only dropped unsent when `Slots` itself is gone, which cannot outlive `self`.
            let _ = rx.await;
        }
        pending.rx = None;
        Slot { slots: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn largest_waiter_is_served_first_and_dropped_waiters_return_their_slot() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.acquire(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for size in [10u64, 1000, 100] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _s = slots.acquire(size).await;
                order.lock().unwrap().push(size);
            }));
            tokio::task::yield_now().await;
        }
        // A waiter that gives up must not keep a slot.
        let gone = {
            let slots = slots.clone();
            tokio::spawn(async move {
                let _s = slots.acquire(5000).await;
            })
        };
        tokio::task::yield_now().await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [1000, 100, 10]);
        assert_eq!(slots.lock().free, 1);
    }
}
