// The rossip web chat: one page over rossipd's HTTP endpoints and its /ws event stream.
//
// Everything that came over the network is put into the page as text (textContent,
// createTextNode), never as HTML: a message is anyone's input. The page is served with a
// Content-Security-Policy that forbids inline script and style, so this file is the only
// script and elements are styled by class, never by a style attribute.
//
// One `state` object holds what the page knows; the functions below change it and the DOM
// together. The DOM ids and classes are a contract with the browser tests (README.md).
'use strict';

const DEFAULT_CHANNEL = 'general';
// Messages the first connection replays (all channels), and a channel window fetches
// when it is first shown (a busy channel can push a quiet one out of the replay).
const BACKLOG = 200;
const CHANNEL_HISTORY = 100;
// Entries a window keeps in the page; the oldest go first.
const WINDOW_CAPACITY = 2000;
const AWAY_AFTER_MS = 5 * 60 * 1000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;
const EVENTS = 'message,peer,presence,direct_status';
// `rossipctl chat` sends `/me waves` as the text "/me waves", so that `rossipctl tail` and
// other clients still show it readably; chats show it as `* user@node waves`.
const ACTION_PREFIX = '/me ';
const LOGIN_HINT = 'run `rossipctl web` on this machine and open the link it prints';
const NICK_COLOURS = 8;
const CODE = {
  UNAUTHORIZED: -32018,
  FOREIGN_CURSOR: -32012,
  UNKNOWN_RECIPIENT: -32014,
  AMBIGUOUS_RECIPIENT: -32015,
};
const HELP = [
  '/join CH        open channel CH (or go to its window)',
  '/msg NAME text  direct message to NAME (node, user@node or node id)',
  '/query NAME     open a window of direct messages with NAME',
  '/me action      say an action (* you waves)',
  '/nick [NAME|-]  show, set or (-) clear your display name',
  '/away [text]    away, with a status; /back: available again',
  '//text          send text that starts with /',
  'keys: Enter sends, Shift+Enter new line, Alt+Up/Down switch window, Up/Down typed lines,',
  '      PgUp/PgDn scroll, Esc closes the menu',
];

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $('conn'), me: $('me'), mynick: $('mynick'), title: $('title'),
  menu: $('menu'), menuUnread: $('menu-unread'),
  channels: $('channels'), who: $('who'), peers: $('peers'),
  messages: $('messages'), error: $('error'), login: $('login'), retry: $('retry'),
  composer: $('composer'), input: $('input'),
};

const state = {
  me: null, // GET /me: {user, from, node, node_name, nick}
  nodeNames: new Map(), // node id → name, to name the recipients of direct messages
  windows: new Map(), // '#channel' or '@user@node' → window (see newWindow)
  active: null, // key of the window shown
  previous: null, // and of the one shown before, to go back to
  seen: new Set(), // ids of the messages shown: a message is never shown twice
  cursor: null, // delivery cursor of the last message the stream brought: where to resume
  socket: null,
  retryMs: RETRY_MIN_MS,
  retryTimer: null,
  everConnected: false,
  // Replayed history (a connection without `after`) is not unread: messages up to this
  // delivery cursor were there before the page looked.
  replayUntil: null,
  peers: new Map(), // node id → PeerView
  who: new Map(), // user@node → PresenceView
  // Peer and presence events that came while the lists were being fetched: applied over
  // the fetched lists, which may be older than them.
  heldEvents: null,
  pendingDirect: new Map(), // id of a queued direct message → its window key
  away: { idle: false, manual: false, status: null },
  idleTimer: null,
  typed: [], // lines entered, for Up/Down
  typedAt: null,
  draft: '',
  login: false,
};

// ---- small helpers ----

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A sidebar entry: the whole line is one button, so that Tab reaches it and Enter works.
function entry(li, title, ...children) {
  const button = make('button');
  button.type = 'button';
  if (title) button.title = title;
  button.append(...children);
  li.append(button);
  return li;
}

function userAtNode(user, node) {
  return user ? `${user}@${node}` : node;
}

function withNick(from, nick) {
  return nick ? `${from} (${nick})` : from;
}

// One of the classes c0..c7, the same for a sender everywhere (FNV-1a of `user@node`).
function colourClass(from) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < from.length; i++) {
    hash ^= from.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `c${hash % NICK_COLOURS}`;
}

