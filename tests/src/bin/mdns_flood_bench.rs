//! `mdns-flood-bench`: floods one namespaced `rossipd` with forged
//! `_rossip._udp.local.` records (90,000 with a one-day TTL by default) and
//! prints its memory before, at most during, and after, with the hellos it
//! sent (see [`rossip_tests::mdns_flood`]). Needs root; all traffic stays
//! inside the namespaces it creates.
//!
//! ```text
//! cargo build --release -p rossipd -p rossip-tests
//! sudo target/release/mdns-flood-bench [RECORDS [PACKETS_PER_S [service|without-ptr]]]
//! ```

use std::process::ExitCode;

use rossip_tests::mdns_flood::{self, FloodOptions, RecordSet};

const USAGE: &str = "usage: mdns-flood-bench [RECORDS [PACKETS_PER_S [service|without-ptr]]]
  RECORDS        forged nodes                                   [default: 90000]
  PACKETS_PER_S  flood packets a second                         [default: 2000]
  service        each forged node as PTR, SRV, TXT and A        [the default]
  without-ptr    SRV, TXT and A only (cached by mdns-sd even where nothing browses)";

fn main() -> ExitCode {
    let mut options = FloodOptions::default();
    if let Err(why) = parse(&mut options, std::env::args().skip(1)) {
        eprintln!("mdns-flood-bench: {why}\n{USAGE}");
        return ExitCode::from(2);
    }
    match mdns_flood::measure(&options) {
        Ok(f) => {
            println!(
                "records {} in {} packets over {:.1} s; RSS KiB: before {}, peak {} (+{}), after {} (+{}); \
                 datagrams sent {} ({:.1}/s); discovery {:?}",
                f.records_sent,
                f.packets_sent,
                f.flood_time.as_secs_f64(),
                f.baseline_kib,
                f.peak_kib,
                f.peak_kib.saturating_sub(f.baseline_kib),
                f.after_kib,
                f.after_kib.saturating_sub(f.baseline_kib),
                f.datagrams_sent,
                f.datagrams_sent as f64 / (f.flood_time + options.settle).as_secs_f64(),
                f.discovery,
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("mdns-flood-bench: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Positional arguments, each optional from the right.
fn parse(options: &mut FloodOptions, args: impl Iterator<Item = String>) -> Result<(), String> {
    for (position, arg) in args.enumerate() {
        match position {
            0 => options.records = arg.parse().map_err(|e| format!("RECORDS {arg:?}: {e}"))?,
            1 => {
                options.packets_per_s = arg
                    .parse()
                    .map_err(|e| format!("PACKETS_PER_S {arg:?}: {e}"))?;
            }
            2 => {
                options.records_each = match arg.as_str() {
                    "service" => RecordSet::Service,
                    "without-ptr" => RecordSet::WithoutPtr,
                    other => return Err(format!("unknown record set {other:?}")),
                };
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok(())
}
