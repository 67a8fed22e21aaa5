/*
 * h2chat page: the chat on the client library (h2chat-client.js), which holds the
 * NDJSON stream GET /msgs (one per browser: the tabs elect a leader with a Web Lock
 * and it relays to the others over a BroadcastChannel), resumes with ?since=<last id>
 * after any break, and posts with POST /msgs. This file only renders: messages,
 * presence, notices for gap and reset lines, and the composer.
 *
 * User data only ever reaches the DOM through textContent / attributes.
 */
import { H2ChatClient } from './h2chat-client.js';

const ENDPOINT = document.documentElement.dataset.endpoint || '/msgs';
const MAX_KEEP = 1000;       // messages kept in the page
const NOTICE_MS = 30000;
const NAME_KEY = 'h2chat.name';
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
  const item = { ...m, el: renderMessage(m) };
  listEl.appendChild(item.el);
  shown.push(item);
  while (shown.length > MAX_KEEP) shown.shift().el.remove();
  afterGrow();
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

const client = new H2ChatClient(ENDPOINT);
client.on('message', addMessage);
client.on('gap', (g) => showNotice(gapNotice(g)));
client.on('reset', () => showNotice('The server restarted its message numbering.'));
client.on('state', (st) => setPresence(st.connected, LABELS[st.status]));
client.on('error', (e) => console.warn('h2chat:', e && e.message ? e.message : e));

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
    await client.publish(user, text);
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
nameEl.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') { e.preventDefault(); textEl.focus(); }
});

window.addEventListener('storage', (e) => {
  if (e.key === NAME_KEY && document.activeElement !== nameEl) {
    nameEl.value = e.newValue || '';
    updateSend();
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
});

window.addEventListener('pageshow', (e) => {
  // Restored from the back/forward cache: the lock and the stream are gone; start over.
  if (e.persisted) location.reload();
});

client.start();
