//! `idle-bench`: what an idle cluster costs, and how fast it forms. Starts N
//! namespaced hosts with one mDNS-only `rossipd` each (all at once, zero
//! config, as [`NsCluster`] does), and prints:
//!
//! - discovery: from the spawn of the first daemon until every node had
//!   every other `alive` (as `membership-bench` measures it), and until the
//!   last daemon's sockets answered, for comparison;
//! - per node over `--secs` of idleness: CPU time (the sum of every
//!   thread's run time from `/proc/PID/task/*/schedstat`, in nanoseconds,
//!   so not rounded to clock ticks) as a share of one core, and resident
//!   memory at the end (`VmRSS`, and `Rss`, anonymous and file-backed from
//!   `smaps_rollup`), with the thread count;
//! - one `rossipctl peers` and one `rossipctl send`: wall time (median of
//!   `--cli-runs`) with and without `ip netns exec`, and the CPU time the
//!   child processes used (from `/proc/self/stat`'s `cutime`/`cstime`,
//!   averaged over the runs).
//!
//! Needs root (it creates network namespaces) and `rossipd`/`rossipctl` of
//! the same profile:
//!
//! ```text
//! cargo build --release -p rossipd -p rossipctl -p rossip-tests --bins
//! target/release/idle-bench [--nodes 10] [--secs 60] [--cli-runs 200] [--starts 1]
//! ```

use std::ffi::OsString;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rossip_tests::nscluster::NsCluster;
use rossip_tests::{bench, bins, sys};

const USAGE: &str = "\
usage: idle-bench [--nodes 10] [--secs 60] [--cli-runs 200] [--starts 1]

  --nodes N       cluster size                                   [default: 10]
  --secs S        idle period measured (0: discovery and CLI only) [default: 60]
  --cli-runs R    runs of each CLI call (0: none)                 [default: 200]
  --starts K      clusters started, for K discovery figures       [default: 1]

Needs root and release builds of rossipd, rossipctl:
cargo build --release -p rossipd -p rossipctl -p rossip-tests --bins";

#[derive(Debug, Clone)]
struct Options {
    nodes: usize,
    secs: u64,
    cli_runs: usize,
    starts: usize,
}

fn main() -> ExitCode {
    let options = match bench::start("idle-bench", USAGE, parse(), || {
        bins::rossipd_built()?;
        if sys::effective_uid() != Some(0) {
            return Err("needs root (network namespaces)".to_owned());
        }
        Ok(())
    }) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let mut discoveries = Vec::new();
    for start in 0..options.starts {
        let Ok(cluster) = NsCluster::start("idle", options.nodes, |_| {}, |_, d| d) else {
            eprintln!("idle-bench: cannot build network namespaces here");
            return ExitCode::FAILURE;
        };
        let sockets_up = cluster.spawned.elapsed();
        if let Err(why) = bench::wait_all_alive(&cluster, Duration::from_secs(30), "discovery") {
            eprintln!("idle-bench: {why:?}");
            return ExitCode::FAILURE;
        }
        let discovered = cluster
            .discovered_at()
            .into_iter()
            .map(|at| at.map(|at| at.saturating_duration_since(cluster.spawned)))
            .collect::<Option<Vec<Duration>>>()
            .and_then(|all| all.into_iter().max());
        println!(
            "start {}: N={} discovery {:.3} s (every socket answering within {:.3} s)",
            start + 1,
            options.nodes,
            discovered.map_or(f64::NAN, |d| d.as_secs_f64()),
            sockets_up.as_secs_f64(),
        );
        discoveries.extend(discovered);
        if bench::interrupted() {
            return ExitCode::from(130);
        }
        if start + 1 < options.starts {
            continue;
        }
        if options.secs > 0 {
            idle(&cluster, options.secs);
        }
        if options.cli_runs > 0 {
            cli(&cluster, options.cli_runs);
        }
    }
    discoveries.sort();
    if discoveries.len() > 1 {
        println!(
            "discovery over {} starts: median {:.3} s, max {:.3} s",
            discoveries.len(),
            bench::median(&discoveries).map_or(f64::NAN, |d| d.as_secs_f64()),
            discoveries.last().map_or(f64::NAN, |d| d.as_secs_f64()),
        );
    }
    ExitCode::SUCCESS
}

