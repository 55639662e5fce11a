//! `compare-bench`'s table: one line per figure and N, both systems, the
//! ratio (how many times rossip is ahead: Serf / rossip where lower is
//! better, rossip / Serf where higher is), and the issue's targets, met or
//! not; and the BENCHMARKS.md around it.

use crate::delivery_table::quantile;

use super::{LARGEST_PROBE, LOSS_PERCENT, Metric, Options, Results, Row, System};

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times, sizes of memory, counts of false alarms.
    Lower,
    /// Rates, sizes of messages, shares delivered.
    Higher,
}

/// How a figure is made of its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// The median.
    Median,
    /// The nearest-rank quantile.
    Quantile(f64),
    /// The largest.
    Max,
    /// The smallest.
    Min,
    /// All together (counts over runs).
    Sum,
    /// The mean.
    Mean,
}

impl Stat {
    /// The figure of `values`, if there are any.
    pub fn of(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        Some(match self {
            Stat::Median => quantile(values, 0.5)?,
            Stat::Quantile(p) => quantile(values, p)?,
            Stat::Max => values.iter().copied().fold(f64::MIN, f64::max),
            Stat::Min => values.iter().copied().fold(f64::MAX, f64::min),
            Stat::Sum => values.iter().sum(),
            Stat::Mean => values.iter().sum::<f64>() / values.len() as f64,
        })
    }
}

/// An absolute target of the issue: `value <= bound` ([`Better::Lower`])
/// or `>=`, at one N or at every N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Absolute {
    /// The bound.
    pub bound: f64,
    /// Only at this N; `None`: at every N.
    pub at: Option<usize>,
}

/// One figure of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// What it is.
    pub label: &'static str,
    /// Its samples.
    pub metric: Metric,
    /// How they are summed up.
    pub stat: Stat,
    /// Unit, for the label.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// rossip must be ahead of Serf by this factor.
    pub ratio: Option<f64>,
    /// The issue's absolute target.
    pub absolute: Option<Absolute>,
    /// The row that measures it.
    pub row: Row,
}

const fn line(
    label: &'static str,
    metric: Metric,
    stat: Stat,
    unit: &'static str,
    better: Better,
    row: Row,
) -> Line {
    Line {
        label,
        metric,
        stat,
        unit,
        better,
        ratio: None,
        absolute: None,
        row,
    }
}

const fn ratio(mut l: Line, factor: f64) -> Line {
    l.ratio = Some(factor);
    l
}

const fn absolute(mut l: Line, bound: f64, at: Option<usize>) -> Line {
    l.absolute = Some(Absolute { bound, at });
    l
}

