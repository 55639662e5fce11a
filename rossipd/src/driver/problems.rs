//! Configuration problems this node can see, said loudly: datagrams
//! refused because their sender has another cluster label or another key
//! (or none) or a clock too far off, and seeds that never answer. Each of these otherwise looks
//! like a silent network: `no peers` on both sides and a drop counter.
//!
//! Each problem is logged at WARN when first seen, then at most once per
//! [`WARN_EVERY`] with a count of what was not logged, and listed in
//! `status` until it stops (see [`FORGET_AFTER`]). Anyone can forge such a
//! datagram, so the table is bounded: refusals are tracked for at most
//! [`MAX_TRACKED`] sender addresses, one entry per address and kind of
//! refusal whatever the datagrams carry (an unknown key's id is kept, not
//! keyed on), and what comes from further addresses is only counted (itself
//! one problem), so a flood costs neither memory nor log lines.
//!
//! The driver owns the one [`Problems`]: it sees both the address and the
//! reason of every refused datagram, every seed contact, and the clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rossip_proto::Mismatch;
use rossip_proto::log_text::LogText;
use rossip_proto::seal::KeyId;

/// A seed contacted for this long without a datagram from it is reported.
/// Longer than the seed's first few retries (0.5 s, then doubling), so one
/// lost hello is not a problem.
pub const SEED_SILENCE: Duration = Duration::from_secs(30);

/// At most one warning per problem this often.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// A problem not seen again for this long is over and leaves `status`.
/// Longer than a seed's longest retry interval (30 s), so a node of another
/// cluster that keeps knocking stays listed.
pub const FORGET_AFTER: Duration = Duration::from_secs(300);

/// Sender addresses whose refusals are tracked one by one, and seeds
/// watched at once.
pub const MAX_TRACKED: usize = 64;

/// How often the driver calls [`Problems::sweep`]: the delay, past
/// [`SEED_SILENCE`], before a silent seed is reported.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What a problem is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A `--join` seed or `rossipctl join` address (as given) that does not
    /// answer at its resolved addresses.
    SilentSeed {
        /// `HOST:PORT` as given.
        seed: String,
        /// What it resolved to.
        addrs: Vec<SocketAddr>,
    },
    /// Datagrams from `addr` refused for a setting that differs.
    Refused {
        /// Their source address.
        addr: SocketAddr,
        /// Which setting.
        mismatch: Mismatch,
    },
    /// Refused datagrams from addresses past [`MAX_TRACKED`].
    ManySenders,
}

/// One problem as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What it is about.
    pub subject: Subject,
    /// What it is and what to check, one sentence.
    pub detail: String,
    /// When it began (for a seed: the first unanswered contact).
    pub since: Instant,
    /// When it was last seen (for a seed: the last contact).
    pub last_seen: Instant,
    /// Datagrams refused, or seed contacts unanswered.
    pub count: u64,
}

/// The settings of this node that the details name.
#[derive(Debug, Clone, Copy)]
pub struct OwnSettings<'a> {
    /// `--cluster`.
    pub cluster: &'a str,
    /// The key ids held, the sealing one first; empty without a key.
    pub keys: &'a [KeyId],
}

/// How often something happened, and what of it was logged.
#[derive(Debug, Clone, Copy)]
struct Tally {
    first: Instant,
    last: Instant,
    count: u64,
    /// When it was last logged; `None`: not yet.
    warned: Option<Instant>,
    /// Occurrences since then that were not logged.
    unlogged: u64,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally {
            first: now,
            last: now,
            count: 0,
            warned: None,
            unlogged: 0,
        }
    }

    /// Counts one occurrence; `Some(unlogged)` if it is time to warn (with
    /// how many occurrences since the last warning went unlogged).
    fn record(&mut self, now: Instant) -> Option<u64> {
        self.last = now;
        self.count = self.count.saturating_add(1);
        self.warn_due(now)
    }

    fn warn_due(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .warned
            .is_none_or(|at| now.saturating_duration_since(at) >= WARN_EVERY);
        if due {
            self.warned = Some(now);
            Some(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged = self.unlogged.saturating_add(1);
            None
        }
    }

    fn forgotten(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= FORGET_AFTER
    }
}