function clock(ms) {
  const date = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// Cursors are `<store id>-<number>`; only the number orders them within one store.
function cursorNumber(cursor) {
  const match = /-(\d+)$/.exec(cursor || '');
  return match ? Number(match[1]) : NaN;
}

// Whether `text` names `name` as a word: "bob," and "@bob" do, "bobby" does not.
function mentions(text, name) {
  if (!name) return false;
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}_-])${escaped}($|[^\\p{L}\\p{N}_-])`, 'iu').test(text);
}

// ---- the daemon's JSON endpoints ----

class ApiError extends Error {
  constructor(status, code, message, data) {
    super(message);
    this.status = status;
    this.code = code;
    this.data = data;
  }
}

async function api(method, path, body) {
  const init = { method, cache: 'no-store', credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, null, 'rossipd is not reachable');
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // An answer that is not JSON (a proxy's error page): the status says enough.
  }
  if (response.ok) return payload;
  const error = (payload && payload.error) || {};
  if (response.status === 401 || error.code === CODE.UNAUTHORIZED) enterLogin();
  throw new ApiError(response.status, error.code, error.message || `HTTP ${response.status}`, error.data);
}

// ---- connection state, errors, login ----

function setConn(name, text) {
  ui.conn.dataset.state = name;
  ui.conn.textContent = text;
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = '';
}

// A token is needed and the page has none (or a stale one): nothing works until the person
// opens a login link, so stop retrying and say how to get one.
function enterLogin() {
  if (state.login) return;
  state.login = true;
  clearTimeout(state.retryTimer);
  if (state.socket) state.socket.close();
  state.socket = null;
  setConn('login', 'login needed');
  document.body.classList.add('login');
  ui.login.hidden = false;
  showError(`Login needed: ${LOGIN_HINT}.`);
}

// What went wrong with a call, in words, with the recipients the daemon suggests.
function describeFailure(what, err) {
  let text = `${what}: ${err.message}`;
  if (err.code) text += ` (code ${err.code})`;
  const data = err.data || {};
  if (data.reason) text += `: ${data.reason}`;
  if (Array.isArray(data.candidates) && data.candidates.length) {
    const names = data.candidates.map((c) => `${c.name} (${String(c.id).slice(0, 8)})`);
    text += `; did you mean: ${names.join(', ')}?`;
  }
  return text;
}

function failed(what, err) {
  if (state.login) return;
  showError(describeFailure(what, err));
}

// ---- windows ----

function newWindow(key) {
  const direct = key.startsWith('@');
  const li = make('li', direct ? 'dm' : 'channel');
  li.dataset.window = key;
  const unread = make('span', 'unread');
  unread.hidden = true;
  entry(li, '', make('span', 'name', direct ? key.slice(1) : key), unread);
  return {
    key,
    direct,
    name: key.slice(1), // the channel, or the recipient as `send` takes it
    items: [], // {id (of a message), order, el}, as shown
    unread: 0,
    highlight: false,
    markerBefore: null, // the first unread item, until the window is left
    historyLoaded: direct, // /messages has no filter for direct messages
    li,
  };
}

// #general first, then channels, then direct messages, each by name.
function windowRank(key) {
  if (key === `#${DEFAULT_CHANNEL}`) return `0`;
  return (key.startsWith('#') ? '1' : '2') + key.slice(1).toLowerCase();
}

function ensureWindow(key) {
  let win = state.windows.get(key);
  if (win) return win;
  win = newWindow(key);
  state.windows.set(key, win);
  placeInSidebar(win);
  return win;
}

function placeInSidebar(win) {
  const rank = windowRank(win.key);
  const after = Array.from(ui.channels.children).find((li) => windowRank(li.dataset.window) > rank);
  ui.channels.insertBefore(win.li, after || null);
}

function activeWindow() {
  return state.windows.get(state.active);
}

const marker = make('li', 'marker', 'unread');

