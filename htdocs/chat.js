/*
 * h2chat page: the chat on the client library (h2chat-client.js), which holds the
 * NDJSON stream GET /msgs (one per browser: the tabs elect a leader with a Web Lock
 * and it relays to the others over a BroadcastChannel), resumes with ?since=<last id>
 * after any break, and posts with POST /msgs. This file only renders: messages,
 * presence, notices for gap and reset lines, and the composer.
 *
 * Rooms (a location with H2ChatRooms On): the room is the URL's fragment (#name;
 * none: the location's own room). The page shows one room at a time and follows
 * only that one (the leader's stream carries the rooms its tabs show); the list of
 * rooms joined is kept in localStorage. "Who is online" is the room's members
 * (H2ChatPresence members) or its count of streams. A message a moderator deletes
 * leaves the list; a cleared room empties. Without rooms the room bar stays hidden.
 *
 * User data only ever reaches the DOM through textContent / attributes.
 */
import { H2ChatClient, validRoom } from './h2chat-client.js';

const ENDPOINT = document.documentElement.dataset.endpoint || '/msgs';
// Where the stream is held: the chat's fast-path origin when the server names
// one (X-H2Chat-Stream, from H2ChatStreamURL), else the endpoint itself.
const STREAM = await streamURL();
const MAX_KEEP = 1000;       // messages kept in the page
const NOTICE_MS = 30000;
const NAME_KEY = 'h2chat.name';
const ROOMS_KEY = 'h2chat.rooms';
const MAX_ROOMS = 32;        // H2ChatMaxRoomsPerStream's default
const LABELS = {
  connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…',
  busy: 'Server busy, retrying…', offline: 'Offline, waiting…',
  waiting: 'Waiting for the connection…', closed: 'Disconnected',
};

const $ = (id) => document.getElementById(id);
const listEl = $('messages');
const presenceEl = $('presence');
const presenceTextEl = $('presence-text');
const noticeEl = $('notice');
const jumpEl = $('jump');
const form = $('composer');
const nameEl = $('name');
const textEl = $('text');
const sendEl = $('send');
const errorEl = $('error');
const roomsEl = $('rooms');
const roomListEl = $('room-list');
const joinForm = $('join');
const joinNameEl = $('join-name');
const joinErrorEl = $('join-error');
const onlineCountEl = $('online-count');
const onlineListEl = $('online-list');

/* ---------- messages and rendering ---------- */

// Messages in display order, each {epoch, id, user, text, time, el}. The library
// hands each message over once, in id order; an epoch starts on a "reset" line,
// after which the server's ids start over.
const shown = [];

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

function hueOf(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h % 360;
}

function renderMessage(m) {
  const li = document.createElement('li');
  li.className = 'msg';
  li.dataset.id = String(m.id);
  if (m.user === nameEl.value.trim()) li.classList.add('mine');
  li.style.setProperty('--hue', String(hueOf(m.user)));

  const meta = document.createElement('div');
  meta.className = 'meta';
  const user = document.createElement('span');
  user.className = 'user';
  user.textContent = m.user;
  const time = document.createElement('time');
  const d = new Date(m.time);
  if (!Number.isNaN(d.getTime())) {
    time.dateTime = d.toISOString();
    const today = new Date();
    time.textContent = d.toDateString() === today.toDateString()
      ? timeFmt.format(d) : dateTimeFmt.format(d);
    time.title = fullFmt.format(d);
  }
  meta.append(user, ' ', time);

  const text = document.createElement('div');
  text.className = 'text';
  text.textContent = m.text;

  li.append(meta, text);
  return li;
}

function addMessage(m) {
  if (m.room !== current) return;
  const item = { ...m, el: renderMessage(m) };
  listEl.appendChild(item.el);
  shown.push(item);
  while (shown.length > MAX_KEEP) shown.shift().el.remove();
  afterGrow();
}

// A moderator deleted a message: it leaves the list.
function removeMessage(d) {
  if (d.room !== current) return;
  const i = shown.findIndex((x) => x.id === d.id && x.epoch === client.epoch);
  if (i >= 0) shown.splice(i, 1)[0].el.remove();
}

