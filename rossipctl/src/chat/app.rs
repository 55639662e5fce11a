//! The chat's state, and the only code that changes it: what the stream brought, what the
//! daemon answered, what was typed. Calls to make are queued as [`Request`]s for the loop to
//! hand to the worker; drawing ([`super::draw`]) only reads this.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use rossip_proto::message::validate_channel;
use rossip_proto::rpc::{MessageView, code, user_at_node};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler as _;

use super::api::{NickParams, PresenceParams, PresenceState, SendParams, WhoEntry};
use super::input::{self, HELP, InputHistory, NickChange, Typed};
use super::lines::{self, ACTION_PREFIX, ChatLine, LineBody};
use super::session::{CallError, Reply, Request, StreamNews};
use crate::sanitize::sanitize;
use crate::timefmt::now_ms;

/// Entries a window keeps; the oldest go first.
const WINDOW_CAPACITY: usize = 5_000;

/// What a window shows: a channel, or direct messages with someone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A channel.
    Channel(String),
    /// Direct messages with this node name, `user@node` or node id.
    Query(String),
}

impl Target {
    /// `#ops`, or the name of the person.
    pub fn label(&self) -> String {
        match self {
            Target::Channel(name) => format!("#{}", sanitize(name)),
            Target::Query(name) => sanitize(name).into_owned(),
        }
    }
}

/// Who this chat is, as the daemon told it at the start.
#[derive(Debug, Clone, Default)]
pub struct Me {
    /// This node's id (hex).
    pub node_id: String,
    /// This node's name.
    pub node_name: String,
    /// The user the daemon sees on this chat's socket; None when it did not say.
    pub user: Option<String>,
    /// The display name.
    pub nick: Option<String>,
    /// Whether the daemon took `presence.set` (knows presence).
    pub presence: bool,
}

impl Me {
    /// `user@node`.
    pub fn from(&self) -> String {
        user_at_node(self.user.as_deref().unwrap_or(""), &self.node_name)
    }

    /// Whether this chat's user sent `message` (on this node).
    fn sent(&self, message: &MessageView) -> bool {
        message.origin == self.node_id
            && self.user.as_deref().is_none_or(|user| user == message.user)
    }
}

/// The state of the link to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Following the stream.
    Up,
    /// Lost; trying again.
    Reconnecting,
    /// The stream cannot go on.
    Down(String),
}

/// Available, or away (by `/away`, or idle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Away {
    /// At the keyboard.
    Available,
    /// Away.
    Away {
        /// Set by idleness (and undone by the next key), not by `/away`.
        auto: bool,
    },
}

/// One window: a channel or a conversation.
#[derive(Debug)]
pub struct Window {
    /// What it shows.
    pub target: Target,
    /// Its entries, in order.
    pub lines: Vec<ChatLine>,
    /// The message ids among them.
    ids: BTreeSet<String>,
    /// Messages that came while it was not looked at.
    pub unread: usize,
    /// Among them, a direct message or a mention.
    pub highlight: bool,
    /// Where the unread entries start (drawn as a marker line), until the window is left.
    pub marker: Option<usize>,
    /// Rows scrolled up from the bottom; 0 follows new entries.
    pub scroll: usize,
}

impl Window {
    fn new(target: Target) -> Self {
        Window {
            target,
            lines: Vec::new(),
            ids: BTreeSet::new(),
            unread: 0,
            highlight: false,
            marker: None,
            scroll: 0,
        }
    }

    /// Adds `line` at the end, or by its order among the others (history fetched for a
    /// window just opened); false when it is a message already there.
    fn insert(&mut self, line: ChatLine, placement: Placement) -> bool {
        if let Some(id) = line.message_id()
            && !self.ids.insert(id.to_owned())
        {
            return false;
        }
        let at = match placement {
            Placement::End => self.lines.len(),
            Placement::Ordered => self.lines.partition_point(|l| l.order <= line.order),
        };
        self.lines.insert(at, line);
        if let Some(marker) = self.marker.as_mut()
            && at < *marker
        {
            *marker += 1;
        }
        if self.lines.len() > WINDOW_CAPACITY {
            let gone = self.lines.remove(0);
            if let Some(id) = gone.message_id() {
                self.ids.remove(id);
            }
            self.marker = self.marker.and_then(|m| m.checked_sub(1));
        }
        true
    }

