//! `membership-bench`: the membership benchmark of issue 3. Builds N
//! namespaced hosts with one `rossipd` each for every N of `--sizes` and
//! prints discovery, failure-detection, leave and rejoin times and false
//! failures under loss and under a full-speed flood of messages (see
//! [`rossip_tests::bench`]). Needs root; all
//! traffic stays inside the namespaces it creates, which it removes (with
//! its daemons) on every exit path, Ctrl-C included.
//!
//! ```text
//! cargo build --release -p rossipd
//! cargo run --release -p rossip-tests --bin membership-bench -- [--sizes 3,5,10] [--runs 5] [--loss-secs 60] [--flood-secs 60]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use rossip_tests::bench::{self, Options};
use rossip_tests::bins;

const USAGE: &str = "\
usage: membership-bench [--sizes 3,5,10] [--runs 5] [--loss-secs 60] [--flood-secs 60]
                        [--log-level info] [--verbose]

  --sizes N,N,…     cluster sizes to measure (2..=200 each)        [default: 3,5,10]
  --runs R          runs of each kill / vanish / leave measurement  [default: 5]
  --loss-secs S     length of the 10% loss phase; 0 skips it        [default: 60]
  --flood-secs S    length of the phase where every node sends as fast as
                    its daemon accepts (false failures under saturation);
                    0 skips it                                      [default: 60]
  --log-level L     the daemons' --log-level                        [default: info]
  --verbose         print every node's recorded transitions per size

Needs root (it creates network namespaces) and a rossipd binary of the same
profile: cargo build --release -p rossipd";

fn main() -> ExitCode {
    let options = match bench::start(
        "membership-bench",
        USAGE,
        parse(std::env::args().skip(1)),
        preflight,
    ) {
        Ok(options) => options,
        Err(code) => return code,
    };
    println!("{}", header(&options));

    let mut reports = Vec::new();
    for &hosts in &options.sizes {
        let report = bench::measure(hosts, &options);
        if options.verbose {
            eprintln!("{}", report.history);
        }
        if let Some(why) = &report.error {
            eprintln!("membership-bench: N={hosts}: {why}");
        }
        reports.push(report);
        if bench::interrupted() {
            break;
        }
    }
    print!("{}", bench::table(&reports, &options));
    if bench::interrupted() {
        eprintln!("membership-bench: interrupted; namespaces and daemons were removed");
        ExitCode::from(130)
    } else if reports.iter().any(|r| r.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `Ok(None)` for `--help`.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        sizes: vec![3, 5, 10],
        runs: 5,
        loss: Duration::from_secs(60),
        flood: Duration::from_secs(60),
        log_level: "info".to_owned(),
        verbose: false,
    };
    let mut help = false;
    bench::each_flag(args, |flag, value| {
        match flag {
            "-h" | "--help" => help = true,
            "--verbose" | "-v" => options.verbose = true,
            "--sizes" => options.sizes = bench::parse_sizes(&value()?)?,
            "--runs" => {
                options.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?;
            }
            "--loss-secs" => {
                let secs: u64 = value()?.parse().map_err(|e| format!("--loss-secs: {e}"))?;
                options.loss = Duration::from_secs(secs);
            }
            "--flood-secs" => {
                let secs: u64 = value()?.parse().map_err(|e| format!("--flood-secs: {e}"))?;
                options.flood = Duration::from_secs(secs);
            }
            "--log-level" => options.log_level = value()?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
        Ok(())
    })?;
    if help {
        return Ok(None);
    }
    Ok(Some(options))
}

/// Root, iproute2, nftables and a rossipd binary of this profile.
fn preflight() -> Result<(), String> {
    bench::netns_preflight()?;
    bins::rossipd_built()
}

fn header(options: &Options) -> String {
    let version = bins::rossipd_version();
    format!(
        "rossip membership benchmark\n\
         rossipd: {} ({version}, {} build)\n\
         each N: N network namespaces on one bridge (10.77.0.0/24), one rossipd per host, \
         mDNS discovery only, --log-level {}; {} runs per figure, {}% loss for {} s, \
         flood for {} s\n",
        bins::rossipd().display(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        options.log_level,
        options.runs,
        bench::LOSS_PERCENT,
        options.loss.as_secs(),
        options.flood.as_secs()
    )
}