function switchTo(key) {
  const win = state.windows.get(key);
  if (!win) return;
  const left = activeWindow();
  if (left && left !== win) {
    // Everything in the window left has been seen: its marker goes.
    left.markerBefore = null;
    left.li.classList.remove('active');
    left.li.removeAttribute('aria-current');
    state.previous = left.key;
  }
  state.active = key;
  win.li.classList.add('active');
  win.li.setAttribute('aria-current', 'true');
  ui.title.textContent = win.direct ? win.name : win.key;
  ui.messages.replaceChildren(...win.items.map((item) => item.el));
  if (win.markerBefore) ui.messages.insertBefore(marker, win.markerBefore.el);
  setUnread(win, 0);
  if (win.markerBefore) marker.scrollIntoView({ block: 'center' });
  else scrollToEnd();
  if (!win.historyLoaded) loadChannelHistory(win);
  closeMenu();
}

function switchBy(step) {
  const keys = Array.from(ui.channels.children, (li) => li.dataset.window);
  const at = keys.indexOf(state.active);
  if (keys.length) switchTo(keys[(at + step + keys.length) % keys.length]);
}

function setUnread(win, count, highlight) {
  win.unread = count;
  win.highlight = count > 0 && (win.highlight || Boolean(highlight));
  const badge = win.li.querySelector('.unread');
  badge.textContent = count ? String(count) : '';
  badge.hidden = count === 0;
  win.li.classList.toggle('has-unread', count > 0);
  win.li.classList.toggle('highlight', win.highlight);
  let total = 0;
  for (const w of state.windows.values()) total += w.unread;
  ui.menuUnread.textContent = total ? String(total) : '';
  ui.menuUnread.hidden = total === 0;
  document.title = total ? `(${total}) rossip` : 'rossip';
}

// The window takes the name the daemon resolved its recipient to (`/msg 3fa2 hi`): merged
// into the window of that name if there is one.
function renameWindow(win, key) {
  if (win.key === key) return;
  const existing = state.windows.get(key);
  const wasActive = state.active === win.key;
  state.windows.delete(win.key);
  win.li.remove();
  if (existing) {
    for (const item of win.items) insertItem(existing, item, 'ordered');
    setUnread(existing, existing.unread + win.unread, win.highlight);
  } else {
    const renamed = newWindow(key);
    renamed.items = win.items;
    state.windows.set(key, renamed);
    placeInSidebar(renamed);
    setUnread(renamed, win.unread, win.highlight);
  }
  for (const [id, target] of state.pendingDirect) {
    if (target === win.key) state.pendingDirect.set(id, key);
  }
  if (wasActive) {
    state.active = null;
    switchTo(key);
  }
}

function closeWindow(win) {
  state.windows.delete(win.key);
  win.li.remove();
  if (state.active === win.key) {
    state.active = null;
    switchTo(state.windows.has(state.previous) ? state.previous : `#${DEFAULT_CHANNEL}`);
  }
}

// Puts an entry into a window: at the end (what the stream delivers, in the order this
// node delivered it, so a sender's clock cannot hide a message above what is shown), or by
// its time among the others (history fetched for a window).
function insertItem(win, item, placement) {
  let at = win.items.length;
  if (placement === 'ordered') {
    while (at > 0 && compareOrder(win.items[at - 1].order, item.order) > 0) at--;
  }
  win.items.splice(at, 0, item);
  const shown = state.active === win.key;
  if (shown) {
    const next = win.items[at + 1];
    ui.messages.insertBefore(item.el, next ? next.el : null);
  }
  if (win.items.length > WINDOW_CAPACITY) {
    const gone = win.items.shift();
    gone.el.remove();
    if (win.markerBefore === gone) win.markerBefore = win.items[0];
  }
}

// History order: (ts, ts_logical, origin, seq), as rossipd orders it.
function compareOrder(a, b) {
  for (let i = 0; i < a.length; i++) {
    if (a[i] < b[i]) return -1;
    if (a[i] > b[i]) return 1;
  }
  return 0;
}

function isAtEnd() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
}

function scrollToEnd() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

// A line the page says (help, a reconnection, a gap), not a message.
function note(text, kind = 'info', win = activeWindow()) {
  if (!win) return;
  const li = make('li', `note ${kind}`);
  li.append(make('time', 'time', clock(Date.now())), make('span', 'text', text));
  const follow = isAtEnd();
  insertItem(win, { order: [Date.now(), Infinity, '', 0], el: li }, 'end');
  if (follow) scrollToEnd();
}

