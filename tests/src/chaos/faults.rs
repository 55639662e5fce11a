//! The chaos test's faults and their seeded plan.
//!
//! The plan is a pure function of the seed, the number of hosts, the late
//! joiner and the planned duration: the same seed replays the same faults on
//! the same hosts with the same durations (the run's timing, and so what the
//! faults hit, still varies with the machine's load). Every kind of fault
//! comes at least once, in a seeded order, before the rest are drawn at
//! random; the late joiner starts once the planned time passes a seeded
//! point between 30% and 50% of the duration.
//!
//! Network faults (loss, partitions) replace each other and stay in force
//! while the process faults that follow them happen; process faults (kill
//! -9, SIGSTOP, SIGTERM) hit one running daemon at a time and end with it
//! running again.

use std::fmt;
use std::time::Duration;

use crate::rng::Rng;

/// Inbound loss on a host, in percent: as the fault runs.
const LOSS_PERCENT: (u64, u64) = (10, 40);
/// How long a network condition holds, ms.
const NETWORK_HOLD_MS: (u64, u64) = (1_000, 6_000);
/// How long a killed daemon stays down, ms.
const KILL_DOWN_MS: (u64, u64) = (200, 4_000);
/// How long a daemon stays stopped: up to 8 s.
const STOP_HELD_MS: (u64, u64) = (1_000, 8_000);
/// How long a daemon stopped with SIGTERM stays down, ms.
const TERM_DOWN_MS: (u64, u64) = (200, 3_000);
/// Pause after the late joiner started, ms: its catch-up is under way
/// before the next fault.
const JOIN_HOLD_MS: (u64, u64) = (1_000, 3_000);
/// The late joiner starts after this share of the duration, in percent.
const JOIN_AT_PERCENT: (u64, u64) = (30, 50);

/// What kind of fault a [`Fault`] is, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Inbound loss on some hosts.
    Loss,
    /// Two hosts cut off from three.
    Split2x3,
    /// One host cut off from four.
    Split1x4,
    /// Two sides that cannot hear each other, and a host that hears both.
    Bridge,
    /// No network fault.
    Calm,
    /// `kill -9`, then a restart.
    Kill9,
    /// SIGSTOP, then SIGCONT.
    Stop,
    /// SIGTERM (a graceful leave), then a restart.
    Term,
    /// A host whose daemon starts midway.
    LateJoin,
}

impl FaultKind {
    /// Every kind that each run injects at least once, but the late join
    /// (which comes at its time).
    const OWED: [FaultKind; 7] = [
        FaultKind::Loss,
        FaultKind::Split2x3,
        FaultKind::Split1x4,
        FaultKind::Bridge,
        FaultKind::Kill9,
        FaultKind::Stop,
        FaultKind::Term,
    ];

    /// Kinds drawn after the owed ones, each as often as it is listed.
    const DRAWN: [FaultKind; 11] = [
        FaultKind::Loss,
        FaultKind::Loss,
        FaultKind::Split2x3,
        FaultKind::Split1x4,
        FaultKind::Bridge,
        FaultKind::Calm,
        FaultKind::Kill9,
        FaultKind::Kill9,
        FaultKind::Stop,
        FaultKind::Stop,
        FaultKind::Term,
    ];

    /// A short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Loss => "inbound loss",
            FaultKind::Split2x3 => "partition 2|3",
            FaultKind::Split1x4 => "partition 1|4",
            FaultKind::Bridge => "bridge-shaped partition",
            FaultKind::Calm => "calm",
            FaultKind::Kill9 => "kill -9 and restart",
            FaultKind::Stop => "SIGSTOP/SIGCONT",
            FaultKind::Term => "SIGTERM and restart",
            FaultKind::LateJoin => "late joiner",
        }
    }
}

