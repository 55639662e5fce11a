//! Channels across three hosts (real `rossipd` processes in network
//! namespaces, finding each other by mDNS): messages sent on `ops` from one
//! host and on `general` from another are listed by `rossipctl channels` on
//! the third with their counts, newest activity first, and `tail -c ops`
//! there shows only `ops`, each line naming who said it as `user@node`.
//! Bad channel names are refused, by `rossipctl` and by the RPC methods.
//!
//! Needs root and iproute2: without them it prints one line and passes,
//! except under `CI=true`, where it must run.

use std::time::Duration;

use rossip_proto::rpc::{ChannelView, MessageView, code};
use rossip_tests::cluster::{self, DUPLICATE_WINDOW};
use rossip_tests::ctl::{CtlOutput, rossipctl_in};
use rossip_tests::daemon::Daemon;
use rossip_tests::netns::Lan;
use rossip_tests::wait::wait_until;
use serde_json::json;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages sent on `ops` from h1 and on `general` from h2.
const OPS: [&str; 2] = ["disk full on db1", "db1 cleaned up"];
const GENERAL: [&str; 3] = ["lunch?", "in 10 minutes", "ok"];

/// `rossipctl ARGS…` on host `index`, run inside its namespace.
fn ctl(lan: &Lan, daemons: &[Daemon], index: usize, args: &[&str]) -> CtlOutput {
    rossipctl_in(Some(&lan.host(index).ns), daemons[index].socket(), args)
}

/// `rossipctl --json channels` on host `index`.
fn channels(lan: &Lan, daemons: &[Daemon], index: usize) -> Vec<ChannelView> {
    let out = ctl(lan, daemons, index, &["--json", "channels"]);
    out.assert_success();
    out.json_lines()
        .into_iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect()
}

fn counts(channels: &[ChannelView]) -> Vec<(String, u64)> {
    channels
        .iter()
        .map(|c| (c.name.clone(), c.messages))
        .collect()
}

#[test]
fn channels_from_two_hosts_are_listed_on_a_third_and_tail_filters_them() {
    let Ok(lan) = Lan::new("channels", 3) else {
        return;
    };
    let (daemons, _) = cluster::start_on_lan(&lan);

    for text in OPS {
        ctl(&lan, &daemons, 0, &["send", "-c", "ops", text]).assert_success();
    }
    // After ops has reached h2, so that general is the newer channel
    // everywhere (and h2's clock has seen ops' timestamps).
    wait_until(DELIVERY_TIMEOUT, "h2 to hold both ops messages", || {
        let listed = channels(&lan, &daemons, 1);
        let held = counts(&listed);
        (held == [("ops".to_owned(), 2)])
            .then_some(())
            .ok_or(format!("{held:?}"))
    });
    for text in GENERAL {
        ctl(&lan, &daemons, 1, &["send", text]).assert_success();
    }

    let expected = vec![("general".to_owned(), 3), ("ops".to_owned(), 2)];
    wait_until(DELIVERY_TIMEOUT, "h3 to list general and ops", || {
        let held = counts(&channels(&lan, &daemons, 2));
        (held == expected).then_some(()).ok_or(format!("{held:?}"))
    });
    // Late duplicates (anti-entropy) would raise a count.
    std::thread::sleep(DUPLICATE_WINDOW);
    let listed = channels(&lan, &daemons, 2);
    assert_eq!(counts(&listed), expected, "{listed:?}");
    assert!(
        listed[0].last_ts >= listed[1].last_ts,
        "newest activity first: {listed:?}"
    );
    let human = ctl(&lan, &daemons, 2, &["channels"]);
    human.assert_success();
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", human.stdout);
    assert!(lines[0].starts_with("CHANNEL"), "{}", human.stdout);
    for (line, (name, count)) in lines[1..].iter().zip(&expected) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells.get(..2),
            Some(&[name.as_str(), count.to_string().as_str()][..]),
            "{}",
            human.stdout
        );
        assert!(line.ends_with(" ago)"), "{}", human.stdout);
    }

    // `tail -c ops` on h3: only ops, and who said it.
    let json = ctl(&lan, &daemons, 2, &["--json", "tail", "-c", "ops"]);
    json.assert_success();
    let ops: Vec<MessageView> = json
        .json_lines()
        .into_iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect();
    let texts: Vec<&str> = ops.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, OPS, "{}", json.stdout);
    for m in &ops {
        assert_eq!(m.channel, "ops");
        assert_eq!(m.origin_name, "h1");
        assert!(!m.user.is_empty(), "the sender's user is named: {m:?}");
        assert_eq!(m.from, format!("{}@h1", m.user));
    }
    let short: String = ops[0].origin.chars().take(8).collect();
    let human = ctl(&lan, &daemons, 2, &["tail", "-c", "ops"]);
    human.assert_success();
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), OPS.len(), "{}", human.stdout);
    for (line, text) in lines.iter().zip(OPS) {
        let sender = format!("{}@h1 [{short}] #ops: {text}", ops[0].user);
        assert!(
            line.ends_with(&sender),
            "{line:?} should end with {sender:?}"
        );
    }

    // Bad channel names: a usage error in rossipctl, -32003 over RPC.
    for args in [
        &["tail", "-c", "no spaces"][..],
        &["send", "-c", "", "x"][..],
        &["send", "-c", "ops/db", "x"][..],
    ] {
        let out = ctl(&lan, &daemons, 2, args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("channel name"), "{}", out.stderr);
    }
    let mut client = daemons[2].client();
    for (method, params) in [
        ("send", json!({"text": "x", "channel": "no spaces"})),
        ("history", json!({"channel": "x".repeat(65)})),
        ("subscribe", json!({"channel": ""})),
    ] {
        let error = client
            .call(method, params.clone())
            .expect_err("a bad channel name is refused");
        assert_eq!(
            error.code,
            code::INVALID_CHANNEL,
            "{method} {params}: {error:?}"
        );
        assert!(error.message.contains("channel name"), "{error:?}");
    }
    assert_eq!(
        counts(&channels(&lan, &daemons, 2)),
        expected,
        "refused sends add nothing"
    );
}
