//! `rossipctl chat` driven for real: the binary in a tmux window of 80×24 (send-keys to
//! type, capture-pane to read the screen) against real daemons, and in pipe mode with
//! stdin and stdout pipes.
//!
//! The multi-host test runs daemons in three network namespaces (root and iproute2; without
//! them it prints one line and passes, except with `CI=true`). The others use loopback
//! daemons. Every tmux server is the test's own (`-L` socket) and is killed when the test
//! ends, passing or failing.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rossip_proto::rpc::{HistoryResult, MessageView};
use rossip_tests::ctl::{rossipctl, rossipctl_in};
use rossip_tests::daemon::Daemon;
use rossip_tests::netns::Lan;
use rossip_tests::tmux::Tmux;
use rossip_tests::wait::wait_until;
use rossip_tests::{bins, cluster, sys};
use serde_json::json;

/// Gossip between hosts, and a chat drawing what arrived; generous for a loaded machine.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The screen showing what was typed or what the chat answered.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether a test that needs tmux can run: without it, one line and a pass, except under
/// `CI=true` where it must run.
fn tmux_or_skip(test: &str) -> bool {
    match Tmux::missing() {
        None => true,
        Some(why) if sys::ci() => panic!("{test}: {why}, and CI=true requires this test"),
        Some(why) => {
            sys::skipped(test, &why);
            false
        }
    }
}

/// The shell command a tmux window runs: the chat, then what the terminal is like after
/// it (`chat exited N`, whether the line discipline is back to canonical mode with echo),
/// then a shell line that prints normally, and an idle process keeping the window open.
fn chat_command(socket: &Path, extra: &str) -> String {
    format!(
        "'{}' --socket '{}' chat --away-after 0 {extra}; echo \"chat exited $?\"; \
         for flag in icanon echo; do stty -a | grep -ow -- \"-\\?$flag\"; done; \
         echo 'the shell prints normally'; exec sleep 600",
        bins::rossipctl().display(),
        socket.display()
    )
}

/// The input row: the last row of the screen.
fn input_row(screen: &[String]) -> &str {
    screen.last().map_or("", String::as_str)
}

/// The status bar: the row above the input row.
fn status_row(screen: &[String]) -> &str {
    screen
        .len()
        .checked_sub(2)
        .and_then(|i| screen.get(i))
        .map_or("", String::as_str)
}

fn shows(screen: &[String], text: &str) -> bool {
    screen.iter().any(|row| row.contains(text))
}

fn count_on(screen: &[String], text: &str) -> usize {
    screen.iter().filter(|row| row.contains(text)).count()
}

fn history_of(socket: &Path, channel: Option<&str>) -> Vec<MessageView> {
    let mut client = rossip_tests::RpcClient::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    let mut params = json!({"n": 1000});
    if let Some(channel) = channel {
        params["channel"] = json!(channel);
    }
    client.call_ok::<HistoryResult>("history", params).messages
}

/// Waits until the daemon at `socket` holds a message with `text` (in `channel`), and
/// returns it.
fn wait_message(socket: &Path, channel: Option<&str>, text: &str) -> MessageView {
    wait_until(DELIVERY_TIMEOUT, &format!("{text:?} in history"), || {
        history_of(socket, channel)
            .into_iter()
            .find(|m| m.text == text)
    })
}

/// After `/quit` (or a signal): the chat said how it exited, the terminal is out of the
/// alternate screen and back in canonical mode with echo, and the shell prints normally.
fn assert_terminal_restored(tmux: &Tmux, exit: &str) {
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "the shell after the chat", |s| {
        shows(s, "the shell prints normally")
    });
    assert!(
        shows(&screen, &format!("chat exited {exit}")),
        "exit status {exit} expected:\n{}",
        screen.join("\n")
    );
    let modes: Vec<&str> = screen
        .iter()
        .map(|row| row.trim())
        .filter(|row| ["icanon", "-icanon", "echo", "-echo"].contains(row))
        .collect();
    assert_eq!(
        modes,
        ["icanon", "echo"],
        "the terminal is left in raw mode:\n{}",
        screen.join("\n")
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "the chat left the alternate screen on"
    );
}

