//! The one retry policy of the registry client: which failures are worth another attempt, how long to
//! wait before it (exponential backoff with jitter, `Retry-After` honoured), and how many retries a host
//! may cost a run before it is given up on.
//!
//! Every idempotent request (the `/v2/` probe, token fetches, manifest and blob `HEAD`/`GET`, mount
//! probes, a manifest `PUT` replayed from memory) is one [`run`]: each attempt sends the request *and*
//! reads and checks its answer (a body cut short, a body that is not JSON, an HTML page where JSON was
//! expected, bytes that do not hash to the digest asked for), so a spoiled answer is asked for again like a
//! 503. Operations that cannot be replayed part-way (a streamed blob: `GET` at the source, a new upload
//! session, `PUT` at the target) are restarted from scratch under the same policy by
//! [`Client::retry_operation`](super::Client::retry_operation).
//!
//! The budget: a host may cost a run [`BUDGET_BASE`] retries plus one for every two of its answers, so a
//! flaky link keeps going while a dead registry stops costing time. Once the budget is spent, failures
//! are no longer retried. A host that failed [`DEAD_STREAK`] attempts in a row, with no answer for
//! [`DEAD_AFTER`] or with its budget spent, is given up on: nothing more is sent to it in this run. One
//! `error` line says so; each request it fails names the host.
//!
//! Every retry is counted by [`Fault`], for the run ([`Counter`] in the client) and for the copy task it
//! served ([`counting`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::RegistryError;

/// Attempts per request or operation, the first included. At 15 % spoiled requests, one request in
/// 4 million fails all of them (with 5, one in 13,000: an image lost in one run of 50 images in eight).
pub const ATTEMPTS: u32 = 8;
/// First backoff delay; doubled per attempt up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Longest computed backoff delay: 0.5, 1, 2, 4, 8, 8, 8 s, about half a minute in all.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Retries a host may cost a run before any of its answers count.
pub const BUDGET_BASE: u64 = 20;
/// Failed attempts in a row (no answer in between) after which a host may be given up on.
pub const DEAD_STREAK: u64 = 6;
/// How long such a streak must have lasted for a host whose budget is not spent yet.
pub const DEAD_AFTER: Duration = Duration::from_secs(15);

/// A kind of failure that is worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// No answer: the connection was refused, dropped, reset or timed out before the answer's head.
    Connection,
    /// The answer's body broke off (reset after the head, shorter than its `Content-Length`).
    Body,
    /// A success answer that is not what was asked for: not JSON, an HTML page.
    Garbled,
    /// Content that does not hash to the digest asked for or announced.
    Digest,
    /// `429 Too Many Requests`.
    Throttled,
    /// `408`, or a `5xx` other than `501`.
    Server,
}

impl Fault {
    /// Every kind, in report order.
    pub const ALL: [Fault; 6] = [
        Fault::Connection,
        Fault::Body,
        Fault::Garbled,
        Fault::Digest,
        Fault::Throttled,
        Fault::Server,
    ];

    /// The kind of `e`, or `None` when retrying cannot help (404, 401, a refused manifest, …).
    pub fn of(e: &RegistryError) -> Option<Fault> {
        Some(match e {
            RegistryError::Transport { .. } => Fault::Connection,
            RegistryError::Body { .. } => Fault::Body,
            RegistryError::Garbled { .. } => Fault::Garbled,
            RegistryError::DigestMismatch { .. } => Fault::Digest,
            RegistryError::Status { status: 429, .. } => Fault::Throttled,
            RegistryError::Status { status, .. } if is_retry_status(*status) => Fault::Server,
            _ => return None,
        })
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Connection => "connection",
            Fault::Body => "body",
            Fault::Garbled => "garbled",
            Fault::Digest => "digest",
            Fault::Throttled => "throttled",
            Fault::Server => "server",
        }
    }

    fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Statuses worth another attempt: 408, 429 and 5xx other than 501 (not implemented is final).
pub fn is_retry_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status) && status != 501
}