/// A seed and whether it answers.
#[derive(Debug, Clone)]
struct SeedWatch {
    addrs: Vec<SocketAddr>,
    /// Unanswered contacts since the last datagram from the seed; `None`
    /// while it answers.
    waiting: Option<Tally>,
    /// The last contact, answered or not.
    last_contact: Instant,
}

impl SeedWatch {
    fn silent(&self, now: Instant) -> Option<&Tally> {
        self.waiting
            .as_ref()
            .filter(|t| now.saturating_duration_since(t.first) >= SEED_SILENCE)
    }
}

/// Datagrams from one address refused for one kind of mismatch.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    /// The latest: for [`Mismatch::UnknownKey`], the key id the sender
    /// used last (a node that changes keys is one problem, not many).
    mismatch: Mismatch,
    tally: Tally,
}

/// The problems seen lately; see the module documentation.
#[derive(Debug, Default)]
pub struct Problems {
    /// By sender, then by kind ([`Mismatch::reason`], which ignores the key
    /// id): at most [`MAX_TRACKED`] senders, each with at most one entry
    /// per kind.
    refused: BTreeMap<SocketAddr, BTreeMap<&'static str, Refusal>>,
    /// Refusals from addresses that did not fit in `refused`.
    untracked: Option<Tally>,
    seeds: BTreeMap<String, SeedWatch>,
}

impl Problems {
    /// A datagram from `from` was refused for `mismatch`; what to log, if
    /// it is time to.
    pub fn refused(
        &mut self,
        from: SocketAddr,
        mismatch: Mismatch,
        now: Instant,
    ) -> Option<Warning> {
        let (tally, subject) =
            if self.refused.contains_key(&from) || self.refused.len() < MAX_TRACKED {
                let refusal = self
                    .refused
                    .entry(from)
                    .or_default()
                    .entry(mismatch.reason())
                    .or_insert_with(|| Refusal {
                        mismatch,
                        tally: Tally::new(now),
                    });
                refusal.mismatch = mismatch;
                let subject = Subject::Refused {
                    addr: from,
                    mismatch,
                };
                (&mut refusal.tally, subject)
            } else {
                let tally = self.untracked.get_or_insert_with(|| Tally::new(now));
                (tally, Subject::ManySenders)
            };
        let unlogged = tally.record(now)?;
        Some(Warning {
            subject,
            count: tally.count,
            unlogged,
        })
    }

    /// `seed` (`HOST:PORT` as given), resolved to `addrs`, is contacted
    /// now. Addresses of this node itself are left out by the caller.
    pub fn contacting_seed(&mut self, seed: &str, addrs: &[SocketAddr], now: Instant) {
        if addrs.is_empty() {
            return;
        }
        if !self.seeds.contains_key(seed) && self.seeds.len() >= MAX_TRACKED {
            tracing::debug!(seed = %LogText(seed), "too many seeds to watch; not watching this one");
            return;
        }
        let watch = self
            .seeds
            .entry(seed.to_owned())
            .or_insert_with(|| SeedWatch {
                addrs: Vec::new(),
                waiting: None,
                last_contact: now,
            });
        addrs.clone_into(&mut watch.addrs);
        watch.last_contact = now;
        let waiting = watch.waiting.get_or_insert_with(|| Tally::new(now));
        waiting.last = now;
        waiting.count = waiting.count.saturating_add(1);
    }

    /// A datagram came from `from` (whatever became of it): a seed there
    /// answers.
    pub fn heard_from(&mut self, from: SocketAddr) {
        for (seed, watch) in &mut self.seeds {
            if watch.waiting.is_some() && watch.addrs.contains(&from) {
                answered(seed, watch);
            }
        }
    }

    /// Whether [`Problems::heard_from`] has anything to do: the driver
    /// skips it for every datagram while no seed waits.
    pub fn awaits_seeds(&self) -> bool {
        self.seeds.values().any(|w| w.waiting.is_some())
    }

