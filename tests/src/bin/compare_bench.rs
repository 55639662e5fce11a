//! `compare-bench`: rossip and HashiCorp Serf side by side on the same
//! namespaced LAN, the same N and the same workload, runs alternating
//! between them; prints one table with both systems and the ratio per row
//! and writes it, with the machine, the versions and the method, to
//! BENCHMARKS.md (see [`rossip_tests::compare`]). Needs root; installs Serf
//! from Debian's packages when `serf` is missing. All traffic stays inside
//! the namespaces it creates, which it removes (with every process in
//! them) on every exit path, Ctrl-C included.
//!
//! ```text
//! cargo build --release -p rossipd -p rossipctl -p rossip-tests
//! sudo target/release/compare-bench [--quick] [--sizes 3,5,10] [--runs 2] [--rows …] [--systems rossip,serf] [--out BENCHMARKS.md]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use rossip_tests::compare::{self, Options, Results, Row, System, table};
use rossip_tests::{bench, bins, sys};

const USAGE: &str = "\
usage: compare-bench [--quick] [--sizes 3,5,10] [--runs 2] [--rows ROW,…]
                     [--systems rossip,serf] [--out BENCHMARKS.md]

  --quick            a first look in minutes: 1 run, 50 latency samples, 2 s
                     throughput steps, 10 s holds (loss, flood, idle)
  --sizes N,N,…      cluster sizes (2..=200 each)                 [default: 3,5,10]
  --runs R           runs of each row per system and size         [default: 2; --quick: 1]
  --rows ROW,…       rows to measure (they run in this order): discovery, idle,
                     cli, latency, latency-loss, largest, kill, leave,
                     loss-failures, throughput, throughput-all, flood
                                                                  [default: all]
  --systems S,…      rossip, serf (runs alternate in this order)  [default: rossip,serf]
  --out PATH         where the report goes                        [default: BENCHMARKS.md
                                                                   at the repository root]

Needs root (it creates network namespaces), nsenter (util-linux), serf
(installed with apt-get if missing) and rossipd and rossipctl binaries of
the same profile: cargo build --release -p rossipd -p rossipctl -p rossip-tests
Raw samples go to target/compare-bench/.";

fn main() -> ExitCode {
    let command = std::iter::once("sudo target/release/compare-bench".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let options = match bench::start(
        "compare-bench",
        USAGE,
        parse(std::env::args().skip(1), command),
        preflight,
    ) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let mut setting = table::Setting {
        started: now(),
        machine: machine(),
        versions: versions(&options),
        ..table::Setting::default()
    };
    let load_at_start = load();
    eprintln!(
        "compare-bench: {}\ncompare-bench: {}\ncompare-bench: load average {load_at_start}",
        setting.machine, setting.versions
    );
    let mut results = Results::with_raw_dir(&options.raw_dir);
    compare::measure(&options, &mut results);
    setting.finished = now();
    let load_at_end = load();
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    setting.loaded = [&load_at_start, &load_at_end].iter().any(|l| {
        l.split_whitespace()
            .next()
            .and_then(|one| one.parse::<f64>().ok())
            .is_some_and(|one| one > cores)
    });
    setting.load = format!("{load_at_start} / {load_at_end}");

    print!("{}", table::table(&results, &options));
    eprint!("{}", table::errors(&results));
    if bench::interrupted() {
        eprintln!(
            "compare-bench: interrupted; namespaces and processes were removed; no report written"
        );
        return ExitCode::from(130);
    }
    let report = table::benchmarks_md(&results, &options, &setting);
    if let Err(e) = std::fs::write(&options.out, report) {
        eprintln!(
            "compare-bench: error: writing {}: {e}",
            options.out.display()
        );
        return ExitCode::FAILURE;
    }
    eprintln!("compare-bench: wrote {}", options.out.display());
    if results.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `Ok(None)` for `--help`.
fn parse(args: impl Iterator<Item = String>, command: String) -> Result<Option<Options>, String> {
    let mut options = Options::full();
    let (mut help, mut quick, mut runs) = (false, false, None);
    bench::each_flag(args, |flag, value| {
        match flag {
            "-h" | "--help" => help = true,
            "--quick" => quick = true,
            "--sizes" => options.sizes = bench::parse_sizes(&value()?)?,
            "--runs" => {
                runs = Some(match value()?.parse::<usize>() {
                    Ok(r) if r >= 1 => r,
                    _ => return Err("--runs: not a count of 1 or more".to_owned()),
                });
            }
            "--rows" => {
                let names = value()?;
                let mut rows = names
                    .split(',')
                    .map(|r| Row::parse(r.trim()).ok_or_else(|| format!("--rows: no row {r:?}")))
                    .collect::<Result<Vec<Row>, String>>()?;
                rows.sort();
                rows.dedup();
                options.rows = rows;
            }
            "--systems" => {
                let names = value()?;
                options.systems = names
                    .split(',')
                    .map(|s| {
                        System::parse(s.trim()).ok_or_else(|| format!("--systems: no system {s:?}"))
                    })
                    .collect::<Result<Vec<System>, String>>()?;
                options.systems.dedup();
            }
            "--out" => options.out = PathBuf::from(value()?),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
        Ok(())
    })?;
    if help {
        return Ok(None);
    }
    if quick {
        options = options.quick();
    }
    if let Some(runs) = runs {
        options.runs = runs;
    }
    options.command = command;
    Ok(Some(options))
}

/// Root, iproute2, nftables, nsenter, serf (installed if missing) and
/// rossipd/rossipctl binaries of this profile.
fn preflight() -> Result<(), String> {
    bench::netns_preflight()?;
    if sys::find_program("nsenter").is_none() {
        return Err("`nsenter` not found (apt-get install util-linux)".to_owned());
    }
    bins::rossipd_built()?;
    bins::rossipctl_built()?;
    compare::serf::program().map(drop)
}

/// `date -u`, for the report.
fn now() -> String {
    sys::run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("(date unknown: {e})"))
}

/// `/proc/loadavg`'s first three fields.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "-".to_owned())
}

/// CPU model, cores, kernel, memory.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0),
        );
    format!(
        "{model}, {cores} cores, Linux {}, {memory} RAM",
        kernel.trim()
    )
}

/// rossip's git revision and build, Serf's version, rustc's.
fn versions(options: &Options) -> String {
    let repo = sys::repo().to_string_lossy().into_owned();
    let git = |args: &[&str]| {
        let mut full = vec!["-C", repo.as_str()];
        full.extend_from_slice(args);
        sys::run("git", &full).map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|_| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .map(|s| {
            if s.is_empty() {
                ""
            } else {
                " with uncommitted changes"
            }
        })
        .unwrap_or("");
    let rustc = sys::run("rustc", &["--version"])
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|_| "rustc unknown".to_owned());
    let serf = if options.systems.contains(&System::Serf) {
        compare::serf::version()
    } else {
        "not run".to_owned()
    };
    format!(
        "rossip git {rev}{dirty} ({}, {} build); Serf {serf}; {rustc}",
        bins::rossipd_version(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    )
}