function clearMessages() {
  for (const x of shown.splice(0)) x.el.remove();
  jumpEl.hidden = true;
}

/* ---------- scrolling: stay at the newest unless the reader scrolled up ---------- */

let stick = true;
let scrollQueued = false;

function nearBottom() {
  return listEl.scrollHeight - listEl.scrollTop - listEl.clientHeight < 48;
}

function scrollToEnd() {
  listEl.scrollTop = listEl.scrollHeight;
}

function afterGrow() {
  if (scrollQueued) return;
  scrollQueued = true;
  queueMicrotask(() => {
    scrollQueued = false;
    if (stick) scrollToEnd();
    else jumpEl.hidden = false;
  });
}

listEl.addEventListener('scroll', () => {
  stick = nearBottom();
  if (stick) jumpEl.hidden = true;
}, { passive: true });

jumpEl.addEventListener('click', () => {
  stick = true;
  scrollToEnd();
  jumpEl.hidden = true;
  listEl.focus();
});

if ('ResizeObserver' in window) {
  new ResizeObserver(() => { if (stick) scrollToEnd(); }).observe(listEl);
}

/* ---------- status and notices ---------- */

function setPresence(isUp, label) {
  const state = isUp ? 'connected' : 'disconnected';
  if (presenceEl.dataset.state !== state) {
    presenceEl.textContent = isUp ? '🟢' : '🔴';
    presenceEl.dataset.state = state;
    presenceEl.setAttribute('aria-label', state);
    presenceEl.title = state;
  }
  const text = label || (isUp ? 'Connected' : 'Reconnecting…');
  if (presenceTextEl.textContent !== text) presenceTextEl.textContent = text;
}

let noticeTimer = 0;
function showNotice(text) {
  noticeEl.textContent = text;
  noticeEl.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { noticeEl.hidden = true; noticeEl.textContent = ''; }, NOTICE_MS);
}

/* ---------- the stream ---------- */

function gapNotice(g) {
  const n = Number.isSafeInteger(g.missed) ? g.missed : null;
  const range = Number.isSafeInteger(g.from) && Number.isSafeInteger(g.to)
    ? (g.from === g.to ? ` (#${g.from})` : ` (#${g.from}–#${g.to})`) : '';
  return n === 1 ? `1 message was missed${range}.`
    : `${n === null ? 'Some' : n} messages were missed${range}.`;
}

/* ---------- rooms ---------- */