/// Every figure, in table order, with the issue's targets.
pub const LINES: [Line; 22] = {
    use Better::{Higher, Lower};
    [
        absolute(
            ratio(
                line(
                    "discovery, all started at once, until all list all",
                    Metric::Discovery,
                    Stat::Median,
                    "s",
                    Lower,
                    Row::Discovery,
                ),
                2.0,
            ),
            0.1,
            Some(10),
        ),
        ratio(
            line(
                "late joiner, until all list it and it lists all",
                Metric::LateJoin,
                Stat::Median,
                "s",
                Lower,
                Row::Discovery,
            ),
            2.0,
        ),
        line(
            "latency to all others, p50",
            Metric::Latency,
            Stat::Median,
            "ms",
            Lower,
            Row::Latency,
        ),
        ratio(
            line(
                "latency to all others, p99",
                Metric::Latency,
                Stat::Quantile(0.99),
                "ms",
                Lower,
                Row::Latency,
            ),
            40.0,
        ),
        line(
            "latency to all others, max",
            Metric::Latency,
            Stat::Max,
            "ms",
            Lower,
            Row::Latency,
        ),
        line(
            "latency: messages lost (not everywhere in 5 s)",
            Metric::Lost,
            Stat::Sum,
            "",
            Lower,
            Row::Latency,
        ),
        line(
            "latency with 10% inbound loss, p50",
            Metric::LatencyLoss,
            Stat::Median,
            "ms",
            Lower,
            Row::LatencyLoss,
        ),
        absolute(
            ratio(
                line(
                    "latency with 10% inbound loss, p99",
                    Metric::LatencyLoss,
                    Stat::Quantile(0.99),
                    "ms",
                    Lower,
                    Row::LatencyLoss,
                ),
                40.0,
            ),
            10.0,
            Some(5),
        ),
        line(
            "latency with 10% inbound loss, max",
            Metric::LatencyLoss,
            Stat::Max,
            "ms",
            Lower,
            Row::LatencyLoss,
        ),
        line(
            "latency with 10% loss: messages lost",
            Metric::LostLoss,
            Stat::Sum,
            "",
            Lower,
            Row::LatencyLoss,
        ),
        absolute(
            ratio(
                line(
                    "zero-loss throughput, one sender, 200 B",
                    Metric::Throughput,
                    Stat::Median,
                    "msg/s",
                    Higher,
                    Row::Throughput,
                ),
                100.0,
            ),
            20_000.0,
            Some(5),
        ),
        ratio(
            line(
                "zero-loss throughput, all sending, 200 B",
                Metric::ThroughputAll,
                Stat::Median,
                "msg/s",
                Higher,
                Row::ThroughputAll,
            ),
            100.0,
        ),
        ratio(
            line(
                "largest message delivered to all",
                Metric::Largest,
                Stat::Min,
                "B",
                Higher,
                Row::Largest,
            ),
            100.0,
        ),
        absolute(
            ratio(
                line(
                    "SIGKILL -> failed on all others",
                    Metric::Kill,
                    Stat::Median,
                    "s",
                    Lower,
                    Row::Kill,
                ),
                2.5,
            ),
            2.0,
            None,
        ),
        ratio(
            line(
                "leave -> left on all others",
                Metric::Leave,
                Stat::Median,
                "s",
                Lower,
                Row::Leave,
            ),
            5.0,
        ),
        absolute(
            line(
                "false `failed` under 10% loss (all runs)",
                Metric::LossFailures,
                Stat::Sum,
                "",
                Lower,
                Row::LossFailures,
            ),
            0.0,
            None,
        ),
        absolute(
            line(
                "false `failed` during a full-speed flood (all runs)",
                Metric::FloodFailures,
                Stat::Sum,
                "",
                Lower,
                Row::Flood,
            ),
            0.0,
            None,
        ),
        line(
            "flood: accepted messages delivered to all",
            Metric::FloodDelivered,
            Stat::Median,
            "%",
            Higher,
            Row::Flood,
        ),
        absolute(
            ratio(
                line(
                    "idle RSS per node",
                    Metric::IdleRss,
                    Stat::Median,
                    "MiB",
                    Lower,
                    Row::Idle,
                ),
                3.0,
            ),
            5.0,
            Some(10),
        ),
        absolute(
            line(
                "idle CPU per node",
                Metric::IdleCpu,
                Stat::Mean,
                "% of a core",
                Lower,
                Row::Idle,
            ),
            0.1,
            Some(10),
        ),
        ratio(
            line(
                "`send` CLI call, wall time",
                Metric::CliSend,
                Stat::Median,
                "ms",
                Lower,
                Row::Cli,
            ),
            2.0,
        ),
        ratio(
            line(
                "`peers` / `members` CLI call, wall time",
                Metric::CliPeers,
                Stat::Median,
                "ms",
                Lower,
                Row::Cli,
            ),
            2.0,
        ),
    ]
};

/// A value in its unit, as the table prints it.
pub fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "s" => format!("{value:.3}"),
        "ms" if value < 10.0 => format!("{value:.2}"),
        "ms" => format!("{value:.1}"),
        "msg/s" | "B" | "" => thousands(value.round() as u64),
        "% of a core" => format!("{value:.3}"),
        _ => format!("{value:.1}"),
    }
}

/// `12345` as `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many times rossip is ahead on `line` (above 1: ahead); `None` when
/// a side is missing or zero.
pub fn advantage(line: &Line, rossip: f64, serf: f64) -> Option<f64> {
    let (num, den) = match line.better {
        Better::Lower => (serf, rossip),
        Better::Higher => (rossip, serf),
    };
    (num > 0.0 && den > 0.0).then(|| num / den)
}