/// Three namespaced hosts: a person chats on h1 in an 80×24 terminal while people on h2
/// and h3 write; what they type reaches the other hosts, what arrives never garbles the
/// line being typed, `/join` switches and sends there, a resize redraws, `/quit` gives
/// the terminal back.
#[test]
fn a_chat_in_a_terminal_talks_with_two_other_hosts() {
    let test = "a_chat_in_a_terminal_talks_with_two_other_hosts";
    if !tmux_or_skip(test) {
        return;
    }
    let Ok(lan) = Lan::new("chat", 3) else {
        return;
    };
    let (daemons, _) = cluster::start_on_lan(&lan);
    let (h1, h2, h3) = (&daemons[0], &daemons[1], &daemons[2]);
    let send_from = |index: usize, args: &[&str]| {
        rossipctl_in(Some(&lan.host(index).ns), daemons[index].socket(), args).assert_success();
    };
    send_from(1, &["send", "good morning, who is around?"]);
    wait_message(h1.socket(), None, "good morning, who is around?");

    let tmux = Tmux::start("chat-3hosts", 80, 24, &chat_command(h1.socket(), ""));
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "the chat with its history", |s| {
        input_row(s).starts_with("#general>") && shows(s, "good morning, who is around?")
    });
    assert_eq!(screen.len(), 24, "an 80×24 screen");
    assert!(
        status_row(&screen).contains("1:#general"),
        "{}",
        status_row(&screen)
    );

    // A typed line reaches the other hosts, attributed to this user at h1.
    tmux.enter_line("morning! typing from the chat on h1");
    let arrived = wait_message(h2.socket(), None, "morning! typing from the chat on h1");
    assert!(
        arrived.from.ends_with("@h1") || arrived.from == "h1",
        "from {:?}",
        arrived.from
    );
    wait_message(h3.socket(), None, "morning! typing from the chat on h1");
    tmux.wait_screen(SCREEN_TIMEOUT, "the own line in the pane", |s| {
        shows(s, ": morning! typing from the chat on h1")
    });

    // An incoming line appears above a half-typed one, which stays intact.
    tmux.type_text("this line is half ty");
    tmux.wait_screen(SCREEN_TIMEOUT, "the half-typed line", |s| {
        input_row(s) == "#general> this line is half ty"
    });
    send_from(2, &["send", "hi from h3 while you type"]);
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "h3's line above the input", |s| {
        shows(&s[..s.len() - 2], "hi from h3 while you type")
    });
    assert_eq!(input_row(&screen), "#general> this line is half ty");
    tmux.type_text("ped, finished");
    tmux.keys(&["Enter"]);
    wait_message(h3.socket(), None, "this line is half typed, finished");

    // /join switches to a channel and sends there; the channel left counts unread.
    tmux.enter_line("/join ops");
    tmux.wait_screen(SCREEN_TIMEOUT, "the ops window", |s| {
        input_row(s).starts_with("#ops>") && status_row(s).contains("2:#ops")
    });
    tmux.enter_line("deploying to ops now");
    let in_ops = wait_message(h2.socket(), Some("ops"), "deploying to ops now");
    assert_eq!(in_ops.channel, "ops");
    send_from(2, &["send", "h3 in general, unread for h1"]);
    tmux.wait_screen(SCREEN_TIMEOUT, "general's unread count", |s| {
        status_row(s).contains("1:#general(1)")
    });
    send_from(1, &["send", "-c", "ops", "h2 answers in ops"]);
    tmux.wait_screen(SCREEN_TIMEOUT, "h2's answer in ops", |s| {
        shows(s, "h2 answers in ops")
    });

    // A resize redraws everything at the new size, and back.
    tmux.resize(60, 16);
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "a 60×16 redraw", |s| {
        s.len() == 16
            && input_row(s).starts_with("#ops>")
            && status_row(s).contains("2:#ops")
            && shows(s, "h2 answers in ops")
    });
    assert!(
        screen.iter().all(|row| row.chars().count() <= 60),
        "rows wider than the window:\n{}",
        screen.join("\n")
    );
    tmux.resize(80, 24);
    tmux.wait_screen(SCREEN_TIMEOUT, "an 80×24 redraw", |s| {
        s.len() == 24 && input_row(s).starts_with("#ops>") && shows(s, "deploying to ops now")
    });

    // Back in general: the read marker shows where the unread line starts.
    tmux.enter_line("/join general");
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "general with its read marker", |s| {
        input_row(s).starts_with("#general>") && shows(s, "unread")
    });
    let marker = screen.iter().position(|r| r.contains(" unread "));
    let unread = screen
        .iter()
        .position(|r| r.contains("h3 in general, unread for h1"));
    assert!(
        matches!((marker, unread), (Some(m), Some(u)) if m < u),
        "the marker is above the unread line:\n{}",
        screen.join("\n")
    );
    sys::say(&format!(
        "rossipctl chat on h1, 80x24, with people on h2 and h3:\n{}",
        screen.join("\n")
    ));

    tmux.enter_line("/quit");
    assert_terminal_restored(&tmux, "0");
}