    /// Counts a new entry at the end as unread (the window is not looked at, or scrolled up).
    fn mark_unread(&mut self, highlight: bool) {
        if self.unread == 0 {
            self.marker = Some(self.lines.len().saturating_sub(1));
        }
        self.unread += 1;
        self.highlight |= highlight;
    }
}

/// Where a new entry goes in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// After everything: what arrives live, in the order this node delivered it (a
    /// sender's clock does not hide a message above what is already shown).
    End,
    /// Among the others by time: history read for a window just opened.
    Ordered,
}

/// Settings of a chat.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Away after this long without a key; None: never.
    pub away_after: Option<Duration>,
    /// Messages of history a window joined shows.
    pub backlog: usize,
    /// Time zone of the clock.
    pub tz: TimeZone,
}

/// The chat.
#[derive(Debug)]
pub struct App {
    /// Who this is.
    pub me: Me,
    /// The windows, in the order opened.
    pub windows: Vec<Window>,
    /// The window looked at.
    pub active: usize,
    /// Node names by id, learnt from messages and answers (to name DM recipients).
    node_names: BTreeMap<String, String>,
    /// Whether presence lines are shown.
    pub show_presence: bool,
    /// The link to the daemon.
    pub link: Link,
    /// Available or away.
    pub away: Away,
    /// The input line.
    pub input: Input,
    history: InputHistory,
    /// Rows of the message pane, as last drawn (a page for PgUp/PgDn).
    pub pane_rows: usize,
    /// The last key pressed.
    last_key: Instant,
    /// Direct messages sent and not yet confirmed: id → recipient.
    pending_direct: BTreeMap<String, String>,
    settings: Settings,
    requests: Vec<Request>,
    bell: bool,
    quit: bool,
}

impl App {
    /// A chat of `me` looking at `channel`.
    pub fn new(me: Me, channel: String, settings: Settings, now: Instant) -> Self {
        let mut app = App {
            me,
            windows: vec![Window::new(Target::Channel(channel))],
            active: 0,
            node_names: BTreeMap::new(),
            show_presence: true,
            link: Link::Up,
            away: Away::Available,
            input: Input::default(),
            history: InputHistory::default(),
            pane_rows: 20,
            last_key: now,
            pending_direct: BTreeMap::new(),
            settings,
            requests: Vec::new(),
            bell: false,
            quit: false,
        };
        app.node_names
            .insert(app.me.node_id.clone(), app.me.node_name.clone());
        // The names of the nodes, for direct messages sent to them.
        app.requests.push(Request::Peers { shown: false });
        // The stream's backlog covers every channel: this one's own history fills its window.
        if let Target::Channel(channel) = &app.windows[0].target {
            app.requests.push(Request::History {
                channel: channel.clone(),
                n: app.settings.backlog,
            });
        }
        app.info(format!(
            "you are {} on {}; /help lists the commands",
            sanitize(&lines::with_nick(&app.me.from(), app.me.nick.as_deref())),
            app.windows[0].target.label()
        ));
        if !app.me.presence {
            app.info("this rossipd does not support presence: others do not see you in /who");
        }
        app
    }

    /// The calls to make, in order.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    /// Whether to ring the terminal bell (once).
    pub fn take_bell(&mut self) -> bool {
        std::mem::take(&mut self.bell)
    }

    /// Whether the person asked to leave.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// The window looked at.
    pub fn current(&self) -> &Window {
        &self.windows[self.active]
    }

