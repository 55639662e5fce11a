//! `sim-bench`: the simulation benchmark of issue 4. Drives N in-process
//! [`rossip_proto::Node`]s in the deterministic simulation
//! ([`rossip_proto::testing::scenario`]): a cold start through a few seeds,
//! a settling phase, an idle phase, then steady publishing under loss with
//! some nodes crashing midway. Prints one table of the measurements next to the
//! issue's targets, and the seed that replays the run exactly.
//!
//! ```text
//! cargo run --release -p rossip-tests --bin sim-bench -- --nodes 1000 --loss 0.05 --crash 0.01 --messages 100 --seed 1
//! ```
//!
//! `--small` runs the small-cluster loss scenario instead
//! ([`rossip_proto::testing::small`]): 5 nodes on a 0.1 ms LAN, sparse
//! messages and a stream at 10% loss, delay to every node and datagrams
//! per message.
//!
//! ```text
//! cargo run --release -p rossip-tests --bin sim-bench -- --small --loss 0.1 --seed 1
//! ```
#![allow(clippy::disallowed_methods)] // wall time of the run, and the origin of virtual time

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rossip_proto::node::ProtocolConfig;
use rossip_proto::testing::scenario::{ScaleConfig, ScaleReport, run_scale};
use rossip_proto::testing::small::{PhaseReport, SmallConfig, SmallReport, run_small};

const USAGE: &str = "\
usage: sim-bench [--nodes 1000] [--loss 0.05] [--crash 0.01] [--messages 100] [--seed 1]
                 [--seeds 3] [--latency-ms 1] [--jitter-ms 0] [--settle-secs 30]
                 [--idle-secs 10] [--cold-limit-secs 60]

  --nodes N         simulated nodes                                  [default: 1000]
  --loss P          datagram loss (0..1) while idle and publishing    [default: 0.05]
  --crash F         fraction of nodes crashing halfway through         [default: 0.01]
  --messages M      messages published, 100 ms apart, random origins  [default: 100]
  --seed S          seed of the run (decimal or 0x-hex); same seed, same run [default: 1]
  --seeds K         seed nodes every other node contacts at start     [default: 3]
  --latency-ms L    one-way latency                                   [default: 1]
  --jitter-ms J     extra random latency, uniform in 0..=J            [default: 0]
  --settle-secs Q   quiet time after the cold start, before idle      [default: 30]
  --idle-secs T     length of the idle phase                          [default: 10]
  --cold-limit-secs C  longest wait for every node's full member view  [default: 60]

The cold start is lossless (it measures membership alone); loss applies
from the settling phase on.

usage: sim-bench --small [--nodes 5] [--loss 0.1] [--seed 1] [--sparse 200]
                 [--stream 500] [--latency-us 100] [--no-push-acks]

  The small-cluster loss scenario: N nodes that all know each other, 200
  sparse messages 100 ms apart from random nodes, then a stream of 500
  messages 0.2 ms apart from one node; delay until every other node has
  each message, and datagrams per message (--no-push-acks: without
  acknowledgements and retransmission, as before they existed).";