/// `/msg` sends a direct message that reaches only its recipient, and a direct message
/// that arrives opens a window of its own. Loopback daemons: a, b, c.
#[test]
fn msg_sends_a_direct_message_and_one_arriving_opens_a_window() {
    let test = "msg_sends_a_direct_message_and_one_arriving_opens_a_window";
    if !tmux_or_skip(test) {
        return;
    }
    let daemons = cluster::start_loopback_cluster(&["chat-a", "chat-b", "chat-c"]);
    let (a, b, c) = (&daemons[0], &daemons[1], &daemons[2]);
    let tmux = Tmux::start("chat-msg", 80, 24, &chat_command(a.socket(), ""));
    tmux.wait_screen(SCREEN_TIMEOUT, "the chat", |s| {
        input_row(s).starts_with("#general>")
    });

    tmux.enter_line("/msg chat-b only for b");
    let direct = wait_message(b.socket(), None, "only for b");
    assert!(direct.to.is_some(), "a direct message names its recipient");
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "the DM in its window", |s| {
        status_row(s).contains("@chat-b") || status_row(s).contains("2:chat-b")
    });
    assert!(
        !shows(&screen, "does not support direct messages"),
        "{}",
        screen.join("\n")
    );
    // The third node never holds it.
    rossipctl(c.socket(), &["send", "c was here"]).assert_success();
    wait_message(a.socket(), None, "c was here");
    assert!(
        history_of(c.socket(), None)
            .iter()
            .all(|m| m.text != "only for b"),
        "c holds the direct message to b"
    );

    // b answers: a window of its own, marked, and the text on screen once opened.
    let mut client = rossip_tests::RpcClient::connect(b.socket()).expect("connect to b");
    client
        .call("send", json!({"text": "psst, just for a", "to": "chat-a"}))
        .unwrap_or_else(|e| panic!("b's direct message to a: {e:?}"));
    let answer = wait_message(a.socket(), None, "psst, just for a");
    assert!(answer.from.ends_with("@chat-b"), "from {:?}", answer.from);
    // The window of direct messages with chat-b (opened by `/msg chat-b`) takes those of
    // user@chat-b too.
    tmux.wait_screen(
        SCREEN_TIMEOUT,
        "a window for b's DM with an unread count",
        |s| status_row(s).contains("2:chat-b(1)"),
    );
    tmux.keys(&["C-n"]);
    tmux.wait_screen(SCREEN_TIMEOUT, "the DM shown", |s| {
        shows(s, "[DM]") && shows(s, "psst, just for a")
    });
    tmux.enter_line("/quit");
    assert_terminal_restored(&tmux, "0");
}

/// Ctrl-C and SIGTERM end the chat with the terminal given back (exit 130 and 143).
#[test]
fn ctrl_c_and_sigterm_restore_the_terminal() {
    let test = "ctrl_c_and_sigterm_restore_the_terminal";
    if !tmux_or_skip(test) {
        return;
    }
    let daemon = Daemon::builder("chat-signals").loopback().spawn();

    let tmux = Tmux::start("chat-ctrl-c", 80, 24, &chat_command(daemon.socket(), ""));
    tmux.wait_screen(SCREEN_TIMEOUT, "the chat", |s| {
        input_row(s).starts_with("#general>")
    });
    tmux.type_text("never sent");
    tmux.keys(&["C-c"]);
    assert_terminal_restored(&tmux, "130");
    drop(tmux);

    let tmux = Tmux::start("chat-sigterm", 80, 24, &chat_command(daemon.socket(), ""));
    tmux.wait_screen(SCREEN_TIMEOUT, "the chat", |s| {
        input_row(s).starts_with("#general>")
    });
    let shell: u32 = tmux.display("#{pane_pid}").parse().expect("the pane's pid");
    let chat = child_of(shell);
    sys::signal(chat, "TERM").unwrap_or_else(|e| panic!("SIGTERM to the chat: {e}"));
    assert_terminal_restored(&tmux, "143");
    assert!(
        history_of(daemon.socket(), None)
            .iter()
            .all(|m| m.text != "never sent"),
        "Ctrl-C sent the half-typed line"
    );
}