/// Retries by kind of fault (see [`Fault`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retries {
    /// No answer (refused, dropped, reset or timed out before the head).
    pub connection: u64,
    /// A body that broke off.
    pub body: u64,
    /// A success answer that was not what was asked for (not JSON, an HTML page).
    pub garbled: u64,
    /// Content that did not hash to its digest.
    pub digest: u64,
    /// 429.
    pub throttled: u64,
    /// 408 and 5xx.
    pub server: u64,
}

impl Retries {
    /// The count for one kind.
    pub fn get(&self, f: Fault) -> u64 {
        match f {
            Fault::Connection => self.connection,
            Fault::Body => self.body,
            Fault::Garbled => self.garbled,
            Fault::Digest => self.digest,
            Fault::Throttled => self.throttled,
            Fault::Server => self.server,
        }
    }

    fn slot(&mut self, f: Fault) -> &mut u64 {
        match f {
            Fault::Connection => &mut self.connection,
            Fault::Body => &mut self.body,
            Fault::Garbled => &mut self.garbled,
            Fault::Digest => &mut self.digest,
            Fault::Throttled => &mut self.throttled,
            Fault::Server => &mut self.server,
        }
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        Fault::ALL.iter().map(|f| self.get(*f)).sum()
    }

    /// No retry at all (for `skip_serializing_if`).
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The retries made since `earlier` (a snapshot of the same counter).
    pub fn since(&self, earlier: &Retries) -> Retries {
        let mut out = Retries::default();
        for f in Fault::ALL {
            *out.slot(f) = self.get(f).saturating_sub(earlier.get(f));
        }
        out
    }
}

impl std::ops::AddAssign<&Retries> for Retries {
    fn add_assign(&mut self, other: &Retries) {
        for f in Fault::ALL {
            *self.slot(f) += other.get(f);
        }
    }
}

impl std::fmt::Display for Retries {
    /// `7 retries (2 connection, 5 server)`, `no retries`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total();
        if total == 0 {
            return write!(f, "no retries");
        }
        let kinds: Vec<String> = Fault::ALL
            .iter()
            .filter(|k| self.get(**k) > 0)
            .map(|k| format!("{} {}", self.get(*k), k.name()))
            .collect();
        write!(
            f,
            "{total} {} ({})",
            if total == 1 { "retry" } else { "retries" },
            kinds.join(", ")
        )
    }
}

/// Live retry counts, shared by the tasks that add to them.
#[derive(Debug, Default)]
pub struct Counter([AtomicU64; 6]);

impl Counter {
    fn add(&self, f: Fault) {
        self.0[f.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Retries {
        let mut out = Retries::default();
        for f in Fault::ALL {
            *out.slot(f) = self.0[f.index()].load(Ordering::Relaxed);
        }
        out
    }
}

tokio::task_local! {
    static TASK: Arc<Counter>;
}

/// Runs `fut` with every retry made while polling it also counted in `counter` (the copy engine keeps
/// one per image). Work that `fut` hands to other tasks is not counted there.
pub async fn counting<F: std::future::Future>(counter: Arc<Counter>, fut: F) -> F::Output {
    TASK.scope(counter, fut).await
}

/// Delay before retry number `attempt` (0-based): the server's `Retry-After` (capped), else exponential
/// from [`BASE_BACKOFF`] with ±20 % jitter so parallel tasks do not retry in lock-step.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    backoff_from(BASE_BACKOFF, attempt, retry_after)
}

fn backoff_from(first: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(MAX_RETRY_AFTER);
    }
    let base = first.saturating_mul(1 << attempt.min(10)).min(MAX_BACKOFF);
    base.mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// One failed attempt, as the policy sees it.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub error: RegistryError,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// Already retried below (a token fetch inside a request, a request inside an operation): return it
    /// as it is.
    pub settled: bool,
}

impl Failed {
    /// An error already retried as far as the policy allows; not retried again.
    pub fn settled(error: RegistryError) -> Failed {
        Failed {
            error,
            retry_after: None,
            settled: true,
        }
    }
}

