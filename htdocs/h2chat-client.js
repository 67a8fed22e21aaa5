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
 * Rooms (a location with H2ChatRooms On): the room '' is the location's own room
 * (the default, and all there is without rooms); any other name (1-64 of
 * A-Z a-z 0-9 _ . : @ -) is <endpoint>/<name>.
 *
 *   const chat = new H2ChatClient('/msgs', { rooms: ['a', 'b'], user: 'ann' });
 *   chat.on('message', (m) => show(m.room, m));      // every event names its room
 *   chat.start();
 *   chat.setRooms(['b', 'c']);                       // or addRoom('c'), removeRoom('a')
 *   await chat.publish('ann', 'hi', 'b');            // POST /msgs/b
 *   await chat.remove('b', 17);                      // DELETE /msgs/b/17 (moderators)
 *
 * What it does for you:
 * - resume: after any break it asks for ?since=<last id it delivered>, and drops
 *   ids it delivered already (per room), so nothing is lost and nothing is
 *   delivered twice;
 * - rooms: all named rooms ride on one stream, ?room=a&room=b&since=<last id> (ids
 *   are one server-wide sequence, so one id resumes them all). Changing the set
 *   restarts that stream with since=<its last id>: nothing lost or repeated for
 *   the rooms that stay; a room that joins first gets its snapshot (the newest
 *   H2ChatSnapshot messages) from a short GET of that room alone, read up to its
 *   presence line (or 400 ms of quiet) and dropped, then the restarted stream
 *   resumes from the id the change started at. The server cannot put the
 *   location's own room ('') on a stream of named rooms, so a set holding '' and
 *   named rooms takes two streams (one each); '' alone or named rooms alone, one.
 *   A room that leaves the set is forgotten: when it comes back it starts from its
 *   snapshot again;
 * - reconnect with exponential backoff and full jitter (a random wait between 0 and
 *   min(backoffMax, backoffMin * 2^(attempt-1))); 503/429 wait at least Retry-After;
 *   a stream the server ends with a reconnect hint ({"type":"reconnect","retry":ms}:
 *   a restart, each client told its own delay so they do not all return at once) is
 *   not a failure: the next attempt waits exactly that long, once;
 * - a watchdog: no byte for 2.5 heartbeat intervals (X-H2Chat-Heartbeat), and at
 *   least the interval + 3 s, means a dead stream: abort and reconnect;
 * - in a browser, one held stream for all tabs of an origin: the tab holding a Web
 *   Lock is the leader and relays every line over a BroadcastChannel; each tab
 *   tells the leader its rooms, the leader's stream carries the union of them and
 *   each tab hands over only its own rooms' events. A tab that opens, or adds a
 *   room the leader already carries, gets that room's recent messages (`keep` per
 *   room), its count and its members from the leader. When the leader goes away
 *   the next tab gets the lock and resumes from the last id. Without
 *   navigator.locks or BroadcastChannel (and always in Node) each client reads its
 *   own stream;
 * - presence: the counts (H2ChatPresence count) and, with H2ChatPresence members,
 *   who is there: `user` names this client (?user=, taken by the server when the
 *   location has no auth; a tab's stream names the leader tab's user, so one
 *   browser is one person); presenceOf(room) tracks it per room;
 * - moderation: a 'delete' removes a message from the leader's kept history too, a
 *   'clear' empties it; the stream the server ends after a clear resumes as any
 *   other (a gap the resume reports for the cleared room, followed by the clear
 *   again, is dropped: the room is empty anyway).
 *
 * Events (on(type, fn) returns a function that removes fn). `room` is '' for the
 * location's own room.
 *   'message' {id, room, user, text, time, epoch}  each message once, in id order
 *                                            within its room (a room that joins the
 *                                            set brings older ids than the others')
 *   'gap'     {room, missed, from, to}       messages from..to left the history first
 *   'reset'   {last_id, epoch}               the server's ids started over; epoch + 1,
 *                                            ids of the new epoch start low again
 *   'presence' {room, count}                 streams holding the room (at start, on change)
 *   'members' {room, members}                (H2ChatPresence members) who is there now
 *   'join'    {room, user}, 'leave' {room, user}  a person came / the last of theirs left
 *   'delete'  {room, id}                     a moderator deleted message id: remove it
 *   'clear'   {room}                         a moderator cleared the room: empty its view
 *                                            (once: the resume that meets it again drops it)
 *   'state'   {connected, status, leader, attempt, delay}
 *             status: 'connecting' | 'connected' | 'reconnecting' | 'busy' (503/429)
 *             | 'offline' | 'waiting' (a follower tab hears nothing from the leader)
 *             | 'closed'; delay: ms until the next attempt
 *   'error'   Error                          not fatal (a bad line, a broken stream,
 *                                            a GET refused: H2ChatError with status
 *                                            and rooms); the client goes on by itself
 */

const LINE_MAX = 1 << 20;     // a longer line is not from our server
const CONNECT_MS = 45000;     // for the response headers, and the watchdog until they say more
const LIVED_MS = 3000;        // a stream that lived this long resets the backoff
const RETRY_AFTER_MAX = 300000;  // also the longest reconnect hint taken
const SNAP_QUIET_MS = 400;    // a room's snapshot GET: done after this long without a byte
const SNAP_MAX_MS = 5000;     // ... and at the latest
const GAP_HOLD_MS = 300;      // a gap waits this long for its room's clear (which voids it)
const TAB_TTL_MS = 30000;     // a tab that has not said its rooms for this long is gone
const TAB_ANNOUNCE_MS = 10000;
const ROOM_RE = /^[A-Za-z0-9_.:@-]{1,64}$/;

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

// A room name the server takes: '' (the location's own room) or 1-64 of A-Z a-z 0-9 _ . : @ -
export function validRoom(name) {
  return name === '' || (typeof name === 'string' && ROOM_RE.test(name));
}

function validMessage(m) {
  return m && Number.isSafeInteger(m.id) && m.id >= 0 &&
    typeof m.user === 'string' && typeof m.text === 'string' &&
    typeof m.time === 'number' && Number.isFinite(m.time);
}

const roomOf = (o) => (typeof o.room === 'string' ? o.room : '');
const laneOf = (room) => (room === '' ? '' : '*');
const hasDom = () => typeof document !== 'undefined' && typeof window !== 'undefined';

function roomList(rooms) {
  const out = [];
  for (const r of rooms || []) {
    if (!validRoom(r)) throw new TypeError(`h2chat: not a room name: ${JSON.stringify(r)}`);
    if (!out.includes(r)) out.push(r);
  }
  return out;
}

export class H2ChatClient {
  /**
   * endpoint: the chat location ('/msgs' in a page; 'http://host:port/msgs' in Node).
   * options:
   *   rooms       the rooms to follow (default ['']: the location's own room)
   *   user        the name this client is present as (H2ChatPresence members)
   *   share       true: share one stream among the browser's tabs when it can
   *   since       resume after this id at start (default: the server's snapshot)
   *   headers     extra request headers (e.g. Authorization), GET, POST and DELETE
   *   credentials fetch's credentials (default 'same-origin'; 'include' with a
   *               `stream` on another origin, for its cookies)
   *   stream      where the held GETs go, if not the endpoint: the chat on a
   *               fast-path origin (the server's X-H2Chat-Stream, H2ChatStreamURL)
   *   backoffMin  ms (500), backoffMax ms (10000): the jittered backoff's bounds
   *   keep        messages per room a leader tab keeps to hand to tabs (1000)
   *   maxRooms    named rooms on one stream (32, H2ChatMaxRoomsPerStream)
   *   fetch       a fetch function (default globalThis.fetch)
   */
  constructor(endpoint = '/msgs', options = {}) {
    this.endpoint = endpoint.replace(/\/+$/, '') || endpoint;
    this.opts = {
      rooms: [''], user: '', share: true, since: 0, headers: {}, credentials: 'same-origin',
      backoffMin: 500, backoffMax: 10000, keep: 1000, maxRooms: 32, fetch: null, ...options,
    };
    this.mine = roomList(this.opts.rooms);
    this.user = typeof this.opts.user === 'string' ? this.opts.user : '';
    this.handlers = new Map();
    this.epoch = 0;
    const since = Number.isSafeInteger(this.opts.since) && this.opts.since > 0 ? this.opts.since : 0;
    this.cursor = since;        // the highest id delivered, any room
    this.seen = new Map(this.mine.map((r) => [r, since])); // room -> the last id delivered in it
    this.pos = new Map([['', since], ['*', since]]); // lane -> its stream's last id
    this.recent = new Map();    // room -> its last `keep` messages, for tabs (shared mode)
    this.pres = new Map();      // room -> {count, members: Set | null}
    this.state = { connected: false, status: 'connecting', leader: false, attempt: 0, delay: 0 };
    this.isLeader = false;
    this.started = false;
    this.closed = false;
    this.followerStall = CONNECT_MS + 5000;
    this.lanes = new Map();     // leader: '' (the location's room) and '*' (named rooms)
    this.tabs = new Map();      // leader: tabId -> {rooms, t}: the other tabs' rooms
    this.gaps = new Map();      // room -> a held gap line (see hold())
    this.timers = new Set();
    this.cleanups = [];
    this.tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);
    this.synced = new Set();    // follower: rooms whose history came from the leader
    this.pending = [];          // follower: relayed lines of rooms not synced yet
    this.chan = null;
    this.busy = null;           // leader: the running reconcile()
    this.dirty = false;
    this.named = false;         // the server names members (H2ChatPresence members)
    this.cleared = new Set();   // rooms cleared with no message since
  }

  get lastId() { return this.cursor; }
  get connected() { return this.state.connected; }
  get leader() { return this.isLeader; }
  get rooms() { return [...this.mine]; }

  // {count, members} of a followed room as last heard (members: null unless the
  // server names them), or null for a room not followed.
  presenceOf(room) {
    const p = this.pres.get(room);
    return p ? { count: p.count, members: p.members ? [...p.members] : null } : null;
  }

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
    else this.post({ t: 'bye', from: this.tabId });
    this.closed = true;
    this.isLeader = false;
    for (const lane of this.lanes.values()) this.stopLane(lane);
    this.lanes.clear();
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

  /* ---------- rooms ---------- */

  // Follows exactly these rooms from now on (see the header: what a change costs).
  setRooms(rooms) {
    const next = roomList(rooms);
    const gone = this.mine.filter((r) => !next.includes(r));
    const added = next.filter((r) => !this.mine.includes(r));
    if (!gone.length && !added.length) return this;
    this.mine = next;
    for (const r of gone) this.forget(r);
    if (this.closed || !this.started) return this;
    if (this.isLeader) {
      for (const r of added) this.replay(r);
      this.reconcile();
    } else {
      this.hello(added);
    }
    return this;
  }

  addRoom(room) { return this.setRooms([...this.mine, room]); }
  removeRoom(room) { return this.setRooms(this.mine.filter((r) => r !== room)); }

  // The name this client is present as (H2ChatPresence members). Once the server
  // has named members, the leader's streams start over with it (resuming: nothing
  // lost or repeated); before, the next connect takes it.
  setUser(user) {
    const u = typeof user === 'string' ? user : '';
    if (u === this.user) return this;
    this.user = u;
    if (this.isLeader && this.named) for (const lane of this.lanes.values()) this.restartLane(lane, lane.rooms, this.pos.get(lane.key));
    return this;
  }

  // A leader tab takes up a room its streams carry for another tab: what it kept.
  replay(room) {
    for (const m of this.recent.get(room) || []) this.emit('message', { ...m });
    const p = this.pres.get(room);
    if (p) this.emit('presence', { room, count: p.count });
    if (p && p.members) this.emit('members', { room, members: [...p.members] });
  }

  // Drops what this client knows of a room that left its set (and, for a leader,
  // left every tab's): if it comes back it starts from its snapshot again.
  forget(room) {
    if (this.isLeader && this.union().includes(room)) return;
    this.seen.delete(room);
    this.recent.delete(room);
    this.pres.delete(room);
    this.synced.delete(room);
    this.cleared.delete(room);
    this.pending = this.pending.filter((p) => roomOf(p.obj) !== room);
    const g = this.gaps.get(room);
    if (g) { this.cancel(g.timer); this.gaps.delete(room); }
  }

  // The rooms the leader's streams carry: its own and every live tab's.
  union() {
    const all = [...this.mine];
    const now = Date.now();
    for (const [id, tab] of this.tabs) {
      if (now - tab.t > TAB_TTL_MS) { this.tabs.delete(id); this.reconcile(); continue; }
      for (const r of tab.rooms) if (!all.includes(r)) all.push(r);
    }
    return all;
  }

  /* ---------- lines: the same code for a leader and its followers ---------- */

  // Applies one parsed stream line of a room this client handles; returns false
  // if it was a duplicate (or of no room of ours). `lane`: the stream it came on.
  apply(o, lane) {
    const room = roomOf(o);
    const wanted = this.isLeader ? this.union().includes(room) : this.mine.includes(room);
    const own = this.mine.includes(room);
    switch (o.type) {
      case 'message': {
        if (!validMessage(o) || !wanted || o.id <= (this.seen.get(room) || 0)) return false;
        this.seen.set(room, o.id);
        this.cleared.delete(room);
        if (o.id > this.cursor) this.cursor = o.id;
        if (lane !== undefined && o.id > (this.pos.get(lane) || 0)) this.pos.set(lane, o.id);
        const m = { id: o.id, room, user: o.user, text: o.text, time: o.time, epoch: this.epoch };
        if (this.chan) this.keepRecent(room, m);
        if (own) this.emit('message', m);
        return true;
      }
      case 'gap':
        if (own) this.emit('gap', { room, missed: o.missed, from: o.from, to: o.to });
        return wanted;
      case 'reset':
        // The server's ids started over: a new epoch accepts any id again.
        this.epoch++;
        this.cursor = 0;
        this.seen.clear();
        for (const k of this.pos.keys()) this.pos.set(k, 0);
        this.emit('reset', { last_id: o.last_id, epoch: this.epoch });
        return true;
      case 'reconnect':
        // The stream's last line when its server process stops: wait this long
        // before the next attempt (run() takes it once the stream has ended).
        if (lane !== undefined && this.lanes.has(lane) && Number.isFinite(o.retry) && o.retry >= 0) {
          this.lanes.get(lane).hint = Math.min(Math.floor(o.retry), RETRY_AFTER_MAX);
        }
        return false;
      case 'presence':
        if (!wanted || !Number.isSafeInteger(o.count)) return false;
        this.presState(room).count = o.count;
        if (own) this.emit('presence', { room, count: o.count });
        return true;
      case 'members': {
        if (!wanted || !Array.isArray(o.members)) return false;
        const names = o.members.filter((u) => typeof u === 'string');
        this.named = true;
        this.presState(room).members = new Set(names);
        if (own) this.emit('members', { room, members: [...names] });
        return true;
      }
      case 'join':
      case 'leave': {
        if (!wanted || typeof o.user !== 'string') return false;
        const p = this.presState(room);
        if (!p.members) p.members = new Set();
        if (o.type === 'join') p.members.add(o.user);
        else p.members.delete(o.user);
        if (own) this.emit(o.type, { room, user: o.user });
        return true;
      }
      case 'delete': {
        if (!wanted || !Number.isSafeInteger(o.id)) return false;
        const kept = this.recent.get(room);
        if (kept) {
          const i = kept.findIndex((m) => m.id === o.id);
          if (i >= 0) kept.splice(i, 1);
        }
        if (own) this.emit('delete', { room, id: o.id });
        return true;
      }
      case 'clear':
        // the stream a clear ends resumes from before it, and meets it again
        if (!wanted || this.cleared.has(room)) return false;
        this.cleared.add(room);
        if (this.recent.has(room)) this.recent.set(room, []);
        if (own) this.emit('clear', { room });
        return true;
      default: // heartbeat, or a type this client does not know
        return true;
    }
  }

  presState(room) {
    if (!this.pres.has(room)) this.pres.set(room, { count: 0, members: null });
    return this.pres.get(room);
  }

  keepRecent(room, m) {
    if (!this.recent.has(room)) this.recent.set(room, []);
    const kept = this.recent.get(room);
    kept.push(m);
    if (kept.length > this.opts.keep) kept.shift();
  }

  // A follower applies a relayed line only in the leader's epoch it belongs to.
  applyRelayed(o, ep, lane) {
    if (o.type === 'reset') {
      if (ep <= this.epoch) return;  // already in the history we adopted
      this.apply(o);
      this.epoch = ep;
    } else if (o.type !== 'message' || ep === this.epoch) {
      this.apply(o, lane);
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
      else this.post({ t: 'bye', from: this.tabId });
    };
    window.addEventListener('pagehide', onHide);
    this.cleanups.push(() => window.removeEventListener('pagehide', onHide));
    this.hello();
    // Ask again until a leader answers (it may be starting, or just went away);
    // now and then say the rooms again, so that a leader forgets a tab that died.
    let last = Date.now();
    const retry = setInterval(() => {
      if (this.isLeader) return;
      const missing = this.mine.filter((r) => !this.synced.has(r));
      if (missing.length || Date.now() - last > TAB_ANNOUNCE_MS) { this.hello(missing); last = Date.now(); }
    }, 1500);
    this.cleanups.push(() => clearInterval(retry));
    this.kickFollower();
  }

  post(msg) {
    if (this.chan) {
      try { this.chan.postMessage(msg); } catch (e) { /* channel closed while unloading */ }
    }
  }

  relay(msg) {
    if (this.isLeader) this.post(msg);
  }

  // A follower tells the leader its rooms, and asks for the history of `want`
  // (default: every room it has no history of).
  hello(want) {
    if (this.isLeader || !this.chan) return;
    const w = want || this.mine.filter((r) => !this.synced.has(r));
    this.post({ t: 'hello', from: this.tabId, rooms: this.mine, want: w });
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
      this.onTab(d);
      return;
    }
    if (d.t === 'hello' || d.t === 'bye') return; // another follower: says nothing about the stream
    if (typeof d.stall === 'number' && d.stall > 0) this.followerStall = d.stall;
    this.kickFollower();
    switch (d.t) {
      case 'line':
        if (this.synced.has(roomOf(d.obj)) || d.obj.type === 'reset') this.applyRelayed(d.obj, d.ep, d.lane);
        else if (this.mine.includes(roomOf(d.obj))) {
          this.pending.push(d);
          if (this.pending.length > this.opts.keep) this.pending.shift(); // a leader that never answers
        }
        if (d.obj.type === 'message' && d.lane !== undefined && d.pos > (this.pos.get(d.lane) || 0)) {
          this.pos.set(d.lane, d.pos);
        }
        break;
      case 'state':
        this.setState(d.state);
        break;
      case 'history':
        if (d.to === this.tabId) this.adopt(d);
        break;
      case 'leader':
        this.setState(d.state);
        this.synced.clear(); // the new leader may know less: ask again (duplicates are dropped)
        this.hello();
        break;
      default:
        break;
    }
  }

  // The leader hears from a tab: its rooms (and what history it wants), or that it left.
  onTab(d) {
    if (d.t === 'bye' && typeof d.from === 'string') {
      if (this.tabs.delete(d.from)) this.reconcile();
      return;
    }
    if (d.t !== 'hello' || typeof d.from !== 'string' || !Array.isArray(d.rooms)) return;
    const rooms = d.rooms.filter(validRoom);
    const prev = this.tabs.get(d.from);
    this.tabs.set(d.from, { rooms, t: Date.now() });
    const want = Array.isArray(d.want) ? d.want.filter((r) => rooms.includes(r)) : rooms;
    const hist = {};
    for (const r of want) {
      const p = this.pres.get(r);
      hist[r] = { msgs: this.recent.get(r) || [],
        count: p ? p.count : null, members: p && p.members ? [...p.members] : null };
    }
    this.relay({ t: 'history', to: d.from, epoch: this.epoch, cursor: this.cursor,
      pos: [...this.pos], state: this.state, rooms: hist });
    if (!prev || prev.rooms.join('\n') !== rooms.join('\n')) this.reconcile();
  }

  // A follower takes the leader's history of some rooms, then the lines relayed meanwhile.
  adopt(d) {
    if (!d.rooms || typeof d.rooms !== 'object') return;
    if (d.epoch > this.epoch) { this.epoch = d.epoch; this.cursor = 0; this.seen.clear(); }
    for (const [r, h] of Object.entries(d.rooms)) {
      if (!this.mine.includes(r) || this.synced.has(r)) continue;
      for (const m of h.msgs || []) {
        if (!validMessage(m) || m.epoch !== this.epoch || m.id <= (this.seen.get(r) || 0)) continue;
        this.seen.set(r, m.id);
        if (m.id > this.cursor) this.cursor = m.id;
        this.keepRecent(r, m);
        this.emit('message', { ...m, room: r });
      }
      if (Number.isSafeInteger(h.count)) this.apply({ type: 'presence', room: r, count: h.count });
      if (Array.isArray(h.members)) this.apply({ type: 'members', room: r, members: h.members });
      this.synced.add(r);
    }
    if (d.cursor > this.cursor) this.cursor = d.cursor;
    for (const [k, v] of d.pos || []) if (v > (this.pos.get(k) || 0)) this.pos.set(k, v);
    const still = [];
    for (const p of this.pending.splice(0)) {
      if (this.synced.has(roomOf(p.obj))) this.applyRelayed(p.obj, p.ep, p.lane);
      else still.push(p);
    }
    this.pending = still;
    this.setState(d.state);
  }

  becomeLeader() {
    if (this.closed) return;
    this.isLeader = true;
    this.cancel(this.followerTimer);
    if (this.pending.length) {
      // never got the history of these: take the epoch of the first line relayed to us
      const p = this.pending[0];
      if (!this.synced.size) this.epoch = p.obj.type === 'reset' ? p.ep - 1 : p.ep;
      for (const q of this.pending.splice(0)) this.applyRelayed(q.obj, q.ep, q.lane);
    }
    for (const r of this.mine) this.synced.add(r);
    this.setState({ connected: false, status: 'connecting' });
    this.relay({ t: 'leader', state: this.state });
    this.reconcile();
  }

  /* ---------- the streams (leader only) ---------- */

  // Brings the streams in line with union(): one for '' if it is there, one for
  // the named rooms if there are any. Runs one at a time; changes made while it
  // runs are taken by its next pass.
  reconcile() {
    if (!this.isLeader || this.closed) return;
    this.dirty = true;
    if (this.busy) return;
    this.busy = (async () => {
      while (this.dirty && !this.closed && this.isLeader) {
        this.dirty = false;
        try { await this.reconcileOnce(); } catch (e) { this.emit('error', e); }
      }
    })().finally(() => { this.busy = null; });
  }

  async reconcileOnce() {
    const all = this.union();
    for (const r of [...this.seen.keys(), ...this.recent.keys(), ...this.pres.keys()]) {
      if (!all.includes(r)) this.forget(r);
    }
    let named = all.filter((r) => r !== '');
    if (named.length > this.opts.maxRooms) {
      this.emit('error', new Error(`h2chat: more than ${this.opts.maxRooms} rooms; following the first`));
      named = named.slice(0, this.opts.maxRooms);
    }
    const want = new Map();
    if (all.includes('')) want.set('', ['']);
    if (named.length) want.set('*', named);
    for (const [key, lane] of this.lanes) {
      if (!want.has(key)) { this.stopLane(lane); this.lanes.delete(key); this.announceLanes(); }
    }
    for (const [key, rooms] of want) {
      const lane = this.lanes.get(key);
      if (!lane) {
        this.startLane(key, rooms);
        continue;
      }
      const added = rooms.filter((r) => !lane.rooms.includes(r));
      const kept = rooms.filter((r) => lane.rooms.includes(r));
      if (!added.length && kept.length === lane.rooms.length) continue;
      if (!kept.length) { this.restartLane(lane, rooms, 0); continue; }
      // Rooms that stay resume from the id the change started at; rooms that join
      // take their snapshot from a GET of their own first.
      const from = this.pos.get(key) || 0;
      const fresh = added.filter((r) => !this.seen.has(r));
      if (fresh.length) await this.snapshot(fresh);
      if (this.closed || !this.isLeader || this.lanes.get(key) !== lane) return;
      this.restartLane(lane, rooms, from);
    }
  }

  newLane(key, rooms) {
    return { key, rooms, ctrl: null, wake: null, hint: -1, restart: false,
      stall: CONNECT_MS, st: { connected: false, status: 'connecting' }, stopped: false };
  }

  startLane(key, rooms) {
    // rooms it knows nothing of take their snapshot (no since=)
    if (!rooms.some((r) => this.seen.has(r))) this.pos.set(key, 0);
    const lane = this.newLane(key, rooms);
    this.lanes.set(key, lane);
    this.run(lane).catch((e) => this.emit('error', e));
    return lane;
  }

  stopLane(lane) {
    lane.stopped = true;
    if (lane.side) lane.side.abort();
    if (lane.ctrl) lane.ctrl.abort();
    if (lane.wake) lane.wake();
  }

  // The lane's stream starts over at once (no backoff) for these rooms, after id `from`.
  restartLane(lane, rooms, from) {
    lane.rooms = rooms;
    this.pos.set(lane.key, from);
    lane.restart = true;
    if (lane.ctrl) lane.ctrl.abort();
    if (lane.wake) lane.wake();
  }

  // One state for all lanes: connected when every stream is.
  announceLanes() {
    const lanes = [...this.lanes.values()];
    if (!lanes.length) return;
    const down = lanes.find((l) => !l.st.connected);
    const stall = Math.max(...lanes.map((l) => l.stall));
    this.setState(down ? down.st : lanes[0].st);
    this.relay({ t: 'state', state: this.state, stall: stall + 5000 });
  }

  announce(lane, s) {
    lane.st = s;
    this.announceLanes();
  }

  sleep(lane, ms) {
    return new Promise((resolve) => {
      let t = 0;
      const done = () => {
        this.cancel(t);
        if (hasDom()) window.removeEventListener('online', done);
        lane.wake = null;
        resolve();
      };
      t = this.later(done, ms);
      lane.wake = done;
      if (hasDom()) window.addEventListener('online', done); // the network is back: try now
    });
  }

  // Parses one line; null if it is not one.
  parse(raw) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!line.trim()) return null;
    let o;
    try { o = JSON.parse(line); } catch (e) {
      this.emit('error', new Error('h2chat: bad line ' + line.slice(0, 200)));
      return null;
    }
    return o && typeof o === 'object' && typeof o.type === 'string' ? o : null;
  }

  // Applies a line of the leader's own stream and relays it to the other tabs. A
  // gap waits a moment for its room's next line: a clear right after it (a resume
  // across a clear) makes it moot, and it is dropped.
  deliver(o, lane) {
    const room = roomOf(o);
    const held = this.gaps.get(room);
    if (o.type === 'gap') {
      if (held) this.flushGap(room);
      this.gaps.set(room, { o, lane, timer: this.later(() => this.flushGap(room), GAP_HOLD_MS) });
      return;
    }
    if (held && o.type === 'clear') { this.cancel(held.timer); this.gaps.delete(room); }
    else if (held) this.flushGap(room);
    this.pass(o, lane);
  }

  flushGap(room) {
    const held = this.gaps.get(room);
    if (!held) return;
    this.cancel(held.timer);
    this.gaps.delete(room);
    if (!this.closed) this.pass(held.o, held.lane);
  }

  pass(o, lane) {
    if (this.apply(o, lane)) {
      const l = this.lanes.get(lane);
      this.relay({ t: 'line', obj: o, ep: this.epoch, lane, pos: this.pos.get(lane),
        stall: (l ? l.stall : CONNECT_MS) + 5000 });
    }
  }

  // Reads NDJSON lines into onLine until the stream ends, fails, stalls or
  // onLine returns false; returns whether a line came.
  async readLines(resp, ctrl, stallMs, onLine) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder('utf-8');
    let buf = '';
    let gotLine = false;
    let stall = 0;
    const kick = () => {
      this.cancel(stall);
      stall = this.later(() => ctrl.abort(), stallMs());
    };
    kick();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.closed || ctrl.signal.aborted) break;
        kick();
        buf += decoder.decode(value, { stream: true });
        let start = 0;
        let nl;
        let go = true;
        while (go && (nl = buf.indexOf('\n', start)) >= 0) {
          const o = this.parse(buf.slice(start, nl));
          start = nl + 1;
          if (!o) continue;
          gotLine = true;
          go = onLine(o) !== false && !this.closed && !ctrl.signal.aborted;
        }
        if (!go) break;
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

  // GET <stream or endpoint>[?room=..][&user=..][&since=..]
  url(rooms, since) {
    const base = this.opts.stream || this.endpoint;
    const q = [];
    for (const r of rooms) if (r !== '') q.push('room=' + encodeURIComponent(r));
    if (this.user) q.push('user=' + encodeURIComponent(this.user));
    if (since > 0) q.push('since=' + encodeURIComponent(String(since)));
    if (!q.length) return base;
    return base + (base.includes('?') ? '&' : '?') + q.join('&');
  }

  // The newest messages of rooms that join a stream: a GET of them alone, read up
  // to each room's presence line (the server sends it once the snapshot is out)
  // or a moment of quiet, then dropped.
  async snapshot(rooms) {
    const fetchFn = this.opts.fetch || globalThis.fetch;
    const ctrl = new AbortController();
    const lane = this.lanes.get('*');
    if (lane) lane.side = ctrl;
    const cap = this.later(() => ctrl.abort(), SNAP_MAX_MS);
    try {
      const resp = await fetchFn(this.url(rooms, 0), {
        cache: 'no-store', credentials: this.opts.credentials, signal: ctrl.signal,
        headers: { ...this.opts.headers },
      });
      if (!resp.ok || !resp.body) {
        this.emit('error', this.getError(resp, rooms));
        try { await resp.body?.cancel(); } catch (e) { /* ignore */ }
        return;
      }
      const told = new Set();
      await this.readLines(resp, ctrl, () => SNAP_QUIET_MS, (o) => {
        if (o.type === 'presence' || o.type === 'members') told.add(roomOf(o));
        if (o.type === 'message' || o.type === 'gap' || o.type === 'delete' || o.type === 'clear') {
          this.deliver(o, undefined);
        }
        return !(rooms.every((r) => told.has(r)) || o.type === 'heartbeat');
      });
    } catch (e) {
      if (e && e.name !== 'AbortError' && !this.closed) this.emit('error', e);
    } finally {
      this.cancel(cap);
      if (lane) lane.side = null;
    }
  }

  getError(resp, rooms) {
    const e = new H2ChatError(`GET answered ${resp.status}`, resp.status);
    e.rooms = rooms.filter((r) => r !== '');
    return e;
  }

  // The wait before attempt n (1, 2, ...): full jitter under a doubling ceiling.
  backoff(attempt) {
    const { backoffMin, backoffMax } = this.opts;
    const ceiling = Math.min(backoffMax, backoffMin * 2 ** Math.min(attempt - 1, 30));
    return Math.floor(Math.random() * ceiling);
  }

  async run(lane) {
    const fetchFn = this.opts.fetch || globalThis.fetch;
    let attempt = 0;    // failures since the last good stream
    let delay = 0;
    const key = lane.key;
    while (!this.closed && !lane.stopped) {
      if (delay) await this.sleep(lane, delay);
      if (this.closed || lane.stopped) break;
      lane.restart = false;
      const ctrl = new AbortController();
      lane.ctrl = ctrl;
      const connectTimer = this.later(() => ctrl.abort(), CONNECT_MS);
      const rooms = lane.rooms;
      let resp = null;
      try {
        resp = await fetchFn(this.url(rooms, this.pos.get(key) || 0), {
          cache: 'no-store', credentials: this.opts.credentials, signal: ctrl.signal,
          headers: { ...this.opts.headers },
        });
      } catch (e) {
        resp = null;
      } finally {
        this.cancel(connectTimer);
      }
      if (this.closed || lane.stopped || lane.restart) {
        if (resp && resp.body) resp.body.cancel().catch(() => {});
        if (this.closed || lane.stopped) break;
        delay = 0;
        continue;
      }

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
            this.emit('error', this.getError(resp, rooms));
          }
          try { await resp.body?.cancel(); } catch (e) { /* ignore */ }
        }
        this.announce(lane, { connected: false, status, attempt, delay });
        continue;
      }

      const hb = parseInt(resp.headers.get('X-H2Chat-Heartbeat') || '', 10);
      lane.stall = stallAfter(hb);
      this.announce(lane, { connected: true, status: 'connected' });
      const started = Date.now();
      lane.hint = -1;
      const gotLine = await this.readLines(resp, ctrl, () => lane.stall, (o) => {
        if (lane.restart) return false;
        this.deliver(o, key);
        return !lane.restart;
      });
      for (const r of rooms) this.flushGap(r);
      if (this.closed || lane.stopped) break;
      const hint = lane.hint;
      lane.hint = -1;
      if (lane.restart) { attempt = 0; delay = 0; continue; }
      // A stream that lived or delivered resets the backoff; one that closes at
      // once keeps growing it, so a broken server is not hammered. One the server
      // ended with a reconnect hint (a restart) is no failure: the hint is the wait,
      // for this one reconnect; it spreads the clients of a restart over time.
      if (gotLine || hint >= 0 || Date.now() - started > LIVED_MS) attempt = 0;
      attempt++;
      delay = hint >= 0 ? hint : this.backoff(attempt);
      this.announce(lane, { connected: false, status: 'reconnecting', attempt, delay });
    }
    if (lane.ctrl) lane.ctrl.abort();
    lane.ctrl = null;
  }

  /* ---------- publish and moderate ---------- */

  roomUrl(room) {
    if (!validRoom(room)) throw new TypeError(`h2chat: not a room name: ${JSON.stringify(room)}`);
    return room === '' ? this.endpoint : this.endpoint + '/' + room;
  }

  async send(method, url, body) {
    const fetchFn = this.opts.fetch || globalThis.fetch;
    let resp;
    try {
      resp = await fetchFn(url, {
        method,
        headers: body === undefined ? { ...this.opts.headers }
          : { ...this.opts.headers, 'Content-Type': 'application/json' },
        credentials: this.opts.credentials,
        body,
      });
    } catch (e) {
      throw new H2ChatError('could not reach the server: ' + (e && e.message || e), 0);
    }
    let answer = null;
    try { answer = await resp.json(); } catch (e) { /* not JSON */ }
    if (resp.ok) return answer || {};
    const msg = answer && typeof answer.error === 'string' && answer.error
      ? answer.error : `The server answered ${resp.status}${resp.statusText ? ' ' + resp.statusText : ''}.`;
    throw new H2ChatError(msg, resp.status, parseRetryAfter(resp.headers.get('Retry-After')));
  }

  // POSTs one message (to `room`, default the location's own); resolves with
  // {id, time}, rejects with an H2ChatError whose message is the server's JSON
  // "error" (or says the server was not reached).
  publish(user, text, room = '') {
    return this.send('POST', this.roomUrl(room), JSON.stringify({ user, text }));
  }

  // DELETEs message `id` of `room` (a moderator's: the server's auth decides);
  // resolves with {type: 'delete', room, id}; every stream of the room is told.
  remove(room, id) {
    if (!Number.isSafeInteger(id) || id < 0) throw new TypeError('h2chat: not a message id');
    const url = room === '' ? this.endpoint + '?id=' + id : this.roomUrl(room) + '/' + id;
    return this.send('DELETE', url);
  }

  // GET <room>?presence: {room, count} now (and members with H2ChatPresence
  // members). A location without rooms answers its own room ({room: ''}) for any name.
  async presence(room = '') {
    const u = this.roomUrl(room);
    const fetchFn = this.opts.fetch || globalThis.fetch;
    let resp;
    try {
      resp = await fetchFn(u + (u.includes('?') ? '&' : '?') + 'presence', {
        cache: 'no-store', credentials: this.opts.credentials, headers: { ...this.opts.headers },
      });
    } catch (e) {
      throw new H2ChatError('could not reach the server: ' + (e && e.message || e), 0);
    }
    let answer = null;
    try { answer = await resp.json(); } catch (e) { /* not JSON */ }
    if (resp.ok && answer && typeof answer === 'object') return answer;
    const msg = answer && typeof answer.error === 'string' && answer.error
      ? answer.error : `The server answered ${resp.status}.`;
    throw new H2ChatError(msg, resp.status, parseRetryAfter(resp.headers.get('Retry-After')));
  }
}
