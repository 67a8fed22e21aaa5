/*
 * h2chat page: reads the held-open NDJSON stream GET /msgs and posts with POST /msgs.
 *
 * One stream per browser, not per tab: the tabs of one origin elect a leader with a
 * Web Lock that the leader holds until its page goes away. Only the leader fetches
 * /msgs; it relays every parsed line to the other tabs over a BroadcastChannel.
 * A tab that opens asks ("hello") for the leader's history and buffers relayed
 * lines until the answer comes. Every tab keeps the same state (messages, cursor),
 * so when the leader closes, the next tab granted the lock resumes with
 * ?since=<its last id> and nothing is lost or shown twice (messages are keyed by id).
 *
 * User data only ever reaches the DOM through textContent / attributes.
 */
'use strict';

(() => {
  const ENDPOINT = document.documentElement.dataset.endpoint || '/msgs';
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 10000;
  const STALL_MS = 45000;      // until the server says its heartbeat interval (X-H2Chat-Heartbeat)
  const FOLLOWER_STALL_MS = 50000;
  let streamStallMs = STALL_MS;        // leader: from the server's heartbeat interval
  let followerStallMs = FOLLOWER_STALL_MS; // follower: what the leader announced
  const MAX_KEEP = 1000;       // messages kept in the page
  const MAX_LINE = 1 << 20;    // a line longer than this is not from our server
  const NOTICE_MS = 30000;
  const NAME_KEY = 'h2chat.name';

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

  /* ---------- message store and rendering ---------- */

  // list: messages in display order, each {ep, id, user, text, time, el}.
  // ep (epoch) goes up on a "reset" line, after which the server may reuse ids.
  const store = { epoch: 0, cursor: 0, list: [], keys: new Set() };

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

  function validMessage(m) {
    return m && Number.isSafeInteger(m.id) && m.id >= 0 &&
      typeof m.user === 'string' && typeof m.text === 'string' &&
      typeof m.time === 'number' && Number.isFinite(m.time);
  }

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

  // Adds one message unless it is already shown; keeps id order within its epoch.
  // Returns true if it was new.
  function addMessage(m, ep) {
    const key = ep + ':' + m.id;
    if (store.keys.has(key)) return false;
    const item = { ep, id: m.id, user: m.user, text: m.text, time: m.time, el: null };
    item.el = renderMessage(item);

    const list = store.list;
    let i = list.length;
    while (i > 0 && list[i - 1].ep === ep && list[i - 1].id > m.id) i--;
    if (i === list.length) listEl.appendChild(item.el);
    else listEl.insertBefore(item.el, list[i].el);
    list.splice(i, 0, item);
    store.keys.add(key);
    if (ep === store.epoch && m.id > store.cursor) store.cursor = m.id;

    while (list.length > MAX_KEEP) {
      const old = list.shift();
      store.keys.delete(old.ep + ':' + old.id);
      old.el.remove();
    }
    afterGrow();
    return true;
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

  let connected = false;

  function setPresence(isUp, label) {
    connected = isUp;
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

  /* ---------- stream lines (same code for the leader and the followers) ---------- */

  function applyLine(o) {
    switch (o.type) {
      case 'message':
        if (validMessage(o)) addMessage(o, store.epoch);
        break;
      case 'gap': {
        const n = Number.isSafeInteger(o.missed) ? o.missed : null;
        const range = Number.isSafeInteger(o.from) && Number.isSafeInteger(o.to)
          ? (o.from === o.to ? ` (#${o.from})` : ` (#${o.from}–#${o.to})`) : '';
        showNotice(n === 1 ? `1 message was missed${range}.`
          : `${n === null ? 'Some' : n} messages were missed${range}.`);
        break;
      }
      case 'reset':
        // The server's ids restarted: keep what is shown, but a new epoch accepts any id.
        store.epoch++;
        store.cursor = 0;
        showNotice('The server restarted its message numbering.');
        break;
      default: // heartbeat, or a type this page does not know
        break;
    }
  }

  /* ---------- tabs: leader election and relay ---------- */

  const tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);
  const chan = 'BroadcastChannel' in window ? new BroadcastChannel('h2chat:' + ENDPOINT) : null;
  const canShare = !!(chan && navigator.locks && navigator.locks.request);
  let leader = false;
  let synced = false;          // a follower has the leader's history
  let pending = [];            // lines relayed before the history came
  let followerTimer = 0;

  function post(msg) {
    if (canShare && leader) {
      try { chan.postMessage(msg); } catch (e) { /* channel closed while unloading */ }
    }
  }

  function sendHistory(to) {
    post({
      t: 'history', to, epoch: store.epoch, cursor: store.cursor, connected,
      label: presenceTextEl.textContent,
      msgs: store.list.map(({ ep, id, user, text, time }) => ({ ep, id, user, text, time })),
    });
  }

  function adoptHistory(d) {
    if (synced) return;
    store.epoch = d.epoch;
    for (const m of d.msgs) if (validMessage(m)) addMessage(m, m.ep);
    store.epoch = d.epoch;
    if (d.cursor > store.cursor) store.cursor = d.cursor;
    synced = true;
    const lines = pending;
    pending = [];
    for (const o of lines) applyLine(o);
    setPresence(!!d.connected, d.label);
  }

  function hello() {
    if (!leader && !synced) chan.postMessage({ t: 'hello', from: tabId });
  }

  function kickFollowerWatch() {
    clearTimeout(followerTimer);
    followerTimer = setTimeout(() => {
      if (!leader) setPresence(false, 'Waiting for the connection…');
    }, followerStallMs);
  }

  function onChannel(e) {
    const d = e.data;
    if (!d || typeof d !== 'object') return;
    if (leader) {
      if (d.t === 'hello') sendHistory(d.from);
      return;
    }
    if (typeof d.stall === 'number' && d.stall > 0) followerStallMs = d.stall;
    kickFollowerWatch();
    switch (d.t) {
      case 'line':
        if (synced) applyLine(d.obj);
        else pending.push(d.obj);
        break;
      case 'state':
        setPresence(!!d.connected, d.label);
        break;
      case 'history':
        if (d.to === tabId) adoptHistory(d);
        break;
      case 'leader':
        setPresence(!!d.connected, d.label);
        hello();
        break;
      default:
        break;
    }
  }

  function becomeLeader() {
    leader = true;
    clearTimeout(followerTimer);
    synced = true;
    const lines = pending;
    pending = [];
    for (const o of lines) applyLine(o);
    post({ t: 'leader', connected: false, label: 'Connecting…' });
    runStream();
  }

  /* ---------- the stream (leader only) ---------- */

  const sleep = (ms) => new Promise((resolve) => {
    const done = () => { clearTimeout(t); window.removeEventListener('online', done); resolve(); };
    const t = setTimeout(done, ms);
    window.addEventListener('online', done); // the network came back: try now
  });

  function parseRetryAfter(v) {
    if (!v) return 0;
    if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
    const at = Date.parse(v);
    return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
  }

  function setConnected(isUp, label) {
    setPresence(isUp, label);
    post({ t: 'state', connected: isUp, label: presenceTextEl.textContent, stall: streamStallMs + 5000 });
  }

  function handleLine(raw) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!line.trim()) return false;
    let o;
    try { o = JSON.parse(line); } catch (e) {
      console.warn('h2chat: bad line', line.slice(0, 200));
      return false;
    }
    if (!o || typeof o !== 'object' || typeof o.type !== 'string') return false;
    applyLine(o);
    post({ t: 'line', obj: o });
    return true;
  }

  // Reads NDJSON until the stream ends, fails or stalls. Returns whether any line came.
  // Silence longer than two heartbeats and a margin means a dead stream.
  function stallMs(resp) {
    const hb = parseInt(resp.headers.get('X-H2Chat-Heartbeat') || '', 10);
    return hb > 0 ? hb * 2000 + 5000 : STALL_MS;
  }

  async function readStream(resp, ctrl) {
    const reader = resp.body.getReader();
    const stallAfter = streamStallMs;
    const decoder = new TextDecoder('utf-8');
    let buf = '';
    let gotLine = false;
    let stall = 0;
    const kick = () => {
      clearTimeout(stall);
      stall = setTimeout(() => ctrl.abort(), stallAfter);
    };
    kick();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        kick();
        buf += decoder.decode(value, { stream: true });
        let start = 0;
        let nl;
        while ((nl = buf.indexOf('\n', start)) >= 0) {
          if (handleLine(buf.slice(start, nl))) gotLine = true;
          start = nl + 1;
        }
        buf = start ? buf.slice(start) : buf;
        if (buf.length > MAX_LINE) throw new Error('line too long');
      }
      // A partial last line is an interrupted write: drop it, resume by id.
    } catch (e) {
      if (e && e.name !== 'AbortError') console.warn('h2chat: stream ended', e);
    } finally {
      clearTimeout(stall);
      try { ctrl.abort(); } catch (e) { /* ignore */ }
    }
    return gotLine;
  }

  async function runStream() {
    let backoff = BACKOFF_MIN;
    let delay = 0;
    for (;;) {
      if (delay) await sleep(delay);
      const url = store.cursor > 0
        ? ENDPOINT + '?since=' + encodeURIComponent(String(store.cursor)) : ENDPOINT;
      const ctrl = new AbortController();
      const connectTimer = setTimeout(() => ctrl.abort(), STALL_MS);
      let resp;
      try {
        resp = await fetch(url, { cache: 'no-store', credentials: 'same-origin', signal: ctrl.signal });
      } catch (e) {
        resp = null;
      } finally {
        clearTimeout(connectTimer);
      }

      if (!resp || !resp.ok || !resp.body) {
        let wait = backoff;
        let label = navigator.onLine === false ? 'Offline, waiting…' : 'Reconnecting…';
        if (resp) {
          if (resp.status === 503 || resp.status === 429) {
            wait = Math.max(wait, Math.min(parseRetryAfter(resp.headers.get('Retry-After')), 300000));
            label = 'Server busy, retrying…';
          }
          try { await resp.body?.cancel(); } catch (e) { /* ignore */ }
        }
        setConnected(false, label);
        delay = wait;
        backoff = Math.min(backoff * 2, BACKOFF_MAX);
        continue;
      }

      streamStallMs = stallMs(resp);
      setConnected(true);
      const started = Date.now();
      const gotLine = await readStream(resp, ctrl);
      setConnected(false);
      // Success (the stream lived or delivered) resets the backoff; a stream that
      // closes at once keeps doubling it so a broken server is not hammered.
      if (gotLine || Date.now() - started > 3000) backoff = BACKOFF_MIN;
      delay = backoff;
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
    }
  }

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

  async function errorText(resp) {
    let msg = '';
    try {
      const body = await resp.json();
      if (body && typeof body.error === 'string') msg = body.error;
    } catch (e) { /* not JSON */ }
    if (!msg) msg = `The server answered ${resp.status}${resp.statusText ? ' ' + resp.statusText : ''}.`;
    const wait = parseRetryAfter(resp.headers.get('Retry-After'));
    if (wait && (resp.status === 429 || resp.status === 503)) {
      msg += ` Try again in ${Math.ceil(wait / 1000)} s.`;
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
      const resp = await fetch(ENDPOINT, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        credentials: 'same-origin',
        body: JSON.stringify({ user, text }),
      });
      if (resp.ok) {
        if (textEl.value === raw) textEl.value = '';
        autosize();
      } else {
        setError(await errorText(resp));
      }
    } catch (e) {
      setError('Could not reach the server. Check the connection and try again.');
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
    isLeader: () => leader,
    lastId: () => store.cursor,
  });

  window.addEventListener('pageshow', (e) => {
    // Restored from the back/forward cache: the lock and the stream are gone; start over.
    if (e.persisted) location.reload();
  });

  if (canShare) {
    chan.onmessage = onChannel;
    window.addEventListener('pagehide', () => {
      if (leader) post({ t: 'state', connected: false, label: 'Reconnecting…' });
    });
    navigator.locks.request('h2chat-leader:' + ENDPOINT, () => {
      becomeLeader();
      return new Promise(() => {}); // held until this page goes away
    }).catch((e) => console.warn('h2chat: lock request failed', e));
    hello();
    // Ask again until a leader answers (it may be starting up or just went away).
    const retry = setInterval(() => {
      if (leader || synced) clearInterval(retry);
      else hello();
    }, 1500);
    kickFollowerWatch();
  } else {
    // No Web Locks (e.g. a page not in a secure context): this tab reads its own stream.
    becomeLeader();
  }
})();