    /// What the stream brought.
    pub fn on_stream(&mut self, news: StreamNews) {
        match news {
            StreamNews::Message { message, live } => self.on_message(&message, live),
            StreamNews::Presence { entry, previous } => self.on_presence(&entry, previous),
            StreamNews::DirectStatus { id, status, reason } => {
                let pending = self.pending_direct.remove(&id);
                if pending.is_none() && status == "delivered" {
                    // `send` already said so (it waits briefly for the ack): only a
                    // message reported queued gets a second line when it arrives.
                    return;
                }
                let to = pending.unwrap_or_else(|| "the recipient".to_owned());
                let reason = reason
                    .map(|r| format!(": {}", sanitize(&r)))
                    .unwrap_or_default();
                let text = format!("direct message to {to} {}{reason}", sanitize(&status));
                if status == "delivered" {
                    self.info(text);
                } else {
                    self.error(text);
                }
            }
            StreamNews::Lagged { dropped } => self.error(format!(
                "this chat fell behind: {dropped} message(s) left rossipd's history unread"
            )),
            StreamNews::Connected { presence, resumed } => {
                if resumed {
                    self.info("reconnected to rossipd");
                    if self.me.presence {
                        // The old connection's close was our leaving: be back.
                        self.requests
                            .push(Request::Presence(self.presence_params()));
                    }
                } else if !presence && self.me.presence {
                    self.info("this rossipd does not report presence: no join/leave lines");
                }
                self.link = Link::Up;
            }
            StreamNews::StartedOver { reason } => self.error(format!(
                "{}; going on from the last message shown",
                sanitize(&reason)
            )),
            StreamNews::Lost { reason } => {
                if self.link == Link::Up {
                    self.error(format!("{}; reconnecting…", sanitize(&reason)));
                }
                self.link = Link::Reconnecting;
            }
            StreamNews::Failed { reason } => {
                self.error(format!("the message stream stopped: {}", sanitize(&reason)));
                self.link = Link::Down(sanitize(&reason).into_owned());
            }
        }
    }

    fn on_message(&mut self, message: &MessageView, live: bool) {
        self.learn_node(&message.origin, &message.origin_name);
        let mine = self.me.sent(message);
        let (window, to) = match &message.to {
            Some(recipient) => {
                let node = self
                    .node_names
                    .get(&recipient.node)
                    .cloned()
                    .unwrap_or_else(|| recipient.node.chars().take(8).collect());
                let to = user_at_node(recipient.user.as_deref().unwrap_or(""), &node);
                // The window is the other person's: the recipient of what this user sent,
                // the sender of anything else.
                let window = if mine {
                    self.query_window(&to, &node)
                } else {
                    self.query_window(&message.from, &message.origin_name)
                };
                (Some(window), Some(to))
            }
            None => (
                self.windows
                    .iter()
                    .position(|w| w.target == Target::Channel(message.channel.clone())),
                None,
            ),
        };
        let Some(window) = window else {
            return;
        };
        let mention = !mine
            && [self.me.user.as_deref(), self.me.nick.as_deref()]
                .into_iter()
                .flatten()
                .any(|name| lines::mentions(&message.text, name));
        let direct = to.is_some() && !mine;
        let line = ChatLine::message(message, to, mention, &self.settings.tz);
        if !self.windows[window].insert(line, Placement::End) || !live {
            return;
        }
        if direct || mention {
            self.bell = true;
        }
        let looked_at = window == self.active && self.windows[window].scroll == 0;
        if !mine && !looked_at {
            self.windows[window].mark_unread(direct || mention);
        }
        if window == self.active && self.windows[window].scroll > 0 {
            // Keep the rows in view where they are.
            self.windows[window].scroll += 1;
        }
    }

    fn on_presence(&mut self, entry: &WhoEntry, previous: Option<String>) {
        let Some(line) =
            ChatLine::presence(entry, previous.as_deref(), now_ms(), &self.settings.tz)
        else {
            return;
        };
        for window in &mut self.windows {
            let concerned = match &window.target {
                Target::Channel(_) => true,
                Target::Query(name) => *name == entry.from || *name == entry.node_name,
            };
            if concerned {
                window.insert(line.clone(), Placement::End);
            }
        }
    }

    /// The window of direct messages with `peer` (`user@node`, or a node name), opened if
    /// there is none; a window opened by node name (`/query h2`) also takes the messages of
    /// `user@h2`.
    fn query_window(&mut self, peer: &str, node_name: &str) -> usize {
        let exact = Target::Query(peer.to_owned());
        if let Some(at) = self.windows.iter().position(|w| w.target == exact) {
            return at;
        }
        let by_node = Target::Query(node_name.to_owned());
        if let Some(at) = self.windows.iter().position(|w| w.target == by_node) {
            return at;
        }
        self.windows.push(Window::new(exact));
        self.windows.len() - 1
    }

