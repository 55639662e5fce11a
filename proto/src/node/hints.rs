//! Discovery hints: addresses that mDNS records name, which anyone on the
//! LAN can forge. A hint is unverified until a node answers at its address;
//! until then what hints make this node do is bounded, so that a flood of
//! forged records can neither grow memory nor aim this node's hellos at an
//! address of the forger's choice faster than a fixed rate:
//!
//! - at most [`HintConfig::max_unverified`] addresses are held; when full, a
//!   new hint pushes out the least useful one (from the IP address with the
//!   most held, the one sent the most unanswered hellos, heard of longest
//!   ago), or is dropped when that one was not even tried yet;
//! - each address gets its next hello only after a backoff that doubles
//!   with every unanswered one, from [`HintConfig::first_retry`] up to
//!   [`HintConfig::max_retry`] (a record heard again does not reset it);
//! - all hint hellos share one token bucket of
//!   [`HintConfig::hellos_per_second`] (bursts of [`HintConfig::hello_burst`]);
//!   a due hello waits for a token, IP addresses served least recently
//!   first, so one address flooded with forged ports cannot starve another.
//!
//! Explicit contacts (`--join`, `rossipctl join`, cached peers) do not go
//! through here: the user named them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Bounds on what discovery hints make a node do (see the module docs);
/// part of [`super::ProtocolConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintConfig {
    /// Most hinted addresses held that no node has answered at yet (at
    /// least 1). Above the largest cluster one LAN holds, so that real
    /// nodes fit when no one floods.
    pub max_unverified: usize,
    /// Hellos to hinted addresses per second, steady (at least 1).
    pub hellos_per_second: u32,
    /// Hellos to hinted addresses that may go at once after a quiet time
    /// (the token bucket's size, at least 1): a node starting on a LAN of
    /// this many others greets them all without waiting.
    pub hello_burst: u32,
    /// Wait before the second hello to an address that did not answer the
    /// first; each further one waits twice as long as the one before.
    pub first_retry: Duration,
    /// The longest wait between hellos to an address that does not answer.
    pub max_retry: Duration,
}

impl Default for HintConfig {
    fn default() -> Self {
        HintConfig {
            max_unverified: 256,
            hellos_per_second: 20,
            hello_burst: 20,
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(300),
        }
    }
}

/// Why a hint was dropped (see [`HintStats::dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HintDrop {
    /// An unverified address pushed out of the full set by a newer hint.
    Evicted,
    /// A new hint refused: the set is full, and what it would push out has
    /// not been tried yet.
    SetFull,
}

impl HintDrop {
    /// The snake_case name, as counted in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            HintDrop::Evicted => "evicted",
            HintDrop::SetFull => "set_full",
        }
    }
}

/// Counters of discovery hints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HintStats {
    /// Hints taken ([`super::Node::handle_hint`] calls for addresses that
    /// are not this node's or an active member's).
    pub hints: u64,
    /// Hellos sent to hinted addresses.
    pub hellos_sent: u64,
    /// Times a due hello had to wait for the hello rate (once per wait).
    pub hellos_deferred: u64,
    /// Hints dropped, by reason.
    pub dropped: BTreeMap<HintDrop, u64>,
}

/// One unverified address.
#[derive(Debug, Clone)]
struct Unverified {
    /// When a hint last named it.
    heard: Instant,
    /// Hellos sent to it, none answered.
    attempts: u32,
    /// When the next hello may go.
    next_hello: Instant,
    /// Whether it is due and waiting for a token (counted once).
    waiting: bool,
}

/// The unverified addresses and the hello rate; see the module docs.
#[derive(Debug)]
pub(super) struct Hints {
    config: HintConfig,
    unverified: BTreeMap<SocketAddr, Unverified>,
    /// When each IP address of the held ones last got a hello: the least
    /// recently served go first. Kept apart from the entries, which are
    /// evicted once tried.
    served: BTreeMap<IpAddr, Instant>,
    /// Tokens of the hello rate in millionths of a hello: integers, so a
    /// replay replays exactly.
    tokens_micro: u64,
    /// When the tokens were last topped up (`None`: the bucket is full).
    refilled_at: Option<Instant>,
    /// The deadline of the one hint timer that counts (earlier ones fired,
    /// others are stale).
    timer_at: Option<Instant>,
    stats: HintStats,
}

