//! The result tables of the delivery benchmark ([`crate::delivery_bench`])
//! and the legend saying what each figure measures.

use std::time::Duration;

use crate::delivery_bench::{
    DRAIN_STALL, DRAIN_TIMEOUT, LatencySeries, MESSAGE_BYTES, Options, RateRun, Report, percent,
};

/// The `p`-quantile (0..=1) of `values` by the nearest-rank method.
pub fn quantile<T: PartialOrd + Copy>(values: &[T], p: f64) -> Option<T> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}", d.as_secs_f64() * 1e3),
    )
}

/// Every table and the legend.
pub fn table(report: &Report, options: &Options) -> String {
    let mut out = String::new();
    if let Some(d) = report.discovery {
        out.push_str(&format!(
            "N={}: every node saw every other alive {:.3} s after the daemons were spawned\n\n",
            options.nodes,
            d.as_secs_f64()
        ));
    }
    if !report.latency.is_empty() {
        out.push_str(&latency_table(&report.latency));
    }
    if let Some(d) = &report.latency_datagrams {
        out.push_str(&format!(
            "\nLatency phase, {}% inbound loss on every host: {} datagrams sent by all nodes for {} messages in {:.1} s = {:.2} per message ({:.2} above the idle rate of {:.0}/s); of them {:.2} acknowledgements and {:.2} retransmissions per message\n",
            options.loss_percent,
            d.datagrams,
            d.messages,
            d.elapsed.as_secs_f64(),
            d.per_message(),
            d.above_idle_per_message(),
            d.idle_rate,
            d.acks as f64 / d.messages.max(1) as f64,
            d.retransmissions as f64 / d.messages.max(1) as f64,
        ));
    }
    for (title, runs) in [
        ("one sender (h1)", &report.single),
        ("all nodes sending", &report.all),
    ] {
        if !runs.is_empty() {
            out.push_str(&format!(
                "\nThroughput, {title}, {MESSAGE_BYTES}-byte messages, {} s per rate\n",
                options.seconds
            ));
            out.push_str(&rate_table(runs));
        }
    }
    if let Some(why) = &report.error {
        out.push_str(&format!("\nstopped early: {why}\n"));
    }
    out.push_str(&legend(options));
    out
}

fn latency_table(series: &[LatencySeries]) -> String {
    let mut out = format!(
        "Latency from h1: send start -> arrival at the LAST node (ms)\n\
         {:<30} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10} {:>5} {:>6}\n",
        "sent via", "samples", "p50", "p99", "max", "first p50", "return p50", "lost", "failed"
    );
    for s in series {
        out.push_str(&format!(
            "{:<30} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10} {:>5} {:>6}\n",
            s.via.label(),
            s.last.len(),
            ms(quantile(&s.last, 0.5)),
            ms(quantile(&s.last, 0.99)),
            ms(s.last.iter().max().copied()),
            ms(quantile(&s.first, 0.5)),
            ms(quantile(&s.returned, 0.5)),
            s.lost,
            s.failed
        ));
        if let Some(why) = &s.failure {
            out.push_str(&format!("  first failure: {why}\n"));
        }
    }
    out
}

fn rate_table(runs: &[RateRun]) -> String {
    let mut out = format!(
        "{:>8} {:>9} {:>7} {:>9} {:>9} {:>10} {:>8} {:>9} {:>7} {:>8} {:>6}  {}\n",
        "offered",
        "achieved",
        "on pace",
        "attempted",
        "accepted",
        "at all",
        "at all",
        "worst",
        "lagged",
        "drain",
        "0 loss",
        "errors by code"
    );
    out.push_str(&format!(
        "{:>8} {:>9} {:>7} {:>9} {:>9} {:>10} {:>8} {:>9} {:>7} {:>8} {:>6}\n",
        "msg/s", "msg/s", "", "", "", "", "%", "node", "events", "s", ""
    ));
    for r in runs {
        let errors = if r.errors.is_empty() {
            "-".to_owned()
        } else {
            r.errors
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "{:>8} {:>9.0} {:>7} {:>9} {:>9} {:>10} {:>8.2} {:>9} {:>7} {:>8} {:>6}  {errors}{}\n",
            r.offered,
            r.achieved(),
            if r.on_pace() { "yes" } else { "no" },
            r.attempted,
            r.accepted,
            r.delivered_all,
            percent(r.delivered_all, r.attempted),
            r.worst_node,
            r.lagged,
            r.drain
                .map_or_else(|| "-".to_owned(), |d| format!("{:.2}", d.as_secs_f64())),
            if r.zero_loss() { "yes" } else { "no" },
            if r.duplicates > 0 {
                format!(" ({} duplicate deliveries)", r.duplicates)
            } else {
                String::new()
            }
        ));
    }
    let paced = runs
        .iter()
        .filter(|r| r.zero_loss() && r.on_pace())
        .max_by_key(|r| r.offered);
    out.push_str(&match paced {
        Some(r) => format!(
            "highest offered rate sent on pace with zero loss: {}/s (achieved {:.0}/s)\n",
            r.offered,
            r.achieved()
        ),
        None => {
            "highest offered rate sent on pace with zero loss: none of the rates tried\n".to_owned()
        }
    });
    let fastest = runs
        .iter()
        .filter(|r| r.zero_loss())
        .map(RateRun::achieved)
        .fold(None, |best: Option<f64>, a| {
            Some(best.map_or(a, |b| b.max(a)))
        });
    if let Some(a) = fastest {
        out.push_str(&format!(
            "highest achieved rate with zero loss: {a:.0}/s delivered to all\n"
        ));
    }
    out
}

