//! `mdns-flood-bench`: floods one namespaced `rossipd` with forged
//! `_rossip._udp.local.` records (90,000 with a one-day TTL by default) and
//! prints its memory before, at most during, and after, with the hellos it
//! sent (see [`rossip_tests::mdns_flood`]). Needs root; all traffic stays
//! inside the namespaces it creates.
//!
//! ```text
//! cargo build --release -p rossipd -p rossip-tests
//! sudo target/release/mdns-flood-bench [RECORDS [PACKETS_PER_S]]
//! ```

use std::process::ExitCode;

use rossip_tests::mdns_flood::{self, FloodOptions};

fn main() -> ExitCode {
    let mut options = FloodOptions::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [] => Ok(()),
        [records] => records.parse().map(|r| options.records = r),
        [records, rate] => records
            .parse()
            .map(|r| options.records = r)
            .and_then(|()| rate.parse().map(|p| options.packets_per_s = p)),
        _ => "-".parse::<usize>().map(drop),
    };
    if parsed.is_err() {
        eprintln!("usage: mdns-flood-bench [RECORDS [PACKETS_PER_S]]");
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