const MICRO: u64 = 1_000_000;

impl Hints {
    pub(super) fn new(mut config: HintConfig) -> Hints {
        config.max_unverified = config.max_unverified.max(1);
        config.hellos_per_second = config.hellos_per_second.max(1);
        config.hello_burst = config.hello_burst.max(1);
        config.max_retry = config.max_retry.max(config.first_retry);
        Hints {
            tokens_micro: u64::from(config.hello_burst) * MICRO,
            config,
            unverified: BTreeMap::new(),
            served: BTreeMap::new(),
            refilled_at: None,
            timer_at: None,
            stats: HintStats::default(),
        }
    }

    pub(super) fn stats(&self) -> &HintStats {
        &self.stats
    }

    /// Unverified addresses held now.
    pub(super) fn len(&self) -> usize {
        self.unverified.len()
    }

    /// A hint names `addr` (not this node's, nor an active member's).
    pub(super) fn add(&mut self, addr: SocketAddr, now: Instant) {
        self.stats.hints += 1;
        if let Some(entry) = self.unverified.get_mut(&addr) {
            entry.heard = now;
            return;
        }
        if self.unverified.len() >= self.config.max_unverified {
            match self.least_useful(addr.ip()) {
                Some(victim) => {
                    self.unverified.remove(&victim);
                    self.count_drop(HintDrop::Evicted);
                }
                None => {
                    self.count_drop(HintDrop::SetFull);
                    return;
                }
            }
        }
        self.unverified.insert(
            addr,
            Unverified {
                heard: now,
                attempts: 0,
                next_hello: now,
                waiting: false,
            },
        );
    }

    /// A node answered at `addr` (or the address became an active
    /// member's): it is no longer a hint.
    pub(super) fn verified(&mut self, addr: SocketAddr) {
        self.unverified.remove(&addr);
    }

    /// What a new hint for `ip` pushes out: from the IP address holding the
    /// most entries, the one sent the most unanswered hellos, then heard of
    /// longest ago. `None` when that one was never tried (and the new hint
    /// is no more deserving): the new hint is dropped instead.
    fn least_useful(&self, ip: IpAddr) -> Option<SocketAddr> {
        let mut per_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for addr in self.unverified.keys() {
            *per_ip.entry(addr.ip()).or_default() += 1;
        }
        // Ties go to the lowest address: deterministic.
        let (&crowded, &count) = per_ip
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
        let (victim, entry) = self
            .unverified
            .iter()
            .filter(|(addr, _)| addr.ip() == crowded)
            .max_by(|(a, x), (b, y)| {
                x.attempts
                    .cmp(&y.attempts)
                    .then(y.heard.cmp(&x.heard))
                    .then(b.cmp(a))
            })?;
        let new_group = per_ip.get(&ip).copied().unwrap_or(0) + 1;
        if entry.attempts == 0 && new_group >= count {
            return None;
        }
        Some(*victim)
    }

