/*
 * h2chat-client.js: a client for mod_h2chat's held stream (GET <endpoint>, NDJSON)
 * and its publish (POST <endpoint>). An ES module without dependencies, for
 * browsers and for Node >= 18 (global fetch and ReadableStream; no DOM needed).
 *
 *   import { H2ChatClient } from './h2chat-client.js';
 *   const chat = new H2ChatClient('/msgs');          // Node: an absolute URL
 *   chat.on('message', (m) => console.log(m.id, m.user, m.text));
 *   chat.start();
 *   await chat.publish('ann', 'hi');                // rejects with an H2ChatError
 *   chat.close();
 *
 * What it does for you:
 * - resume: after any break it asks for ?since=<last id it delivered>, and drops
 *   ids <= that id, so nothing is lost and nothing is delivered twice;
 * - reconnect with exponential backoff and full jitter (a random wait between 0 and
 *   min(backoffMax, backoffMin * 2^(attempt-1))); 503/429 wait at least Retry-After;
 *   a stream the server ends with a reconnect hint ({"type":"reconnect","retry":ms}:
 *   a restart, each client told its own delay so they do not all return at once) is
 *   not a failure: the next attempt waits exactly that long, once;
 * - a watchdog: no byte for 2.5 heartbeat intervals (X-H2Chat-Heartbeat), and at
 *   least the interval + 3 s, means a dead stream: abort and reconnect;
 * - in a browser, one held stream for all tabs of an origin: the tab holding a Web
 *   Lock is the leader and relays every line over a BroadcastChannel; when it goes
 *   away the next tab gets the lock and resumes from the last id. Without
 *   navigator.locks or BroadcastChannel (and always in Node) each client reads its
 *   own stream.
 *
 * Events (on(type, fn) returns a function that removes fn):
 *   'message' {id, user, text, time, epoch}  each message once, in id order
 *   'gap'     {missed, from, to}             messages from..to left the history first
 *   'reset'   {last_id, epoch}               the server's ids started over; epoch + 1,
 *                                            ids of the new epoch start low again
 *   'state'   {connected, status, leader, attempt, delay}
 *             status: 'connecting' | 'connected' | 'reconnecting' | 'busy' (503/429)
 *             | 'offline' | 'waiting' (a follower tab hears nothing from the leader)
 *             | 'closed'; delay: ms until the next attempt
 *   'error'   Error                          not fatal (a bad line, a broken stream);
 *                                            the client goes on by itself
 */

const LINE_MAX = 1 << 20;     // a longer line is not from our server
const CONNECT_MS = 45000;     // for the response headers, and the watchdog until they say more
const LIVED_MS = 3000;        // a stream that lived this long resets the backoff
const RETRY_AFTER_MAX = 300000;  // also the longest reconnect hint taken

export class H2ChatError extends Error {
  constructor(message, status = 0, retryAfter = 0) {
    super(message);
    this.name = 'H2ChatError';
    this.status = status;         // HTTP status; 0: the server was not reached
    this.retryAfter = retryAfter; // ms from Retry-After (0 if none)
  }
}

export function parseRetryAfter(v) {
  if (!v) return 0;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
}

// ms of silence after which a stream counts as dead, from X-H2Chat-Heartbeat.
export function stallAfter(heartbeatSeconds) {
  const hb = Number(heartbeatSeconds) * 1000;
  return hb > 0 ? Math.max(2.5 * hb, hb + 3000) : CONNECT_MS;
}

function validMessage(m) {
  return m && Number.isSafeInteger(m.id) && m.id >= 0 &&
    typeof m.user === 'string' && typeof m.text === 'string' &&
    typeof m.time === 'number' && Number.isFinite(m.time);
}

const hasDom = () => typeof document !== 'undefined' && typeof window !== 'undefined';

