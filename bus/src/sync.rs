//! Two thread hand-offs that make no system call they do not need, for the paths every job takes.
//!
//! std's `Condvar::notify_*` is a futex call even when no thread waits, and std's channel wakes a
//! sleeping receiver while it holds the channel's waker lock, which the receiver, once awake, may find
//! still held. Each costs a system call, and a contended lock a context switch more, per message: on the
//! API's watch and the worker's pool that is several per job (docs/benchmarks.md). And the scheduling
//! policy of the threads those wake (`batch_scheduling`), so that a wake-up does not preempt the waker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A condition variable that notifies only when a thread waits on it.
///
/// A waiter counts itself while it holds the mutex, before it sleeps; a notifier changes what the
/// waiters look at, releases the mutex, then reads the count. Either the notifier took the mutex after
/// the waiter released it in its wait (then the count includes it) or before the waiter looked (then
/// the waiter sees the change): no wake-up is lost.
#[derive(Default)]
pub struct Wakeup {
    cv: Condvar,
    waiting: AtomicUsize,
}

impl Wakeup {
    pub fn new() -> Wakeup {
        Wakeup::default()
    }

    /// `Condvar::wait_timeout`, counted; a poisoned lock is taken as it is.
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        wait: Duration,
    ) -> MutexGuard<'a, T> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = match self.cv.wait_timeout(guard, wait) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Waits until `ready` holds for what the mutex guards, or `deadline`: the guard, and whether it
    /// holds.
    pub fn wait_until<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        deadline: Instant,
        mut ready: impl FnMut(&T) -> bool,
    ) -> (MutexGuard<'a, T>, bool) {
        loop {
            if ready(&guard) {
                return (guard, true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (guard, false);
            }
            guard = self.wait_timeout(guard, left);
        }
    }

    /// `Condvar::wait`, counted; a poisoned lock is taken as it is.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = self.cv.wait(guard).unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Wakes every waiter, if any; call after releasing the mutex the waiters use.
    pub fn notify_all(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.cv.notify_all();
        }
    }
}

/// An unbounded queue from one sender to one receiver. The sender wakes the receiver only when it
/// sleeps, and after releasing the lock. What bounds it is the sender's source (a pull asks for one
/// message; a KV watch runs under flow control).
pub fn queue<T>() -> (QueueTx<T>, QueueRx<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(QueueState {
            items: VecDeque::new(),
            sender: true,
            receiver: true,
            sleeping: false,
        }),
        wake: Condvar::new(),
    });
    (
        QueueTx {
            shared: shared.clone(),
        },
        QueueRx { shared },
    )
}

struct Shared<T> {
    state: Mutex<QueueState<T>>,
    wake: Condvar,
}

struct QueueState<T> {
    items: VecDeque<T>,
    /// The sender is alive (dropped: the receiver sees `Closed` once the queue is empty).
    sender: bool,
    /// The receiver is alive (dropped: sends are refused).
    receiver: bool,
    /// The receiver sleeps and nobody has woken it yet.
    sleeping: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks one side gone and wakes a sleeping receiver to see it.
    fn hang_up(&self, sender: bool) {
        let mut st = self.lock();
        if sender {
            st.sender = false;
        } else {
            st.receiver = false;
            st.items.clear();
        }
        let wake = std::mem::take(&mut st.sleeping);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }
}

/// The sending half; dropping it closes the queue.
pub struct QueueTx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueTx<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        let mut st = self.shared.lock();
        if !st.receiver {
            return Err(item);
        }
        st.items.push_back(item);
        let wake = std::mem::take(&mut st.sleeping);
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for QueueTx<T> {
    fn drop(&mut self) {
        self.shared.hang_up(true);
    }
}

/// Why [`QueueRx::recv_timeout`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing came in time.
    Timeout,
    /// The sender is gone and everything it sent was received.
    Closed,
}

/// The receiving half; dropping it makes further sends fail (and drops what was queued).
pub struct QueueRx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueRx<T> {
    /// The next item, if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        self.shared.lock().items.pop_front()
    }

    /// The next item within `wait` (a `wait` too long for the clock to add, such as `Duration::MAX`,
    /// waits until an item comes or the sender goes, as std's channel does).
    pub fn recv_timeout(&self, wait: Duration) -> Result<T, RecvError> {
        let deadline = Instant::now().checked_add(wait);
        let mut st = self.shared.lock();
        loop {
            if let Some(item) = st.items.pop_front() {
                return Ok(item);
            }
            if !st.sender {
                return Err(RecvError::Closed);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => wait,
            };
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            st.sleeping = true;
            st = match self.shared.wake.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            st.sleeping = false;
        }
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        self.shared.hang_up(false);
    }
}