// The room shown: the fragment's name, '' (the location's own room) when none.
function roomFromHash() {
  let h = location.hash.replace(/^#/, '');
  try { h = decodeURIComponent(h); } catch (e) { return ''; }
  return validRoom(h) ? h : '';
}

let current = roomFromHash();
let roomsOn = current !== '';    // until the server says (probeRooms)

function loadRooms() {
  try {
    const v = JSON.parse(localStorage.getItem(ROOMS_KEY) || '[]');
    return Array.isArray(v) ? v.filter((r) => r !== '' && validRoom(r)).slice(0, MAX_ROOMS) : [];
  } catch (e) { return []; }
}
function saveRooms(list) {
  try { localStorage.setItem(ROOMS_KEY, JSON.stringify(list)); } catch (e) { /* storage unavailable */ }
}
let joined = loadRooms();

const roomLabel = (r) => (r === '' ? 'Main' : '#' + r);

function titleRoom() {
  document.title = current === '' ? 'h2chat' : `${roomLabel(current)} · h2chat`;
  textEl.placeholder = current === '' ? 'Write a message' : `Message ${roomLabel(current)}`;
}

function renderRooms() {
  roomsEl.hidden = !roomsOn;
  const items = [''].concat(joined);
  roomListEl.replaceChildren(...items.map((r) => {
    const li = document.createElement('li');
    li.className = 'room';
    li.dataset.room = r;
    const a = document.createElement('a');
    a.href = '#' + (r === '' ? '' : encodeURIComponent(r));
    a.textContent = roomLabel(r);
    if (r === '') a.title = 'the chat\'s own room';
    if (r === current) a.setAttribute('aria-current', 'page');
    li.append(a);
    if (r !== '') {
      const x = document.createElement('button');
      x.type = 'button';
      x.className = 'leave';
      x.textContent = '×';
      x.setAttribute('aria-label', `Leave ${roomLabel(r)}`);
      x.title = 'Leave the room';
      x.addEventListener('click', () => leaveRoom(r));
      li.append(x);
    }
    return li;
  }));
}

function remember(room) {
  if (room === '' || joined.includes(room)) return;
  joined = joined.concat(room).slice(-MAX_ROOMS);
  saveRooms(joined);
}

function leaveRoom(room) {
  joined = joined.filter((r) => r !== room);
  saveRooms(joined);
  if (room === current) location.hash = '';
  else renderRooms();
}

// Shows another room: its messages come from the library (its snapshot, or what
// the leader tab kept of it).
function showRoom(room) {
  if (room === current && client.rooms.length === 1 && client.rooms[0] === room) return;
  current = room;
  if (room !== '') remember(room);
  clearMessages();
  noticeEl.hidden = true;
  stick = true;
  renderRooms();
  renderOnline();
  titleRoom();
  client.setRooms([room]);
}

window.addEventListener('hashchange', () => {
  const room = roomFromHash();
  if (room !== '' && !roomsOn) { history.replaceState(null, '', '#'); showNotice('This chat has no rooms.'); }
  showRoom(roomsOn ? room : '');
});

joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = joinNameEl.value.trim().replace(/^#/, '');
  if (!validRoom(name) || name === '') {
    joinErrorEl.textContent = 'A room name is 1 to 64 of A-Z a-z 0-9 _ . : @ -';
    return;
  }
  joinErrorEl.textContent = '';
  joinNameEl.value = '';
  remember(name);
  location.hash = encodeURIComponent(name);
  textEl.focus();
});
joinNameEl.addEventListener('input', () => { joinErrorEl.textContent = ''; });

// The fast-path origin the location names, if any (null: the endpoint). One
// small request; the page starts without it if it fails.
async function streamURL() {
  try {
    const r = await fetch(ENDPOINT + '?presence', { cache: 'no-store' });
    r.body?.cancel().catch(() => {});
    const url = r.headers.get('X-H2Chat-Stream');
    return url && /^https?:\/\//.test(url) ? url : null;
  } catch (e) {
    return null;
  }
}

// Does the location have rooms? Its <endpoint>/<name>?presence answers for that
// room, a location without rooms for its own ('' ) whatever the name.
async function probeRooms() {
  try {
    const r = await client.presence(current || 'lobby');
    roomsOn = r.room !== '';
  } catch (e) {
    if (!e.status || e.status === 429 || e.status >= 500) { // ask again later
      setTimeout(probeRooms, 5000 + Math.random() * 5000);
      return;
    }
    roomsOn = true;   // an answer of the room's own (403, 404): rooms there are
  }
  if (!roomsOn && current !== '') {
    history.replaceState(null, '', location.pathname + location.search);
    showNotice('This chat has no rooms: showing its own.');
    showRoom('');
  }
  renderRooms();
}

/* ---------- who is online ---------- */

function renderOnline() {
  const p = client.presenceOf(current);
  if (!p) {
    onlineCountEl.textContent = '';
    onlineListEl.replaceChildren();
    return;
  }
  const names = p.members ? [...p.members].sort((a, b) => a.localeCompare(b)) : null;
  const n = names ? names.length : p.count;
  onlineCountEl.textContent = `${n} online${names && names.length ? ':' : ''}`;
  onlineListEl.replaceChildren(...(names || []).map((u) => {
    const li = document.createElement('li');
    li.textContent = u;
    li.style.setProperty('--hue', String(hueOf(u)));
    return li;
  }));
}