/// The one child of process `pid` (the chat the pane's shell runs).
fn child_of(pid: u32) -> u32 {
    wait_until(SCREEN_TIMEOUT, "the chat process", || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|children| children.split_whitespace().next()?.parse().ok())
    })
}

/// A daemon restart: the status bar says "reconnecting…", and afterwards every message is
/// shown once: none lost, none repeated.
#[test]
fn a_daemon_restart_loses_and_repeats_no_line() {
    let test = "a_daemon_restart_loses_and_repeats_no_line";
    if !tmux_or_skip(test) {
        return;
    }
    let mut daemon = Daemon::builder("chat-restart").loopback().spawn();
    rossipctl(daemon.socket(), &["send", "before the restart"]).assert_success();
    let tmux = Tmux::start("chat-restart", 80, 24, &chat_command(daemon.socket(), ""));
    tmux.wait_screen(SCREEN_TIMEOUT, "the first message", |s| {
        shows(s, "before the restart")
    });
    daemon.stop_with_sigterm(DELIVERY_TIMEOUT);
    tmux.wait_screen(SCREEN_TIMEOUT, "the reconnecting status", |s| {
        status_row(s).contains("reconnecting")
    });
    tmux.type_text("typed while away");
    daemon.restart();
    // Sent before the chat is back, and after: the cursor covers both.
    rossipctl(daemon.socket(), &["send", "right after the restart"]).assert_success();
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "the chat back", |s| {
        shows(s, "reconnected") && !status_row(s).contains("reconnecting")
    });
    assert_eq!(input_row(&screen), "#general> typed while away");
    rossipctl(daemon.socket(), &["send", "later still"]).assert_success();
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "both messages after the restart", |s| {
        shows(s, "right after the restart") && shows(s, "later still")
    });
    for text in [
        "before the restart",
        "right after the restart",
        "later still",
    ] {
        assert_eq!(
            count_on(&screen, text),
            1,
            "{text:?} not shown exactly once:\n{}",
            screen.join("\n")
        );
    }
    tmux.keys(&["Enter"]);
    wait_message(daemon.socket(), None, "typed while away");
    tmux.enter_line("/quit");
    assert_terminal_restored(&tmux, "0");
}

/// A chat with stdin and stdout as pipes.
struct PipeChat {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    command: String,
}