    /// Takes a seed whose address is an active member's as answered,
    /// forgets what was not seen for [`FORGET_AFTER`], and returns the
    /// warnings due for seeds silent for [`SEED_SILENCE`].
    pub fn sweep(
        &mut self,
        now: Instant,
        is_active_member: impl Fn(SocketAddr) -> bool,
    ) -> Vec<Warning> {
        let mut warnings = Vec::new();
        self.refused.retain(|_, kinds| {
            kinds.retain(|_, refusal| !refusal.tally.forgotten(now));
            !kinds.is_empty()
        });
        if self.untracked.is_some_and(|t| t.forgotten(now)) {
            self.untracked = None;
        }
        self.seeds
            .retain(|_, w| now.saturating_duration_since(w.last_contact) < FORGET_AFTER);
        for (seed, watch) in &mut self.seeds {
            if watch.waiting.is_none() {
                continue;
            }
            if watch.addrs.iter().any(|a| is_active_member(*a)) {
                answered(seed, watch);
                continue;
            }
            if watch.silent(now).is_none() {
                continue;
            }
            let subject = Subject::SilentSeed {
                seed: seed.clone(),
                addrs: watch.addrs.clone(),
            };
            if let Some(tally) = watch.waiting.as_mut()
                && tally.warn_due(now).is_some()
            {
                warnings.push(Warning {
                    subject,
                    count: tally.count,
                    unlogged: 0,
                });
            }
        }
        warnings
    }

    /// The problems now, silent seeds first, then refusals by address.
    pub fn list(&self, now: Instant, own: OwnSettings<'_>) -> Vec<Problem> {
        let seeds = self.seeds.iter().filter_map(|(seed, watch)| {
            let tally = watch.silent(now)?;
            Some((
                Subject::SilentSeed {
                    seed: seed.clone(),
                    addrs: watch.addrs.clone(),
                },
                *tally,
            ))
        });
        let refused = self.refused.iter().flat_map(|(addr, kinds)| {
            kinds.values().map(|refusal| {
                (
                    Subject::Refused {
                        addr: *addr,
                        mismatch: refusal.mismatch,
                    },
                    refusal.tally,
                )
            })
        });
        let untracked = self.untracked.map(|tally| (Subject::ManySenders, tally));
        seeds
            .chain(refused)
            .chain(untracked)
            .map(|(subject, tally)| Problem {
                detail: describe(&subject, own),
                subject,
                since: tally.first,
                last_seen: tally.last,
                count: tally.count,
            })
            .collect()
    }
}

/// The seed answered: its problem (if it was one) is over.
fn answered(seed: &str, watch: &mut SeedWatch) {
    if let Some(tally) = watch.waiting.take()
        && tally.warned.is_some()
    {
        tracing::info!(seed = %LogText(seed), "seed answered after all");
    }
}

/// A problem due to be logged (the driver adds its settings).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a warning is only said by `log`"]
pub struct Warning {
    subject: Subject,
    /// Occurrences so far.
    count: u64,
    /// Occurrences since the last warning that were not logged.
    unlogged: u64,
}

impl Warning {
    /// Logs it at WARN, the detail as the message.
    pub fn log(&self, own: OwnSettings<'_>) {
        let detail = describe(&self.subject, own);
        let (count, unlogged) = (self.count, self.unlogged);
        match &self.subject {
            Subject::SilentSeed { seed, .. } => {
                tracing::warn!(seed = %LogText(seed), contacts = count, "{detail}");
            }
            Subject::Refused { addr, mismatch } => tracing::warn!(
                %addr,
                reason = mismatch.reason(),
                count,
                unlogged,
                "{detail}"
            ),
            Subject::ManySenders => tracing::warn!(count, unlogged, "{detail}"),
        }
    }
}

