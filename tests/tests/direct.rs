//! Direct messages between real daemons.
//!
//! - Three namespaced hosts (h1, h2, h3): a direct message h1 → h2 reaches
//!   h2 (its history and a subscriber), never h3 (history, a subscriber,
//!   the bytes of its store), and its text never crosses the switch in the
//!   clear, while a channel message's text does (the test cluster has no
//!   cluster key: the capture is shown to see plaintext). A message to h2
//!   while h2 is stopped is reported queued, survives a restart of h1, and
//!   reaches h2 when it is back.
//! - On loopback (no root needed): an unknown recipient and a name two
//!   nodes share are clear errors listing the candidates; the sender's
//!   subscriber is told when a direct message was delivered
//!   (`direct_status`).

use std::path::Path;
use std::time::{Duration, Instant};

use rossip_proto::rpc::{EventBody, MessageView, PeerStateName};
use rossip_tests::ctl::rossipctl_in;
use rossip_tests::daemon::Daemon;
use rossip_tests::nscluster::NsCluster;
use rossip_tests::rpc::RpcClient;
use rossip_tests::sniff::Sniffer;
use rossip_tests::wait::wait_until;

const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// A queued message goes when the recipient is alive again: discovery of
/// the restarted node, then the send.
const REDELIVERY_TIMEOUT: Duration = Duration::from_secs(90);

fn history(daemon: &Daemon) -> Vec<MessageView> {
    RpcClient::connect(daemon.socket())
        .map(|mut client| client.history())
        .unwrap_or_else(|e| panic!("history of {}: {e}", daemon.name()))
}

fn holds(daemon: &Daemon, id: &str) -> bool {
    history(daemon).iter().any(|m| m.id == id)
}

