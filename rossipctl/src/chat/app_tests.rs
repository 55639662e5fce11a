use ratatui::crossterm::event::{KeyEvent, KeyModifiers};
use rossip_proto::rpc::{NameTrust, RecipientView};

use super::*;

const ME_NODE: &str = "aa";
const BOB_NODE: &str = "bb";

fn me() -> Me {
    Me {
        node_id: ME_NODE.into(),
        node_name: "h1".into(),
        user: Some("alice".into()),
        nick: Some("Ally".into()),
        presence: true,
    }
}

fn app() -> App {
    let settings = Settings {
        away_after: Some(Duration::from_secs(600)),
        backlog: 50,
        tz: TimeZone::UTC,
    };
    let mut app = App::new(me(), "general".into(), settings, Instant::now());
    assert!(matches!(
        app.take_requests().as_slice(),
        [Request::Peers { shown: false }, Request::History { channel, n: 50 }]
            if channel == "general"
    ));
    app
}

fn message(seq: u64, from_node: &str, user: &str, channel: &str, text: &str) -> MessageView {
    let node_name = if from_node == ME_NODE { "h1" } else { "h2" };
    MessageView {
        id: format!("{from_node}-{seq}"),
        origin: from_node.into(),
        origin_name: node_name.into(),
        seq,
        ts: 1_000 + seq,
        ts_logical: 0,
        channel: channel.into(),
        text: text.into(),
        user: user.into(),
        from: format!("{user}@{node_name}"),
        nick: None,
        to: None,
        key: String::new(),
        verified: true,
        name_trust: NameTrust::Pinned,
        cursor: format!("s-{seq}"),
    }
}

fn deliver(app: &mut App, message: MessageView) {
    app.on_stream(StreamNews::Message {
        message,
        live: true,
    });
}

fn texts(window: &Window) -> Vec<String> {
    window.lines.iter().map(ChatLine::plain).collect()
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn type_line(app: &mut App, line: &str) {
    for c in line.chars() {
        app.on_terminal(&key(KeyCode::Char(c)), Instant::now());
    }
    app.on_terminal(&key(KeyCode::Enter), Instant::now());
}

#[test]
fn messages_go_to_their_channel_window_once() {
    let mut app = app();
    deliver(&mut app, message(1, BOB_NODE, "bob", "general", "hello"));
    deliver(&mut app, message(1, BOB_NODE, "bob", "general", "hello"));
    deliver(&mut app, message(2, BOB_NODE, "bob", "ops", "not joined"));
    let shown: Vec<String> = texts(&app.windows[0])
        .into_iter()
        .filter(|l| l.contains("bob"))
        .collect();
    assert_eq!(shown, ["00:00 bob@h2: hello"]);
}

#[test]
fn other_windows_count_unread_and_mark_where_it_starts() {
    let mut app = app();
    type_line(&mut app, "/join ops");
    assert_eq!(app.active, 1);
    assert!(matches!(
        app.take_requests().as_slice(),
        [Request::History { channel, n: 50 }] if channel == "ops"
    ));
    deliver(&mut app, message(1, BOB_NODE, "bob", "general", "one"));
    deliver(
        &mut app,
        message(2, BOB_NODE, "bob", "general", "two alice?"),
    );
    let general = &app.windows[0];
    assert_eq!(general.unread, 2);
    assert!(general.highlight, "a mention highlights");
    let marker = general.marker.expect("a read marker");
    assert!(general.lines[marker].plain().ends_with("one"));
    assert!(app.take_bell(), "a mention rings");
    app.on_terminal(
        &Event::Key(KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL)),
        Instant::now(),
    );
    assert_eq!(app.active, 0);
    assert_eq!(app.windows[0].unread, 0);
    assert_eq!(
        app.windows[0].marker,
        Some(marker),
        "the marker stays in view"
    );
    type_line(&mut app, "/join ops");
    assert_eq!(app.windows[0].marker, None, "left: all read");
}