/// What a problem is and what to check, in one sentence: the WARN line's
/// message and `status`'s `detail`.
pub fn describe(subject: &Subject, own: OwnSettings<'_>) -> String {
    match subject {
        Subject::SilentSeed { seed, addrs } => {
            // The addresses a name resolved to; nothing when the seed is
            // one address already.
            let mut at = String::new();
            if !addrs.is_empty() && !matches!(addrs.as_slice(), [only] if only.to_string() == *seed)
            {
                for (i, addr) in addrs.iter().enumerate() {
                    let _ = write!(at, "{}{addr}", if i == 0 { " (" } else { ", " });
                }
                at.push(')');
            }
            format!(
                "seed {seed}{at} has not answered for over {}s: check that rossipd runs there on \
                 that port, that firewalls pass UDP to it both ways, and that both nodes have \
                 the same --cluster and key (a node with another label or key drops our hellos \
                 without answering; its `rossipctl status` names this node)",
                SEED_SILENCE.as_secs(),
                seed = LogText(seed)
            )
        }
        Subject::Refused { addr, mismatch } => match mismatch {
            Mismatch::OtherCluster => format!(
                "datagrams from {addr} carry another cluster label (this node's is `{}`): check \
                 --cluster on both",
                LogText(own.cluster)
            ),
            Mismatch::UnknownKey(id) => format!(
                "datagrams from {addr} are sealed under key {id}, which this node does not hold \
                 (it holds {}): check that both use the same --key-file, or install the key \
                 with `rossipctl keys install`",
                key_list(own.keys)
            ),
            Mismatch::Unsealed => format!(
                "datagrams from {addr} are not encrypted, and this node requires the cluster \
                 key: start that node with the cluster's --key-file (and check its log that it \
                 was read)"
            ),
            Mismatch::SealedWithoutKey => format!(
                "datagrams from {addr} are sealed with a cluster key, and this node has none: \
                 start this node with the cluster's --key-file"
            ),
            Mismatch::ClockSkew => format!(
                "datagrams from {addr} are stamped more than {} minutes from this node's clock: \
                 check both clocks (run NTP; `timedatectl` says whether a clock is \
                 synchronized); an old capture replayed looks the same",
                // The daemon's nodes run with the default protocol config.
                rossip_proto::node::ProtocolConfig::default()
                    .replay_freshness
                    .as_secs()
                    / 60
            ),
        },
        Subject::ManySenders => format!(
            "datagrams refused for another cluster label, key or clock come from more than \
             {MAX_TRACKED} addresses; those of further addresses are only counted"
        ),
    }
}