impl PipeChat {
    fn spawn(socket: &Path, channel: &str) -> PipeChat {
        let args = ["--socket", &socket.to_string_lossy(), "chat", "-c", channel].map(String::from);
        let command = sys::command_line(bins::rossipctl(), &args);
        let mut child = Command::new(bins::rossipctl())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("ROSSIP_SOCKET")
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{command}`: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let collected = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                collected
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        PipeChat {
            stdin: child.stdin.take(),
            child,
            lines,
            command,
        }
    }

    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the chat's stdin");
        stdin.flush().expect("flush the chat's stdin");
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn count(&self, text: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(text)).count()
    }

    fn wait_printed(&self, text: &str) {
        wait_until(DELIVERY_TIMEOUT, &format!("{text:?} printed"), || {
            if self.count(text) > 0 {
                Ok(())
            } else {
                Err(format!("`{}` printed {:?}", self.command, self.lines()))
            }
        });
    }
}

impl Drop for PipeChat {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- `{}` printed:\n{}",
                self.command,
                self.lines().join("\n")
            );
        }
    }
}

/// Stdin not a terminal: each line is sent to the channel, the channel's messages are
/// printed as lines (others' too, and none twice across a daemon restart), and the end of
/// stdin ends the chat with status 0.
#[test]
fn piped_chat_sends_lines_and_prints_messages_across_a_restart() {
    let (a, mut b) = cluster::start_joined_pair(
        Daemon::builder("pipe-a").loopback(),
        Daemon::builder("pipe-b").loopback(),
    );
    let mut chat = PipeChat::spawn(b.socket(), "ops");
    // The chat subscribed once its own line comes back.
    chat.write_line("hello from the pipe");
    let sent = wait_message(a.socket(), Some("ops"), "hello from the pipe");
    assert_eq!(sent.channel, "ops");
    chat.wait_printed("hello from the pipe");
    rossipctl(a.socket(), &["send", "-c", "ops", "a answers in ops"]).assert_success();
    rossipctl(a.socket(), &["send", "not for the ops pipe"]).assert_success();
    chat.wait_printed("a answers in ops");
    let line = chat
        .lines()
        .into_iter()
        .find(|l| l.contains("a answers in ops"))
        .unwrap_or_default();
    assert!(line.contains("@pipe-a: a answers in ops"), "{line}");

    b.stop_with_sigterm(DELIVERY_TIMEOUT);
    b.restart();
    rossipctl(
        b.socket(),
        &["send", "-c", "ops", "b right after its restart"],
    )
    .assert_success();
    rossipctl(a.socket(), &["send", "-c", "ops", "a after b's restart"]).assert_success();
    chat.wait_printed("b right after its restart");
    chat.wait_printed("a after b's restart");
    for text in [
        "hello from the pipe",
        "a answers in ops",
        "b right after its restart",
        "a after b's restart",
    ] {
        assert_eq!(
            chat.count(text),
            1,
            "{text:?} printed once: {:?}",
            chat.lines()
        );
    }
    assert_eq!(chat.count("not for the ops pipe"), 0);

    drop(chat.stdin.take());
    let status = wait_until(DELIVERY_TIMEOUT, "the chat to end with its stdin", || {
        chat.child.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status}");
}

/// Two people chatting on two nodes: each sees the other come, go away and leave inline;
/// `/who` lists them; `/nick` puts a display name beside `user@node`; `/channels` lists the
/// channels. Needs the daemon's `who`, `presence.set`, `nick` and `channels` methods.
#[test]
fn presence_nick_who_and_channels_in_the_chat() {
    let test = "presence_nick_who_and_channels_in_the_chat";
    if !tmux_or_skip(test) {
        return;
    }
    let (a, b) = cluster::start_joined_pair(
        Daemon::builder("pres-a").loopback(),
        Daemon::builder("pres-b").loopback(),
    );
    let alice = Tmux::start("chat-pres-a", 80, 24, &chat_command(a.socket(), ""));
    alice.wait_screen(SCREEN_TIMEOUT, "a's chat", |s| {
        input_row(s).starts_with("#general>")
    });
    assert!(
        !shows(&alice.screen(), "does not support presence"),
        "{}",
        alice.screen().join("\n")
    );
    let bob = Tmux::start("chat-pres-b", 80, 24, &chat_command(b.socket(), ""));
    bob.wait_screen(SCREEN_TIMEOUT, "b's chat", |s| {
        input_row(s).starts_with("#general>")
    });
    alice.wait_screen(SCREEN_TIMEOUT, "b joining, inline", |s| {
        shows(s, "@pres-b joined the chat")
    });

    bob.enter_line("/away lunch");
    alice.wait_screen(SCREEN_TIMEOUT, "b away", |s| {
        shows(s, "@pres-b is away: lunch")
    });
    alice.enter_line("/who");
    alice.wait_screen(SCREEN_TIMEOUT, "/who listing both", |s| {
        s.iter()
            .any(|r| r.contains("@pres-a") && r.contains("available"))
            && s.iter()
                .any(|r| r.contains("@pres-b") && r.contains("away"))
    });
    // F2 hides the presence lines, and shows them again.
    alice.keys(&["F2"]);
    alice.wait_screen(SCREEN_TIMEOUT, "presence lines hidden", |s| {
        !shows(s, "is away: lunch") && status_row(s).contains("presence hidden")
    });
    alice.keys(&["F2"]);
    alice.wait_screen(SCREEN_TIMEOUT, "presence lines back", |s| {
        shows(s, "is away: lunch")
    });

    bob.enter_line("/quit");
    assert_terminal_restored(&bob, "0");
    alice.wait_screen(SCREEN_TIMEOUT, "b leaving, inline", |s| {
        shows(s, "@pres-b left the chat")
    });

    // Display names and channels (the `nick` and `channels` methods).
    alice.enter_line("/nick Ally");
    alice.wait_screen(SCREEN_TIMEOUT, "the nick set", |s| {
        status_row(s).contains("@pres-a (Ally)")
    });
    alice.enter_line("hello with a display name");
    let said = wait_message(b.socket(), None, "hello with a display name");
    assert_eq!(said.nick.as_deref(), Some("Ally"));
    alice.wait_screen(SCREEN_TIMEOUT, "the nick beside user@node", |s| {
        shows(s, "@pres-a (Ally): hello with a display name")
    });

    alice.enter_line("/join ops");
    alice.enter_line("one line in ops");
    wait_message(a.socket(), Some("ops"), "one line in ops");
    alice.enter_line("/channels");
    alice.wait_screen(SCREEN_TIMEOUT, "/channels", |s| {
        shows(s, "#ops  1 message(s)") && shows(s, "#general")
    });

    alice.enter_line("/quit");
    assert_terminal_restored(&alice, "0");
}

/// PgUp/PgDn scroll back and forth; a message that comes while scrolled up is counted as
/// unread until the view is back at the bottom; Up and Down walk the lines typed before.
#[test]
fn scrollback_and_input_history() {
    let test = "scrollback_and_input_history";
    if !tmux_or_skip(test) {
        return;
    }
    let (daemon, other) = cluster::start_joined_pair(
        Daemon::builder("chat-scroll").loopback(),
        Daemon::builder("chat-scroll-other").loopback(),
    );
    let mut client = other.client();
    for n in 1..=40 {
        client
            .call("send", json!({"text": format!("numbered line {n:02}")}))
            .unwrap_or_else(|e| panic!("send {n}: {e:?}"));
    }
    let tmux = Tmux::start("chat-scroll", 80, 24, &chat_command(daemon.socket(), ""));
    wait_message(daemon.socket(), None, "numbered line 40");
    tmux.wait_screen(SCREEN_TIMEOUT, "the newest lines", |s| {
        shows(s, "numbered line 40") && !shows(s, "numbered line 10")
    });
    tmux.keys(&["PageUp"]);
    let screen = tmux.wait_screen(SCREEN_TIMEOUT, "older lines after PgUp", |s| {
        !shows(s, "numbered line 40") && shows(s, "numbered line 20")
    });
    assert_eq!(input_row(&screen), "#general>");
    client
        .call("send", json!({"text": "arrived while scrolled up"}))
        .unwrap_or_else(|e| panic!("send: {e:?}"));
    tmux.wait_screen(SCREEN_TIMEOUT, "an unread count while scrolled up", |s| {
        status_row(s).contains("1:#general(1)") && !shows(s, "arrived while scrolled up")
    });
    // The view kept its place as the line arrived: one page down and a bit.
    tmux.keys(&["PageDown", "PageDown"]);
    tmux.wait_screen(SCREEN_TIMEOUT, "the bottom again", |s| {
        shows(s, "arrived while scrolled up") && !status_row(s).contains("(1)")
    });

    tmux.enter_line("first typed line");
    tmux.enter_line("second typed line");
    wait_message(daemon.socket(), None, "second typed line");
    tmux.keys(&["Up"]);
    tmux.wait_screen(SCREEN_TIMEOUT, "the last typed line back", |s| {
        input_row(s) == "#general> second typed line"
    });
    tmux.keys(&["Up"]);
    tmux.wait_screen(SCREEN_TIMEOUT, "the one before", |s| {
        input_row(s) == "#general> first typed line"
    });
    tmux.keys(&["Down", "Down"]);
    tmux.wait_screen(SCREEN_TIMEOUT, "an empty line again", |s| {
        input_row(s) == "#general>"
    });
    tmux.enter_line("/quit");
    assert_terminal_restored(&tmux, "0");
}
