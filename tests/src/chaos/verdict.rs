//! The chaos test's judgement, as pure functions over what was recorded, so
//! that it can be checked on made-up records (see the unit tests) and does
//! not depend on timing.
//!
//! For each node there are three records: its history (`history {}`, every
//! message it holds), its delivery order (`history {after}` pages, see
//! [`super::followers::delivery_order`]) and its streams (the raw subscriber,
//! and on one host `rossipctl tail -f --json`). A stream is right when it is
//! the delivery order exactly: every message of the history once, nothing
//! else, in that order, each with the cursor the history gives it.

use std::collections::{BTreeMap, BTreeSet};

use crate::stream::Delivered;

/// How many offending ids a failure line quotes.
pub const QUOTED_IDS: usize = 5;

/// Failures of one node's store: its history holds an id twice, misses an
/// acknowledged send, or disagrees with its delivery order.
pub fn check_node(
    history: &[Delivered],
    delivery_order: &Result<Vec<Delivered>, String>,
    acked: &BTreeSet<String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let twice = repeated(history);
    if !twice.is_empty() {
        failures.push(format!(
            "history holds {} id(s) more than once: {}",
            twice.len(),
            quote(&twice)
        ));
    }
    let held: BTreeSet<&str> = history.iter().map(|d| d.id.as_str()).collect();
    let lost: Vec<&str> = acked
        .iter()
        .map(String::as_str)
        .filter(|id| !held.contains(id))
        .collect();
    if !lost.is_empty() {
        failures.push(format!(
            "history lacks {} acknowledged send(s): {}",
            lost.len(),
            quote(&lost)
        ));
    }
    let order = match delivery_order {
        Ok(order) => order,
        Err(why) => {
            failures.push(format!("no delivery order: {why}"));
            return failures;
        }
    };
    let twice = repeated(order);
    if !twice.is_empty() {
        failures.push(format!(
            "delivery order (history after) lists {} id(s) more than once: {}",
            twice.len(),
            quote(&twice)
        ));
    }
    let listed: BTreeSet<&str> = order.iter().map(|d| d.id.as_str()).collect();
    let unlisted: Vec<&str> = held.difference(&listed).copied().collect();
    if !unlisted.is_empty() {
        failures.push(format!(
            "{} id(s) in history are not in the delivery order (delivered before the \
             stream's first message, or left out by history after): {}",
            unlisted.len(),
            quote(&unlisted)
        ));
    }
    let extra: Vec<&str> = listed.difference(&held).copied().collect();
    if !extra.is_empty() {
        failures.push(format!(
            "delivery order lists {} id(s) that history does not hold: {}",
            extra.len(),
            quote(&extra)
        ));
    }
    let cursors = cursors_by_id(history);
    let moved: Vec<&str> = order
        .iter()
        .filter(|d| {
            cursors
                .get(d.id.as_str())
                .is_some_and(|c| *c != d.cursor.as_str())
        })
        .map(|d| d.id.as_str())
        .collect();
    if !moved.is_empty() {
        failures.push(format!(
            "{} message(s) have another cursor in history than in history after: {}",
            moved.len(),
            quote(&moved)
        ));
    }
    failures
}

/// How one stream compares with its node's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCheck {
    /// Ids in the history the stream never showed.
    pub missing: Vec<String>,
    /// Ids the stream showed more than once.
    pub duplicates: Vec<String>,
    /// Ids the stream showed that the history does not hold.
    pub phantoms: Vec<String>,
    /// Ids the stream showed with another cursor than the delivery order's.
    pub wrong_cursor: Vec<String>,
    /// Where the stream first departs from the delivery order: position,
    /// the id expected there and the id shown (`None` past an end).
    pub order: Option<(usize, Option<String>, Option<String>)>,
}

/// Compares `stream` with the node's `history` and, when known, its
/// `delivery_order`.
pub fn check_stream(
    history: &[Delivered],
    delivery_order: Option<&[Delivered]>,
    stream: &[Delivered],
) -> StreamCheck {
    let held: BTreeSet<&str> = history.iter().map(|d| d.id.as_str()).collect();
    let shown: BTreeSet<&str> = stream.iter().map(|d| d.id.as_str()).collect();
    let owned = |ids: Vec<&str>| ids.into_iter().map(str::to_owned).collect::<Vec<_>>();
    let mut check = StreamCheck {
        missing: owned(
            history
                .iter()
                .map(|d| d.id.as_str())
                .filter(|id| !shown.contains(id))
                .collect(),
        ),
        duplicates: owned(repeated(stream)),
        phantoms: owned(
            stream
                .iter()
                .map(|d| d.id.as_str())
                .filter(|id| !held.contains(id))
                .collect(),
        ),
        ..StreamCheck::default()
    };
    if let Some(order) = delivery_order {
        let cursors = cursors_by_id(order);
        check.wrong_cursor = owned(
            stream
                .iter()
                .filter(|d| {
                    cursors
                        .get(d.id.as_str())
                        .is_some_and(|c| *c != d.cursor.as_str())
                })
                .map(|d| d.id.as_str())
                .collect(),
        );
        let at = (0..order.len().max(stream.len()))
            .find(|&i| order.get(i).map(|d| &d.id) != stream.get(i).map(|d| &d.id));
        check.order = at.map(|i| {
            (
                i,
                order.get(i).map(|d| d.id.clone()),
                stream.get(i).map(|d| d.id.clone()),
            )
        });
    }
    check
}

impl StreamCheck {
    /// Whether the stream was exactly the delivery order.
    pub fn is_clean(&self) -> bool {
        *self == StreamCheck::default()
    }