/// Runs the calling thread as `SCHED_BATCH`: the same share of the CPU (nice unchanged), but a wake-up
/// does not preempt the running thread. For the threads the connection's reading thread wakes (a
/// worker's pool threads: a job handed over, the answers to its reads and writes; the API's connection
/// threads: a job finished): woken, such a thread waits for the reading thread to sleep instead of
/// preempting it while it still has deliveries to hand out. A process it starts inherits the policy:
/// see [`normal_scheduling`]. A refusal is logged, nothing more.
pub fn batch_scheduling() {
    if !set_scheduling(libc::SCHED_BATCH) {
        log::debug!(
            "thread stays SCHED_OTHER: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Runs the calling thread (or a process about to `exec`) as `SCHED_OTHER`, the default; for the
/// child of a [`batch_scheduling`] thread (the kernel's `SCHED_RESET_ON_FORK` resets only real-time
/// policies), from `CommandExt::pre_exec`: one system call, nothing else (no lock, no log), so it is
/// safe between `fork` and `exec`. A refusal leaves the policy as it was.
pub fn normal_scheduling() {
    set_scheduling(libc::SCHED_OTHER);
}

/// Whether the calling thread now runs under `policy`.
fn set_scheduling(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a system call about the calling thread (0), with a valid parameter.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn items_come_in_order_and_a_closed_queue_says_so_once_empty() {
        let (tx, rx) = queue();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvError::Closed)
        );
    }

    #[test]
    fn nothing_sent_times_out() {
        let (_tx, rx) = queue::<u8>();
        let start = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_sleeping_receiver_is_woken_by_a_send_and_by_the_sender_going() {
        let (tx, rx) = queue();
        let got = thread::spawn(move || {
            let first = rx.recv_timeout(Duration::from_secs(10));
            let second = rx.recv_timeout(Duration::from_secs(10));
            (first, second)
        });
        // Let the receiver fall asleep first (it also works if it has not: the item waits).
        let asleep = Instant::now() + Duration::from_secs(5);
        while !tx.shared.lock().sleeping && Instant::now() < asleep {
            thread::yield_now();
        }
        let start = Instant::now();
        tx.send(7).unwrap();
        drop(tx);
        let (first, second) = got.join().unwrap();
        assert_eq!(first, Ok(7));
        assert_eq!(second, Err(RecvError::Closed));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "woken, not timed out"
        );
    }

    #[test]
    fn a_wait_past_the_clocks_end_does_not_panic() {
        let (tx, rx) = queue();
        tx.send(5).unwrap();
        assert_eq!(rx.recv_timeout(Duration::MAX), Ok(5));
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::MAX), Err(RecvError::Closed));
    }

    #[test]
    fn a_send_to_a_dropped_receiver_comes_back() {
        let (tx, rx) = queue();
        drop(rx);
        assert_eq!(tx.send(3), Err(3));
    }

    #[test]
    fn a_wait_until_a_condition_that_never_holds_ends_at_its_deadline() {
        let (lock, wakeup) = (Mutex::new(3), Wakeup::new());
        let start = Instant::now();
        let (guard, held) = wakeup.wait_until(
            lock.lock().unwrap(),
            start + Duration::from_millis(30),
            |n| *n > 3,
        );
        assert!(!held && *guard == 3);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_wakeup_reaches_a_waiter_and_costs_nothing_without_one() {
        let lock = Arc::new(Mutex::new(false));
        let wakeup = Arc::new(Wakeup::new());
        // Nobody waits: nothing to wake (and nothing breaks).
        wakeup.notify_all();
        let waiter = {
            let (lock, wakeup) = (lock.clone(), wakeup.clone());
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                let done = lock.lock().unwrap();
                wakeup.wait_until(done, deadline, |done| *done).1
            })
        };
        let start = Instant::now();
        *lock.lock().unwrap() = true;
        wakeup.notify_all();
        assert!(waiter.join().unwrap());
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "woken, not timed out"
        );
    }

    /// The scheduling policy of a process or thread, from field 41 of its `stat`.
    fn policy_in(stat: &str) -> Option<i32> {
        // The command name (field 2) may hold spaces: count from the ')' that ends it.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(38)?.parse().ok()
    }

    /// The scheduling policy `cat /proc/self/stat` reports, started from the calling thread.
    fn policy_of_a_child(reset: bool) -> Option<i32> {
        use std::os::unix::process::CommandExt;
        let mut cat = std::process::Command::new("cat");
        cat.arg("/proc/self/stat");
        if reset {
            // SAFETY: only a system call between fork and exec.
            unsafe {
                cat.pre_exec(|| {
                    normal_scheduling();
                    Ok(())
                });
            }
        }
        let out = cat.output().ok()?;
        policy_in(&String::from_utf8_lossy(&out.stdout))
    }

    #[test]
    fn a_batch_thread_is_batch_and_a_child_it_resets_is_not() {
        let (own, inherited, reset) = thread::spawn(|| {
            batch_scheduling();
            // SAFETY: asks about the calling thread.
            let own = unsafe { libc::sched_getscheduler(0) };
            (own, policy_of_a_child(false), policy_of_a_child(true))
        })
        .join()
        .expect("the thread ends");
        assert_eq!(own, libc::SCHED_BATCH);
        assert_eq!(inherited, Some(libc::SCHED_BATCH), "a child inherits it");
        assert_eq!(reset, Some(libc::SCHED_OTHER), "unless it resets it");
        assert_eq!(
            policy_of_a_child(false),
            Some(libc::SCHED_OTHER),
            "the test's own thread is left as it was"
        );
    }
}