fn key_list(keys: &[KeyId]) -> String {
    let ids: Vec<String> = keys.iter().map(ToString::to_string).collect();
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: OwnSettings<'static> = OwnSettings {
        cluster: "rossip",
        keys: &[KeyId(0x1a2b_3c4d)],
    };

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 5], port))
    }

    #[test]
    fn a_refusal_is_listed_counted_and_forgotten() {
        let t0 = Instant::now();
        let mut problems = Problems::default();
        for i in 0..10 {
            let warning = problems.refused(
                addr(7465),
                Mismatch::OtherCluster,
                t0 + Duration::from_secs(i),
            );
            assert_eq!(warning.is_some(), i == 0, "only the first is logged");
        }
        let listed = problems.list(t0 + Duration::from_secs(10), OWN);
        assert_eq!(listed.len(), 1);
        let problem = &listed[0];
        assert_eq!(problem.count, 10);
        assert_eq!(problem.since, t0);
        assert_eq!(problem.last_seen, t0 + Duration::from_secs(9));
        assert!(
            problem.detail.contains("10.0.0.5:7465") && problem.detail.contains("`rossip`"),
            "{}",
            problem.detail
        );
        let later = t0 + Duration::from_secs(9) + FORGET_AFTER;
        let _ = problems.sweep(later, |_| false);
        assert!(problems.list(later, OWN).is_empty());
    }

    #[test]
    fn warnings_come_at_most_once_a_minute_with_what_was_not_logged() {
        let t0 = Instant::now();
        let mut tally = Tally::new(t0);
        assert_eq!(tally.record(t0), Some(0), "the first is logged");
        for s in 1..60 {
            assert_eq!(tally.record(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(tally.record(t0 + WARN_EVERY), Some(59));
        assert_eq!(tally.count, 61);
    }

    #[test]
    fn the_table_is_bounded_and_counts_the_overflow() {
        let t0 = Instant::now();
        let mut problems = Problems::default();
        for port in 0..1000 {
            let _ = problems.refused(addr(port), Mismatch::Unsealed, t0);
        }
        let listed = problems.list(t0, OWN);
        assert_eq!(listed.len(), MAX_TRACKED + 1);
        let last = listed.last().expect("the overflow");
        assert_eq!(last.subject, Subject::ManySenders);
        assert_eq!(last.count, 1000 - MAX_TRACKED as u64);
    }

    #[test]
    fn one_sender_varying_the_key_id_takes_one_slot() {
        let t0 = Instant::now();
        let mut problems = Problems::default();
        for id in 0..100u32 {
            let _ = problems.refused(addr(7465), Mismatch::UnknownKey(KeyId(id)), t0);
        }
        let listed = problems.list(t0, OWN);
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].count, 100);
        assert_eq!(
            listed[0].subject,
            Subject::Refused {
                addr: addr(7465),
                mismatch: Mismatch::UnknownKey(KeyId(99)),
            },
            "the latest key id is the one named"
        );
        // The other senders still have their slots.
        for port in 1..MAX_TRACKED as u16 {
            let _ = problems.refused(addr(port), Mismatch::OtherCluster, t0);
        }
        let listed = problems.list(t0, OWN);
        assert_eq!(listed.len(), MAX_TRACKED);
        assert!(listed.iter().all(|p| p.subject != Subject::ManySenders));
        // Another kind from a tracked sender is its own problem, not overflow.
        let _ = problems.refused(addr(7465), Mismatch::Unsealed, t0);
        let listed = problems.list(t0, OWN);
        assert_eq!(listed.len(), MAX_TRACKED + 1);
        assert!(listed.iter().all(|p| p.subject != Subject::ManySenders));
    }

    #[test]
    fn a_seed_is_silent_after_the_bound_until_it_answers() {
        let t0 = Instant::now();
        let mut problems = Problems::default();
        let seed_addrs = [addr(7465)];
        problems.contacting_seed("seed.lan:7465", &seed_addrs, t0);
        assert!(problems.sweep(t0 + SEED_SILENCE / 2, |_| false).is_empty());
        assert!(problems.list(t0 + SEED_SILENCE / 2, OWN).is_empty());
        problems.contacting_seed("seed.lan:7465", &seed_addrs, t0 + SEED_SILENCE);
        assert_eq!(problems.sweep(t0 + SEED_SILENCE, |_| false).len(), 1);
        assert!(
            problems.sweep(t0 + SEED_SILENCE, |_| false).is_empty(),
            "warned once a minute"
        );
        let listed = problems.list(t0 + SEED_SILENCE, OWN);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].count, 2, "two contacts unanswered");
        assert!(listed[0].detail.contains("seed.lan:7465 (10.0.0.5:7465)"));
        assert!(problems.awaits_seeds());

        problems.heard_from(addr(7465));
        assert!(problems.list(t0 + SEED_SILENCE, OWN).is_empty());
        assert!(!problems.awaits_seeds());
        // Contacted again later (seeds are retried): a new wait.
        let later = t0 + 2 * SEED_SILENCE;
        problems.contacting_seed("seed.lan:7465", &seed_addrs, later);
        assert!(
            problems
                .sweep(later + SEED_SILENCE, |a| a == addr(7465))
                .is_empty()
        );
        assert!(
            problems.list(later + SEED_SILENCE, OWN).is_empty(),
            "an active member at the seed's address answered"
        );
    }

    #[test]
    fn a_seed_not_contacted_any_more_is_forgotten() {
        let t0 = Instant::now();
        let mut problems = Problems::default();
        problems.contacting_seed("10.0.0.5:7465", &[addr(7465)], t0);
        let later = t0 + FORGET_AFTER;
        let _ = problems.sweep(later, |_| false);
        assert!(problems.list(later, OWN).is_empty());
        assert!(!problems.awaits_seeds());
    }
}