    /// One line per kind of failure, each starting with `stream` (what the
    /// stream is, e.g. `h3 subscriber`).
    pub fn failures(&self, stream: &str) -> Vec<String> {
        let mut lines = Vec::new();
        let mut kind = |ids: &[String], what: &str| {
            if !ids.is_empty() {
                lines.push(format!("{stream}: {} {what}: {}", ids.len(), quote(ids)));
            }
        };
        kind(
            &self.missing,
            "message(s) of the history never shown (gaps)",
        );
        kind(&self.duplicates, "message(s) shown more than once");
        kind(
            &self.phantoms,
            "message(s) shown that the history does not hold",
        );
        kind(
            &self.wrong_cursor,
            "message(s) shown with another cursor than history's",
        );
        if let Some((at, expected, shown)) = &self.order {
            let show = |id: &Option<String>| id.clone().unwrap_or_else(|| "(end)".to_owned());
            lines.push(format!(
                "{stream}: order departs from the delivery order at position {at}: \
                 expected {}, shown {}",
                show(expected),
                show(shown)
            ));
        }
        lines
    }
}

/// Ids that occur more than once in `records`, each named once, in order of
/// their second occurrence.
fn repeated(records: &[Delivered]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    let mut named = BTreeSet::new();
    records
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| !seen.insert(*id) && named.insert(*id))
        .collect()
}

fn cursors_by_id(records: &[Delivered]) -> BTreeMap<&str, &str> {
    records
        .iter()
        .map(|d| (d.id.as_str(), d.cursor.as_str()))
        .collect()
}

/// The first [`QUOTED_IDS`] of `ids`, and how many more there are.
fn quote<S: AsRef<str>>(ids: &[S]) -> String {
    let shown: Vec<&str> = ids.iter().take(QUOTED_IDS).map(AsRef::as_ref).collect();
    let more = ids.len().saturating_sub(QUOTED_IDS);
    if more == 0 {
        shown.join(", ")
    } else {
        format!("{} and {more} more", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, cursor: &str) -> Delivered {
        Delivered {
            id: id.to_owned(),
            text: format!("text of {id}"),
            cursor: cursor.to_owned(),
        }
    }

    /// Delivered c, a, b (c first: it arrived first, though it may order
    /// later in history).
    fn delivered() -> Vec<Delivered> {
        vec![d("c", "1"), d("a", "2"), d("b", "3")]
    }

    fn history() -> Vec<Delivered> {
        vec![d("a", "2"), d("b", "3"), d("c", "1")]
    }

    fn acked(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_delivery_order_itself_is_clean() {
        let check = check_stream(&history(), Some(&delivered()), &delivered());
        assert!(check.is_clean(), "{check:?}");
        assert!(check_node(&history(), &Ok(delivered()), &acked(&["a", "b"])).is_empty());
    }

    #[test]
    fn history_order_is_not_delivery_order() {
        let check = check_stream(&history(), Some(&delivered()), &history());
        assert_eq!(check.order, Some((0, Some("c".into()), Some("a".into()))));
        assert!(check.missing.is_empty() && check.duplicates.is_empty());
    }

    #[test]
    fn gaps_duplicates_and_phantoms_are_named() {
        let stream = vec![d("c", "1"), d("c", "1"), d("x", "9"), d("b", "3")];
        let check = check_stream(&history(), Some(&delivered()), &stream);
        assert_eq!(check.missing, vec!["a".to_owned()]);
        assert_eq!(check.duplicates, vec!["c".to_owned()]);
        assert_eq!(check.phantoms, vec!["x".to_owned()]);
        assert_eq!(check.order, Some((1, Some("a".into()), Some("c".into()))));
        let lines = check.failures("h1 subscriber");
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("h1 subscriber: ")));
    }

    #[test]
    fn a_stream_that_stops_early_departs_at_its_end() {
        let check = check_stream(&history(), Some(&delivered()), &delivered()[..2]);
        assert_eq!(check.order, Some((2, Some("b".into()), None)));
        assert_eq!(check.missing, vec!["b".to_owned()]);
    }

    #[test]
    fn cursors_must_match() {
        let stream = vec![d("c", "1"), d("a", "2"), d("b", "7")];
        let check = check_stream(&history(), Some(&delivered()), &stream);
        assert_eq!(check.wrong_cursor, vec!["b".to_owned()]);
        assert_eq!(check.order, None);
    }

    #[test]
    fn without_a_delivery_order_the_sets_are_still_checked() {
        let stream = vec![d("a", "2"), d("a", "2")];
        let check = check_stream(&history(), None, &stream);
        assert_eq!(check.duplicates, vec!["a".to_owned()]);
        assert_eq!(check.missing, vec!["b".to_owned(), "c".to_owned()]);
        assert_eq!(check.order, None);
    }

    #[test]
    fn node_failures_name_lost_sends_and_a_partial_delivery_order() {
        let failures = check_node(
            &history(),
            &Ok(vec![d("a", "2"), d("b", "4")]),
            &acked(&["a", "z"]),
        );
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].contains("lacks 1 acknowledged send(s): z"));
        assert!(failures[1].contains("not in the delivery order") && failures[1].contains(": c"));
        assert!(failures[2].contains("another cursor") && failures[2].ends_with(": b"));
        let failures = check_node(&history(), &Err("refused".into()), &acked(&[]));
        assert_eq!(failures, vec!["no delivery order: refused".to_owned()]);
    }

    #[test]
    fn quotes_are_bounded() {
        let ids: Vec<String> = (0..8).map(|i| i.to_string()).collect();
        assert_eq!(quote(&ids), "0, 1, 2, 3, 4 and 3 more");
    }
}