    /// The addresses to send a hello to now, within the hello rate; each is
    /// then backed off. `is_member` says which addresses became active
    /// members' meanwhile (verified: dropped from the set, no hello).
    pub(super) fn take_due(
        &mut self,
        now: Instant,
        is_member: impl Fn(SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        self.refill(now);
        self.unverified.retain(|addr, _| !is_member(*addr));
        let held: std::collections::BTreeSet<IpAddr> =
            self.unverified.keys().map(SocketAddr::ip).collect();
        self.served.retain(|ip, _| held.contains(ip));
        let mut due = Vec::new();
        while self.tokens_micro >= MICRO {
            let Some(addr) = self
                .unverified
                .iter()
                .filter(|(_, e)| e.next_hello <= now)
                .min_by_key(|(addr, e)| (self.served.get(&addr.ip()), e.next_hello, **addr))
                .map(|(addr, _)| *addr)
            else {
                break;
            };
            self.tokens_micro -= MICRO;
            if self.refilled_at.is_none() {
                self.refilled_at = Some(now);
            }
            let backoff = self.backoff(addr);
            if let Some(entry) = self.unverified.get_mut(&addr) {
                entry.attempts = entry.attempts.saturating_add(1);
                entry.next_hello = now + backoff;
                entry.waiting = false;
            }
            self.served.insert(addr.ip(), now);
            self.stats.hellos_sent += 1;
            due.push(addr);
        }
        // What is still due waits for a token.
        for entry in self.unverified.values_mut() {
            if entry.next_hello <= now && !entry.waiting {
                entry.waiting = true;
                self.stats.hellos_deferred += 1;
            }
        }
        due
    }

    /// The wait after the hello about to go to `addr`.
    fn backoff(&self, addr: SocketAddr) -> Duration {
        let attempts = self.unverified.get(&addr).map_or(0, |e| e.attempts);
        let factor = 1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX);
        self.config
            .first_retry
            .saturating_mul(factor)
            .min(self.config.max_retry)
    }

    /// Tops the token bucket up for the time since the last top-up.
    fn refill(&mut self, now: Instant) {
        let Some(since) = self.refilled_at else {
            return;
        };
        let full = u64::from(self.config.hello_burst) * MICRO;
        let elapsed_us =
            u64::try_from(now.saturating_duration_since(since).as_micros()).unwrap_or(u64::MAX);
        let earned = elapsed_us.saturating_mul(u64::from(self.config.hellos_per_second));
        self.tokens_micro = self.tokens_micro.saturating_add(earned).min(full);
        self.refilled_at = if self.tokens_micro >= full {
            None
        } else {
            Some(now)
        };
    }