/// One fault; host numbers are indices into the LAN's hosts (0 is h1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Each listed host drops that share of what it receives, for `hold`.
    Loss {
        /// `(host, percent)`.
        hosts: Vec<(usize, u8)>,
        /// Until the next step.
        hold: Duration,
    },
    /// The two sides drop everything from each other, for `hold`.
    Split {
        /// One side.
        left: Vec<usize>,
        /// The other side.
        right: Vec<usize>,
        /// Until the next step.
        hold: Duration,
    },
    /// `left` and `right` drop everything from each other; `bridge` hears
    /// and reaches both.
    Bridge {
        /// One side.
        left: Vec<usize>,
        /// The host in the middle.
        bridge: usize,
        /// The other side.
        right: Vec<usize>,
        /// Until the next step.
        hold: Duration,
    },
    /// The network healed, for `hold`.
    Calm {
        /// Until the next step.
        hold: Duration,
    },
    /// `kill -9`, down for `down`, restart.
    Kill9 {
        /// The host whose daemon is killed.
        host: usize,
        /// Time between the kill and the restart.
        down: Duration,
    },
    /// SIGSTOP, stopped for `held`, SIGCONT.
    Stop {
        /// The host whose daemon is stopped.
        host: usize,
        /// Time between SIGSTOP and SIGCONT.
        held: Duration,
    },
    /// SIGTERM, wait for the exit, down for `down`, restart.
    Term {
        /// The host whose daemon is stopped.
        host: usize,
        /// Time between the exit and the restart.
        down: Duration,
    },
    /// The late joiner's daemon starts; then a pause of `hold`.
    LateJoin {
        /// The late joiner.
        host: usize,
        /// Until the next step.
        hold: Duration,
    },
}

impl Fault {
    /// Its kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Loss { .. } => FaultKind::Loss,
            Fault::Split { left, right, .. } if left.len().min(right.len()) == 1 => {
                FaultKind::Split1x4
            }
            Fault::Split { .. } => FaultKind::Split2x3,
            Fault::Bridge { .. } => FaultKind::Bridge,
            Fault::Calm { .. } => FaultKind::Calm,
            Fault::Kill9 { .. } => FaultKind::Kill9,
            Fault::Stop { .. } => FaultKind::Stop,
            Fault::Term { .. } => FaultKind::Term,
            Fault::LateJoin { .. } => FaultKind::LateJoin,
        }
    }

    /// How much planned time the step takes.
    pub fn duration(&self) -> Duration {
        match self {
            Fault::Loss { hold, .. }
            | Fault::Split { hold, .. }
            | Fault::Bridge { hold, .. }
            | Fault::Calm { hold }
            | Fault::LateJoin { hold, .. } => *hold,
            Fault::Kill9 { down, .. } | Fault::Term { down, .. } => *down,
            Fault::Stop { held, .. } => *held,
        }
    }
}

/// `h1 h4`: host indices as the LAN names them.
fn hosts(list: &[usize]) -> String {
    list.iter()
        .map(|i| format!("h{}", i + 1))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: &Duration| d.as_secs_f64();
        match self {
            Fault::Loss { hosts: list, hold } => {
                let each: Vec<String> = list
                    .iter()
                    .map(|(h, p)| format!("h{} {p}%", h + 1))
                    .collect();
                write!(
                    f,
                    "inbound loss {} for {:.1} s",
                    each.join(", "),
                    secs(hold)
                )
            }
            Fault::Split { left, right, hold } => write!(
                f,
                "partition {} | {} for {:.1} s",
                hosts(left),
                hosts(right),
                secs(hold)
            ),
            Fault::Bridge {
                left,
                bridge,
                right,
                hold,
            } => write!(
                f,
                "partition {} | {} with h{} bridging for {:.1} s",
                hosts(left),
                hosts(right),
                bridge + 1,
                secs(hold)
            ),
            Fault::Calm { hold } => write!(f, "network healed for {:.1} s", secs(hold)),
            Fault::Kill9 { host, down } => write!(
                f,
                "kill -9 h{}, down {:.1} s, restart",
                host + 1,
                secs(down)
            ),
            Fault::Stop { host, held } => {
                write!(f, "SIGSTOP h{} for {:.1} s, SIGCONT", host + 1, secs(held))
            }
            Fault::Term { host, down } => write!(
                f,
                "SIGTERM h{}, down {:.1} s, restart",
                host + 1,
                secs(down)
            ),
            Fault::LateJoin { host, hold } => write!(
                f,
                "late joiner h{} starts, then {:.1} s",
                host + 1,
                secs(hold)
            ),
        }
    }
}

