#!/usr/bin/env node
/*
 * htdocs/h2chat-client.js in Node (no DOM: each client reads its own stream),
 * against a running Apache with mod_h2chat over plain HTTP/1.1 (Node's fetch).
 * Driven by t/test_client_node.py; by hand:
 *
 *   H2CHAT_URL=http://127.0.0.1:8080 node node-test.mjs
 *
 * The server's /msgs should have a small H2ChatSnapshot (the driver sets 2), so
 * that a resume without since= would lose messages, and /limited a rate limit
 * of one POST (H2ChatRateLimit 0.2 1). Besides Apache the test runs a small fake
 * server of its own for what Apache will not do on demand: a stream that goes
 * silent (the watchdog), one that repeats what the client has (duplicates are
 * dropped), gap and reset lines, reconnect hints, and a 503 with Retry-After.
 * The server's H2ChatReconnectSpread should be 2 (the driver sets it): the
 * hinted restart checks the hint is below 2 s.
 *
 * Output: one JSON line {"scenario":"node","ok","checks":[{name,ok,detail}],"data","error"}.
 * {"event":"graceful"} asks the driver for `apache2 -k graceful` (which ends every
 * held stream); it answers with one JSON line on stdin once the new generation runs.
 * After the result the process must exit by itself: close() leaves nothing running.
 */
import http from 'node:http';
import { createInterface } from 'node:readline';
import { H2ChatClient, H2ChatError } from '../../htdocs/h2chat-client.js';