// ---- messages ----

function learnNode(id, name) {
  if (id && name) state.nodeNames.set(id, name);
}

// A node this page never heard of (it left before the page loaded) is named by its id.
function nodeName(id) {
  return state.nodeNames.get(id) || id.slice(0, 8);
}

function isMine(message) {
  const me = state.me;
  return Boolean(me) && message.origin === me.node && (!me.user || message.user === me.user);
}

function senderOf(message) {
  return message.from || userAtNode(message.user, message.origin_name);
}

// The window a message belongs to: its channel's, or for a direct message the other
// person's (the recipient of what this user sent, the sender of anything else). A window
// opened by node name (`/query bravo`) also takes the messages of `bob@bravo`.
function windowOf(message) {
  if (!message.to) return ensureWindow(`#${message.channel || DEFAULT_CHANNEL}`);
  let peer;
  let node;
  if (isMine(message)) {
    node = nodeName(message.to.node);
    peer = userAtNode(message.to.user || '', node);
  } else {
    node = message.origin_name;
    peer = senderOf(message);
  }
  return state.windows.get(`@${peer}`) || state.windows.get(`@${node}`) || ensureWindow(`@${peer}`);
}

function messageElement(message, { mine, mention }) {
  const li = make('li', 'msg');
  li.dataset.id = message.id;
  li.dataset.cursor = message.cursor || '';
  const text = message.text || '';
  const action = text.startsWith(ACTION_PREFIX);
  li.classList.toggle('action', action);
  li.classList.toggle('direct', Boolean(message.to));
  li.classList.toggle('mine', mine);
  li.classList.toggle('mention', mention);

  const when = new Date(message.ts);
  const time = make('time', 'time', clock(message.ts));
  if (!Number.isNaN(when.getTime())) {
    time.dateTime = when.toISOString();
    time.title = when.toLocaleString();
  }
  const sender = senderOf(message);
  const from = make('span', `from ${colourClass(sender)}`, withNick(sender, message.nick));
  if (message.to) {
    from.title = `direct message to ${userAtNode(message.to.user || '', nodeName(message.to.node))}`;
  }
  const verified = make('span', 'verified', message.verified ? '✓' : '⚠');
  verified.title = message.verified
    ? `signature verified (key ${message.key || 'unknown'})`
    : 'NOT VERIFIED: the signature of this message was not checked';
  li.classList.toggle('unverified', !message.verified);
  li.append(time, from);
  if (message.name_trust === 'changed') {
    const trust = make('span', 'trust', '⚠ name changed key');
    trust.title = `${message.origin_name} was first seen with another key: this may be another machine`;
    li.append(trust);
  }
  li.append(verified, make('span', 'text', action ? text.slice(ACTION_PREFIX.length) : text));
  return li;
}

// A message from the stream (placement 'end') or from history ('ordered'); `replayed`: it
// was there before the page looked, so it is not unread.
function addMessage(message, { placement, replayed }) {
  if (!message || typeof message.id !== 'string' || state.seen.has(message.id)) return;
  state.seen.add(message.id);
  learnNode(message.origin, message.origin_name);
  const win = windowOf(message);
  const mine = isMine(message);
  const me = state.me || {};
  const mention = !mine && [me.user, me.nick].some((name) => mentions(message.text || '', name));
  const item = {
    id: message.id,
    order: [message.ts, message.ts_logical, message.origin, message.seq],
    el: messageElement(message, { mine, mention }),
  };
  const shown = state.active === win.key;
  const follow = shown && isAtEnd();
  insertItem(win, item, placement);
  if (follow) scrollToEnd();
  if (mine || replayed || (shown && !document.hidden)) return;
  // Unread: counted, and a marker where the unread part of the window starts.
  if (win.unread === 0) {
    win.markerBefore = item;
    if (shown) ui.messages.insertBefore(marker, item.el);
  }
  setUnread(win, win.unread + 1, Boolean(message.to) || mention);
}