/// One step of the plan: a fault and the planned time it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Planned start, from the start of the faults (the sum of the
    /// durations before it).
    pub at: Duration,
    /// The fault.
    pub fault: Fault,
}

/// The seeded sequence of faults; see the module docs.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    rng: Rng,
    hosts: usize,
    late_joiner: usize,
    joined: bool,
    join_at: Duration,
    duration: Duration,
    planned: Duration,
    /// Kinds not injected yet, in the order they will come.
    owed: Vec<FaultKind>,
}

impl FaultPlan {
    /// The plan for `seed` on `hosts` hosts whose host `late_joiner` starts
    /// midway, for a planned `duration`.
    pub fn new(seed: u64, hosts: usize, late_joiner: usize, duration: Duration) -> FaultPlan {
        assert!(hosts >= 4, "the partitions need at least 4 hosts");
        let mut rng = Rng(state_from_seed(seed));
        let mut owed = FaultKind::OWED.to_vec();
        shuffle(&mut rng, &mut owed);
        owed.reverse(); // popped from the end
        let percent = between(&mut rng, JOIN_AT_PERCENT);
        let join_at = duration * u32::try_from(percent).unwrap_or(50) / 100;
        FaultPlan {
            rng,
            hosts,
            late_joiner,
            joined: false,
            join_at,
            duration,
            planned: Duration::ZERO,
            owed,
        }
    }

    /// When the late joiner starts, planned.
    pub fn join_at(&self) -> Duration {
        self.join_at
    }
}

impl Iterator for FaultPlan {
    type Item = Step;

    /// The next step; `None` once the planned time is up, every kind came
    /// and the late joiner started.
    fn next(&mut self) -> Option<Step> {
        let owes = !self.owed.is_empty() || !self.joined;
        if self.planned >= self.duration && !owes {
            return None;
        }
        let kind = if !self.joined && self.planned >= self.join_at {
            FaultKind::LateJoin
        } else if let Some(kind) = self.owed.pop() {
            kind
        } else {
            FaultKind::DRAWN[self.rng.below(FaultKind::DRAWN.len())]
        };
        let fault = self.fault(kind);
        let step = Step {
            at: self.planned,
            fault,
        };
        self.planned += step.fault.duration();
        Some(step)
    }
}

impl FaultPlan {
    fn fault(&mut self, kind: FaultKind) -> Fault {
        let rng = &mut self.rng;
        let ms = |rng: &mut Rng, range| Duration::from_millis(between(rng, range));
        match kind {
            FaultKind::Loss => {
                let mut list: Vec<(usize, u8)> = Vec::new();
                for host in 0..self.hosts {
                    if rng.below(2) == 0 {
                        list.push((host, percent(rng)));
                    }
                }
                if list.is_empty() {
                    list.push((rng.below(self.hosts), percent(rng)));
                }
                Fault::Loss {
                    hosts: list,
                    hold: ms(rng, NETWORK_HOLD_MS),
                }
            }
            FaultKind::Split2x3 | FaultKind::Split1x4 => {
                let mut order: Vec<usize> = (0..self.hosts).collect();
                shuffle(rng, &mut order);
                let cut = if kind == FaultKind::Split1x4 {
                    1
                } else {
                    self.hosts / 2
                };
                let mut left = order[..cut].to_vec();
                let mut right = order[cut..].to_vec();
                left.sort_unstable();
                right.sort_unstable();
                Fault::Split {
                    left,
                    right,
                    hold: ms(rng, NETWORK_HOLD_MS),
                }
            }
            FaultKind::Bridge => {
                let mut order: Vec<usize> = (0..self.hosts).collect();
                shuffle(rng, &mut order);
                let bridge = order[0];
                let sides = &order[1..];
                // Each side has at least one host.
                let cut = 1 + rng.below(sides.len() - 1);
                let mut left = sides[..cut].to_vec();
                let mut right = sides[cut..].to_vec();
                left.sort_unstable();
                right.sort_unstable();
                Fault::Bridge {
                    left,
                    bridge,
                    right,
                    hold: ms(rng, NETWORK_HOLD_MS),
                }
            }
            FaultKind::Calm => Fault::Calm {
                hold: ms(rng, NETWORK_HOLD_MS),
            },
            FaultKind::Kill9 => Fault::Kill9 {
                host: self.running_host(),
                down: ms(&mut self.rng, KILL_DOWN_MS),
            },
            FaultKind::Stop => Fault::Stop {
                host: self.running_host(),
                held: ms(&mut self.rng, STOP_HELD_MS),
            },
            FaultKind::Term => Fault::Term {
                host: self.running_host(),
                down: ms(&mut self.rng, TERM_DOWN_MS),
            },
            FaultKind::LateJoin => {
                self.joined = true;
                Fault::LateJoin {
                    host: self.late_joiner,
                    hold: ms(&mut self.rng, JOIN_HOLD_MS),
                }
            }
        }
    }