fn parse() -> Result<Option<Options>, String> {
    let mut options = Options {
        nodes: 10,
        secs: 60,
        cli_runs: 200,
        starts: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--nodes" => options.nodes = number(&value)?.clamp(2, 200) as usize,
            "--secs" => options.secs = number(&value)?,
            "--cli-runs" => options.cli_runs = number(&value)? as usize,
            "--starts" => options.starts = number(&value)?.max(1) as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Some(options))
}

/// Nanoseconds on a CPU of every thread of `pid`.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `field:` of a `/proc` key-value file, in KiB.
fn kib(text: &str, field: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

fn idle(cluster: &NsCluster, secs: u64) {
    let pids: Vec<u32> = cluster.daemons.iter().map(|d| d.pid()).collect();
    // Let start-up gossip settle before the window opens.
    std::thread::sleep(Duration::from_secs(5));
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ns(p)).collect();
    let opened = Instant::now();
    while opened.elapsed() < Duration::from_secs(secs) {
        if bench::interrupted() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let window = opened.elapsed().as_secs_f64();
    println!("idle over {window:.1} s, per node:");
    println!("node  cpu%    VmRSS MiB  Rss  Anon  File  threads");
    let mut shares = Vec::new();
    let mut rss = Vec::new();
    for ((daemon, &pid), before) in cluster.daemons.iter().zip(&pids).zip(before) {
        let used = cpu_ns(pid).saturating_sub(before) as f64 / 1e9;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let threads = kib(&status, "Threads:");
        let vm_rss = kib(&status, "VmRSS:") / 1024.0;
        let share = 100.0 * used / window;
        println!(
            "{:<5} {:<7.3} {:<10.2} {:<4.2} {:<5.2} {:<5.2} {}",
            daemon.name(),
            share,
            vm_rss,
            kib(&rollup, "Rss:") / 1024.0,
            kib(&rollup, "Anonymous:") / 1024.0,
            (kib(&rollup, "Rss:") - kib(&rollup, "Anonymous:")) / 1024.0,
            threads
        );
        shares.push(share);
        rss.push(vm_rss);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean: cpu {:.3}% of a core, VmRSS {:.2} MiB (max {:.2})",
        mean(&shares),
        mean(&rss),
        rss.iter().copied().fold(0.0, f64::max)
    );
}

/// Children's CPU time so far (user + system), from `/proc/self/stat`.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): `) S ppid …`.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 of the whole line (1-based),
    // 13 and 14 counting from the state at index 0 here.
    let ticks: u64 = [13, 14]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn cli(cluster: &NsCluster, runs: usize) {
    let daemon = &cluster.daemons[0];
    let ns = daemon.netns().unwrap_or_default().to_owned();
    let socket: OsString = daemon.socket().into();
    let ctl: OsString = bins::rossipctl().into();
    println!("CLI against {} ({runs} runs each):", daemon.name());
    for (what, args) in [
        ("peers", vec!["peers"]),
        ("send", vec!["send", "idle-bench"]),
    ] {
        for in_netns in [false, true] {
            let mut walls = Vec::with_capacity(runs);
            let cpu_before = children_cpu();
            for _ in 0..runs {
                let mut command = if in_netns {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", &ns]).arg(&ctl);
                    c
                } else {
                    Command::new(&ctl)
                };
                command
                    .arg("--socket")
                    .arg(&socket)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let started = Instant::now();
                let ok = command.status().is_ok_and(|s| s.success());
                walls.push(started.elapsed());
                if !ok {
                    eprintln!("idle-bench: `rossipctl {}` failed", args.join(" "));
                    return;
                }
            }
            let cpu = (children_cpu() - cpu_before) / runs as u32;
            walls.sort();
            println!(
                "  {what:<5} {:<18} wall median {:.2} ms, p90 {:.2} ms; CPU {:.2} ms per call",
                if in_netns {
                    "(ip netns exec)"
                } else {
                    "(direct)"
                },
                bench::median(&walls).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
                walls[walls.len() * 9 / 10].as_secs_f64() * 1e3,
                cpu.as_secs_f64() * 1e3,
            );
        }
    }
}