async function loadChannelHistory(win) {
  win.historyLoaded = true;
  const query = new URLSearchParams({ channel: win.name, n: String(CHANNEL_HISTORY) });
  try {
    const history = await api('GET', `/messages?${query}`);
    for (const message of history.messages || []) {
      addMessage(message, { placement: 'ordered', replayed: true });
    }
    if (state.active === win.key && !win.markerBefore) scrollToEnd();
  } catch (err) {
    win.historyLoaded = false;
    failed(`history of #${win.name}`, err);
  }
}

// ---- the event stream ----

function connect() {
  if (state.login) return;
  const query = new URLSearchParams();
  // Resume after the last message shown: no gap, no duplicate, across daemon restarts.
  if (state.cursor) query.set('after', state.cursor);
  else query.set('n', String(BACKLOG));
  query.set('events', EVENTS);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}/ws?${query}`);
  const replays = !state.cursor;
  let opened = false;
  state.socket = socket;
  socket.addEventListener('open', () => {
    opened = true;
    sendPresence();
  });
  socket.addEventListener('message', (event) => {
    if (state.socket !== socket) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // not ours to understand; the next frame may be
    }
    onFrame(frame, replays);
  });
  socket.addEventListener('close', () => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (!state.login) reconnectLater(opened);
  });
}

function reconnectLater(opened) {
  setConn('reconnecting', 'reconnecting…');
  if (!opened) {
    // A refused upgrade shows the page no status: ask an endpoint whether a login is
    // needed (api() notices a 401).
    api('GET', '/me').then(setMe, () => {});
  }
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(connect, state.retryMs);
  state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
}

function onFrame(frame, replays) {
  switch (frame.kind) {
    case 'subscribed':
      state.retryMs = RETRY_MIN_MS;
      state.replayUntil = replays ? frame.cursor : null;
      // The daemon may have been down when the page loaded, or restarted since.
      api('GET', '/me').then(setMe, () => {});
      if (state.everConnected) note('reconnected to rossipd');
      state.everConnected = true;
      setConn('connected', 'connected');
      // Events missed while away from the stream are not replayed: fetch the lists again.
      refreshLists();
      break;
    case 'message': {
      const message = frame.message || {};
      if (message.cursor) state.cursor = message.cursor;
      const replayed = state.replayUntil !== null
        && cursorNumber(message.cursor) <= cursorNumber(state.replayUntil);
      addMessage(message, { placement: 'end', replayed });
      break;
    }
    case 'lagged':
      // The stream goes on; with a cursor, messages were missed (resume after it), without
      // one, peer or presence changes were (fetch the lists again).
      if (frame.cursor) {
        state.cursor = frame.cursor;
        note(`this page fell behind: ${frame.dropped} messages missed`, 'error');
      } else {
        refreshLists();
      }
      break;
    case 'peer':
    case 'presence':
      if (state.heldEvents) state.heldEvents.push(frame);
      else applyListEvent(frame);
      break;
    case 'direct_status':
      onDirectStatus(frame);
      break;
    case 'error':
      onStreamError(frame.error || {});
      break;
    default:
      break; // a kind added later
  }
}

function onStreamError(error) {
  if (error.code === CODE.UNAUTHORIZED) {
    enterLogin();
  } else if (error.code === CODE.FOREIGN_CURSOR) {
    // The daemon's history store was replaced: start over, leaving out what is shown.
    state.cursor = null;
    note('rossipd has a new history store: going on from its latest messages', 'error');
  } else {
    showError(`message stream: ${error.message || 'error'}${error.code ? ` (code ${error.code})` : ''}`);
  }
}

function onDirectStatus(frame) {
  const key = state.pendingDirect.get(frame.id);
  state.pendingDirect.delete(frame.id);
  // `send` already said "delivered" unless it said "queued".
  if (key === undefined && frame.status === 'delivered') return;
  const win = state.windows.get(key) || activeWindow();
  const to = win && win.direct ? win.name : 'the recipient';
  const reason = frame.reason ? `: ${frame.reason}` : '';
  const kind = frame.status === 'delivered' ? 'info' : 'error';
  note(`direct message to ${to} ${frame.status}${reason}`, kind, win);
}

// ---- peers, who, channels ----

async function refreshLists() {
  state.heldEvents = [];
  try {
    const [peers, who, channels] = await Promise.all(
      ['/peers?all=true', '/who', '/channels'].map((path) => api('GET', path)));
    state.peers = new Map((peers.peers || []).map((p) => [p.id, p]));
    state.who = new Map((who.users || []).map((u) => [u.from, u]));
    for (const peer of state.peers.values()) learnNode(peer.id, peer.name);
    for (const channel of channels.channels || []) ensureWindow(`#${channel.name}`);
  } catch (err) {
    failed('peers, people and channels', err);
  }
  const held = state.heldEvents || []; // (another refresh may have applied them)
  state.heldEvents = null;
  held.forEach(applyListEvent);
  renderPeers();
  renderWho();
}