    /// A host whose daemon runs at this point of the plan.
    fn running_host(&mut self) -> usize {
        let running: Vec<usize> = (0..self.hosts)
            .filter(|&h| self.joined || h != self.late_joiner)
            .collect();
        running[self.rng.below(running.len())]
    }
}

fn percent(rng: &mut Rng) -> u8 {
    u8::try_from(between(rng, LOSS_PERCENT)).unwrap_or(u8::MAX)
}

/// Uniform in `low..=high`.
fn between(rng: &mut Rng, (low, high): (u64, u64)) -> u64 {
    low + rng.next_u64() % (high - low + 1)
}

fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// A generator state from any seed (xorshift must not start at 0):
/// splitmix64, so that nearby seeds give unrelated plans.
fn state_from_seed(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    if z == 0 { 1 } else { z }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64, secs: u64) -> Vec<Step> {
        FaultPlan::new(seed, 5, 4, Duration::from_secs(secs)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        assert_eq!(plan(7, 60), plan(7, 60));
        assert_ne!(plan(7, 60), plan(8, 60));
    }

    #[test]
    fn every_kind_comes_even_in_a_short_run() {
        for seed in 0..50 {
            let steps = plan(seed, 1);
            let kinds: Vec<FaultKind> = steps.iter().map(|s| s.fault.kind()).collect();
            for kind in FaultKind::OWED.iter().chain([&FaultKind::LateJoin]) {
                assert!(
                    kinds.contains(kind),
                    "seed {seed}: no {kind:?} in {kinds:?}"
                );
            }
        }
    }

    #[test]
    fn the_late_joiner_starts_midway_and_is_not_hit_before() {
        for seed in 0..50 {
            let steps = plan(seed, 120);
            let join = steps
                .iter()
                .position(|s| s.fault.kind() == FaultKind::LateJoin)
                .expect("a late join");
            let at = steps[join].at;
            assert!(
                at >= Duration::from_secs(36) && at <= Duration::from_secs(70),
                "seed {seed}: joined at {at:?}"
            );
            for step in &steps[..join] {
                let host = match step.fault {
                    Fault::Kill9 { host, .. }
                    | Fault::Stop { host, .. }
                    | Fault::Term { host, .. } => host,
                    _ => continue,
                };
                assert_ne!(host, 4, "seed {seed}: {} before the join", step.fault);
            }
            let last = steps.last().expect("steps");
            assert!(
                last.at < Duration::from_secs(120),
                "seed {seed}: ran past the end"
            );
        }
    }

    #[test]
    fn partitions_have_their_shapes() {
        for step in plan(3, 600) {
            match step.fault {
                Fault::Split { left, right, .. } => {
                    assert_eq!(left.len() + right.len(), 5);
                    assert!(matches!(left.len().min(right.len()), 1 | 2));
                }
                Fault::Bridge {
                    left,
                    bridge,
                    right,
                    ..
                } => {
                    assert!(!left.is_empty() && !right.is_empty());
                    assert!(!left.contains(&bridge) && !right.contains(&bridge));
                    assert_eq!(left.len() + right.len(), 4);
                }
                Fault::Stop { held, .. } => assert!(held <= Duration::from_secs(8)),
                _ => {}
            }
        }
    }
}
