//! `memory-bench`: the daemon's resident memory under the loads that must
//! stay bounded: subscribers that never read, one `history` call for a
//! full window, an mDNS flood (see [`rossip_tests::memory_bench`]). Each
//! load runs on a `rossipd` of its own on loopback; it prints VmRSS before,
//! at the peak, after the clients closed and after a settling period, and
//! whether each bound held. Needs no root (the mDNS load, when wired in,
//! builds network namespaces).
//!
//! ```text
//! cargo build --release -p rossipd -p rossip-tests
//! target/release/memory-bench [--loads stalled-small,stalled-large,history,mdns] [--settle-secs 10]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use rossip_tests::memory_bench::{self, Load, Options};
use rossip_tests::{bench, bins};

const USAGE: &str = "\
usage: memory-bench [--loads stalled-small,stalled-large,history,mdns] [--settle-secs 10]
                    [--log-level info]

  --loads L,L,…     what to measure, in order                        [default: all four]
                      stalled-small  100 subscribers that never read, 5,000 messages of 1 KiB
                      stalled-large  30 subscribers that never read, 700 messages of 60 KiB
                      history        one `history` call for a full 96,000-message window
                      mdns           a flood of 90,000 forged mDNS records
  --settle-secs S   how long a daemon settles before the last figure  [default: 10]
  --log-level L     the daemons' --log-level                          [default: info]

Exit status: 0 when every bound held, 1 when one did not (or a load failed),
2 on a usage error. Needs a rossipd binary of the same profile:
cargo build --release -p rossipd";

fn main() -> ExitCode {
    let options = match bench::start(
        "memory-bench",
        USAGE,
        parse(std::env::args().skip(1)),
        bins::rossipd_built,
    ) {
        Ok(options) => options,
        Err(code) => return code,
    };
    println!("{}", header(&options));
    let sections = memory_bench::measure(&options);
    print!("{}", memory_bench::report(&sections));
    let all_held = sections
        .iter()
        .flat_map(|s| &s.bounds)
        .all(|b| b.held() == Some(true));
    let failed = sections
        .iter()
        .any(|s| s.error.is_some() && !s.bounds.is_empty());
    if bench::interrupted() {
        eprintln!("memory-bench: interrupted; the daemons were stopped");
        ExitCode::from(130)
    } else if all_held && !failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `Ok(None)` for `--help`.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        loads: Load::ALL.to_vec(),
        settle: Duration::from_secs(10),
        log_level: "info".to_owned(),
    };
    let mut help = false;
    bench::each_flag(args, |flag, value| {
        match flag {
            "-h" | "--help" => help = true,
            "--loads" => {
                options.loads = value()?
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        Load::parse(s.trim()).ok_or_else(|| format!("--loads: unknown load {s:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--settle-secs" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--settle-secs: {e}"))?;
                options.settle = Duration::from_secs(secs);
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

fn header(options: &Options) -> String {
    let version = bins::rossipd_version();
    let loads: Vec<&str> = options.loads.iter().map(|l| l.name()).collect();
    format!(
        "rossip memory benchmark\n\
         rossipd: {} ({version}, {} build); one daemon per load on loopback, --log-level {}; \
         loads {}; settle {} s; {} CPUs\n",
        bins::rossipd().display(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        options.log_level,
        loads.join(","),
        options.settle.as_secs(),
        std::thread::available_parallelism().map_or(0, usize::from)
    )
}