/// Whether the figures meet `line`'s targets at N=`n`: the verdicts that
/// apply, as text (`40x: no; <= 10 ms: yes`), or `-` when none does.
pub fn verdict(line: &Line, n: usize, rossip: Option<f64>, ahead: Option<f64>) -> String {
    let mut parts = Vec::new();
    if let Some(factor) = line.ratio {
        let met = ahead.map(|a| a >= factor);
        parts.push(format!("{}x Serf: {}", factor, yes_no(met)));
    }
    if let Some(abs) = line.absolute
        && abs.at.is_none_or(|at| at == n)
    {
        let (sign, met) = match line.better {
            Better::Lower => ("<=", rossip.map(|r| r <= abs.bound)),
            Better::Higher => (">=", rossip.map(|r| r >= abs.bound)),
        };
        let unit = if line.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", line.unit)
        };
        parts.push(format!(
            "{sign} {}{unit}: {}",
            format_value(abs.bound, line.unit),
            yes_no(met)
        ));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join("; ")
    }
}

fn yes_no(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

/// The table, in Markdown (it reads as plain text too).
pub fn table(results: &Results, options: &Options) -> String {
    let mut out = String::from(
        "| N | figure | rossip | Serf | rossip ahead (x) | issue targets for rossip |\n|---|---|---|---|---|---|\n",
    );
    for &n in &options.sizes {
        for line in LINES.iter().filter(|l| options.rows.contains(&l.row)) {
            let figure = |system| Stat::of(line.stat, results.values(n, line.metric, system));
            let rossip = figure(System::Rossip);
            let serf = figure(System::Serf);
            let shown = |v: Option<f64>, system: System| match v {
                Some(v) if line.metric == Metric::Largest && v as usize >= LARGEST_PROBE => {
                    format!(">= {}", format_value(v, line.unit))
                }
                Some(v) => format_value(v, line.unit),
                None if options.systems.contains(&system) => "failed".to_owned(),
                None => "-".to_owned(),
            };
            let ahead = rossip.zip(serf).and_then(|(r, s)| advantage(line, r, s));
            let unit = if line.unit.is_empty() {
                String::new()
            } else {
                format!(" ({})", line.unit)
            };
            out.push_str(&format!(
                "| {n} | {}{unit} | {} | {} | {} | {} |\n",
                line.label,
                shown(rossip, System::Rossip),
                shown(serf, System::Serf),
                ahead.map_or_else(|| "-".to_owned(), |a| format!("{a:.1}")),
                verdict(line, n, rossip, ahead)
            ));
        }
    }
    out
}

/// Failed runs, one line each.
pub fn errors(results: &Results) -> String {
    results
        .errors
        .iter()
        .map(|(n, system, row, why)| {
            let first = why.lines().next().unwrap_or("");
            format!("- N={n}, {}, {}: {first}\n", system.name(), row.name())
        })
        .collect()
}

/// What the machine and the software were.
#[derive(Debug, Clone, Default)]
pub struct Setting {
    /// `date -u` when the run started and ended.
    pub started: String,
    /// See `started`.
    pub finished: String,
    /// CPU model, cores, kernel, memory.
    pub machine: String,
    /// Load average when the run started and ended.
    pub load: String,
    /// rossip's git revision, rossipd's version, Serf's, rustc's.
    pub versions: String,
    /// Whether the load average exceeded the core count at the start or
    /// the end: other work shared the CPUs, so times are noisy.
    pub loaded: bool,
}

/// What BENCHMARKS.md says when [`Setting::loaded`].
pub const LOADED_NOTE: &str = "The machine was shared with other work during this run (load \
     average above its core count): wall-clock figures are noisy and both systems ran slower \
     than on an idle machine; the alternation of runs gives both the same conditions.";

/// The whole BENCHMARKS.md.
pub fn benchmarks_md(results: &Results, options: &Options, setting: &Setting) -> String {
    let errors = errors(results);
    format!(
        "# rossip and Serf, side by side\n\n\
         Measured by `compare-bench` (tests/src/compare/) on {started} (finished {finished}). \
         Absolute times are this machine's; the ratios are the claim.\n\n\
         Command (as root, from the repository root):\n\n\
         ```text\n{command}\n```\n\n\
         - Machine: {machine}\n\
         - Load average (1, 5, 15 min) at start / end: {load}\n\
         - Versions: {versions}\n\
         - Runs: {runs} per row, system and N, alternating rossip and Serf{quick}\n\n\
         {loaded}{table}\n\
         \"rossip ahead\" is Serf / rossip where lower is better and rossip / Serf where higher is \
         better; above 1 rossip is ahead. \"failed\" means no run of that figure completed (see \
         the list below). Raw samples: `{raw}` (not in git).\n\n\
         {errors_title}{errors}\
         ## Method\n\n{method}",
        started = setting.started,
        finished = setting.finished,
        command = options.command,
        machine = setting.machine,
        load = setting.load,
        versions = setting.versions,
        runs = options.runs,
        quick = if options.quick {
            " (`--quick`: fewer samples and shorter holds)"
        } else {
            ""
        },
        loaded = if setting.loaded {
            format!("{LOADED_NOTE}\n\n")
        } else {
            String::new()
        },
        table = table(results, options),
        raw = results
            .raw_path
            .as_ref()
            .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
        errors_title = if errors.is_empty() {
            ""
        } else {
            "Runs that did not complete:\n\n"
        },
        errors = if errors.is_empty() {
            String::new()
        } else {
            format!("{errors}\n")
        },
        method = method(options),
    )
}

/// What each figure measures.
pub fn method(options: &Options) -> String {
    format!(
        "Each N gets network namespaces on one bridge (10.77.0.0/24, no route out), one node per \
         host, the same for both systems: `rossipd --name hN` (mDNS discovery, its defaults, \
         `--log-level info`) or `serf agent -node=hN -discover=rossipbench -iface=eth0 \
         -log-level=info` (Serf's mDNS discovery, LAN profile). Daemons are started with `ip \
         netns exec`. Every CLI call enters the host's namespace with `nsenter \
         --net=/run/netns/HOST` for both systems: `ip netns exec` also remounts /sys (~3 ms a \
         call here), which would dominate the CLI figures; rossipctl reaches its daemon through a \
         Unix socket, Serf's CLI through its RPC port (TCP 127.0.0.1:7373 inside the namespace).\n\n\
         Observation, stamped with the instant this process read it: for rossip, a subscription \
         (`subscribe`) on each daemon's socket, for messages and for peer events; for Serf, each \
         agent's own log on its stdout (`serf: EventMemberJoin/Failed/Leave: NAME` when its \
         member list changes, `agent: Received event: user-event: NAME` when a user event \
         reaches the agent). The log costs the agent nothing it does not do anyway, where a `serf \
         monitor` per node would add a process and an RPC stream, and an event handler a process \
         per event. Serf's user events are sent with `-coalesce=false`: with coalescing, its \
         default, the agent holds events for a quiet second.\n\n\
         - discovery: a fresh LAN per sample; all N nodes spawned at once, until every node's \
         notifications had every other alive; then every node's CLI (`rossipctl --json peers`, \
         `serf members -format=json`) must list all alive (checked, not timed). Late joiner: one \
         more node started after that, until every node had it alive and it had all.\n\
         - The other rows run on one cluster per system per N, started once; after each run \
         both are checked to be converged again (nodes a row stopped are restarted).\n\
         - latency: {samples} messages of 200 bytes per run from h1, one at a time: the clock \
         starts just before spawning the CLI (`rossipctl send TEXT` / `serf event \
         -coalesce=false KEY PAYLOAD`, key and payload 200 bytes together) and stops when the \
         last of the other N-1 nodes had it. lost: not at all of them within 5 s. With loss: \
         every host drops {LOSS_PERCENT}% of its inbound packets (nftables `numgen random`), \
         the sender too.\n\
         - throughput: 200-byte messages paced at a total rate (message k due at start + k/rate) \
         for {secs} s per step, from h1 alone or from every node (rate split evenly), through \
         the fastest client each system has: rossip's RPC on its Unix socket (pipelined, 256 \
         requests in flight), Serf's RPC (`event` calls on one MessagePack connection per sender; \
         each returns in well under a millisecond). A step passes when every message was \
         accepted, reached every node (waiting up to 10 s, or until nothing new arrived for 3 \
         s) and the senders kept to 95% of the rate. The rate doubles from 2,000/s (rossip) or \
         20/s (Serf) while steps pass (halves while they fail), then {bisections} bisection(s) \
         of the gap; the figure is the highest passing rate.\n\
         - largest message: binary search on the size of one message sent by h1's CLI (a \
         rossip text; a Serf event's name and payload together), delivered to every other node \
         within 3 s; up to {probe} bytes (one command-line argument).\n\
         - SIGKILL -> failed: from just before `kill -9` of one node (h2, h3, … in turn) until \
         the last other node recorded it failed. leave -> left: from the signal that makes a \
         node leave gracefully (SIGTERM for rossipd; SIGINT for Serf's agent, which leaves on \
         SIGINT but not on SIGTERM) until the last other recorded it left. The node is \
         restarted afterwards.\n\
         - false `failed` under loss: every host drops {LOSS_PERCENT}% inbound for {hold} s; \
         `failed` transitions recorded by all nodes together from the start until all are \
         alive everywhere again. Every node stays up, so each one is false.\n\
         - flood: every node sends 200-byte messages as fast as its daemon accepts them (the \
         same clients as throughput) for {hold} s; false `failed` transitions counted as above, \
         and the share of accepted messages that reached every node.\n\
         - idle (measured first, on the fresh cluster: floods leave buffers and history \
         behind in both systems): {hold} s with no traffic; VmRSS of each node's process at the end \
         (/proc/PID/status; median over nodes), CPU time used (utime + stime of /proc/PID/stat; \
         mean over nodes) as a share of one core.\n\
         - CLI: {calls} calls each of `send` (200 bytes) and `peers` / `members` from h1, \
         alternating; wall time from spawn to exit, median.\n",
        samples = options.latency_samples,
        secs = options.rate_seconds,
        bisections = options.bisections,
        probe = LARGEST_PROBE,
        hold = options.hold.as_secs(),
        calls = options.cli_calls,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(metric: Metric, stat: Stat) -> Line {
        *LINES
            .iter()
            .find(|l| l.metric == metric && l.stat == stat)
            .expect("the line exists")
    }

    #[test]
    fn rossip_ahead_is_above_one_both_ways() {
        let p99 = find(Metric::Latency, Stat::Quantile(0.99));
        assert_eq!(advantage(&p99, 5.0, 200.0), Some(40.0));
        let rate = find(Metric::Throughput, Stat::Median);
        assert_eq!(advantage(&rate, 20_000.0, 50.0), Some(400.0));
        assert_eq!(advantage(&rate, 20_000.0, 0.0), None);
    }

    #[test]
    fn verdicts_check_ratio_and_absolute_targets_where_they_apply() {
        let p99 = find(Metric::LatencyLoss, Stat::Quantile(0.99));
        assert_eq!(
            verdict(&p99, 5, Some(12.0), Some(36.0)),
            "40x Serf: NOT met; <= 10.0 ms: NOT met"
        );
        assert_eq!(verdict(&p99, 3, Some(8.0), Some(50.0)), "40x Serf: met");
        let flood = find(Metric::FloodFailures, Stat::Sum);
        assert_eq!(verdict(&flood, 10, Some(0.0), None), "<= 0: met");
        let p50 = find(Metric::Latency, Stat::Median);
        assert_eq!(verdict(&p50, 5, Some(1.0), Some(2.0)), "-");
    }

    #[test]
    fn figures_and_units() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(format_value(7.123, "ms"), "7.12");
        assert_eq!(format_value(557.0, "ms"), "557.0");
        assert_eq!(format_value(0.146, "s"), "0.146");
        assert_eq!(
            Stat::Quantile(0.99).of(&(1..=100).map(f64::from).collect::<Vec<_>>()),
            Some(99.0)
        );
        assert_eq!(Stat::Sum.of(&[1.0, 2.0]), Some(3.0));
        assert_eq!(Stat::Median.of(&[]), None);
    }

    #[test]
    fn the_table_has_both_systems_and_the_ratio() {
        let mut results = Results::default();
        let options = Options {
            sizes: vec![5],
            rows: vec![Row::Kill],
            ..Options::full()
        };
        results.push(5, System::Rossip, 0, Metric::Kill, 1.0);
        results.push(5, System::Serf, 0, Metric::Kill, 6.0);
        let table = table(&results, &options);
        assert!(
            table.contains("| 5 | SIGKILL -> failed on all others (s) | 1.000 | 6.000 | 6.0 | 2.5x Serf: met; <= 2.000 s: met |"),
            "{table}"
        );
    }
}