export class H2ChatClient {
  /**
   * endpoint: the chat location ('/msgs' in a page; 'http://host:port/msgs' in Node).
   * options:
   *   share       true: share one stream among the browser's tabs when it can
   *   since       resume after this id at start (default: the server's snapshot)
   *   headers     extra request headers (e.g. Authorization), GET and POST
   *   credentials fetch's credentials (default 'same-origin')
   *   backoffMin  ms (500), backoffMax ms (10000): the jittered backoff's bounds
   *   keep        messages a leader tab keeps to hand to tabs that open (1000)
   *   fetch       a fetch function (default globalThis.fetch)
   */
  constructor(endpoint = '/msgs', options = {}) {
    this.endpoint = endpoint;
    this.opts = {
      share: true, since: 0, headers: {}, credentials: 'same-origin',
      backoffMin: 500, backoffMax: 10000, keep: 1000, fetch: null, ...options,
    };
    this.handlers = new Map();
    this.epoch = 0;
    this.cursor = Number.isSafeInteger(this.opts.since) && this.opts.since > 0 ? this.opts.since : 0;
    this.recent = [];           // the last `keep` messages, for tabs that open (shared mode)
    this.state = { connected: false, status: 'connecting', leader: false, attempt: 0, delay: 0 };
    this.isLeader = false;
    this.started = false;
    this.closed = false;
    this.streamStall = CONNECT_MS;
    this.followerStall = CONNECT_MS + 5000;
    this.ctrl = null;           // the held fetch's AbortController
    this.wake = null;           // ends the current backoff sleep early
    this.timers = new Set();
    this.cleanups = [];
    this.tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);
    this.synced = false;        // a follower has the leader's history
    this.pending = [];          // relayed lines that came before the history
    this.chan = null;
    this.hint = -1;             // ms the server said to wait before reconnecting; -1: none
  }

  get lastId() { return this.cursor; }
  get connected() { return this.state.connected; }
  get leader() { return this.isLeader; }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this.handlers.get(type);
    if (set) set.delete(fn);
  }

  emit(type, value) {
    const set = this.handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(value); } catch (e) {
        if (type !== 'error') this.emit('error', e);
        else setTimeout(() => { throw e; }); // an 'error' handler threw: report, do not loop
      }
    }
  }

  /* ---------- start and stop ---------- */

  start() {
    if (this.started || this.closed) return this;
    this.started = true;
    this.setState({ connected: false, status: 'connecting' });
    const canShare = this.opts.share && hasDom() && typeof BroadcastChannel === 'function' &&
      typeof navigator !== 'undefined' && navigator.locks && navigator.locks.request;
    if (canShare) this.startShared();
    else this.becomeLeader();
    return this;
  }

  close() {
    if (this.closed) return;
    if (this.isLeader) this.relay({ t: 'state', state: { connected: false, status: 'reconnecting' } });
    this.closed = true;
    this.isLeader = false;
    if (this.ctrl) this.ctrl.abort();
    if (this.wake) this.wake();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const fn of this.cleanups.splice(0)) { try { fn(); } catch (e) { /* ignore */ } }
    if (this.chan) { try { this.chan.close(); } catch (e) { /* ignore */ } this.chan = null; }
    this.setState({ connected: false, status: 'closed' });
  }

  later(fn, ms) {
    const t = setTimeout(() => { this.timers.delete(t); fn(); }, ms);
    this.timers.add(t);
    return t;
  }

  cancel(t) {
    clearTimeout(t);
    this.timers.delete(t);
  }

  setState(s) {
    const next = { connected: false, attempt: 0, delay: 0, ...s, leader: this.isLeader };
    const prev = this.state;
    this.state = next;
    if (prev.connected !== next.connected || prev.status !== next.status ||
        prev.leader !== next.leader || prev.attempt !== next.attempt || next.delay) {
      this.emit('state', { ...next });
    }
  }

  /* ---------- lines: the same code for a leader and its followers ---------- */

  // Applies one parsed stream line; returns false if it was a duplicate.
  apply(o) {
    switch (o.type) {
      case 'message': {
        if (!validMessage(o) || o.id <= this.cursor) return false;
        this.cursor = o.id;
        const m = { id: o.id, user: o.user, text: o.text, time: o.time, epoch: this.epoch };
        if (this.chan) {
          this.recent.push(m);
          if (this.recent.length > this.opts.keep) this.recent.shift();
        }
        this.emit('message', m);
        return true;
      }
      case 'gap':
        this.emit('gap', { missed: o.missed, from: o.from, to: o.to });
        return true;
      case 'reset':
        // The server's ids started over: a new epoch accepts any id again.
        this.epoch++;
        this.cursor = 0;
        this.emit('reset', { last_id: o.last_id, epoch: this.epoch });
        return true;
      case 'reconnect':
        // The stream's last line when its server process stops: wait this long
        // before the next attempt (run() takes it once the stream has ended).
        if (Number.isFinite(o.retry) && o.retry >= 0) this.hint = Math.min(Math.floor(o.retry), RETRY_AFTER_MAX);
        return true;
      default: // heartbeat, or a type this client does not know
        return true;
    }
  }

  // A follower applies a relayed line only in the leader's epoch it belongs to.
  applyRelayed(o, ep) {
    if (o.type === 'reset') {
      if (ep <= this.epoch) return;  // already in the history we adopted
      this.apply(o);
      this.epoch = ep;
    } else if (o.type !== 'message' || ep === this.epoch) {
      this.apply(o);
    }
  }

  /* ---------- tabs: leader election and relay ---------- */

  startShared() {
    this.chan = new BroadcastChannel('h2chat:' + this.endpoint);
    this.chan.onmessage = (e) => this.onChannel(e.data);
    const lockCtrl = new AbortController();
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    this.cleanups.push(() => { lockCtrl.abort(); release(); });
    navigator.locks.request('h2chat-leader:' + this.endpoint, { signal: lockCtrl.signal }, () => {
      if (this.closed) return undefined;
      this.becomeLeader();
      return held; // held until close() or the page goes away
    }).catch((e) => { if (!this.closed) this.emit('error', e); });
    const onHide = () => {
      if (this.isLeader) this.relay({ t: 'state', state: { connected: false, status: 'reconnecting' } });
    };
    window.addEventListener('pagehide', onHide);
    this.cleanups.push(() => window.removeEventListener('pagehide', onHide));
    this.hello();
    // Ask again until a leader answers (it may be starting, or just went away).
    const retry = setInterval(() => {
      if (this.isLeader || this.synced) clearInterval(retry);
      else this.hello();
    }, 1500);
    this.cleanups.push(() => clearInterval(retry));
    this.kickFollower();
  }

  relay(msg) {
    if (this.chan && this.isLeader) {
      try { this.chan.postMessage(msg); } catch (e) { /* channel closed while unloading */ }
    }
  }

  hello() {
    if (!this.isLeader && !this.synced && this.chan) this.chan.postMessage({ t: 'hello', from: this.tabId });
  }

  kickFollower() {
    this.cancel(this.followerTimer);
    this.followerTimer = this.later(() => {
      if (!this.isLeader) this.setState({ connected: false, status: 'waiting' });
    }, this.followerStall);
  }

  onChannel(d) {
    if (this.closed || !d || typeof d !== 'object') return;
    if (this.isLeader) {
      if (d.t === 'hello') {
        this.relay({ t: 'history', to: d.from, epoch: this.epoch, cursor: this.cursor,
          state: this.state, msgs: this.recent });
      }
      return;
    }
    if (d.t === 'hello') return; // another follower: says nothing about the stream
    if (typeof d.stall === 'number' && d.stall > 0) this.followerStall = d.stall;
    this.kickFollower();
    switch (d.t) {
      case 'line':
        if (this.synced) this.applyRelayed(d.obj, d.ep);
        else this.pending.push(d);
        break;
      case 'state':
        this.setState(d.state);
        break;
      case 'history':
        if (d.to === this.tabId) this.adopt(d);
        break;
      case 'leader':
        this.setState(d.state);
        this.hello();
        break;
      default:
        break;
    }
  }

  // A follower takes the leader's history, then the lines relayed meanwhile.
  adopt(d) {
    if (this.synced) return;
    for (const m of d.msgs) {
      if (!validMessage(m)) continue;
      if (m.epoch < this.epoch || (m.epoch === this.epoch && m.id <= this.cursor)) continue;
      this.epoch = m.epoch;
      this.cursor = m.id;
      this.recent.push(m);
      this.emit('message', { ...m });
    }
    if (d.epoch > this.epoch) { this.epoch = d.epoch; this.cursor = 0; }
    if (d.cursor > this.cursor) this.cursor = d.cursor;
    if (this.recent.length > this.opts.keep) this.recent.splice(0, this.recent.length - this.opts.keep);
    this.synced = true;
    for (const p of this.pending.splice(0)) this.applyRelayed(p.obj, p.ep);
    this.setState(d.state);
  }

  becomeLeader() {
    if (this.closed) return;
    this.isLeader = true;
    this.cancel(this.followerTimer);
    if (!this.synced && this.pending.length) {
      // never got the history: take the epoch of the first line relayed to us
      const p = this.pending[0];
      this.epoch = p.obj.type === 'reset' ? p.ep - 1 : p.ep;
    }
    this.synced = true;
    for (const p of this.pending.splice(0)) this.applyRelayed(p.obj, p.ep);
    this.setState({ connected: false, status: 'connecting' });
    this.relay({ t: 'leader', state: this.state });
    this.run().catch((e) => this.emit('error', e));
  }

  /* ---------- the stream (leader only) ---------- */

  sleep(ms) {
    return new Promise((resolve) => {
      let t = 0;
      const done = () => {
        this.cancel(t);
        if (hasDom()) window.removeEventListener('online', done);
        this.wake = null;
        resolve();
      };
      t = this.later(done, ms);
      this.wake = done;
      if (hasDom()) window.addEventListener('online', done); // the network is back: try now
    });
  }

  announce(s) {
    this.setState(s);
    this.relay({ t: 'state', state: this.state, stall: this.streamStall + 5000 });
  }

  handleLine(raw) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!line.trim()) return false;
    let o;
    try { o = JSON.parse(line); } catch (e) {
      this.emit('error', new Error('h2chat: bad line ' + line.slice(0, 200)));
      return false;
    }
    if (!o || typeof o !== 'object' || typeof o.type !== 'string') return false;
    if (this.apply(o)) this.relay({ t: 'line', obj: o, ep: this.epoch, stall: this.streamStall + 5000 });
    return true;
  }

  // Reads NDJSON until the stream ends, fails or stalls; returns whether a line came.
  async read(resp, ctrl) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder('utf-8');
    let buf = '';
    let gotLine = false;
    let stall = 0;
    const kick = () => {
      this.cancel(stall);
      stall = this.later(() => ctrl.abort(), this.streamStall);
    };
    kick();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.closed) break;
        kick();
        buf += decoder.decode(value, { stream: true });
        let start = 0;
        let nl;
        while ((nl = buf.indexOf('\n', start)) >= 0) {
          if (this.handleLine(buf.slice(start, nl))) gotLine = true;
          if (this.closed) break;
          start = nl + 1;
        }
        buf = start ? buf.slice(start) : buf;
        if (buf.length > LINE_MAX) throw new Error('h2chat: line too long');
      }
      // A partial last line is an interrupted write: drop it, resume by id.
    } catch (e) {
      if (e && e.name !== 'AbortError' && !this.closed) this.emit('error', e);
    } finally {
      this.cancel(stall);
      try { ctrl.abort(); } catch (e) { /* ignore */ }
      try { reader.releaseLock(); } catch (e) { /* ignore */ }
    }
    return gotLine;
  }

  url() {
    if (this.cursor <= 0) return this.endpoint;
    const sep = this.endpoint.includes('?') ? '&' : '?';
    return this.endpoint + sep + 'since=' + encodeURIComponent(String(this.cursor));
  }

  // The wait before attempt n (1, 2, ...): full jitter under a doubling ceiling.
  backoff(attempt) {
    const { backoffMin, backoffMax } = this.opts;
    const ceiling = Math.min(backoffMax, backoffMin * 2 ** Math.min(attempt - 1, 30));
    return Math.floor(Math.random() * ceiling);
  }

  async run() {
    const fetchFn = this.opts.fetch || globalThis.fetch;
    let attempt = 0;    // failures since the last good stream
    let delay = 0;
    while (!this.closed) {
      if (delay) await this.sleep(delay);
      if (this.closed) break;
      const ctrl = new AbortController();
      this.ctrl = ctrl;
      const connectTimer = this.later(() => ctrl.abort(), CONNECT_MS);
      let resp = null;
      try {
        resp = await fetchFn(this.url(), {
          cache: 'no-store', credentials: this.opts.credentials, signal: ctrl.signal,
          headers: { ...this.opts.headers },
        });
      } catch (e) {
        resp = null;
      } finally {
        this.cancel(connectTimer);
      }
      if (this.closed) { if (resp && resp.body) resp.body.cancel().catch(() => {}); break; }

      if (!resp || !resp.ok || !resp.body) {
        attempt++;
        delay = this.backoff(attempt);
        let status = typeof navigator !== 'undefined' && navigator.onLine === false
          ? 'offline' : 'reconnecting';
        if (resp) {
          if (resp.status === 503 || resp.status === 429) {
            const ra = Math.min(parseRetryAfter(resp.headers.get('Retry-After')), RETRY_AFTER_MAX);
            delay = Math.max(delay, ra);
            status = 'busy';
          } else {
            this.emit('error', new H2ChatError(`GET answered ${resp.status}`, resp.status));
          }
          try { await resp.body?.cancel(); } catch (e) { /* ignore */ }
        }
        this.announce({ connected: false, status, attempt, delay });
        continue;
      }

      const hb = parseInt(resp.headers.get('X-H2Chat-Heartbeat') || '', 10);
      this.streamStall = stallAfter(hb);
      this.announce({ connected: true, status: 'connected' });
      const started = Date.now();
      this.hint = -1;
      const gotLine = await this.read(resp, ctrl);
      if (this.closed) break;
      const hint = this.hint;
      this.hint = -1;
      // A stream that lived or delivered resets the backoff; one that closes at
      // once keeps growing it, so a broken server is not hammered. One the server
      // ended with a reconnect hint (a restart) is no failure: the hint is the wait,
      // for this one reconnect; it spreads the clients of a restart over time.
      if (gotLine || hint >= 0 || Date.now() - started > LIVED_MS) attempt = 0;
      attempt++;
      delay = hint >= 0 ? hint : this.backoff(attempt);
      this.announce({ connected: false, status: 'reconnecting', attempt, delay });
    }
    this.ctrl = null;
  }

  /* ---------- publish ---------- */

  // POSTs one message; resolves with {id, time}, rejects with an H2ChatError whose
  // message is the server's JSON "error" (or says the server was not reached).
  async publish(user, text) {
    const fetchFn = this.opts.fetch || globalThis.fetch;
    let resp;
    try {
      resp = await fetchFn(this.endpoint, {
        method: 'POST',
        headers: { ...this.opts.headers, 'Content-Type': 'application/json' },
        credentials: this.opts.credentials,
        body: JSON.stringify({ user, text }),
      });
    } catch (e) {
      throw new H2ChatError('could not reach the server: ' + (e && e.message || e), 0);
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON */ }
    if (resp.ok) return body || {};
    const msg = body && typeof body.error === 'string' && body.error
      ? body.error : `The server answered ${resp.status}${resp.statusText ? ' ' + resp.statusText : ''}.`;
    throw new H2ChatError(msg, resp.status, parseRetryAfter(resp.headers.get('Retry-After')));
  }
}
