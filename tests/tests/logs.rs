//! What a real `rossipd` writes to its log: lines about a peer name it by
//! `peer` (its name) and `peer_id` (its short id), so an operator can grep
//! either.

use std::time::Duration;

use rossip_tests::cluster::start_loopback_cluster;
use rossip_tests::daemon::Daemon;
use rossip_tests::wait;

/// The log line follows the membership change the `peers` poll already
/// saw; this only covers a slow write.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// Length of `NodeId::short()` (hex characters).
const SHORT_ID_LEN: usize = 8;

/// Whether `log` has a "member changed" line saying `peer` (name and short
/// id) became alive.
fn has_member_alive_line(log: &str, name: &str, short_id: &str) -> bool {
    let want = [
        format!("peer={name}"),
        format!("peer_id={short_id}"),
        // `state` is a string field, which the formatter quotes.
        r#"state="alive""#.to_owned(),
    ];
    log.lines()
        .filter(|l| l.contains("member changed"))
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            want.iter().all(|w| fields.contains(&w.as_str()))
        })
}

#[test]
fn member_changed_lines_carry_the_peer_name_and_short_id() {
    let nodes = start_loopback_cluster(&["logs-alpha", "logs-beta"]);
    let short_ids: Vec<String> = nodes
        .iter()
        .map(|d| {
            let id = d.status().id;
            id.get(..SHORT_ID_LEN).unwrap_or(&id).to_owned()
        })
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let other: &Daemon = &nodes[1 - i];
        let other_id = &short_ids[1 - i];
        let what = format!(
            "{}'s log to say that {} ({other_id}) is alive",
            node.name(),
            other.name()
        );
        wait::wait_until(LOG_TIMEOUT, &what, || {
            if has_member_alive_line(&node.log(), other.name(), other_id) {
                Ok(())
            } else {
                Err(format!(
                    "no \"member changed\" line with peer={} peer_id={other_id} state=\"alive\"\n{}",
                    other.name(),
                    node.log_excerpt()
                ))
            }
        });
    }
}