function applyListEvent(frame) {
  if (frame.kind === 'peer' && frame.peer) {
    state.peers.set(frame.peer.id, frame.peer);
    learnNode(frame.peer.id, frame.peer.name);
    if (!state.heldEvents) renderPeers();
  } else if (frame.kind === 'presence' && frame.presence) {
    const who = frame.presence;
    if (who.state === 'offline') state.who.delete(who.from);
    else state.who.set(who.from, who);
    if (!state.heldEvents) renderWho();
  }
}

function renderPeers() {
  const peers = Array.from(state.peers.values())
    .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  ui.peers.replaceChildren(...peers.map((peer) => {
    const li = make('li', `peer ${peer.state}`);
    li.dataset.peer = peer.id;
    return entry(li, `${peer.name} ${peer.id} at ${peer.addr}; click for direct messages`,
      make('span', 'name', peer.name), make('span', 'state', peer.state));
  }));
  if (!peers.length) ui.peers.append(make('li', 'empty', 'no other node'));
}

function renderWho() {
  const users = Array.from(state.who.values()).sort((a, b) => a.from.localeCompare(b.from));
  ui.who.replaceChildren(...users.map((who) => {
    const li = make('li', `person ${who.state}`);
    li.dataset.user = who.from;
    const status = who.status ? [make('span', 'status', who.status)] : [];
    return entry(li, `${who.from} is ${who.state} since ${new Date(who.since).toLocaleString()}`,
      make('span', `name ${colourClass(who.from)}`, withNick(who.from, who.nick)),
      make('span', 'presence', who.state), ...status);
  }));
  if (!users.length) ui.who.append(make('li', 'empty', 'nobody is in a chat'));
}

// ---- presence of this page's user ----

function sendPresence() {
  const socket = state.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  const { idle, manual, status } = state.away;
  const away = idle || manual;
  const frame = {
    kind: 'presence',
    state: away ? 'away' : 'available',
    status: manual ? status : (idle ? 'idle' : null),
  };
  socket.send(JSON.stringify(frame));
}

// Hidden for a while: away (status "idle"), until the tab is looked at again.
function onVisibility() {
  clearTimeout(state.idleTimer);
  if (document.hidden) {
    state.idleTimer = setTimeout(() => {
      state.away.idle = true;
      sendPresence();
    }, AWAY_AFTER_MS);
    return;
  }
  if (state.away.idle) {
    state.away.idle = false;
    sendPresence();
  }
  const win = activeWindow();
  if (win) setUnread(win, 0);
}

// ---- who this page is ----

function setMe(me) {
  if (!me) return;
  state.me = me;
  learnNode(me.node, me.node_name);
  showMe();
}

function showMe() {
  ui.me.textContent = state.me.from || '';
  ui.mynick.textContent = state.me.nick ? `(${state.me.nick})` : '';
}

// ---- what is typed ----

