//! What a chaos run reports: each node's records held against each other
//! (see [`super::verdict`]), the counts the lead quotes, and when the run
//! fails, the evidence kept in a directory that outlives it (the daemons'
//! temp dirs go with them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::faults::FaultKind;
use super::followers::{StreamLog, TailRecord};
use super::traffic::SendLog;
use super::verdict::{check_node, check_stream};
use crate::stream::Delivered;

/// Everything recorded about one node at the end of a run.
#[derive(Debug)]
pub struct NodeRecords {
    /// The node's name (`h1`, …).
    pub node: String,
    /// `history {}`: every message it holds, in history order.
    pub history: Vec<Delivered>,
    /// Its delivery order (`history {after}` pages), or why it is unknown.
    pub delivery_order: Result<Vec<Delivered>, String>,
    /// Its raw subscriber's record.
    pub subscriber: StreamLog,
    /// Its daemon's log file.
    pub log: PathBuf,
}

impl NodeRecords {
    /// Every failure of this node's store and streams (`tail` when it runs
    /// on this node), each line naming the node and the stream.
    pub fn failures(&self, acked: &BTreeSet<String>, tail: Option<&TailRecord>) -> Vec<String> {
        let node = &self.node;
        let mut failures: Vec<String> = check_node(&self.history, &self.delivery_order, acked)
            .into_iter()
            .map(|f| format!("{node}: {f}"))
            .collect();
        let order = self.delivery_order.as_ref().ok().map(Vec::as_slice);
        let label = format!("{node} subscriber");
        failures.extend(
            check_stream(&self.history, order, &self.subscriber.deliveries).failures(&label),
        );
        failures.extend(
            self.subscriber
                .problems
                .iter()
                .map(|p| format!("{label}: {p}")),
        );
        if self.subscriber.more_problems > 0 {
            failures.push(format!(
                "{label}: and {} more problems",
                self.subscriber.more_problems
            ));
        }
        if let Some(tail) = tail {
            let label = format!("{node} tail -f");
            failures.extend(check_stream(&self.history, order, &tail.deliveries).failures(&label));
            failures.extend(tail.problems.iter().map(|p| format!("{label}: {p}")));
        }
        failures
    }

    /// One line of counts.
    pub fn summary(&self, tail: Option<&TailRecord>) -> String {
        let log = &self.subscriber;
        let mut line = format!(
            "{}: history {}, delivery order {}; subscriber {} events, {} resumptions, \
             {} lagged notices ({} dropped)",
            self.node,
            self.history.len(),
            self.delivery_order
                .as_ref()
                .map_or_else(|_| "unknown".to_owned(), |o| o.len().to_string()),
            log.deliveries.len(),
            log.resumes,
            log.lag_notices,
            log.lag_dropped
        );
        if let Some(tail) = tail {
            let _ = write!(
                line,
                "; tail -f {} lines, {} on stderr",
                tail.deliveries.len(),
                tail.stderr.len()
            );
        }
        line
    }
}

/// The counts of sends and faults (`dropped`: packets the network faults
/// dropped): two lines, the second indented.
pub fn counts(
    sends: &[(String, SendLog)],
    acked: usize,
    injected: &BTreeMap<FaultKind, u32>,
    dropped: u64,
) -> String {
    let per_node: Vec<String> = sends
        .iter()
        .map(|(node, log)| format!("{node} {}", log.acked.len()))
        .collect();
    let unanswered: u64 = sends.iter().map(|(_, l)| l.unanswered).sum();
    let mut refused: BTreeMap<i64, u64> = BTreeMap::new();
    let mut first_refusals = Vec::new();
    for (node, log) in sends {
        for (code, count) in &log.refused {
            *refused.entry(*code).or_default() += count;
        }
        first_refusals.extend(log.first_refusal.values().map(|r| format!("{node}: {r}")));
    }
    let refusals = if first_refusals.is_empty() {
        String::new()
    } else {
        format!(" (first of each: {})", first_refusals.join("; "))
    };
    let faults: Vec<String> = injected
        .iter()
        .map(|(kind, n)| format!("{} {n}", kind.as_str()))
        .collect();
    let total: u32 = injected.values().sum();
    format!(
        "sends acknowledged {acked} ({}, and the marker); unanswered {unanswered}; \
         refused by code {refused:?}{refusals}\n  faults injected {total}: {}; packets dropped by loss and partitions {dropped}",
        per_node.join(", "),
        faults.join(", ")
    )
}

/// Writes the evidence of a failed run into `dir` (created): each daemon's
/// log, each node's history, delivery order and subscriber stream (`cursor
/// id` per line), what `tail -f` printed, the faults and the report. Returns
/// what it could not write.
pub fn keep(
    dir: &Path,
    nodes: &[NodeRecords],
    tail: &TailRecord,
    faults: &[String],
    report: &str,
) -> Vec<String> {
    let mut trouble = Vec::new();
    if let Err(e) = std::fs::create_dir_all(dir) {
        return vec![format!("create {}: {e}", dir.display())];
    }
    let mut write = |name: &str, text: String| {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            trouble.push(format!("write {}: {e}", path.display()));
        }
    };
    let listing = |records: &[Delivered]| -> String {
        records
            .iter()
            .map(|d| format!("{} {}\n", d.cursor, d.id))
            .collect()
    };
    for node in nodes {
        let name = &node.node;
        write(&format!("{name}.history"), listing(&node.history));
        write(
            &format!("{name}.delivery-order"),
            match &node.delivery_order {
                Ok(order) => listing(order),
                Err(why) => format!("unknown: {why}\n"),
            },
        );
        write(
            &format!("{name}.subscriber"),
            listing(&node.subscriber.deliveries),
        );
        let log = std::fs::read(&node.log).map_or_else(
            |e| format!("(cannot read {}: {e})\n", node.log.display()),
            |bytes| String::from_utf8_lossy(&bytes).into_owned(),
        );
        write(&format!("{name}.rossipd.log"), log);
    }
    write(&format!("{}.tail-f.stdout", tail.node), lines(&tail.stdout));
    write(&format!("{}.tail-f.stderr", tail.node), lines(&tail.stderr));
    write("faults", lines(faults));
    write("report", format!("{report}\n"));
    trouble
}

fn lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}