impl From<RegistryError> for Failed {
    fn from(error: RegistryError) -> Failed {
        Failed {
            error,
            retry_after: None,
            settled: false,
        }
    }
}

/// What the policy knows about one host during a run: its shared pause, its retry budget and whether it
/// has been given up on.
#[derive(Debug)]
pub(crate) struct HostState {
    /// First backoff delay ([`BASE_BACKOFF`]; shorter in unit tests).
    first_backoff: Duration,
    /// Set when the host asked us to slow down (429/503): every request to it waits until then.
    pause_until: Mutex<Option<Instant>>,
    /// Retries spent on this host.
    spent: AtomicU64,
    /// Attempts it answered (anything but a [`Fault`]).
    answered: AtomicU64,
    /// Failed attempts since its last answer.
    streak: AtomicU64,
    /// When the current streak of failures began.
    streak_since: Mutex<Option<Instant>>,
    /// The last failure, for the line that gives the host up.
    last: Mutex<String>,
    /// Given up on: nothing more is sent to it.
    down: AtomicBool,
}

impl Default for HostState {
    fn default() -> Self {
        HostState {
            first_backoff: BASE_BACKOFF,
            pause_until: Mutex::default(),
            spent: AtomicU64::default(),
            answered: AtomicU64::default(),
            streak: AtomicU64::default(),
            streak_since: Mutex::default(),
            last: Mutex::default(),
            down: AtomicBool::default(),
        }
    }
}

impl HostState {
    /// Waits out any pause the host asked for.
    pub(crate) async fn wait_pause(&self) {
        loop {
            let until = *self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => break,
            }
        }
    }

    /// Makes every request to this host wait `wait` (regclient-style shared backoff).
    pub(crate) fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_RETRY_AFTER);
        let mut p = self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }

    /// Retries this host may cost the run so far.
    fn allowance(&self) -> u64 {
        BUDGET_BASE + self.answered.load(Ordering::Relaxed) / 2
    }

    /// The host answered (success, or an answer retrying cannot change).
    pub(crate) fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
        *self.streak_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `Err` once the host is given up on: the request is not sent.
    pub(crate) fn check(&self, host: &str, what: &str) -> Result<(), RegistryError> {
        if !self.down.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(RegistryError::HostDown {
            what: what.to_string(),
            host: host.to_string(),
            detail: format!(
                "{} retries spent, the last {} attempts failed; last error: {}",
                self.spent.load(Ordering::Relaxed),
                self.streak.load(Ordering::Relaxed),
                self.last.lock().unwrap_or_else(|e| e.into_inner())
            ),
        })
    }

    /// After failed attempt number `attempt` (0-based): how long to wait before the next one, or the
    /// error to return. Counts the retry (run and task) when there is one.
    pub(crate) fn after_failure(
        &self,
        host: &str,
        counter: &Counter,
        attempt: u32,
        failed: Failed,
    ) -> Result<Duration, RegistryError> {
        let Failed {
            error,
            retry_after,
            settled,
        } = failed;
        if settled {
            return Err(error);
        }
        // A registry that refused a monolithic upload: the next attempt is chunked. Not a fault.
        if matches!(error, RegistryError::ChunkedUploadNeeded { .. }) {
            return if attempt + 1 < ATTEMPTS {
                Ok(Duration::ZERO)
            } else {
                Err(error)
            };
        }
        let Some(kind) = Fault::of(&error) else {
            self.answered();
            return Err(error);
        };
        self.streak.fetch_add(1, Ordering::Relaxed);
        self.streak_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = error.to_string();
        if self.maybe_down(host) || attempt + 1 >= ATTEMPTS {
            return Err(error);
        }
        let allowance = self.allowance();
        if self.spent.fetch_add(1, Ordering::Relaxed) >= allowance {
            self.spent.fetch_sub(1, Ordering::Relaxed);
            return Err(RegistryError::BudgetSpent {
                host: host.to_string(),
                allowance,
                error: Box::new(error),
            });
        }
        counter.add(kind);
        let _ = TASK.try_with(|c| c.add(kind));
        let wait = backoff_from(self.first_backoff, attempt, retry_after);
        tracing::info!(%host, error = %error, kind = kind.name(), attempt, ?wait, "retrying");
        Ok(wait)
    }

    /// Gives the host up once it failed [`DEAD_STREAK`] attempts in a row and either its budget is
    /// spent or the streak has lasted [`DEAD_AFTER`]; true when it is given up on.
    fn maybe_down(&self, host: &str) -> bool {
        if self.down.load(Ordering::Relaxed) {
            return true;
        }
        let spent = self.spent.load(Ordering::Relaxed);
        let streak = self.streak.load(Ordering::Relaxed);
        let lasted = self
            .streak_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |t| t.elapsed());
        if streak < DEAD_STREAK || (spent < self.allowance() && lasted < DEAD_AFTER) {
            return false;
        }
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "{host} is not answering: its last {streak} attempts failed over {:.0?} ({spent} retries spent); nothing more is sent to it in this run (last error: {})",
                lasted,
                self.last.lock().unwrap_or_else(|e| e.into_inner())
            );
        }
        true
    }
}