    /// When [`Hints::take_due`] next has something to send: the earliest
    /// `next_hello`, or, if a hello is due already, when the next token
    /// comes. `None`: nothing held.
    pub(super) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let earliest = self.unverified.values().map(|e| e.next_hello).min()?;
        if earliest > now || self.tokens_micro >= MICRO {
            return Some(earliest.max(now));
        }
        let missing = MICRO - self.tokens_micro;
        let rate = u64::from(self.config.hellos_per_second);
        let wait_us = missing.div_ceil(rate);
        Some(now + Duration::from_micros(wait_us))
    }

    /// Whether a hint timer for `deadline` should be scheduled (none is, or
    /// only a later one); records it as the one that counts.
    pub(super) fn claim_timer(&mut self, deadline: Instant) -> bool {
        if self.timer_at.is_some_and(|at| at <= deadline) {
            return false;
        }
        self.timer_at = Some(deadline);
        true
    }

    /// A hint timer for `deadline` fired: whether it is the one that counts
    /// (otherwise it is stale and does nothing).
    pub(super) fn timer_fired(&mut self, deadline: Instant) -> bool {
        if self.timer_at == Some(deadline) {
            self.timer_at = None;
            true
        } else {
            false
        }
    }

    fn count_drop(&mut self, reason: HintDrop) {
        *self.stats.dropped.entry(reason).or_insert(0) += 1;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
mod tests {
    use super::*;

    fn addr(ip: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, ip], port))
    }

    fn no_members(_: SocketAddr) -> bool {
        false
    }

    #[test]
    fn a_hint_gets_one_hello_then_backs_off_exponentially() {
        let t0 = Instant::now();
        let config = HintConfig::default();
        let mut hints = Hints::new(config);
        hints.add(addr(1, 7000), t0);
        assert_eq!(hints.take_due(t0, no_members), vec![addr(1, 7000)]);
        // Heard again: no new hello, and the backoff is not reset.
        hints.add(addr(1, 7000), t0 + Duration::from_millis(10));
        assert!(
            hints
                .take_due(t0 + Duration::from_secs(1), no_members)
                .is_empty()
        );
        let mut at = t0;
        let mut sent = vec![at];
        while at < t0 + Duration::from_secs(1_000) {
            at += Duration::from_millis(100);
            if !hints.take_due(at, no_members).is_empty() {
                sent.push(at);
            }
        }
        let gaps: Vec<u64> = sent.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(gaps[..6], [2, 4, 8, 16, 32, 64]);
        assert!(gaps.iter().all(|g| *g <= config.max_retry.as_secs()));
        assert_eq!(hints.stats().hellos_sent, sent.len() as u64);
    }

    #[test]
    fn a_flood_of_hints_never_beats_the_hello_rate() {
        let t0 = Instant::now();
        let config = HintConfig::default();
        let mut hints = Hints::new(config);
        let mut sent = 0u64;
        let mut at = t0;
        // 1,000 new forged addresses a second for 60 s, polled every 10 ms.
        for step in 0..6_000u32 {
            at = t0 + Duration::from_millis(10 * u64::from(step));
            for k in 0..10u32 {
                let n = step * 10 + k;
                hints.add(addr(9, 1 + (n % 60_000) as u16), at);
            }
            sent += hints.take_due(at, no_members).len() as u64;
            assert!(hints.len() <= config.max_unverified);
        }
        let elapsed = (at - t0).as_secs_f64();
        let bound = f64::from(config.hello_burst) + f64::from(config.hellos_per_second) * elapsed;
        assert!(sent as f64 <= bound, "{sent} hellos in {elapsed} s");
        assert!(sent as f64 >= bound * 0.9, "the rate is used: {sent}");
        let dropped = &hints.stats().dropped;
        assert_eq!(hints.stats().hints, 60_000);
        assert!(
            dropped.get(&HintDrop::SetFull).copied().unwrap_or(0) > 0,
            "{dropped:?}"
        );
        assert!(
            dropped.get(&HintDrop::Evicted).copied().unwrap_or(0) > 0,
            "{dropped:?}"
        );
        assert!(hints.stats().hellos_deferred > 0);
    }

    #[test]
    fn a_real_node_is_greeted_promptly_during_a_flood_aimed_at_one_address() {
        let t0 = Instant::now();
        let mut hints = Hints::new(HintConfig::default());
        let real = addr(2, 7946);
        let mut greeted = None;
        for step in 0..1_000u32 {
            let at = t0 + Duration::from_millis(10 * u64::from(step));
            for k in 0..10u32 {
                hints.add(addr(9, 1 + (step * 10 + k) as u16), at);
            }
            if step == 500 {
                hints.add(real, at);
            }
            if hints.take_due(at, no_members).contains(&real) {
                greeted = Some(at - t0);
                break;
            }
        }
        let greeted = greeted.expect("the real node got a hello");
        assert!(greeted < Duration::from_millis(5_200), "after {greeted:?}");
    }

    #[test]
    fn verified_and_member_addresses_leave_the_set() {
        let t0 = Instant::now();
        let mut hints = Hints::new(HintConfig::default());
        hints.add(addr(1, 1), t0);
        hints.add(addr(1, 2), t0);
        hints.verified(addr(1, 1));
        assert_eq!(
            hints.take_due(t0, |a| a == addr(1, 2)),
            Vec::<SocketAddr>::new()
        );
        assert_eq!(hints.len(), 0);
        assert_eq!(hints.next_deadline(t0), None);
    }

    #[test]
    fn the_deadline_is_the_next_token_when_hellos_wait() {
        let t0 = Instant::now();
        let config = HintConfig {
            hello_burst: 1,
            hellos_per_second: 4,
            ..HintConfig::default()
        };
        let mut hints = Hints::new(config);
        hints.add(addr(1, 1), t0);
        hints.add(addr(2, 1), t0);
        assert_eq!(hints.take_due(t0, no_members).len(), 1);
        let next = hints.next_deadline(t0).expect("one waits");
        assert_eq!(next, t0 + Duration::from_millis(250));
        assert!(hints.claim_timer(next));
        assert!(!hints.claim_timer(next + Duration::from_secs(1)));
        assert!(!hints.timer_fired(next + Duration::from_secs(1)));
        assert!(hints.timer_fired(next));
        assert_eq!(hints.take_due(next, no_members).len(), 1);
        assert_eq!(hints.stats().hellos_deferred, 1);
    }
}