const client = new H2ChatClient(ENDPOINT, {
  rooms: [current], user: loadName().trim(), stream: STREAM,
  credentials: STREAM ? 'include' : 'same-origin',
});
client.on('message', addMessage);
client.on('delete', removeMessage);
client.on('clear', (c) => {
  if (c.room !== current) return;
  clearMessages();
  showNotice('A moderator cleared this room.');
});
client.on('gap', (g) => { if (g.room === current) showNotice(gapNotice(g)); });
client.on('reset', () => showNotice('The server restarted its message numbering.'));
client.on('state', (st) => setPresence(st.connected, LABELS[st.status]));
for (const t of ['presence', 'members', 'join', 'leave']) {
  client.on(t, (p) => { if (p.room === current) renderOnline(); });
}
client.on('error', (e) => {
  console.warn('h2chat:', e && e.message ? e.message : e);
  // a room the server refuses (bad name, forbidden): leave it
  if (e && [400, 403, 404].includes(e.status) && e.rooms && e.rooms.includes(current)) {
    showNotice(`${roomLabel(current)}: ${e.message}`);
    leaveRoom(current);
  }
});

/* ---------- composer ---------- */

let sending = false;

function loadName() {
  try { return localStorage.getItem(NAME_KEY) || ''; } catch (e) { return ''; }
}
function saveName(v) {
  try { localStorage.setItem(NAME_KEY, v); } catch (e) { /* storage unavailable */ }
}

function updateSend() {
  sendEl.disabled = sending || !nameEl.value.trim() || !textEl.value.trim();
}

function autosize() {
  textEl.style.height = 'auto';
  textEl.style.height = textEl.scrollHeight + 'px';
}

function setError(text) {
  errorEl.textContent = text;
}

function errorText(err) {
  if (!err || !err.status) return 'Could not reach the server. Check the connection and try again.';
  let msg = err.message;
  if (err.retryAfter && (err.status === 429 || err.status === 503)) {
    msg += ` Try again in ${Math.ceil(err.retryAfter / 1000)} s.`;
  }
  return msg;
}

async function send() {
  const user = nameEl.value.trim();
  const raw = textEl.value;
  const text = raw.replace(/^(?:[ \t]*\r?\n)+/, '').replace(/\s+$/, '');
  if (sending || !user || !text) return;
  sending = true;
  updateSend();
  setError('');
  try {
    await client.publish(user, text, current);
    if (textEl.value === raw) textEl.value = '';
    autosize();
  } catch (e) {
    setError(errorText(e));
  } finally {
    sending = false;
    updateSend();
  }
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});

textEl.addEventListener('keydown', (e) => {
  if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.isComposing || e.keyCode === 229) return;
  e.preventDefault();
  if (!sendEl.disabled) send();
});

textEl.addEventListener('input', () => { autosize(); updateSend(); });

nameEl.addEventListener('input', () => { saveName(nameEl.value.trim()); updateSend(); });
// the name others see in "who is online" (H2ChatPresence members): once it is set
nameEl.addEventListener('change', () => client.setUser(nameEl.value.trim()));
nameEl.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') { e.preventDefault(); textEl.focus(); }
});

window.addEventListener('storage', (e) => {
  if (e.key === NAME_KEY && document.activeElement !== nameEl) {
    nameEl.value = e.newValue || '';
    client.setUser(nameEl.value.trim());
    updateSend();
  }
  if (e.key === ROOMS_KEY) {
    joined = loadRooms();
    renderRooms();
  }
});

/* ---------- start ---------- */

nameEl.value = loadName();
updateSend();
setPresence(false, 'Connecting…');
(nameEl.value ? textEl : nameEl).focus();

window.h2chat = Object.freeze({
  isLeader: () => client.leader,
  lastId: () => client.lastId,
  room: () => current,
  rooms: () => [''].concat(joined),
  roomsOn: () => roomsOn,
});

window.addEventListener('pageshow', (e) => {
  // Restored from the back/forward cache: the lock and the stream are gone; start over.
  if (e.persisted) location.reload();
});

if (current !== '') remember(current);
renderRooms();
titleRoom();
client.start();
probeRooms();