/// Runs `attempt` until it succeeds or the policy says stop: each attempt is the whole request, from
/// sending it to checking its answer.
pub(crate) async fn run<T, F, Fut>(
    host: &str,
    state: &HostState,
    counter: &Counter,
    what: &str,
    mut attempt: F,
) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failed>>,
{
    let mut n = 0;
    loop {
        state.check(host, what)?;
        match attempt().await {
            Ok(v) => {
                state.answered();
                return Ok(v);
            }
            Err(failed) => {
                let wait = state.after_failure(host, counter, n, failed)?;
                tokio::time::sleep(wait).await;
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> RegistryError {
        RegistryError::Status {
            what: "manifest r/x:v1".into(),
            status,
            detail: String::new(),
        }
    }

    #[test]
    fn retry_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retry_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 501] {
            assert!(!is_retry_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert!(backoff(0, None) <= Duration::from_millis(600));
        assert!(backoff(3, None) >= Duration::from_millis(3200));
        assert!(backoff(20, None) <= MAX_BACKOFF.mul_f64(1.2));
        assert_eq!(backoff(0, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(backoff(0, Some(Duration::from_secs(9999))), MAX_RETRY_AFTER);
    }

    #[test]
    fn kinds_of_faults() {
        let what = || "manifest r/x:v1".to_string();
        assert_eq!(
            Fault::of(&RegistryError::Transport {
                what: what(),
                detail: "reset".into()
            }),
            Some(Fault::Connection)
        );
        assert_eq!(
            Fault::of(&RegistryError::Body {
                what: what(),
                detail: "eof".into()
            }),
            Some(Fault::Body)
        );
        assert_eq!(
            Fault::of(&RegistryError::Garbled {
                what: what(),
                detail: "html".into()
            }),
            Some(Fault::Garbled)
        );
        assert_eq!(Fault::of(&status(429)), Some(Fault::Throttled));
        assert_eq!(Fault::of(&status(503)), Some(Fault::Server));
        assert_eq!(Fault::of(&status(404)), None);
        assert_eq!(Fault::of(&RegistryError::NotFound { what: what() }), None);
    }

    #[test]
    fn retries_print_by_kind() {
        let mut r = Retries {
            connection: 2,
            server: 5,
            ..Retries::default()
        };
        assert_eq!(r.to_string(), "7 retries (2 connection, 5 server)");
        r += &Retries {
            digest: 1,
            ..Retries::default()
        };
        assert_eq!(r.total(), 8);
        assert_eq!(
            r.since(&Retries {
                server: 5,
                ..Retries::default()
            })
            .to_string(),
            "3 retries (2 connection, 1 digest)"
        );
        assert_eq!(Retries::default().to_string(), "no retries");
    }

    fn quick() -> HostState {
        HostState {
            first_backoff: Duration::from_millis(1),
            ..HostState::default()
        }
    }

    #[tokio::test]
    async fn a_spoiled_answer_is_asked_for_again_and_counted() {
        let state = quick();
        let counter = Counter::default();
        let mine = Arc::new(Counter::default());
        let mut answers = vec![
            Err(Failed::from(RegistryError::Body {
                what: "m".into(),
                detail: "eof".into(),
            })),
            Err(Failed {
                error: status(429),
                retry_after: Some(Duration::from_millis(5)),
                settled: false,
            }),
            Ok(7),
        ]
        .into_iter();
        let got = counting(
            mine.clone(),
            run("r.example", &state, &counter, "m", || {
                std::future::ready(answers.next().unwrap())
            }),
        )
        .await;
        assert_eq!(got.unwrap(), 7);
        let expected = Retries {
            body: 1,
            throttled: 1,
            ..Retries::default()
        };
        assert_eq!(counter.snapshot(), expected);
        assert_eq!(mine.snapshot(), expected);
    }

    #[tokio::test]
    async fn an_answer_retrying_cannot_change_is_returned_at_once() {
        let state = HostState::default();
        let counter = Counter::default();
        let mut calls = 0;
        let got: Result<(), _> = run("r.example", &state, &counter, "m", || {
            calls += 1;
            std::future::ready(Err(Failed::from(status(404))))
        })
        .await;
        assert!(matches!(got, Err(RegistryError::Status { status: 404, .. })));
        assert_eq!(calls, 1);
        assert!(counter.snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_dead_host_spends_its_budget_then_gets_nothing_more() {
        let state = quick();
        let counter = Counter::default();
        let sent = AtomicU64::new(0);
        let dead = || {
            sent.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Err::<(), _>(Failed::from(status(503))))
        };
        let mut errors = Vec::new();
        for _ in 0..20 {
            errors.push(run("r.example", &state, &counter, "m", dead).await.unwrap_err());
        }
        // The budget: BUDGET_BASE retries, no answer earned more.
        assert_eq!(counter.snapshot().server, BUDGET_BASE);
        let sent = sent.load(Ordering::Relaxed);
        assert!(sent < BUDGET_BASE + 20, "{sent} requests");
        let last = errors.last().unwrap().to_string();
        assert!(
            matches!(errors.last(), Some(RegistryError::HostDown { .. })),
            "{last}"
        );
        assert!(last.contains("not sent: r.example is not answering"), "{last}");
    }

    #[tokio::test]
    async fn a_flaky_host_that_spent_its_budget_is_still_asked_but_not_retried() {
        let state = quick();
        let counter = Counter::default();
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            // Four spoiled answers, then a good one.
            let mut n = 0;
            let got = run("r.example", &state, &counter, "m", || {
                n += 1;
                std::future::ready(if n < 5 {
                    Err(Failed::from(status(502)))
                } else {
                    Ok(())
                })
            })
            .await;
            outcomes.push(got);
        }
        let spent = outcomes
            .iter()
            .position(|o| matches!(o, Err(RegistryError::BudgetSpent { .. })))
            .expect("the budget ran out");
        let e = outcomes[spent].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("registry answered 502") && e.contains("r.example has used up this run's"),
            "{e}"
        );
        // Four retries per request against 20 plus one per two answers: the sixth request runs out.
        assert_eq!(spent, 5);
        // The later ones are tried once each: five failures in a row, one short of giving the host up.
        assert!(
            outcomes[6..]
                .iter()
                .all(|o| matches!(o, Err(RegistryError::BudgetSpent { .. })))
        );
        assert_eq!(state.streak.load(Ordering::Relaxed), 5);
        assert!(!state.down.load(Ordering::Relaxed));
        assert!(state.check("r.example", "m").is_ok());
    }

    #[tokio::test]
    async fn answers_earn_retries() {
        let state = quick();
        for _ in 0..100 {
            state.answered();
        }
        assert_eq!(state.allowance(), BUDGET_BASE + 50);
    }
}