fn legend(options: &Options) -> String {
    format!(
        "\nWhat is measured ({n} namespaced hosts on one bridge, one rossipd each, mDNS \
         discovery only, --log-level {level}; every node has one subscriber, \
         `subscribe {{events:[\"message\"]}}` on its local socket, read in its own thread, which \
         stamps each message with the instant it read it):\n\
         - Latency: {samples} samples per row, sent from h1 one at a time (the next starts when \
         the previous reached every node), rows interleaved. Clock starts just before the send \
         starts: spawning `ip netns exec h1 rossipctl --socket S send TEXT` (row 1; includes \
         `ip`'s namespace switch), spawning `rossipctl --socket S send TEXT` directly (row 2; \
         the CLI's process start, connect and call), or writing `send` on an RPC connection \
         opened beforehand (row 3; the daemon path alone). p50/p99/max: until the LAST of the \
         {n} nodes' subscribers had it (the farthest node). first p50: until the first node had \
         it (usually h1 itself). return p50: until the CLI exited / the RPC answered. lost: not \
         at every node within 5 s.\n\
         - Throughput: one open RPC connection per sender, {mode}, of {bytes}-byte texts paced by \
         a schedule (message k due at start + k/rate; a sender behind schedule sends at once, \
         never skips) for {secs} s. One sender: h1 alone at the offered rate. All: every node \
         at offered/{n}. achieved = attempted / sending time; on pace = achieved \
         >= 95% of offered (if not, the sender, i.e. the daemon's answers on this {cpus}-CPU \
         machine, set the pace, and the row measures the achieved rate). at all = accepted messages that \
         reached every node's subscriber, counted after the sending ends once everyone has \
         them, or nothing new arrived for {stall} s, or {drain} s passed; % is of attempted. \
         worst node = fewest accepted messages at one node. drain = end of sending -> last \
         arrival. errors = JSON-RPC error codes returned to senders (io = the connection \
         failed). lagged = events the daemon dropped for our subscribers (`lagged` notices): \
         a loss of measurement, so such a run is not counted as zero loss. 0 loss = every send \
         accepted and delivered to all, no lag. The highest-rate lines: the highest offered \
         rate that was both on pace and zero loss, and the highest achieved rate of any \
         zero-loss row.\n",
        n = options.nodes,
        mode = if options.window <= 1 {
            "sequential `send` calls (each waits for its answer)".to_owned()
        } else {
            format!(
                "pipelined `send` requests (up to {} unanswered; the daemon answers them in order)",
                options.window
            )
        },
        cpus = std::thread::available_parallelism().map_or(0, usize::from),
        level = options.log_level,
        samples = options.latency_samples,
        bytes = MESSAGE_BYTES,
        secs = options.seconds,
        stall = DRAIN_STALL.as_secs(),
        drain = DRAIN_TIMEOUT.as_secs(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let ms = Duration::from_millis;
        let values: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&values, 0.5), Some(ms(50)));
        assert_eq!(quantile(&values, 0.99), Some(ms(99)));
        assert_eq!(quantile(&values, 1.0), Some(ms(100)));
        assert_eq!(quantile(&[ms(7)], 0.99), Some(ms(7)));
        assert_eq!(quantile::<Duration>(&[], 0.5), None);
    }
}
