//! `delivery-bench`: the delivery benchmark of issue 4. Builds N namespaced
//! hosts with one `rossipd` each and prints one-way delivery latency (from
//! `rossipctl send` and from an open RPC connection to arrival at every
//! node) and throughput of 200-byte messages from one sender and from all
//! (see [`rossip_tests::delivery_bench`]). Needs root; all traffic stays
//! inside the namespaces it creates, which it removes (with its daemons) on
//! every exit path, Ctrl-C included.
//!
//! ```text
//! cargo build --release -p rossipd -p rossipctl -p rossip-tests
//! sudo target/release/delivery-bench [--nodes 5] [--latency-samples 200] [--rates 5000,10000,20000,30000] [--seconds 5] [--window 256] [--loss 0.1]
//! ```

use std::process::ExitCode;

use rossip_tests::delivery_bench::{self, Options};
use rossip_tests::netns::MAX_HOSTS;
use rossip_tests::{bench, bins, delivery_table};

const USAGE: &str = "\
usage: delivery-bench [--nodes 5] [--latency-samples 200] [--rates 5000,10000,20000,30000]
                      [--seconds 5] [--window 256] [--log-level info] [--loss 0.1]

  --nodes N            hosts, one rossipd each (2..=200)              [default: 5]
  --latency-samples S  latency samples per way of sending; 0 skips    [default: 200]
  --rates R,R,…        target total rates in messages/s; empty skips  [default: 5000,10000,20000,30000]
  --seconds T          how long each throughput run sends             [default: 5]
  --window W           unanswered sends per sender: 1 = sequential    [default: 256]
                       calls, more = pipelined requests
  --log-level L        the daemons' --log-level                       [default: info]
  --loss P             inbound loss on every host (nftables, after    [default: 0]
                       discovery), as a fraction: 0.1 = 10%

Needs root (it creates network namespaces) and rossipd and rossipctl binaries
of the same profile: cargo build --release -p rossipd -p rossipctl";

fn main() -> ExitCode {
    let options = match bench::start(
        "delivery-bench",
        USAGE,
        parse(std::env::args().skip(1)),
        preflight,
    ) {
        Ok(options) => options,
        Err(code) => return code,
    };
    println!("{}", header(&options));
    let report = delivery_bench::measure(&options);
    print!("{}", delivery_table::table(&report, &options));
    if bench::interrupted() {
        eprintln!("delivery-bench: interrupted; namespaces and daemons were removed");
        ExitCode::from(130)
    } else if let Some(why) = &report.error {
        eprintln!("delivery-bench: {why}");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `Ok(None)` for `--help`.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        nodes: 5,
        latency_samples: 200,
        rates: vec![5000, 10_000, 20_000, 30_000],
        seconds: 5.0,
        window: 256,
        log_level: "info".to_owned(),
        loss_percent: 0,
    };
    let mut help = false;
    bench::each_flag(args, |flag, value| {
        match flag {
            "-h" | "--help" => help = true,
            "--nodes" => {
                options.nodes = match value()?.parse::<usize>() {
                    Ok(n) if (2..=MAX_HOSTS).contains(&n) => n,
                    _ => return Err(format!("--nodes: not a size in 2..={MAX_HOSTS}")),
                };
            }
            "--latency-samples" => {
                options.latency_samples = value()?
                    .parse()
                    .map_err(|e| format!("--latency-samples: {e}"))?;
            }
            "--rates" => {
                options.rates = value()?
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| match s.trim().parse::<u64>() {
                        Ok(r) if r > 0 => Ok(r),
                        _ => Err(format!("--rates: {s:?} is not a positive rate")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--seconds" => {
                options.seconds = match value()?.parse::<f64>() {
                    Ok(s) if s > 0.0 && s <= 3600.0 => s,
                    _ => return Err("--seconds: not a duration in (0, 3600]".to_owned()),
                };
            }
            "--window" => {
                options.window = match value()?.parse::<usize>() {
                    Ok(w) if (1..=100_000).contains(&w) => w,
                    _ => return Err("--window: not a count in 1..=100000".to_owned()),
                };
            }
            "--log-level" => options.log_level = value()?,
            "--loss" => {
                options.loss_percent = match value()?.parse::<f64>() {
                    Ok(p) if (0.0..1.0).contains(&p) => (p * 100.0).round() as u8,
                    _ => return Err("--loss: not a fraction in [0, 1)".to_owned()),
                };
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
        Ok(())
    })?;
    if help {
        return Ok(None);
    }
    Ok(Some(options))
}

/// Root, iproute2, nftables and rossipd/rossipctl binaries of this profile.
fn preflight() -> Result<(), String> {
    bench::netns_preflight()?;
    bins::rossipd_built()?;
    bins::rossipctl_built()
}

fn header(options: &Options) -> String {
    let version = bins::rossipd_version();
    format!(
        "rossip delivery benchmark\n\
         rossipd: {} ({version}, {} build); rossipctl: {}\n\
         N={} network namespaces on one bridge (10.77.0.0/24), one rossipd per host, mDNS \
         discovery only, --log-level {}; {} latency samples per way; rates {:?} msg/s for {} s \
         each, send window {}; {} CPUs\n",
        bins::rossipd().display(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        bins::rossipctl().display(),
        options.nodes,
        options.log_level,
        options.latency_samples,
        options.rates,
        options.seconds,
        options.window,
        std::thread::available_parallelism().map_or(0, usize::from)
    )
}