    /// What the daemon answered.
    pub fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Presence { params, result } => match result {
                Ok(answer) => {
                    self.me.user = Some(answer.user);
                    self.me.presence = true;
                    if params.state == PresenceState::Away && self.away == Away::Available {
                        self.away = Away::Away { auto: false };
                    }
                }
                Err(err) => self.call_failed("/away", &err),
            },
            Reply::Nick { params, result } => match result {
                Ok(answer) => {
                    self.me.user = Some(answer.user);
                    self.me.nick = answer.nick;
                    let who = lines::with_nick(&self.me.from(), self.me.nick.as_deref());
                    let text = if params.clear {
                        format!("display name removed: you are {}", sanitize(&who))
                    } else {
                        format!("you are {}", sanitize(&who))
                    };
                    self.info(text);
                }
                Err(CallError::Rpc(e)) if params.nick.is_some() => {
                    self.error(format!(
                        "cannot use that display name: {}",
                        sanitize(&e.message)
                    ));
                }
                Err(err) => self.call_failed("/nick", &err),
            },
            Reply::Who(Ok(who)) => {
                if who.users.is_empty() {
                    self.info("no one is in a chat");
                }
                for entry in &who.users {
                    let status = entry
                        .status
                        .as_deref()
                        .map(|s| format!(": {}", sanitize(s)))
                        .unwrap_or_default();
                    let since = lines::clock(entry.since, &self.settings.tz);
                    self.info(format!(
                        "{} {} since {since}{status}",
                        lines::person(entry),
                        sanitize(&entry.state)
                    ));
                }
            }
            Reply::Who(Err(err)) => self.call_failed("/who", &err),
            Reply::Channels(Ok(channels)) => {
                if channels.channels.is_empty() {
                    self.info("no channel has messages yet");
                }
                for channel in &channels.channels {
                    let last = channel.last_ts.map_or_else(
                        || "never".to_owned(),
                        |ts| lines::clock(ts, &self.settings.tz),
                    );
                    self.info(format!(
                        "#{}  {} message(s), last at {last}",
                        sanitize(&channel.name),
                        channel.messages
                    ));
                }
            }
            Reply::Channels(Err(err)) => self.call_failed("/channels", &err),
            Reply::Peers {
                shown: false,
                result,
            } => {
                for peer in result.iter().flat_map(|peers| &peers.peers) {
                    self.learn_node(&peer.id, &peer.name);
                }
            }
            Reply::Peers {
                shown: true,
                result: Ok(peers),
            } => {
                if peers.peers.is_empty() {
                    self.info("no other node is known");
                }
                for peer in &peers.peers {
                    self.learn_node(&peer.id, &peer.name);
                    self.info(format!(
                        "{} {} {} {}",
                        sanitize(&peer.name),
                        sanitize(&peer.id.chars().take(8).collect::<String>()),
                        sanitize(&peer.addr),
                        peer.state.as_str()
                    ));
                }
            }
            Reply::Peers {
                shown: true,
                result: Err(err),
            } => self.call_failed("/peers", &err),
            Reply::Sent {
                params,
                from,
                result,
            } => self.on_sent(params, from, result),
            Reply::History { channel, result } => match result {
                Ok(history) => {
                    let target = Target::Channel(channel);
                    for message in &history.messages {
                        self.node_names
                            .insert(message.origin.clone(), message.origin_name.clone());
                    }
                    if let Some(window) = self.windows.iter_mut().find(|w| w.target == target) {
                        for message in &history.messages {
                            let line = ChatLine::message(message, None, false, &self.settings.tz);
                            window.insert(line, Placement::Ordered);
                        }
                    }
                }
                Err(err) => self.call_failed("history", &err),
            },
        }
    }

    fn on_sent(
        &mut self,
        params: SendParams,
        from: Target,
        result: Result<super::api::SendResult, CallError>,
    ) {
        let sent = match result {
            Ok(sent) => sent,
            Err(CallError::Rpc(e)) if e.code == code::INVALID_PARAMS && params.to.is_some() => {
                // A daemon from before direct messages refuses the `to` field.
                self.error(format!(
                    "this rossipd does not support direct messages ({})",
                    sanitize(&e.message)
                ));
                return;
            }
            Err(CallError::Rpc(e)) if e.data.is_some() && params.to.is_some() => {
                let candidates = e
                    .data
                    .as_ref()
                    .and_then(|d| d.get("candidates"))
                    .and_then(|c| c.as_array())
                    .map(|list| {
                        list.iter()
                            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .filter(|list| !list.is_empty())
                    .map(|list| format!(" (did you mean: {list}?)"))
                    .unwrap_or_default();
                let reason = e
                    .data
                    .as_ref()
                    .and_then(|d| d.get("reason"))
                    .and_then(|r| r.as_str())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                self.error(
                    sanitize(&format!(
                        "cannot send to {}: {}{reason}{candidates}",
                        params.to.as_deref().unwrap_or(""),
                        e.message
                    ))
                    .into_owned(),
                );
                return;
            }
            Err(err) => {
                self.call_failed("send", &err);
                return;
            }
        };
        let Some(direct) = sent.direct else {
            return;
        };
        if !direct.node.is_empty() {
            let node_name = direct
                .to
                .rsplit_once('@')
                .map_or(direct.to.as_str(), |(_, node)| node)
                .to_owned();
            self.learn_node(&direct.node, &node_name);
        }
        // A window opened by a name the daemon reads otherwise (`/query 3fa2`) takes the
        // name the daemon resolved it to.
        if let Target::Query(name) = &from
            && *name != direct.to
        {
            let renamed = Target::Query(direct.to.clone());
            if !self.windows.iter().any(|w| w.target == renamed)
                && let Some(window) = self.windows.iter_mut().find(|w| w.target == from)
            {
                window.target = renamed;
            }
        }
        let to = sanitize(&direct.to).into_owned();
        let elsewhere = self.windows[self.active].target != from
            && self.windows[self.active].target != Target::Query(direct.to.clone());
        match direct.status.as_str() {
            "delivered" if elsewhere => self.info(format!("direct message to {to} delivered")),
            "delivered" => {}
            "queued" => {
                self.pending_direct.insert(sent.id, to.clone());
                self.info(format!(
                    "{to} is not reachable now: the message is queued and will be delivered \
                     when they are back"
                ));
            }
            other => self.info(format!("direct message to {to}: {}", sanitize(other))),
        }
    }

    /// Remembers the name of node `id`; a direct-message window named by the start of that
    /// id (its copy arrived before the name was known) takes the name, joining a window
    /// that already has it.
    fn learn_node(&mut self, id: &str, name: &str) {
        if self.node_names.get(id).is_some_and(|known| known == name) {
            return;
        }
        self.node_names.insert(id.to_owned(), name.to_owned());
        let short: String = id.chars().take(8).collect();
        let mut index = 0;
        while index < self.windows.len() {
            let Target::Query(peer) = &self.windows[index].target else {
                index += 1;
                continue;
            };
            let (user, node) = peer.rsplit_once('@').unwrap_or(("", peer));
            if node != short {
                index += 1;
                continue;
            }
            let named = Target::Query(user_at_node(user, name));
            match self.windows.iter().position(|w| w.target == named) {
                Some(existing) => {
                    let lines = std::mem::take(&mut self.windows[index].lines);
                    for line in lines {
                        self.windows[existing].insert(line, Placement::Ordered);
                    }
                    self.windows.remove(index);
                    if self.active >= index && self.active > 0 {
                        self.active -= 1;
                    }
                }
                None => {
                    self.windows[index].target = named;
                    index += 1;
                }
            }
        }
    }

    fn call_failed(&mut self, what: &str, err: &CallError) {
        let text = match err {
            CallError::Unsupported { method } => {
                format!("this rossipd does not support {what} (no `{method}` method)")
            }
            CallError::Rpc(e) => format!("{what}: {} (code {})", sanitize(&e.message), e.code),
            CallError::Unreachable(reason) => format!("{what}: {}", sanitize(reason)),
        };
        self.error(text);
    }

    /// A terminal event: keys, paste, resize.
    pub fn on_terminal(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                self.last_key = now;
                if let Away::Away { auto: true } = self.away {
                    self.set_presence(PresenceState::Available, None);
                }
                self.on_key(*key, event);
            }
            Event::Paste(text) => {
                // One line at a time: a pasted newline does not send.
                let text = text.replace(['\r', '\n'], " ");
                let value = format!("{}{}", self.input.value(), text);
                let cursor = value.chars().count();
                self.input = Input::new(value).with_cursor(cursor);
            }
            _ => {}
        }
    }

    fn on_key(&mut self, key: KeyEvent, event: &Event) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c') if ctrl => self.quit = true,
            KeyCode::Char('d') if ctrl && self.input.value().is_empty() => self.quit = true,
            KeyCode::Char('n') if ctrl => self.switch_by(1),
            KeyCode::Char('p') if ctrl => self.switch_by(self.windows.len() - 1),
            KeyCode::Right if alt => self.switch_by(1),
            KeyCode::Left if alt => self.switch_by(self.windows.len() - 1),
            KeyCode::Char(digit @ '1'..='9') if alt => {
                let index = (digit as usize) - ('1' as usize);
                if index < self.windows.len() {
                    self.switch_to(index);
                }
            }
            KeyCode::F(2) => self.show_presence = !self.show_presence,
            KeyCode::Enter => {
                let line = self.input.value_and_reset();
                self.history.push(&line);
                self.submit(&line);
            }
            KeyCode::Up => {
                if let Some(older) = self.history.older(self.input.value()) {
                    self.input = Input::new(older.to_owned());
                }
            }
            KeyCode::Down => {
                if let Some(newer) = self.history.newer() {
                    self.input = Input::new(newer.to_owned());
                }
            }
            KeyCode::PageUp => self.scroll_by(self.page() as isize),
            KeyCode::PageDown => self.scroll_by(-(self.page() as isize)),
            _ => {
                self.input.handle_event(event);
            }
        }
    }

    fn page(&self) -> usize {
        self.pane_rows.saturating_sub(2).max(1)
    }

    fn scroll_by(&mut self, rows: isize) {
        let window = &mut self.windows[self.active];
        window.scroll = window.scroll.saturating_add_signed(rows);
        if window.scroll == 0 {
            window.unread = 0;
            window.highlight = false;
        }
    }

    /// Clamps the scroll of the current window to what there is to scroll (the drawing knows
    /// how many rows the entries take).
    pub fn clamp_scroll(&mut self, max: usize) {
        let window = &mut self.windows[self.active];
        window.scroll = window.scroll.min(max);
    }

    fn switch_by(&mut self, step: usize) {
        let next = (self.active + step) % self.windows.len();
        self.switch_to(next);
    }

    fn switch_to(&mut self, index: usize) {
        if index == self.active {
            return;
        }
        // Everything in the window left has been seen: its marker goes.
        let left = &mut self.windows[self.active];
        left.marker = None;
        self.active = index;
        let window = &mut self.windows[index];
        window.unread = 0;
        window.highlight = false;
        window.scroll = 0;
    }

    /// Leaves auto-away when the idle time is over.
    pub fn on_tick(&mut self, now: Instant) {
        if let Some(after) = self.settings.away_after
            && self.away == Away::Available
            && self.me.presence
            && now.duration_since(self.last_key) >= after
        {
            self.away = Away::Away { auto: true };
            self.requests.push(Request::Presence(PresenceParams {
                state: PresenceState::Away,
                status: Some("idle".to_owned()),
            }));
        }
    }

    fn presence_params(&self) -> PresenceParams {
        match self.away {
            Away::Available => PresenceParams {
                state: PresenceState::Available,
                status: None,
            },
            Away::Away { auto } => PresenceParams {
                state: PresenceState::Away,
                status: auto.then(|| "idle".to_owned()),
            },
        }
    }

    fn set_presence(&mut self, state: PresenceState, status: Option<String>) {
        self.away = match state {
            PresenceState::Available => Away::Available,
            PresenceState::Away => Away::Away { auto: false },
        };
        self.requests
            .push(Request::Presence(PresenceParams { state, status }));
    }

    /// Acts on an entered line.
    pub fn submit(&mut self, line: &str) {
        match input::parse(line) {
            Typed::Nothing => {}
            Typed::Say(text) => self.say(text),
            Typed::Me(action) => self.say(format!("{ACTION_PREFIX}{action}")),
            Typed::Join(channel) => self.join(channel),
            Typed::Part => self.part(),
            Typed::Msg { to, text } => {
                let params = SendParams {
                    text,
                    channel: None,
                    to: Some(to.clone()),
                };
                self.requests.push(Request::Send {
                    params,
                    from: Target::Query(to),
                });
            }
            Typed::Query(name) => {
                let target = Target::Query(name);
                let index = match self.windows.iter().position(|w| w.target == target) {
                    Some(index) => index,
                    None => {
                        self.windows.push(Window::new(target));
                        self.windows.len() - 1
                    }
                };
                self.switch_to(index);
            }
            Typed::Nick(change) => {
                let params = match change {
                    NickChange::Show => NickParams::default(),
                    NickChange::Set(nick) => NickParams {
                        nick: Some(nick),
                        clear: false,
                    },
                    NickChange::Clear => NickParams {
                        nick: None,
                        clear: true,
                    },
                };
                self.requests.push(Request::Nick(params));
            }
            Typed::Who => self.requests.push(Request::Who),
            Typed::Away(Some(status)) => {
                self.info(format!("you are away: {}", sanitize(&status)));
                self.set_presence(PresenceState::Away, Some(status));
            }
            Typed::Away(None) if self.away != Away::Available => self.back(),
            Typed::Away(None) => {
                self.info("you are away");
                self.set_presence(PresenceState::Away, None);
            }
            Typed::Back => self.back(),
            Typed::Peers => self.requests.push(Request::Peers { shown: true }),
            Typed::Channels => self.requests.push(Request::Channels),
            Typed::TogglePresence => {
                self.show_presence = !self.show_presence;
                let state = if self.show_presence {
                    "shown"
                } else {
                    "hidden"
                };
                self.info(format!("join/leave/away lines are {state} (F2 toggles)"));
            }
            Typed::Help => {
                for line in HELP {
                    self.info(*line);
                }
            }
            Typed::Quit => self.quit = true,
            Typed::Usage(usage) => self.error(format!("usage: {usage}")),
            Typed::Unknown(name) => self.error(format!(
                "unknown command /{} (/help lists them; //text sends text that starts with /)",
                sanitize(&name)
            )),
        }
    }

    fn back(&mut self) {
        self.info("you are back");
        self.set_presence(PresenceState::Available, None);
    }

    fn say(&mut self, text: String) {
        let target = self.windows[self.active].target.clone();
        let params = match &target {
            Target::Channel(channel) => SendParams {
                text,
                channel: Some(channel.clone()),
                to: None,
            },
            Target::Query(name) => SendParams {
                text,
                channel: None,
                to: Some(name.clone()),
            },
        };
        self.requests.push(Request::Send {
            params,
            from: target,
        });
        // What you send is what you read last.
        self.windows[self.active].scroll = 0;
    }

    fn join(&mut self, channel: String) {
        if let Err(err) = validate_channel(&channel) {
            self.error(format!("cannot join #{}: {err}", sanitize(&channel)));
            return;
        }
        let target = Target::Channel(channel.clone());
        if let Some(index) = self.windows.iter().position(|w| w.target == target) {
            self.switch_to(index);
            return;
        }
        self.windows.push(Window::new(target));
        let index = self.windows.len() - 1;
        self.switch_to(index);
        self.info(format!("joined #{}", sanitize(&channel)));
        self.requests.push(Request::History {
            channel,
            n: self.settings.backlog,
        });
    }

    fn part(&mut self) {
        if self.windows.len() == 1 {
            self.error("this is the last window: /quit to leave");
            return;
        }
        let gone = self.windows.remove(self.active);
        self.active = self.active.min(self.windows.len() - 1);
        let window = &mut self.windows[self.active];
        window.unread = 0;
        window.highlight = false;
        window.scroll = 0;
        self.info(format!("left {}", gone.target.label()));
    }

    /// Adds an info line to the window looked at.
    pub fn info(&mut self, text: impl Into<String>) {
        self.local(LineBody::Info(text.into()));
    }

    /// Adds an error line to the window looked at.
    pub fn error(&mut self, text: impl Into<String>) {
        self.local(LineBody::Error(text.into()));
    }

    fn local(&mut self, body: LineBody) {
        let line = ChatLine::local(body, now_ms(), &self.settings.tz);
        self.windows[self.active].insert(line, Placement::End);
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