/// The bytes of `daemon`'s store (the database and its write-ahead log).
fn store_bytes(daemon: &Daemon) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["history.db", "history.db-wal"] {
        if let Ok(mut file) = std::fs::read(daemon.state_dir().join(name)) {
            bytes.append(&mut file);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `rossipctl send --to TO TEXT` on `daemon`: its stdout.
fn send_direct(daemon: &Daemon, to: &str, text: &str) -> String {
    let out = rossipctl_in(daemon.netns(), daemon.socket(), &["send", "--to", to, text]);
    out.assert_success();
    out.stdout.trim().to_owned()
}

/// The message id at the end of `send --to`'s line (`STATUS to|for TO: ID`).
fn sent_id(line: &str) -> String {
    line.rsplit(' ').next().unwrap_or_default().to_owned()
}

/// Every message event `client` has received within `window`.
fn drain_messages(client: &mut RpcClient, window: Duration) -> Vec<MessageView> {
    let mut out = Vec::new();
    let until = Instant::now() + window;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match client.next_event(left) {
            Some(event) => {
                if let EventBody::Message { message } = event.event {
                    out.push(message);
                }
            }
            None => break,
        }
    }
    out
}

#[test]
fn a_direct_message_reaches_only_its_recipient_sealed_and_waits_for_it() {
    let Ok(mut cluster) = NsCluster::start("direct", 3, |_| {}, |_, daemon| daemon) else {
        return;
    };
    cluster.wait_all_alive(cluster.spawned, DISCOVERY_TIMEOUT, "discovery");
    let switch = format!("{}sw", cluster.lan.prefix());
    let sniffer = Sniffer::start(&switch).unwrap_or_else(|e| panic!("capture on {switch}: {e}"));
    let mut on_b = RpcClient::connect(cluster.daemons[1].socket())
        .expect("connect to h2")
        .subscribed_to_messages();
    let mut on_c = RpcClient::connect(cluster.daemons[2].socket())
        .expect("connect to h3")
        .subscribed_to_messages();

    // Unique texts, so that a match anywhere is this test's.
    let tag = std::process::id();
    let secret = format!("dm-secret-{tag}-7f3a");
    let public = format!("channel-plain-{tag}-91c2");

    let line = send_direct(&cluster.daemons[0], "h2", &secret);
    assert!(
        line.starts_with("delivered to h2: ") || line.starts_with("queued for h2: "),
        "send --to says delivered or queued: {line}"
    );
    let dm = sent_id(&line);
    wait_until(
        DELIVERY_TIMEOUT,
        "the direct message in h2's history",
        || holds(&cluster.daemons[1], &dm),
    );
    let in_b = history(&cluster.daemons[1])
        .into_iter()
        .find(|m| m.id == dm)
        .expect("held by h2");
    assert_eq!(in_b.text, secret);
    let b_id = cluster.daemons[1].status().id;
    assert_eq!(
        in_b.to.as_ref().map(|to| to.node.as_str()),
        Some(b_id.as_str()),
        "marked as a direct message to h2"
    );
    assert!(
        holds(&cluster.daemons[0], &dm),
        "the sender's history shows it"
    );

    // A channel message after it: once h3 has that, it has had every
    // chance to get the direct message too.
    let sent = cluster.daemons[0].client().send(&public);
    wait_until(DELIVERY_TIMEOUT, "the channel message on h3", || {
        holds(&cluster.daemons[2], &sent.id)
    });
    wait_until(DELIVERY_TIMEOUT, "the channel message on h2", || {
        holds(&cluster.daemons[1], &sent.id)
    });
    // Polled until a deadline: on a loaded machine the event may come late.
    let mut b_events = Vec::new();
    let b_deadline = Instant::now() + DELIVERY_TIMEOUT;
    while !b_events
        .iter()
        .any(|m: &MessageView| m.id == dm && m.to.is_some())
        && Instant::now() < b_deadline
    {
        b_events.extend(drain_messages(&mut on_b, Duration::from_millis(500)));
    }
    assert!(
        b_events.iter().any(|m| m.id == dm && m.to.is_some()),
        "h2's subscriber got the direct message: {b_events:?}"
    );
    let c_events = drain_messages(&mut on_c, Duration::from_secs(2));
    assert!(
        c_events.iter().any(|m| m.id == sent.id),
        "h3's subscriber got the channel message: {c_events:?}"
    );
    assert!(
        !c_events.iter().any(|m| m.id == dm || m.text == secret),
        "h3's subscriber never sees the direct message: {c_events:?}"
    );
    assert!(!holds(&cluster.daemons[2], &dm), "h3's history lacks it");
    assert!(
        !contains(&store_bytes(&cluster.daemons[2]), &secret),
        "h3's store never holds its text"
    );
    assert!(
        contains(&store_bytes(&cluster.daemons[1]), &secret),
        "h2's store holds it (so the store check can see a text)"
    );
    assert_eq!(
        cluster.daemons[1].dropped("invalid_direct") + cluster.daemons[2].dropped("direct_bad_box"),
        0,
        "nothing refused"
    );

    // The wire: the channel text is there in the clear (no cluster key),
    // the direct text is not.
    wait_until(
        DELIVERY_TIMEOUT,
        "the capture to see the channel text",
        || sniffer.saw(public.as_bytes()),
    );
    assert!(
        !sniffer.saw(secret.as_bytes()),
        "the direct message's text crossed the switch in the clear ({} frames captured)",
        sniffer.frames()
    );

    // h2 stops: the next message is queued, kept across a restart of h1,
    // and delivered when h2 is back.
    let stopped_at = Instant::now();
    cluster.daemons[1].stop_with_sigterm(Duration::from_secs(20));
    cluster.wait_entered(
        &[0],
        1,
        PeerStateName::Left,
        stopped_at,
        DISCOVERY_TIMEOUT,
        "h1 sees h2 leave",
    );
    let offline = format!("while-you-were-out-{tag}");
    let line = send_direct(&cluster.daemons[0], "h2", &offline);
    assert!(
        line.starts_with("queued for h2: "),
        "a message to a stopped node is queued: {line}"
    );
    let queued = sent_id(&line);
    cluster.daemons[0].stop_with_sigterm(Duration::from_secs(20));
    cluster.restart(0);
    assert!(
        cluster.daemons[0]
            .log()
            .contains("direct messages still to deliver"),
        "h1 restored its outbox"
    );
    cluster.restart(1);
    wait_until(REDELIVERY_TIMEOUT, "the queued message on h2", || {
        holds(&cluster.daemons[1], &queued)
    });
    assert!(!holds(&cluster.daemons[2], &queued));
    assert!(
        !sniffer.saw(offline.as_bytes()),
        "the queued message crossed the switch in the clear"
    );
    let delivered_once = history(&cluster.daemons[1])
        .iter()
        .filter(|m| m.id == queued || m.id == dm)
        .count();
    assert_eq!(
        delivered_once, 2,
        "each direct message once in h2's history"
    );
}

#[test]
fn unknown_and_ambiguous_recipients_list_the_candidates() {
    let first = Daemon::builder("twin").loopback().spawn();
    let second = Daemon::builder("twin")
        .loopback()
        .join(&first.addr())
        .spawn();
    let sender = Daemon::builder("sender")
        .loopback()
        .join(&first.addr())
        .spawn();
    wait_until(DISCOVERY_TIMEOUT, "both twins as members of sender", || {
        RpcClient::connect(sender.socket())
            .map(|mut c| c.peers(false).len() == 2)
            .unwrap_or(false)
    });
    let socket: &Path = sender.socket();
    let out = rossipctl_in(None, socket, &["send", "--to", "twin", "hello"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("-32015"), "ambiguous: {}", out.stderr);
    for id in [first.status().id, second.status().id] {
        assert!(out.stderr.contains(&id), "lists {id}: {}", out.stderr);
    }
    let out = rossipctl_in(None, socket, &["send", "--to", "nobody", "hello"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("-32014"), "unknown: {}", out.stderr);
    assert!(
        out.stderr.contains("twin"),
        "lists the nodes: {}",
        out.stderr
    );
    // An id prefix chooses between the twins.
    let prefix: String = second.status().id.chars().take(8).collect();
    let out = rossipctl_in(
        None,
        socket,
        &["send", "--to", &format!("bob@{prefix}"), "hi"],
    );
    out.assert_success();
    assert!(
        out.stdout.starts_with("delivered to bob@twin: ")
            || out.stdout.starts_with("queued for bob@twin: "),
        "{}",
        out.stdout
    );
    let id = sent_id(out.stdout.trim());
    wait_until(
        DELIVERY_TIMEOUT,
        "the message on the second twin only",
        || holds(&second, &id),
    );
    assert!(!holds(&first, &id));
}

/// The unprivileged user the recipient daemon and its reader run as.
const NOBODY: u32 = 65534;

/// `rossipctl --socket SOCKET --json ARGS…` as uid/gid 65534: its stdout.
fn rossipctl_as_nobody(socket: &Path, args: &[&str]) -> String {
    let setpriv = rossip_tests::sys::find_program("setpriv").expect("`setpriv` (util-linux)");
    let out = std::process::Command::new(setpriv)
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(rossip_tests::bins::rossipctl())
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .args(args)
        .stdin(std::process::Stdio::null())
        .env_remove("ROSSIP_SOCKET")
        .output()
        .expect("run rossipctl under setpriv");
    assert_eq!(
        out.status.code(),
        Some(0),
        "rossipctl as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On the recipient's node a direct message is shown to the user it names
/// (or to everyone there if it names none), not to other local users;
/// root sees all. The reader is `nobody`, through the socket (peer
/// credentials), so nothing a script passes decides it.
#[test]
fn a_direct_message_is_shown_only_to_the_user_it_names() {
    if rossip_tests::sys::effective_uid() != Some(0) {
        assert!(
            !rossip_tests::sys::ci(),
            "CI=true: the visibility test must run as root (to read as another user)"
        );
        rossip_tests::sys::skipped(
            "a_direct_message_is_shown_only_to_the_user_it_names",
            "it needs root",
        );
        return;
    }
    let recipient = Daemon::builder("recipient")
        .as_user(NOBODY)
        .loopback()
        .spawn();
    let sender = Daemon::builder("sender")
        .loopback()
        .join(&recipient.addr())
        .spawn();
    wait_until(
        DISCOVERY_TIMEOUT,
        "the recipient as a member of sender",
        || {
            RpcClient::connect(sender.socket())
                .map(|mut c| c.peers(false).len() == 1)
                .unwrap_or(false)
        },
    );
    let tag = std::process::id();
    let mut ids = Vec::new();
    for (to, text) in [
        ("bob@recipient", format!("for-bob-{tag}")),
        ("nobody@recipient", format!("for-nobody-{tag}")),
        ("recipient", format!("for-anyone-{tag}")),
    ] {
        let line = send_direct(&sender, to, &text);
        ids.push((sent_id(&line), text));
    }
    for (id, text) in &ids {
        wait_until(
            DELIVERY_TIMEOUT,
            &format!("{text} on the recipient"),
            || holds(&recipient, id),
        );
    }
    let seen_by_nobody = rossipctl_as_nobody(recipient.socket(), &["tail", "-n", "100"]);
    assert!(
        !seen_by_nobody.contains(&ids[0].1),
        "bob's message is bob's: {seen_by_nobody}"
    );
    assert!(seen_by_nobody.contains(&ids[1].1), "{seen_by_nobody}");
    assert!(seen_by_nobody.contains(&ids[2].1), "{seen_by_nobody}");
    // Root (this test's own connection) sees all three.
    for (id, _) in &ids {
        assert!(holds(&recipient, id));
    }
    // The sending node shows them to their sender (root here).
    let on_sender = history(&sender);
    assert_eq!(
        on_sender.iter().filter(|m| m.to.is_some()).count(),
        3,
        "the sender's root sees what it sent"
    );
}

/// The sender's subscriber to `direct_status` learns that its message was
/// delivered; the event names the message's id.
#[test]
fn the_sender_is_told_when_a_direct_message_is_delivered() {
    let recipient = Daemon::builder("recipient").loopback().spawn();
    let sender = Daemon::builder("sender")
        .loopback()
        .join(&recipient.addr())
        .spawn();
    wait_until(
        DISCOVERY_TIMEOUT,
        "the recipient as a member of sender",
        || {
            RpcClient::connect(sender.socket())
                .map(|mut c| c.peers(false).len() == 1)
                .unwrap_or(false)
        },
    );
    let mut watcher = RpcClient::connect(sender.socket()).expect("connect to sender");
    watcher.subscribe(serde_json::json!({"events": ["direct_status"]}));
    #[derive(serde::Deserialize)]
    struct Sent {
        id: String,
    }
    let sent: Sent = sender.client().call_ok(
        "send",
        serde_json::json!({"text": "tell me when it is there", "to": "recipient"}),
    );
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(event) = watcher.next_event(left) else {
            break;
        };
        let done = matches!(
            &event.event,
            EventBody::DirectStatus { id, status: rossip_proto::rpc::DirectStatusName::Delivered, .. }
                if *id == sent.id
        );
        seen.push(event.event);
        if done {
            return;
        }
    }
    panic!("no direct_status delivered for {}: {seen:?}", sent.id);
}