fn main_small(args: impl Iterator<Item = String>) -> ExitCode {
    let config = match parse_small(args) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("sim-bench: error: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let report = run_small(&config, Instant::now());
    print!("{}", small_table(&report, wall.elapsed()));
    if report.sparse.incomplete + report.stream.incomplete == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_small(mut args: impl Iterator<Item = String>) -> Result<SmallConfig, String> {
    let mut config = SmallConfig::new(1);
    while let Some(flag) = args.next() {
        if flag == "--no-push-acks" {
            config.protocol.push_acks.enabled = false;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value}: {what}");
        match flag.as_str() {
            "--nodes" => {
                config.nodes = value.parse().map_err(|_| bad("not a count"))?;
                if !(2..=64).contains(&config.nodes) {
                    return Err(bad("must be 2..=64"));
                }
            }
            "--loss" => config.loss = fraction(&value).ok_or_else(|| bad("not in 0..1"))?,
            "--seed" => config.seed = parse_seed(&value).ok_or_else(|| bad("not a u64"))?,
            "--sparse" => config.sparse_messages = value.parse().map_err(|_| bad("not a count"))?,
            "--stream" => config.stream_messages = value.parse().map_err(|_| bad("not a count"))?,
            "--latency-us" => {
                config.latency =
                    Duration::from_micros(value.parse().map_err(|_| bad("not microseconds"))?);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(config)
}

fn small_table(report: &SmallReport, wall: Duration) -> String {
    let c = &report.config;
    let mut out = format!(
        "\nsim-bench --small: {} nodes, loss {:.1}%, latency {:?}, push acks {}, seed {}; idle {:.1} datagrams/s (cluster); wall time {:.1?}\n\n",
        c.nodes,
        c.loss * 100.0,
        c.latency,
        if c.protocol.push_acks.enabled {
            "on"
        } else {
            "off"
        },
        c.seed,
        report.idle_datagrams_per_sec,
        wall,
    );
    out.push_str(
        "  phase    messages  to all p50 / p99 / max        incomplete  push+repair+ack / msg  (acks)  all above idle / msg  retransmitted\n",
    );
    for (name, phase) in [("sparse", &report.sparse), ("stream", &report.stream)] {
        out.push_str(&phase_line(name, phase));
    }
    out
}

fn phase_line(name: &str, phase: &PhaseReport) -> String {
    format!(
        "  {name:<7}  {:>8}  {:<28}  {:>10}  {:>21.2}  {:>6.2}  {:>20.2}  {:>13}\n",
        phase.messages,
        format!(
            "{} / {} / {}",
            ms2(phase.percentile(0.5)),
            ms2(phase.percentile(0.99)),
            ms2(phase.percentile(1.0))
        ),
        phase.incomplete,
        phase.dissemination_per_message(),
        phase.ack_datagrams as f64 / phase.messages.max(1) as f64,
        phase.all_per_message_above_idle(),
        phase.retransmissions,
    )
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|first| first == "--small") {
        return main_small(args.skip(1));
    }
    let config = match parse(args) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("sim-bench: error: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let report = run_scale(&config, Instant::now(), &mut |phase| {
        eprintln!("sim-bench: [{:>6.1?}] {phase}", wall.elapsed());
    });
    eprintln!();
    print!("{}", table(&report, wall.elapsed()));
    if report.delivery.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `Ok(None)` for `--help`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<ScaleConfig>, String> {
    let mut config = ScaleConfig::new(1000, 1);
    config.messages = 100;
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value}: {what}");
        match flag.as_str() {
            "--nodes" => {
                config.nodes = value.parse().map_err(|_| bad("not a count"))?;
                if !(2..=60_000).contains(&config.nodes) {
                    return Err(bad("must be 2..=60000"));
                }
            }
            "--loss" => config.loss = fraction(&value).ok_or_else(|| bad("not in 0..1"))?,
            "--crash" => {
                config.crash_fraction = fraction(&value).ok_or_else(|| bad("not in 0..1"))?;
            }
            "--messages" => {
                config.messages = value.parse().map_err(|_| bad("not a count"))?;
                if config.messages == 0 {
                    return Err(bad("must be at least 1"));
                }
            }
            "--seed" => config.seed = parse_seed(&value).ok_or_else(|| bad("not a u64"))?,
            "--seeds" => {
                config.seeds = value.parse().map_err(|_| bad("not a count"))?;
                if config.seeds == 0 {
                    return Err(bad("must be at least 1"));
                }
            }
            "--latency-ms" => config.latency = millis(&value).ok_or_else(|| bad("not ms"))?,
            "--jitter-ms" => config.jitter = millis(&value).ok_or_else(|| bad("not ms"))?,
            "--cold-limit-secs" => {
                config.cold_start_limit =
                    Duration::from_secs(value.parse().map_err(|_| bad("not secs"))?);
            }
            "--settle-secs" => {
                config.settle = Duration::from_secs(value.parse().map_err(|_| bad("not secs"))?);
            }
            "--idle-secs" => {
                config.idle = Duration::from_secs(value.parse().map_err(|_| bad("not secs"))?);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Some(config))
}

fn fraction(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|f| (0.0..1.0).contains(f))
}

fn millis(value: &str) -> Option<Duration> {
    value.parse().ok().map(Duration::from_millis)
}

fn parse_seed(value: &str) -> Option<u64> {
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    })
}

/// Milliseconds with two decimals: the small scenario's delays are a few
/// tenths of a millisecond.
fn ms2(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// The report as a table: measurement, value, the issue's target.
fn table(report: &ScaleReport, wall: Duration) -> String {
    let c = &report.config;
    let d = &report.delivery;
    let cold = &report.cold_start;
    let few_rounds = ProtocolConfig::default().probe_period * 5;
    let rows: Vec<(String, String, String)> = vec![
        (
            "cold start: nodes with the full member view".into(),
            format!("{}/{}", cold.converged(), cold.nodes),
            format!("all: {}", verdict(cold.is_complete())),
        ),
        (
            "cold start: full view p50 / p99 / max".into(),
            format!(
                "{} / {} / {}",
                secs(cold.percentile(0.5)),
                secs(cold.percentile(0.99)),
                secs(cold.percentile(1.0))
            ),
            format!("(joins spread over {})", secs(Some(cold.join_spread))),
        ),
        (
            "idle bytes / node / s".into(),
            format!("{:.0} B/s", report.idle_bytes_per_node_per_sec),
            format!(
                "({:.1} datagrams/node/s)",
                report.idle_datagrams_per_node_per_sec
            ),
        ),
        (
            "delivery to live nodes".into(),
            format!("{}/{} = {:.4}%", d.delivered, d.expected, d.ratio() * 100.0),
            format!("100%: {}", verdict(d.is_complete())),
        ),
        (
            "delivery time p50 / p99 / max".into(),
            format!("{} / {} / {}", ms(d.p50()), ms(d.p99()), ms(d.max())),
            format!(
                "p99 <= {} (5 rounds): {}",
                ms(Some(few_rounds)),
                verdict(d.p99().is_some_and(|p| p <= few_rounds))
            ),
        ),
        (
            "all live delivered, after last publish".into(),
            secs(report.drained_after),
            String::new(),
        ),
        (
            "push+repair datagrams / message / node (mean)".into(),
            format!("{:.2}", report.dissemination.mean_per_node),
            format!(
                "<= 3: {}",
                verdict(report.dissemination.mean_per_node <= 3.0)
            ),
        ),
        (
            "push+repair datagrams / message, busiest node".into(),
            format!(
                "{} (n{})",
                report.dissemination.busiest, report.dissemination.busiest_node
            ),
            format!("<= ~50: {}", verdict(report.dissemination.busiest <= 50)),
        ),
        (
            "all datagrams / message / node while publishing".into(),
            format!(
                "{:.2} mean, {:.2} busiest (n{})",
                report.all_traffic.mean,
                report.all_traffic.busiest,
                report.all_traffic.busiest_node
            ),
            format!("({:.2} above the idle rate)", report.excess_per_message),
        ),
    ];
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = format!(
        "\nsim-bench: {} nodes, {} seeds, loss {:.1}%, {} crashed ({:.1}%), {} messages {:?} apart, latency {:?} + jitter <= {:?}, settle {:?}, idle {:?}, seed {} ({:#x}); wall time {:.1?}\n\n",
        c.nodes,
        c.seeds,
        c.loss * 100.0,
        report.crashed.len(),
        c.crash_fraction * 100.0,
        report.published.len(),
        c.publish_interval,
        c.latency,
        c.jitter,
        c.settle,
        c.idle,
        c.seed,
        c.seed,
        wall,
    );
    for (name, value, target) in rows {
        let line = format!("  {name:<width$}  {value:<value_width$}  {target}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !d.missing.is_empty() {
        out.push_str(&format!("\n  undelivered: {d}\n"));
    }
    out.push_str(&idle_breakdown(report));
    out
}

/// The idle traffic by kind of datagram, busiest first: where the idle
/// bytes go (per node per second, like the idle row of the table).
fn idle_breakdown(report: &ScaleReport) -> String {
    let idle = &report.idle_traffic;
    let per_node_sec = |count: u64| {
        let secs = idle.duration.as_secs_f64();
        if secs == 0.0 || report.idle_nodes == 0 {
            0.0
        } else {
            count as f64 / report.idle_nodes as f64 / secs
        }
    };
    let total: u64 = idle.by_kind.values().map(|k| k.bytes).sum();
    let mut kinds: Vec<_> = idle.by_kind.iter().collect();
    kinds.sort_by_key(|(_, k)| std::cmp::Reverse(k.bytes));
    let mut out = format!(
        "\n  idle traffic by kind (per node per second; SWIM member updates are part of their packet's bytes)\n  {:<20} {:>12} {:>10} {:>7} {:>11} {:>14}\n",
        "kind", "datagrams/s", "B/s", "share", "updates/s", "update B/s"
    );
    for (kind, k) in kinds {
        let share = if total == 0 {
            0.0
        } else {
            k.bytes as f64 * 100.0 / total as f64
        };
        out.push_str(&format!(
            "  {:<20} {:>12.2} {:>10.0} {:>6.1}% {:>11.2} {:>14.0}\n",
            kind,
            per_node_sec(k.datagrams),
            per_node_sec(k.bytes),
            share,
            per_node_sec(k.updates),
            per_node_sec(k.update_bytes),
        ));
    }
    out
}