#[test]
fn direct_messages_open_a_window_and_ring() {
    let mut app = app();
    let mut incoming = message(1, BOB_NODE, "bob", "general", "psst");
    incoming.to = Some(RecipientView {
        node: ME_NODE.into(),
        user: Some("alice".into()),
    });
    deliver(&mut app, incoming);
    assert!(app.take_bell());
    let window = app
        .windows
        .iter()
        .find(|w| w.target == Target::Query("bob@h2".into()))
        .expect("a window for bob");
    assert_eq!(window.unread, 1);
    assert!(window.highlight);
    assert_eq!(texts(window), ["00:00 [DM] bob@h2 -> alice@h1: psst"]);
    // An answer typed in that window goes to bob, and its copy lands there too.
    app.switch_to(1);
    type_line(&mut app, "hi bob");
    assert!(matches!(
        app.take_requests().as_slice(),
        [Request::Send { params, .. }] if params.to.as_deref() == Some("bob@h2")
            && params.channel.is_none()
    ));
    let mut outgoing = message(5, ME_NODE, "alice", "general", "hi bob");
    outgoing.to = Some(RecipientView {
        node: BOB_NODE.into(),
        user: Some("bob".into()),
    });
    deliver(&mut app, outgoing);
    assert!(!app.take_bell(), "no bell for your own message");
    assert_eq!(app.windows.len(), 2);
    assert_eq!(
        texts(&app.windows[1]).last().map(String::as_str),
        Some("00:00 [DM] alice@h1 -> bob@h2: hi bob")
    );
}

#[test]
fn commands_become_calls() {
    let mut app = app();
    type_line(&mut app, "/me waves");
    type_line(&mut app, "/msg bob@h2 hi");
    type_line(&mut app, "/nick Al");
    type_line(&mut app, "/who");
    type_line(&mut app, "/away lunch");
    type_line(&mut app, "/channels");
    let requests = app.take_requests();
    assert!(
        matches!(
            requests.as_slice(),
            [
                Request::Send { params: me, .. },
                Request::Send { params: msg, .. },
                Request::Nick(NickParams { nick: Some(nick), clear: false }),
                Request::Who,
                Request::Presence(PresenceParams { state: PresenceState::Away, status: Some(status) }),
                Request::Channels,
            ] if me.text == "/me waves" && me.channel.as_deref() == Some("general")
                && msg.to.as_deref() == Some("bob@h2") && msg.text == "hi"
                && nick == "Al" && status == "lunch"
        ),
        "{requests:?}"
    );
    assert_eq!(app.away, Away::Away { auto: false });
    type_line(&mut app, "/away");
    assert_eq!(app.away, Away::Available);
}

#[test]
fn a_missing_method_is_said_plainly() {
    let mut app = app();
    app.on_reply(Reply::Who(Err(CallError::Unsupported {
        method: super::super::api::method::WHO,
    })));
    assert!(
        texts(&app.windows[0])
            .last()
            .is_some_and(|l| l.contains("this rossipd does not support /who")),
        "{:?}",
        texts(&app.windows[0])
    );
}

#[test]
fn idle_means_away_until_a_key() {
    let start = Instant::now();
    let mut app = app();
    app.last_key = start;
    app.on_tick(start + Duration::from_secs(599));
    assert!(app.take_requests().is_empty());
    app.on_tick(start + Duration::from_secs(600));
    assert!(matches!(
        app.take_requests().as_slice(),
        [Request::Presence(PresenceParams {
            state: PresenceState::Away,
            ..
        })]
    ));
    app.on_terminal(&key(KeyCode::Char('x')), start + Duration::from_secs(700));
    assert!(matches!(
        app.take_requests().as_slice(),
        [Request::Presence(PresenceParams {
            state: PresenceState::Available,
            ..
        })]
    ));
    assert_eq!(app.input.value(), "x");
}

#[test]
fn presence_lines_reach_channel_windows() {
    let mut app = app();
    let entry = WhoEntry {
        user: "bob".into(),
        node_name: "h2".into(),
        from: "bob@h2".into(),
        nick: None,
        state: "available".into(),
        status: None,
        since: 0,
    };
    app.on_stream(StreamNews::Presence {
        entry,
        previous: None,
    });
    assert!(
        texts(&app.windows[0])
            .last()
            .is_some_and(|l| l.ends_with("-- bob@h2 joined the chat"))
    );
}