function submit(line) {
  if (!line.trim()) return;
  if (line.startsWith('//')) return say(line.slice(1));
  if (!line.startsWith('/')) return say(line);
  const match = /^\/(\S+)\s*([\s\S]*)$/.exec(line);
  if (!match) return showError('a command follows the / (/help lists them)');
  const command = match[1].toLowerCase();
  const rest = match[2].trim();
  const words = rest.split(/\s+/).filter(Boolean);
  switch (command) {
    case 'join':
    case 'j':
      if (words.length !== 1) return showError('usage: /join CHANNEL');
      return join(words[0].replace(/^#/, ''));
    case 'msg':
    case 'm': {
      const split = /^(\S+)\s+([\s\S]+)$/.exec(rest);
      if (!split) return showError('usage: /msg NAME text');
      const win = ensureWindow(`@${split[1]}`);
      switchTo(win.key);
      return sendTo(win, split[2]);
    }
    case 'query':
    case 'q':
      if (words.length !== 1) return showError('usage: /query NAME');
      return switchTo(ensureWindow(`@${words[0]}`).key);
    case 'me':
      if (!rest) return showError('usage: /me action');
      return say(ACTION_PREFIX + rest);
    case 'nick':
      return nick(rest);
    case 'away':
      state.away.manual = true;
      state.away.status = rest || null;
      note(rest ? `you are away: ${rest}` : 'you are away');
      return sendPresence();
    case 'back':
      state.away.manual = false;
      state.away.status = null;
      note('you are back');
      return sendPresence();
    case 'help':
    case '?':
      return HELP.forEach((text) => note(text));
    default:
      return showError(`unknown command /${command} (/help lists them; //text sends a line starting with /)`);
  }
}

function join(channel) {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(channel)) {
    return showError(`cannot join #${channel}: a channel name is 1-64 letters, digits, '-', '_' or '.'`);
  }
  const fresh = !state.windows.has(`#${channel}`);
  switchTo(ensureWindow(`#${channel}`).key);
  if (fresh) note(`joined #${channel}`);
}

function say(text) {
  const win = activeWindow();
  if (win) sendTo(win, text);
}

async function sendTo(win, text) {
  const body = win.direct ? { text, to: win.name } : { text, channel: win.name };
  let sent;
  try {
    sent = await api('POST', '/send', body);
  } catch (err) {
    failed(win.direct ? `cannot send to ${win.name}` : 'send', err);
    // A window just opened for a name that names no one goes again.
    const nobody = err.code === CODE.UNKNOWN_RECIPIENT || err.code === CODE.AMBIGUOUS_RECIPIENT;
    if (nobody && !win.items.some((item) => item.id)) closeWindow(win);
    return;
  }
  clearError();
  const direct = sent && sent.direct;
  if (!direct) return;
  const at = direct.to.lastIndexOf('@');
  learnNode(direct.node, direct.to.slice(at + 1));
  // A window opened by a name the daemon reads otherwise (`/msg 3fa2 hi`) takes the name
  // it resolved to (the message itself may be there already, by the stream).
  const key = `@${direct.to}`;
  if (win.key !== key && state.windows.has(win.key)) renameWindow(win, key);
  const target = state.windows.get(key) || win;
  if (direct.status === 'queued') {
    state.pendingDirect.set(sent.id, target.key);
    const text = `${direct.to} is not reachable now: the message is queued and will be delivered when they are back`;
    note(text, 'info', target);
  } else if (direct.status !== 'delivered') {
    note(`direct message to ${direct.to}: ${direct.status}`, 'error', target);
  }
}

async function nick(rest) {
  let body;
  if (rest === '') {
    const me = state.me || { from: '?' };
    return note(me.nick ? `you are ${withNick(me.from, me.nick)}` : `you are ${me.from}, with no display name`);
  } else if (rest === '-') {
    body = { clear: true };
  } else {
    body = { nick: rest };
  }
  try {
    const answer = await api('POST', '/nick', body);
    setMe({ ...state.me, user: answer.user, nick: answer.nick || null });
    clearError();
    note(`you are ${withNick(state.me.from, state.me.nick)}`);
  } catch (err) {
    failed(body.clear ? '/nick' : 'cannot use that display name', err);
  }
}

// Up and Down walk the lines entered before, as in a shell; the line being typed is kept.
function walkTyped(step) {
  const lines = state.typed;
  if (state.typedAt === null) {
    if (step > 0 || !lines.length) return false;
    state.draft = ui.input.value;
  }
  const at = (state.typedAt === null ? lines.length : state.typedAt) + step;
  if (at < 0) return true;
  state.typedAt = at < lines.length ? at : null;
  ui.input.value = at < lines.length ? lines[at] : state.draft;
  fitInput();
  return true;
}

function remember(line) {
  state.typedAt = null;
  if (line.trim() && state.typed[state.typed.length - 1] !== line) state.typed.push(line);
  if (state.typed.length > 500) state.typed.shift();
}

// The box grows with the lines typed, up to a few.
function fitInput() {
  ui.input.rows = Math.min(6, Math.max(1, ui.input.value.split('\n').length));
}

function enter() {
  const line = ui.input.value;
  ui.input.value = '';
  fitInput();
  remember(line);
  submit(line);
}

// ---- the phone-size menu ----

function openMenu() {
  document.body.classList.add('menu-open');
  ui.menu.setAttribute('aria-expanded', 'true');
  const current = activeWindow();
  if (current) current.li.querySelector('button').focus();
}

function closeMenu() {
  if (!document.body.classList.contains('menu-open')) return;
  document.body.classList.remove('menu-open');
  ui.menu.setAttribute('aria-expanded', 'false');
}

// On a touch screen, focusing the input opens the keyboard over the messages just chosen.
function focusInput() {
  if (!window.matchMedia('(pointer: coarse)').matches) ui.input.focus();
}

// ---- wiring ----

function wire() {
  ui.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    enter();
    ui.input.focus();
  });
  ui.input.addEventListener('keydown', (event) => {
    if (event.isComposing) return;
    const plain = !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey;
    // Up and Down move between the lines of a multi-line text first.
    const { value, selectionStart, selectionEnd } = ui.input;
    const onFirstLine = !value.slice(0, selectionStart).includes('\n');
    const onLastLine = !value.slice(selectionEnd).includes('\n');
    if (event.key === 'Enter' && plain) {
      event.preventDefault();
      enter();
    } else if (plain && event.key === 'ArrowUp' && onFirstLine) {
      if (walkTyped(-1)) event.preventDefault();
    } else if (plain && event.key === 'ArrowDown' && onLastLine) {
      if (walkTyped(1)) event.preventDefault();
    } else if (plain && (event.key === 'PageUp' || event.key === 'PageDown')) {
      event.preventDefault();
      const page = ui.messages.clientHeight * 0.9;
      ui.messages.scrollBy({ top: event.key === 'PageUp' ? -page : page });
    }
  });
  ui.input.addEventListener('input', fitInput);
  document.addEventListener('keydown', (event) => {
    if (event.altKey && (event.key === 'ArrowUp' || event.key === 'ArrowDown')) {
      event.preventDefault();
      switchBy(event.key === 'ArrowUp' ? -1 : 1);
      ui.input.focus();
    } else if (event.key === 'Escape') {
      closeMenu();
      ui.input.focus();
    }
  });
  ui.channels.addEventListener('click', (event) => {
    const li = event.target.closest('li[data-window]');
    if (!li) return;
    switchTo(li.dataset.window);
    focusInput();
  });
  // A person or a node in the lists: their direct-message window.
  const openDirect = (key) => {
    if (!key) return;
    switchTo(ensureWindow(`@${key}`).key);
    focusInput();
  };
  ui.who.addEventListener('click', (event) => {
    const li = event.target.closest('li[data-user]');
    if (li) openDirect(li.dataset.user);
  });
  ui.peers.addEventListener('click', (event) => {
    const li = event.target.closest('li[data-peer]');
    if (li) openDirect(state.peers.get(li.dataset.peer)?.name);
  });
  ui.menu.addEventListener('click', () => {
    if (document.body.classList.contains('menu-open')) closeMenu();
    else openMenu();
  });
  ui.error.addEventListener('click', clearError);
  ui.retry.addEventListener('click', () => location.reload());
  document.addEventListener('visibilitychange', onVisibility);
}

async function start() {
  wire();
  ensureWindow(`#${DEFAULT_CHANNEL}`);
  setConn('connecting', 'connecting…');
  // Who this is and the nodes' names come first: the stream's direct messages name their
  // recipients by node id. A daemon that is down now is waited for by the stream (#conn
  // says so); one that answers with an error is worth saying.
  const [me, peers] = await Promise.allSettled([api('GET', '/me'), api('GET', '/peers?all=true')]);
  if (state.login) return;
  if (me.status === 'fulfilled') setMe(me.value);
  else if (me.reason.status) failed('rossipd', me.reason);
  if (peers.status === 'fulfilled') {
    for (const peer of peers.value.peers || []) learnNode(peer.id, peer.name);
  }
  switchTo(`#${DEFAULT_CHANNEL}`); // (the input's placeholder points to /help)
  connect();
  ui.input.focus();
}

start();