const BASE = (process.env.H2CHAT_URL || '').replace(/\/+$/, '');
const ENDPOINT = BASE + '/msgs';
const checks = [];
const data = {};
const check = (name, ok, detail) => { checks.push({ name, ok: !!ok, detail: detail ?? null }); return !!ok; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function until(pred, timeout, every = 50) {
  const end = Date.now() + timeout;
  while (!pred()) {
    if (Date.now() > end) return false;
    await sleep(every);
  }
  return true;
}

let rl = null;
const answers = [];
function ask(event) {
  if (!rl) {
    rl = createInterface({ input: process.stdin });
    rl.on('line', (l) => { const w = answers.shift(); if (w) w(l); });
  }
  emit({ event });
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no answer to ${event}`)), 60000);
    answers.push((l) => { clearTimeout(t); res(JSON.parse(l)); });
  });
}

// A fetch that records every GET's URL and, while `gate` is set, holds GETs
// until it is lifted (the stream stays down as long as the test wants).
function recordingFetch() {
  const rec = { urls: [], gate: null, held: 0 };
  rec.fetch = async (url, init = {}) => {
    if (!init.method || init.method === 'GET') {
      while (rec.gate) { rec.held++; await rec.gate; rec.held--; }
      rec.urls.push({ url: String(url), t: Date.now() });
    }
    return fetch(url, init);
  };
  rec.close = () => { let open; rec.gate = new Promise((r) => { open = r; }); rec.open = () => { rec.gate = null; open(); }; };
  return rec;
}

// A fetch that keeps each GET's body text as the client reads it, and when
// that GET was made and its body ended (the client's reading is unchanged:
// the body passes through a TransformStream, cancels and aborts included).
function tappingFetch() {
  const tap = { gets: [] };
  tap.fetch = async (url, init = {}) => {
    const resp = await fetch(url, init);
    if ((init.method && init.method !== 'GET') || !resp.body) return resp;
    const g = { url: String(url), t: Date.now(), text: '', end: 0 };
    tap.gets.push(g);
    const dec = new TextDecoder();
    const body = resp.body.pipeThrough(new TransformStream({
      transform(chunk, ctl) { g.text += dec.decode(chunk, { stream: true }); ctl.enqueue(chunk); },
      flush() { g.end = Date.now(); },
    }));
    return new Response(body, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
  };
  return tap;
}

function collect(client) {
  const got = { msgs: [], states: [], gaps: [], resets: [], errors: [] };
  client.on('message', (m) => got.msgs.push(m));
  client.on('state', (s) => got.states.push({ ...s, t: Date.now() }));
  client.on('gap', (g) => got.gaps.push(g));
  client.on('reset', (r) => got.resets.push(r));
  client.on('error', (e) => got.errors.push(String(e && e.message || e)));
  return got;
}

const ids = (got) => got.msgs.map((m) => m.id);
const dupes = (a) => a.filter((v, i) => a.indexOf(v) !== i);
const postRaw = (path, body) => fetch(BASE + path, {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

/* 1. subscribe, receive, publish; 2. resume after the server drops the stream */
async function subscribeAndResume() {
  const rec = recordingFetch();
  const client = new H2ChatClient(ENDPOINT, { fetch: rec.fetch });
  const got = collect(client);
  client.start();
  check('connects', await until(() => client.connected, 10000), got.states);
  check('first GET has no since= (a fresh client takes the snapshot)',
    rec.urls.length === 1 && !rec.urls[0].url.includes('since='), rec.urls);
  const sent = [];
  for (let i = 0; i < 3; i++) sent.push((await client.publish('node', `node says ${i}`)).id);
  check('publish resolves with increasing ids', sent.every((v, i) => Number.isSafeInteger(v) && (i === 0 || v > sent[i - 1])), sent);
  check('receives its messages, once, in order',
    await until(() => sent.every((id) => ids(got).includes(id)), 5000) && !dupes(ids(got)).length, ids(got));
  const m = got.msgs.find((x) => x.id === sent[0]);
  check('message fields', m && m.user === 'node' && m.text === 'node says 0' && typeof m.time === 'number' && m.epoch === 0, m);
  check('lastId follows the stream', client.lastId === sent[2], client.lastId);

  // The server drops the stream (graceful restart); the client is held off
  // while five messages are posted (more than the snapshot of 2).
  rec.close();
  const lastBefore = client.lastId;
  const nUrls = rec.urls.length;
  await ask('graceful');
  check('sees the drop', await until(() => !client.connected, 15000), got.states.slice(-3));
  await until(() => rec.held > 0, 5000);
  const during = [];
  for (let i = 0; i < 5; i++) during.push((await client.publish('node', `while down ${i}`)).id);
  rec.open();
  check('reconnects', await until(() => client.connected, 15000), got.states.slice(-3));
  check('resumes with since=<last id>', rec.urls.length > nUrls &&
    rec.urls[nUrls].url.endsWith(`?since=${lastBefore}`), rec.urls.slice(nUrls));
  const after = (await client.publish('node', 'after resume')).id;
  const want = [...sent, ...during, after];
  await until(() => want.every((id) => ids(got).includes(id)), 5000);
  const seen = ids(got).filter((id) => id >= sent[0]);
  check('nothing lost or twice across the drop', JSON.stringify(seen) === JSON.stringify(want),
    { want, seen });
  check('no gap or reset', got.gaps.length === 0 && got.resets.length === 0, [got.gaps, got.resets]);
  const st = got.states.map((s) => s.status);
  check('state: connected, reconnecting, connected', st.includes('connected') &&
    st.lastIndexOf('reconnecting') > st.indexOf('connected') && st[st.length - 1] === 'connected', st);
  client.close();
  check('close(): state closed, not connected', !client.connected && got.states.at(-1).status === 'closed', got.states.at(-1));
  data.resume = { sent, during, after, urls: rec.urls.map((u) => u.url) };

  // A new client given since= gets exactly what came after it.
  const c2 = new H2ChatClient(ENDPOINT, { since: during[2] });
  const g2 = collect(c2);
  c2.start();
  await until(() => ids(g2).includes(after), 5000);
  check('since option: exactly the messages after it', JSON.stringify(ids(g2)) ===
    JSON.stringify([during[3], during[4], after]), ids(g2));
  c2.close();
  // A resume id ahead of the server (its history started over): a reset line,
  // then the snapshot, in a new epoch.
  const c3 = new H2ChatClient(ENDPOINT, { since: 1e9 });
  const g3 = collect(c3);
  c3.start();
  await until(() => g3.msgs.length >= 2, 5000);
  c3.close();
  check('resume id ahead of the server: a reset event, then the snapshot in epoch 1',
    g3.resets.length === 1 && g3.resets[0].epoch === 1 && Number.isSafeInteger(g3.resets[0].last_id) &&
    JSON.stringify(ids(g3)) === JSON.stringify([during[4], after]) && g3.msgs.every((x) => x.epoch === 1),
  { resets: g3.resets, msgs: g3.msgs });

  // close() ends the held streams: the server counts none (it notices within ~2 s)
  const held = async () => {
    const t = await (await fetch(BASE + '/server-status?auto')).text();
    const m = /^H2ChatSubscribers: (\d+)$/m.exec(t);
    return m ? Number(m[1]) : null;
  };
  let n = await held();
  for (let end = Date.now() + 8000; n !== 0 && Date.now() < end; n = await held()) await sleep(250);
  check('close(): the server counts no held stream afterwards', n === 0, n);
}

/* 2b. a graceful restart with H2ChatReconnectSpread 2: the stream's last line is
 * the server's reconnect hint; the client waits exactly that long (its own backoff
 * would be 0 here), then resumes; what was posted meanwhile arrives exactly once */
async function hintedRestart() {
  const tap = tappingFetch();
  const client = new H2ChatClient(ENDPOINT, { fetch: tap.fetch, backoffMin: 1, backoffMax: 1 });
  const got = collect(client);
  client.start();
  check('hint: connects', await until(() => client.connected, 10000), got.states);
  const before = (await client.publish('node', 'before the hinted restart')).id;
  await until(() => ids(got).includes(before), 5000);
  const nGets = tap.gets.length;
  const nStates = got.states.length;
  await ask('graceful');
  // (by its state: a short hint may have it connected again before a poll)
  check('hint: sees the drop', await until(() => got.states.slice(nStates).some((x) =>
    x.status === 'reconnecting'), 15000), got.states.slice(-3));
  const during = [];
  for (let i = 0; i < 3; i++) during.push((await client.publish('node', `hinted wait ${i}`)).id);
  check('hint: reconnects', await until(() => client.connected && tap.gets.length > nGets, 15000),
    got.states.slice(nStates));
  const dropped = tap.gets[nGets - 1];
  const lines = dropped.text.split('\n').filter((l) => l.trim());
  let hint = null;
  try { hint = JSON.parse(lines[lines.length - 1]); } catch (e) { /* not JSON */ }
  check('hint: the ended stream\'s last line is {"type":"reconnect","retry":ms}, ms in [0, 2000)',
    hint && hint.type === 'reconnect' && Number.isInteger(hint.retry) && hint.retry >= 0 &&
    hint.retry < 2000 && Object.keys(hint).length === 2, lines.slice(-2));
  const waiting = got.states.slice(nStates).find((x) => x.status === 'reconnecting');
  check('hint: the client announces the hinted delay, attempt 1 (no failure)',
    hint && waiting && waiting.delay === hint.retry && waiting.attempt === 1, { waiting, hint });
  const next = tap.gets[nGets];
  const waited = waiting && next ? next.t - waiting.t : null;
  data.hint = { retry: hint && hint.retry, waited, ended: dropped.end, next: next && next.url };
  check('hint: the next GET comes after the hinted time, not at once',
    hint && waited !== null && waited >= hint.retry - 2 && waited < hint.retry + 1500, data.hint);
  check('hint: the next GET resumes with since=<last id>', next && next.url.endsWith(`?since=${before}`),
    next && next.url);
  const after = (await client.publish('node', 'after the hinted restart')).id;
  const want = [before, ...during, after];
  await until(() => want.every((id) => ids(got).includes(id)), 5000);
  await sleep(200);
  check('hint: what was posted meanwhile arrives exactly once, in order',
    JSON.stringify(ids(got).filter((id) => id >= before)) === JSON.stringify(want),
    { want, got: ids(got) });
  client.close();
}

/* 3. publish errors: status and the server's JSON message */
async function publishErrors() {
  const client = new H2ChatClient(ENDPOINT);   // never started: publish works without a stream
  const expect = async (name, fn, status, serverBody) => {
    let err = null;
    try { await fn(); } catch (e) { err = e; }
    const wantMsg = serverBody ? (await serverBody()).error : null;
    check(name, err instanceof H2ChatError && err.status === status &&
      (wantMsg === null || err.message === wantMsg),
    err && { status: err.status, message: err.message, retryAfter: err.retryAfter, wantMsg });
    return err;
  };
  await expect('empty user -> 400 with the server\'s message', () => client.publish('', 'x'), 400,
    async () => (await postRaw('/msgs', { user: '', text: 'x' })).json());
  await expect('text over H2ChatMaxMessageBytes -> 413 with the server\'s message',
    () => client.publish('node', 'y'.repeat(5000)), 413,
    async () => (await postRaw('/msgs', { user: 'node', text: 'y'.repeat(5000) })).json());
  const limited = new H2ChatClient(BASE + '/limited');
  await limited.publish('node', 'first').catch(() => {});
  const e429 = await expect('rate limited -> 429', () => limited.publish('node', 'second'), 429, null);
  check('429 carries Retry-After (ms)', e429 && e429.retryAfter >= 1000, e429 && e429.retryAfter);
  const dead = new H2ChatClient('http://127.0.0.1:9/msgs');
  await expect('server not reached -> status 0', () => dead.publish('node', 'x'), 0, null);
}

/* 4. the watchdog and Retry-After, against a fake server */
async function fakeServer() {
  const hits = [];
  let nextLine = 1;
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    hits.push({ path: u.pathname, since: u.searchParams.get('since'), t: Date.now() });
    if (u.pathname === '/events') {
      res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'X-H2Chat-Heartbeat': '20' });
      const msg = (id) => JSON.stringify({ type: 'message', id, user: 'fake', text: `m${id}`, time: Date.now() });
      res.write([msg(2), '{"type":"gap","missed":5,"from":3,"to":7}', msg(8),
        '{"type":"reset","last_id":8}', msg(1), '{"type":"heartbeat","time":1}', 'not json', msg(2), ''].join('\n'));
      return;
    }
    if (u.pathname === '/hinted' || u.pathname === '/hintonly') {
      // /hinted: a message and a hint of 1500 ms on the 1st connection, a message
      // without a hint on the 2nd (plain backoff again), then silence;
      // /hintonly: only a hint of 400 ms, each time, and the end at once
      const n = hits.filter((h) => h.path === u.pathname).length;
      res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'X-H2Chat-Heartbeat': '20' });
      const msg = (id) => JSON.stringify({ type: 'message', id, user: 'fake', text: `h${id}`, time: Date.now() });
      if (u.pathname === '/hintonly') res.end('{"type":"reconnect","retry":400}\n');
      else if (n === 1) res.end(msg(1) + '\n{"type":"reconnect","retry":1500}\n');
      else if (n === 2) res.end(msg(2) + '\n');
      else res.write(msg(3) + '\n');
      return;
    }
    if (u.pathname === '/busy' && hits.filter((h) => h.path === '/busy').length === 1) {
      res.writeHead(503, { 'Retry-After': '2', 'Content-Type': 'application/json' });
      res.end('{"error":"full"}');
      return;
    }
    // messages 1..n on the n-th connection, since= or not (so the client must drop
    // the ones it has), then silence: no heartbeat although one is announced every 1 s
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'X-H2Chat-Heartbeat': '1' });
    const n = nextLine++;
    for (let id = 1; id <= n; id++) {
      res.write(JSON.stringify({ type: 'message', id, user: 'fake', text: `line ${id}`, time: Date.now() }) + '\n');
    }
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${srv.address().port}`;
  try {
    const c = new H2ChatClient(base + '/silent', { backoffMin: 100, backoffMax: 200 });
    const got = collect(c);
    c.start();
    await until(() => hits.filter((h) => h.path === '/silent').length >= 2, 12000);
    // the hit is recorded before the 2nd stream writes: let its lines arrive first
    await until(() => ids(got).length >= 2, 3000);
    c.close();
    const s = hits.filter((h) => h.path === '/silent');
    const gap = s.length >= 2 ? s[1].t - s[0].t : null;
    data.watchdog = { hits: s, gap };
    check('watchdog: a silent stream (heartbeat 1 s) is dropped after ~4 s, not before',
      gap !== null && gap >= 3800 && gap < 6000, gap);
    check('watchdog: the new stream resumes with since=<last id>', s.length >= 2 && s[1].since === '1', s);
    check('ids <= the last one are dropped: each message once, in order, across the reconnect',
      ids(got)[0] === 1 && ids(got)[1] === 2 && ids(got).every((v, i, a) => i === 0 || v > a[i - 1]), ids(got));

    const ev = new H2ChatClient(base + '/events');
    const ge = collect(ev);
    ev.start();
    await until(() => ge.msgs.length >= 4, 5000);
    ev.close();
    check('gap and reset lines become events; a reset starts epoch 1 where ids start low again',
      JSON.stringify(ge.gaps) === JSON.stringify([{ room: '', missed: 5, from: 3, to: 7 }]) &&
      ge.resets.length === 1 && ge.resets[0].last_id === 8 && ge.resets[0].epoch === 1 &&
      JSON.stringify(ge.msgs.map((x) => [x.epoch, x.id])) === JSON.stringify([[0, 2], [0, 8], [1, 1], [1, 2]]),
    { gaps: ge.gaps, resets: ge.resets, msgs: ge.msgs.map((x) => [x.epoch, x.id]) });
    check('a line that is not JSON is an error event, and the stream goes on',
      ge.errors.some((e) => e.includes('bad line')) && ev.lastId === 2, { errors: ge.errors, lastId: ev.lastId });

    const h = new H2ChatClient(base + '/hinted', { backoffMin: 100, backoffMax: 200 });
    const gh = collect(h);
    h.start();
    await until(() => hits.filter((x) => x.path === '/hinted').length >= 3, 8000);
    await until(() => ids(gh).includes(3), 2000);
    h.close();
    const hh = hits.filter((x) => x.path === '/hinted');
    const gaps = hh.slice(1).map((x, i) => x.t - hh[i].t);
    data.hinted = { gaps, ids: ids(gh), states: gh.states.map((x) => [x.status, x.attempt, x.delay]) };
    check('hint of 1500 ms: the next attempt waits it (backoff alone: < 200 ms)',
      gaps.length >= 2 && gaps[0] >= 1490 && gaps[0] < 2500, data.hinted);
    check('hint: for one reconnect only (the next end waits the backoff again)',
      gaps.length >= 2 && gaps[1] < 1000, data.hinted);
    check('hint: the messages around it once each, resumed with since=', JSON.stringify(ids(gh)) === '[1,2,3]' &&
      hh.length >= 3 && hh[1].since === '1' && hh[2].since === '2', { ids: ids(gh), hits: hh });

    const o = new H2ChatClient(base + '/hintonly', { backoffMin: 100, backoffMax: 200 });
    const go = collect(o);
    o.start();
    await until(() => hits.filter((x) => x.path === '/hintonly').length >= 4, 8000);
    o.close();
    const oh = hits.filter((x) => x.path === '/hintonly');
    const ogaps = oh.slice(1).map((x, i) => x.t - oh[i].t);
    const waits = go.states.filter((x) => x.status === 'reconnecting');
    data.hintonly = { gaps: ogaps, waits: waits.map((x) => [x.attempt, x.delay]) };
    check('a stream that ends at once with only a hint is no failure: attempt stays 1, each wait the hint',
      ogaps.length >= 3 && ogaps.every((g) => g >= 390 && g < 1400) &&
      waits.length >= 3 && waits.every((x) => x.attempt === 1 && x.delay === 400), data.hintonly);

    const b = new H2ChatClient(base + '/busy', { backoffMin: 100, backoffMax: 200 });
    const gb = collect(b);
    b.start();
    await until(() => hits.filter((h) => h.path === '/busy').length >= 2, 8000);
    b.close();
    const bh = hits.filter((h) => h.path === '/busy');
    const wait = bh.length >= 2 ? bh[1].t - bh[0].t : null;
    data.busy = { wait, states: gb.states };
    check('503 + Retry-After: 2 -> next attempt after >= 2 s (backoff alone: <= 200 ms)',
      wait !== null && wait >= 1950 && wait < 4000, wait);
    check('503 -> state busy with the delay', gb.states.some((x) => x.status === 'busy' && x.delay >= 2000), gb.states);
  } finally {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  }
}

/* rooms (/rooms: H2ChatRooms On, H2ChatSnapshot 3, H2ChatAnonymousDelete On):
 * one stream of named rooms; a set change while a poster writes to a room that
 * stays: nothing lost or twice there, the joining room brings its snapshot; the
 * location's own room beside named rooms (two streams); delete and clear events;
 * the resume after a clear keeps the other room's messages and reports no gap. */
async function rooms() {
  const EP = BASE + '/rooms';
  const tag = Date.now().toString(36);
  const post = async (room, text) => {
    const r = await postRaw(room ? `/rooms/${room}` : '/rooms', { user: 'poster', text: `${text} ${tag}` });
    return (await r.json()).id;
  };
  const xOld = [];
  for (let i = 0; i < 5; i++) xOld.push(await post('x', `x before ${i}`));
  const rec = recordingFetch();
  const c = new H2ChatClient(EP, { rooms: ['a'], fetch: rec.fetch });
  const got = collect(c);
  const ev = { presence: [], delete: [], clear: [] };
  for (const t of Object.keys(ev)) c.on(t, (v) => ev[t].push(v));
  c.start();
  check('rooms: connects', await until(() => c.connected, 10000), got.states);
  const inRoom = (r) => got.msgs.filter((m) => m.room === r).map((m) => m.id);
  // a poster writes to a all along; meanwhile x joins, then y, then x leaves
  const aSent = [];
  let posting = true;
  const poster = (async () => {
    for (let i = 0; posting && i < 200; i++) { aSent.push(await post('a', `a ${i}`)); await sleep(15); }
  })();
  await sleep(150);
  c.addRoom('x');
  await until(() => inRoom('x').length >= 3, 8000);
  const xLive = await post('x', 'x live');
  await sleep(150);
  c.addRoom('y');
  await sleep(300);
  const xAfter = await c.publish('node', 'x by publish', 'x');
  await until(() => inRoom('x').includes(xAfter.id), 5000);
  c.removeRoom('x');
  await sleep(300);
  const xGone = await post('x', 'x after it left');
  posting = false;
  await poster;
  await until(() => aSent.every((id) => inRoom('a').includes(id)), 8000);
  await sleep(300);
  check('rooms: every message of the room that stayed (a) once, in order, across three set changes',
    JSON.stringify(inRoom('a')) === JSON.stringify(aSent), { got: inRoom('a'), sent: aSent, dupes: dupes(inRoom('a')) });
  check('rooms: the joining room (x) brings its snapshot (3), then what comes, once, until it leaves',
    JSON.stringify(inRoom('x')) === JSON.stringify([...xOld.slice(-3), xLive, xAfter.id]),
    { got: inRoom('x'), want: [...xOld.slice(-3), xLive, xAfter.id], gone: xGone });
  const urls = rec.urls.map((u) => u.url.slice(EP.length));
  data.rooms_urls = urls;
  check('rooms: one stream ?room=a, restarted as ?room=a&room=x&since=, the snapshot a GET of x alone',
    urls[0] === '?room=a' && urls.includes('?room=x') &&
      urls.some((u) => /^\?room=a&room=x&since=\d+$/.test(u)) &&
      urls.some((u) => /^\?room=a&room=x&room=y&since=\d+$/.test(u)) &&
      urls.some((u) => /^\?room=a&room=y&since=\d+$/.test(u)), urls);
  check('rooms: presence events name their rooms', ['a', 'x', 'y'].every((r) => ev.presence.some((p) => p.room === r)),
    ev.presence.slice(0, 10));

  // delete and clear
  const victim = await post('a', 'to be deleted');
  await until(() => inRoom('a').includes(victim), 5000);
  const del = await c.remove('a', victim);
  await until(() => ev.delete.length > 0, 5000);
  check('rooms: remove(room, id) -> 200 {type: delete}, and a delete event', del.type === 'delete' &&
    del.id === victim && JSON.stringify(ev.delete) === JSON.stringify([{ room: 'a', id: victim }]), { del, ev: ev.delete });
  const gapsBefore = got.gaps.length;
  const nUrls = rec.urls.length;
  const clr = await fetch(EP + '/a', { method: 'DELETE' });
  check('rooms: DELETE /rooms/a -> 200', clr.status === 200, clr.status);
  const yRight = await post('y', 'y right after the clear');
  const aNew = await post('a', 'a after the clear');
  await until(() => inRoom('y').includes(yRight) && inRoom('a').includes(aNew), 8000);
  await sleep(500);
  check('rooms: a clear event, the stream resumes (since=), the other room loses nothing, no gap reported',
    JSON.stringify(ev.clear) === JSON.stringify([{ room: 'a' }]) && rec.urls.length > nUrls &&
      rec.urls.slice(nUrls).every((u) => u.url.includes('since=')) &&
      inRoom('y').filter((id) => id === yRight).length === 1 && got.gaps.length === gapsBefore,
    { clear: ev.clear, urls: rec.urls.slice(nUrls).map((u) => u.url), y: inRoom('y'), gaps: got.gaps });

  // the location's own room beside named rooms: two streams, both deliver
  c.setRooms(['', 'y']);
  await sleep(500);
  const d0 = await post('', 'default room');
  const y1 = await post('y', 'y with the default');
  await until(() => inRoom('').includes(d0) && inRoom('y').includes(y1), 5000);
  check('rooms: the location\'s own room and a named one: both delivered, room \'\' and \'y\'',
    inRoom('').includes(d0) && inRoom('y').filter((id) => id === y1).length === 1, { def: inRoom(''), y: inRoom('y') });
  check('rooms: no error events', got.errors.length === 0, got.errors);
  c.close();

  // members (H2ChatPresence members on /rooms): the list at start, join, leave
  const m1 = new H2ChatClient(EP, { rooms: ['m'], user: 'node-m1' });
  const mev = [];
  for (const t of ['members', 'join', 'leave']) m1.on(t, (v) => mev.push({ t, ...v }));
  m1.start();
  await until(() => mev.some((e) => e.t === 'members'), 5000);
  const m2 = new H2ChatClient(EP, { rooms: ['m', 'x'], user: 'node-m2' });
  m2.start();
  await until(() => mev.some((e) => e.t === 'join' && e.user === 'node-m2'), 5000);
  const during = m1.presenceOf('m');
  m2.close();
  await until(() => mev.some((e) => e.t === 'leave' && e.user === 'node-m2'), 6000);
  data.members = mev;
  check('members: the list at start, then join and leave of another client, all for room m',
    mev[0] && mev[0].t === 'members' && mev[0].room === 'm' && mev[0].members.includes('node-m1') &&
      mev.some((e) => e.t === 'join' && e.user === 'node-m2' && e.room === 'm') &&
      mev.some((e) => e.t === 'leave' && e.user === 'node-m2' && e.room === 'm'), mev);
  check('members: presenceOf(room) follows them', during && during.members.includes('node-m2') &&
    !m1.presenceOf('m').members.includes('node-m2'), { during, after: m1.presenceOf('m') });
  m1.close();
}

async function main() {
  let error = null;
  try {
    if (!BASE) throw new Error('set H2CHAT_URL');
    await subscribeAndResume();
    await hintedRestart();
    await publishErrors();
    await fakeServer();
    await rooms();
  } catch (e) {
    error = String(e && e.stack || e).split('\n').slice(0, 8).join('\n');
  }
  if (rl) rl.close();
  emit({ scenario: 'node', ok: !error && checks.every((c) => c.ok), checks, data, error });
  // no process.exit(): the driver checks that nothing keeps node alive after close()
}

main();