#[test]
fn a_dm_window_named_by_node_id_takes_the_name_once_known() {
    let mut app = app();
    let mut outgoing = message(7, ME_NODE, "alice", "general", "hello c");
    outgoing.to = Some(RecipientView {
        node: "cc11223344".into(),
        user: None,
    });
    deliver(&mut app, outgoing);
    assert_eq!(app.windows[1].target, Target::Query("cc112233".into()));
    app.on_reply(Reply::Sent {
        params: SendParams {
            text: "hello c".into(),
            channel: None,
            to: Some("h3".into()),
        },
        from: Target::Query("h3".into()),
        result: Ok(super::super::api::SendResult {
            id: "aa-7".into(),
            direct: Some(super::super::api::DirectSendStatus {
                status: "delivered".into(),
                to: "h3".into(),
                node: "cc11223344".into(),
            }),
        }),
    });
    assert_eq!(app.windows.len(), 2);
    assert_eq!(app.windows[1].target, Target::Query("h3".into()));
    assert_eq!(
        texts(&app.windows[1]),
        ["00:00 [DM] alice@h1 -> cc112233: hello c"]
    );
}

#[test]
fn the_pane_shows_the_bottom_the_marker_and_clamps_the_scroll() {
    let mut app = app();
    type_line(&mut app, "/join ops");
    for seq in 1..=30 {
        deliver(
            &mut app,
            message(seq, BOB_NODE, "bob", "general", &format!("line {seq}")),
        );
    }
    app.switch_to(0);
    let rows = |app: &App| -> Vec<String> {
        let (rows, _) = super::super::draw::visible_rows(app.current(), 80, 10, true);
        rows.iter()
            .map(|r| r.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    };
    let shown = rows(&app);
    assert_eq!(shown.len(), 10);
    assert!(
        shown.last().is_some_and(|r| r.ends_with("line 30")),
        "{shown:?}"
    );
    app.windows[0].scroll = 1_000;
    let (_, max) = super::super::draw::visible_rows(app.current(), 80, 10, true);
    app.clamp_scroll(max);
    let top = rows(&app);
    assert!(top[0].contains("you are alice@h1 (Ally)"), "{top:?}");
    let marker = top
        .iter()
        .position(|r| r.contains(" unread "))
        .expect("marker");
    assert!(top[marker + 1].ends_with("line 1"), "{top:?}");
}

#[test]
fn a_direct_message_is_reported_delivered_once() {
    let mut app = app();
    let sent = |app: &mut App, id: &str, status: &str| {
        app.on_reply(Reply::Sent {
            params: SendParams {
                text: "ping".into(),
                channel: None,
                to: Some("h3".into()),
            },
            from: Target::Channel("general".into()),
            result: Ok(super::super::api::SendResult {
                id: id.into(),
                direct: Some(super::super::api::DirectSendStatus {
                    status: status.into(),
                    to: "bob@h3".into(),
                    node: "cc11223344".into(),
                }),
            }),
        });
    };
    let status = |app: &mut App, id: &str, status: &str| {
        app.on_stream(StreamNews::DirectStatus {
            id: id.into(),
            status: status.into(),
            reason: None,
        });
    };
    let delivered = |app: &App| {
        texts(&app.windows[0])
            .iter()
            .filter(|l| l.contains("direct message to") && l.contains("delivered"))
            .count()
    };
    // Acknowledged while `send` waited (sent from the window in view, which shows the
    // message itself): the event adds no line.
    sent(&mut app, "aa-1", "delivered");
    status(&mut app, "aa-1", "delivered");
    assert_eq!(delivered(&app), 0, "{:?}", texts(&app.windows[0]));
    // Queued: the event is the news, once.
    sent(&mut app, "aa-2", "queued");
    status(&mut app, "aa-2", "delivered");
    status(&mut app, "aa-2", "delivered");
    assert_eq!(delivered(&app), 1, "{:?}", texts(&app.windows[0]));
    assert!(
        texts(&app.windows[0])
            .last()
            .is_some_and(|l| l.contains("direct message to bob@h3 delivered")),
        "{:?}",
        texts(&app.windows[0])
    );
    // Expiry is always shown.
    status(&mut app, "aa-3", "expired");
    assert!(
        texts(&app.windows[0])
            .last()
            .is_some_and(|l| l.contains("expired")),
        "{:?}",
        texts(&app.windows[0])
    );
}
