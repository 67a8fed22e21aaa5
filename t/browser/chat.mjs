#!/usr/bin/env node
/*
 * Real-browser scenarios for the h2chat page (htdocs/) against a running Apache
 * with mod_h2chat, over TLS h2. Driven by t/test_browser.py, runnable by hand:
 *
 *   H2CHAT_URL=https://127.0.0.1:8443 node chat.mjs two-people xss
 *   node chat.mjs --url https://127.0.0.1:8443 --artifacts /tmp/shots screenshots
 *
 * Parameters (argv wins over env):
 *   --url URL            H2CHAT_URL        base URL of the TLS h2 vhost (required)
 *   --artifacts DIR      H2CHAT_ARTIFACTS  where screenshots go (default ./artifacts)
 *   --chromium PATH      H2CHAT_CHROMIUM   browser binary (default /usr/bin/chromium)
 *   --timeout MS         H2CHAT_TIMEOUT_MS cap for one whole scenario (default 90000)
 *   scenario...          names below; default: all but "graceful", "rooms" and lib-*
 *
 * Output: one JSON line per scenario on stdout:
 *   {"scenario":..., "ok":bool, "checks":[{"name","ok","detail"}], "data":{...}, "error":...}
 * Lines with an "event" key are requests to the driver, each answered by one JSON
 * line on stdin: "graceful" prints {"event":"ready"} once its pages are connected
 * and expects {"ids":[...]}, the ids of the messages a third party posted around an
 * `apache2 -k graceful`; then {"event":"reconnected"} once every page is connected
 * again, answered with the ids of the messages posted after that. The client
 * library's scenarios (lib-*, run by t/test_client_browser.py) talk the same way:
 * lib-graceful as graceful; lib-backoff asks "ready" (post two), "stop" (stop
 * Apache) and "start" (start it, post three), each answered with {"ids":[...]}.
 * es-rooms (t/test_eventsource_rooms.py) asks "ready" and "reconnected" as graceful.
 * "rooms" (t/test_browser_rooms.py) asks "delete" {room, id} (DELETE that message)
 * and "clear" {room} (DELETE the room, then post to #blue and #red: answered with
 * those two ids). H2CHAT_MEMBERS=1: the server names members (H2ChatPresence
 * members): "who is online" must show the names, not only a count.
 * Exit status: 0 if every scenario passed, 1 if one failed, 2 for bad usage.
 *
 * Chromium is kept on loopback: a dead proxy on 127.0.0.1:9 for everything but
 * 127.0.0.1, host-resolver rules that resolve no name, and every page request to
 * another host is recorded and fails the scenario.
 */
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import https from 'node:https';

/* ---------------- parameters ---------------- */

const SCENARIOS = {};
const argv = process.argv.slice(2);
const opt = {
  url: process.env.H2CHAT_URL || '',
  artifacts: process.env.H2CHAT_ARTIFACTS || 'artifacts',
  chromium: process.env.H2CHAT_CHROMIUM || '/usr/bin/chromium',
  timeout: Number(process.env.H2CHAT_TIMEOUT_MS || 90000),
};
const names = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--url') opt.url = argv[++i];
  else if (a === '--artifacts') opt.artifacts = argv[++i];
  else if (a === '--chromium') opt.chromium = argv[++i];
  else if (a === '--timeout') opt.timeout = Number(argv[++i]);
  else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else names.push(a);
}
function usage(msg) {
  process.stderr.write(`chat.mjs: ${msg}\nusage: node chat.mjs --url https://127.0.0.1:PORT ` +
    `[--artifacts DIR] [--chromium PATH] [--timeout MS] [scenario...]\n`);
  process.exit(2);
}

const BASE = opt.url.replace(/\/+$/, '');
const T = 15000;            // one wait in a page (generous: 2 shared cores)
const LAUNCH_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // nothing leaves loopback: no name resolves, and whatever is not 127.0.0.1
  // goes to a proxy port where nobody listens
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  '--proxy-server=http://127.0.0.1:9', '--proxy-bypass-list=127.0.0.1',
  '--disable-domain-reliability', '--no-pings', '--disable-client-side-phishing-detection',
];

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ---------------- the driver's stdin (graceful) ---------------- */

let stdinLines = null;
function nextStdinLine(timeout) {
  if (!stdinLines) {
    const queue = [];
    const waiters = [];
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (l) => (waiters.length ? waiters.shift()(l) : queue.push(l)));
    rl.on('close', () => { while (waiters.length) waiters.shift()(null); queue.closed = true; });
    stdinLines = { queue, waiters, rl };
  }
  const { queue, waiters } = stdinLines;
  if (queue.length) return Promise.resolve(queue.shift());
  if (queue.closed) return Promise.resolve(null);
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no line from the driver on stdin in ${timeout} ms`)),
      timeout);
    waiters.push((l) => { clearTimeout(t); res(l); });
  });
}

/* ---------------- server side helpers (node https, HTTP/1.1, not a subscriber) ---------------- */

function httpsReq(method, path, body, headers = {}) {
  return new Promise((res, rej) => {
    const u = new URL(BASE + path);
    const req = https.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, method,
      rejectUnauthorized: false, agent: false, timeout: 10000,
      headers: body ? { 'Content-Type': 'application/json', ...headers } : headers,
    }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', rej);
    if (body) req.write(body);
    req.end();
  });
}

async function statusAuto() {
  const r = await httpsReq('GET', '/server-status?auto');
  if (r.status !== 200) throw new Error(`server-status answered ${r.status}`);
  const out = {};
  for (const line of r.body.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}
const subscribers = async () => Number((await statusAuto()).H2ChatSubscribers);

// H2ChatSubscribers once it holds still: a browser closed just before leaves
// streams that the server notices within ~2 s (its idle wake-up).
async function settledSubscribers(timeout = 12000) {
  const end = Date.now() + timeout;
  let last = await subscribers();
  for (;;) {
    await sleep(2500);
    const now = await subscribers();
    if (now === last || Date.now() >= end) return now;
    last = now;
  }
}

async function apiPost(user, text, room = '') {
  const r = await httpsReq('POST', room ? `/msgs/${room}` : '/msgs', JSON.stringify({ user, text }));
  if (r.status !== 201) throw new Error(`POST answered ${r.status}: ${r.body}`);
  return JSON.parse(r.body).id;
}

// Polls fn() until pred(value); returns the last value.
async function pollUntil(fn, pred, timeout, every = 200) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (pred(v) || Date.now() >= end) return v;
    await sleep(every);
  }
}

/* ---------------- browser helpers ---------------- */

// Runs in every page before its scripts: records #presence states and when each
// message element appeared, and when the user asked to send.
function recorder() {
  const rec = { presence: [], arrivals: {}, sendAt: [] };
  Object.defineProperty(window, '__rec', { value: rec });
  const notePresence = (el) => {
    const last = rec.presence[rec.presence.length - 1];
    const cur = { state: el.dataset.state, text: el.textContent, t: Date.now() };
    if (!last || last.state !== cur.state || last.text !== cur.text) rec.presence.push(cur);
  };
  const noteNode = (n) => {
    if (n.nodeType !== 1) return;
    if (n.id === 'presence') notePresence(n);
    if (n.parentElement && n.parentElement.id === 'messages' && n.dataset.id !== undefined &&
        !(n.dataset.id in rec.arrivals)) rec.arrivals[n.dataset.id] = Date.now();
  };
  new MutationObserver((muts) => {
    for (const m of muts) {
      if (m.type === 'attributes') { if (m.target.id === 'presence') notePresence(m.target); continue; }
      const p = m.target.nodeType === 1 ? m.target : m.target.parentElement;
      if (p && p.id === 'presence') notePresence(p);
      for (const n of m.addedNodes) noteNode(n);
    }
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ['data-state'] });
  document.addEventListener('click', (e) => {
    if (e.target && e.target.closest && e.target.closest('#send')) rec.sendAt.push(Date.now());
  }, true);
  document.addEventListener('keydown', (e) => {
    if (e.target && e.target.id === 'text' && e.key === 'Enter' && !e.shiftKey) rec.sendAt.push(Date.now());
  }, true);
}

class Run {
  constructor(name) {
    this.name = name;
    this.checks = [];
    this.data = {};
    this.browser = null;
    this.pages = [];
    this.offHost = [];
  }

  check(name, ok, detail) {
    this.checks.push({ name, ok: !!ok, detail: detail === undefined ? null : detail });
    return !!ok;
  }

  async launch() {
    this.browser = await chromium.launch({ executablePath: opt.chromium, args: LAUNCH_ARGS,
      timeout: 60000 });
    return this.browser;
  }

  async context(extra = {}) {
    const ctx = await this.browser.newContext({ ignoreHTTPSErrors: true,
      viewport: { width: 1000, height: 760 }, ...extra });
    ctx.setDefaultTimeout(T);
    ctx.on('request', (req) => {
      const u = new URL(req.url());
      if (!['data:', 'blob:', 'about:'].includes(u.protocol) && u.hostname !== '127.0.0.1') {
        this.offHost.push(req.url());
      }
    });
    await ctx.addInitScript(recorder);
    return ctx;
  }

  // Opens the chat in a new tab of ctx; waits until the page shows itself connected.
  async open(ctx, { name, wait = true, path = '/' } = {}) {
    const page = await ctx.newPage();
    const log = { dialogs: [], errors: [], console: [], tag: `p${this.pages.length}` };
    page.h2log = log;
    page.on('dialog', (d) => { log.dialogs.push(`${d.type()}: ${d.message()}`); d.dismiss().catch(() => {}); });
    page.on('pageerror', (e) => log.errors.push(String(e && e.stack || e)));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') log.console.push(`${m.type()}: ${m.text()}`);
    });
    this.pages.push(page);
    await page.goto(BASE + path, { waitUntil: 'load' });
    if (name !== undefined) {
      await page.fill('#name', name);
      await page.dispatchEvent('#name', 'change'); // the name "who is online" shows
    }
    if (wait) await connected(page);
    return page;
  }

  async finish() {
    const pageErrors = [];
    const dialogs = [];
    const consoleMsgs = [];
    for (const p of this.pages) {
      pageErrors.push(...p.h2log.errors.map((e) => `${p.h2log.tag}: ${e}`));
      dialogs.push(...p.h2log.dialogs.map((e) => `${p.h2log.tag}: ${e}`));
      consoleMsgs.push(...p.h2log.console.map((e) => `${p.h2log.tag}: ${e}`));
    }
    this.check('no uncaught page errors', pageErrors.length === 0, pageErrors.slice(0, 10));
    this.check('no dialogs', dialogs.length === 0, dialogs.slice(0, 10));
    this.check('no request left 127.0.0.1', this.offHost.length === 0, this.offHost.slice(0, 10));
    if (consoleMsgs.length) this.data.console = consoleMsgs.slice(0, 30);
  }

  async failShots() {
    try {
      mkdirSync(opt.artifacts, { recursive: true });
      let i = 0;
      for (const p of this.pages) {
        if (p.isClosed()) { i++; continue; }
        await p.screenshot({ path: join(opt.artifacts, `fail-${this.name}-${i++}.png`), timeout: 5000 })
          .catch(() => {});
      }
    } catch (e) { /* best effort */ }
  }

  async close() {
    if (this.browser) await this.browser.close().catch(() => {});
    this.browser = null;
  }
}

const connected = (page, timeout = T) => page.waitForFunction(
  () => window.h2chat && document.getElementById('presence').dataset.state === 'connected',
  null, { timeout });

// #messages as [{id, user, text, all}] in display order.
const listOf = (page) => page.$$eval('#messages > *', (els) => els.map((e) => ({
  id: e.dataset.id === undefined ? null : Number(e.dataset.id),
  user: e.querySelector('.user') ? e.querySelector('.user').textContent : null,
  text: e.querySelector('.text') ? e.querySelector('.text').textContent : null,
  all: e.textContent,
})));

const waitIds = (page, ids, timeout = T) => page.waitForFunction((want) => {
  const have = new Set([...document.querySelectorAll('#messages > [data-id]')].map((e) => e.dataset.id));
  return want.every((id) => have.has(String(id)));
}, ids.map(String), { timeout, polling: 50 });

// Types text into the composer and sends it with a click or Enter; returns
// {status, id}: the POST's status, and the id of the message as the sender's own
// page shows it (texts are unique per run). The id is not read from the POST's
// response: the page does not read a 201's body, and DevTools hands out a body
// only once the page consumed it.
async function sendUI(page, text, how = 'click') {
  await page.fill('#text', text);
  if (how === 'enter') return sendKeyEnter(page, text);
  const floor = await page.evaluate(() => window.h2chat.lastId());
  const respP = page.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/msgs') &&
    r.request().method() === 'POST');
  await page.click('#send');
  return sentId(page, text, (await respP).status(), floor);
}

// The id of the message with this text and an id above floor in the page, once
// it shows (201 only).
async function sentId(page, text, status, floor) {
  if (status !== 201) return { status, id: null };
  const h = await page.waitForFunction(([t, min]) => {
    const li = [...document.querySelectorAll('#messages > [data-id]')]
      .find((e) => Number(e.dataset.id) > min && e.querySelector('.text') &&
        e.querySelector('.text').textContent === t);
    return li ? Number(li.dataset.id) : null;
  }, [text, floor], { polling: 20 });
  return { status, id: await h.jsonValue() };
}

// Presses Enter in a composer that already holds text; returns {status, id} as sendUI.
async function sendKeyEnter(page, text) {
  const floor = await page.evaluate(() => window.h2chat.lastId());
  const respP = page.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/msgs') &&
    r.request().method() === 'POST');
  await page.press('#text', 'Enter');
  return sentId(page, text, (await respP).status(), floor);
}

const isAscending = (ids) => ids.every((v, i) => i === 0 || ids[i - 1] < v);
const dupes = (ids) => ids.filter((v, i) => ids.indexOf(v) !== i);
const sameList = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const tail = (arr, n = 12) => arr.slice(-n);

/* ---------------- scenarios ---------------- */

// 1. Two people (two contexts): each sees the other's message within 1 s; both
// lists identical, in order; the page and its stream come over h2.
SCENARIOS['two-people'] = async (run) => {
  await run.launch();
  const a = await run.open(await run.context(), { name: 'ann' });
  const b = await run.open(await run.context(), { name: 'bob' });
  run.data.protocols = await Promise.all([a, b].map((p) => p.evaluate(() =>
    performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
      .map((e) => `${new URL(e.name).pathname}=${e.nextHopProtocol}`))));
  run.check('page and assets over h2', run.data.protocols.every((l) => l.length >= 3 &&
    l.every((x) => x.endsWith('=h2'))), run.data.protocols);

  const plan = [[a, b, 'hi bob, one'], [b, a, 'hi ann, two'], [a, b, 'three: ünïcödé ✓'],
    [b, a, 'four\nwith a second line'], [a, b, 'five']];
  const sent = [];
  const latencies = [];
  for (const [from, to, text] of plan) {
    const r = await sendUI(from, text);
    run.check(`POST "${text.split('\n')[0]}" -> 201`, r.status === 201, r);
    if (r.status !== 201) continue;
    sent.push(r.id);
    await waitIds(to, [r.id], 5000);
    const [sendAt, seenAt] = [
      await from.evaluate(() => window.__rec.sendAt[window.__rec.sendAt.length - 1]),
      await to.evaluate((id) => window.__rec.arrivals[id], String(r.id))];
    latencies.push(seenAt - sendAt);
  }
  run.data.latencies_ms = latencies;
  run.data.sent_ids = sent;
  run.check('the other person sees each message within 1 s of the click',
    latencies.length === plan.length && latencies.every((ms) => ms >= 0 && ms <= 1000), latencies);

  await Promise.all([waitIds(a, sent), waitIds(b, sent)]);
  const la = await listOf(a);
  const lb = await listOf(b);
  const ida = la.map((m) => m.id);
  run.check('both #messages lists identical (ids, users, texts, order)',
    sameList(la.map(({ id, user, text }) => ({ id, user, text })),
      lb.map(({ id, user, text }) => ({ id, user, text }))),
    { a: tail(ida), b: tail(lb.map((m) => m.id)) });
  run.check('ids ascending, no duplicates', isAscending(ida) && !dupes(ida).length, tail(ida));
  const last = la.slice(-plan.length);
  run.check('the sent messages are the last ones, in order, with their texts and senders',
    sameList(last.map((m) => [m.id, m.user, m.text]),
      plan.map(([from, , text], i) => [sent[i], from === a ? 'ann' : 'bob', text])),
    last.map((m) => [m.id, m.user, m.text]));
};

// 2. Markup in a message (and in a name) is shown as text: no dialog, no element.
SCENARIOS.xss = async (run) => {
  await run.launch();
  const payload = 'x <img src=x onerror=alert(1)> y <script>alert(2)</script> z';
  const evilName = '<img src=y onerror=alert(3)>';
  const a = await run.open(await run.context(), { name: evilName });
  const b = await run.open(await run.context(), { name: 'bob' });
  const r = await sendUI(a, payload);
  run.check('POST -> 201', r.status === 201, r);
  await Promise.all([waitIds(a, [r.id]), waitIds(b, [r.id])]);
  await sleep(1000); // time for an onerror / script to fire if one had been created
  for (const [tag, p] of [['sender', a], ['receiver', b]]) {
    const m = (await listOf(p)).find((x) => x.id === r.id);
    run.check(`${tag}: text shown verbatim`, m && m.text === payload, m);
    run.check(`${tag}: name shown verbatim`, m && m.user === evilName, m);
    const n = await p.evaluate(() => document.querySelectorAll('#messages img, #messages script').length);
    run.check(`${tag}: no img/script element in #messages`, n === 0, n);
    const alerted = await p.evaluate(() => document.querySelectorAll('img[src="x"], img[src="y"]').length);
    run.check(`${tag}: no payload img anywhere in the document`, alerted === 0, alerted);
  }
  const imgReq = run.offHost.concat(run.pages.flatMap((p) => p.h2log.dialogs));
  run.check('no dialog fired (dialog listener)', run.pages.every((p) => p.h2log.dialogs.length === 0),
    imgReq);
};

// 3. Ten tabs of one browser: one leader, one stream on the server, every tab sees
// every message, including one sent from a follower tab.
SCENARIOS['ten-tabs'] = async (run) => {
  await run.launch();
  const before = await settledSubscribers();
  run.data.subscribers_before = before;
  const ctx = await run.context();
  const tabs = [];
  const openMs = [];
  for (let i = 0; i < 10; i++) {
    const t0 = Date.now();
    tabs.push(await run.open(ctx, { name: i === 0 ? 'tabs' : undefined }));
    openMs.push(Date.now() - t0);
  }
  run.data.open_ms = openMs;
  const leaders = async () => (await Promise.all(tabs.map((p) => p.evaluate(() => window.h2chat.isLeader()))))
    .map((l, i) => (l ? i : -1)).filter((i) => i >= 0);
  const lead = await leaders();
  run.data.leaders = lead;
  run.check('exactly one leader tab', lead.length === 1, lead);

  const want = before + 1;
  const seen = [await pollUntil(subscribers, (n) => n === want, 10000)];
  for (let i = 0; i < 6; i++) { await sleep(400); seen.push(await subscribers()); }
  run.data.subscribers_open = seen;
  run.check(`H2ChatSubscribers = before + 1 context (${before} + 1), and stays so`,
    seen.every((n) => n === want), seen);

  const follower = tabs.findIndex((p, i) => !lead.includes(i) && i > 0);
  const sent = [];
  const r1 = await sendUI(tabs[follower], `from follower tab ${follower}`);
  run.check('follower POST -> 201', r1.status === 201, r1);
  sent.push(r1.id);
  const r2 = await sendUI(tabs[lead[0] ?? 0], 'from the leader tab', 'enter');
  run.check('leader POST -> 201', r2.status === 201, r2);
  sent.push(r2.id);
  const r3 = await apiPost('outsider', 'from another client');
  sent.push(r3);
  run.data.sent_ids = sent;
  await Promise.all(tabs.map((p) => waitIds(p, sent)));
  const lists = await Promise.all(tabs.map((p) => listOf(p)));
  const ids0 = lists[0].map((m) => m.id);
  run.check('all ten tabs show the same list', lists.every((l) => sameList(l.map((m) => [m.id, m.text]),
    lists[0].map((m) => [m.id, m.text]))), lists.map((l) => tail(l.map((m) => m.id), 5)));
  run.check('each sent message exactly once, in order', sameList(ids0.filter((id) => sent.includes(id)), sent) &&
    !dupes(ids0).length && isAscending(ids0), tail(ids0));
  run.check('every tab shows 🟢', (await Promise.all(tabs.map((p) => p.textContent('#presence'))))
    .every((t) => t === '🟢'));
  run.data.subscribers_after_posts = await subscribers();
  run.check('still one stream after the posts', run.data.subscribers_after_posts === want,
    run.data.subscribers_after_posts);
};

// 3b. The leader tab closes: another tab takes over, resumes by id, nothing is lost
// or shown twice, and the server is back to one stream.
SCENARIOS.handoff = async (run) => {
  await run.launch();
  const before = await settledSubscribers();
  run.data.subscribers_before = before;
  const ctx = await run.context();
  const tabs = [];
  for (let i = 0; i < 4; i++) tabs.push(await run.open(ctx, { name: i === 0 ? 'hand' : undefined }));
  const isLead = () => Promise.all(tabs.map((p) => (p.isClosed() ? false : p.evaluate(() => window.h2chat.isLeader()))));
  const lead0 = (await isLead()).indexOf(true);
  run.check('a leader', lead0 >= 0);
  const r0 = await sendUI(tabs[(lead0 + 1) % 4], 'before the leader leaves');
  await Promise.all(tabs.map((p) => waitIds(p, [r0.id])));
  await tabs[lead0].close({ runBeforeUnload: false });
  const rest = tabs.filter((p) => !p.isClosed());
  // posted while no tab holds the stream (or the new one is just starting)
  const during = [await apiPost('outsider', 'while the leader changes 1'),
    await apiPost('outsider', 'while the leader changes 2')];
  const r1 = await sendUI(rest[rest.length - 1], 'from a remaining tab');
  const sent = [r0.id, ...during, r1.id];
  run.data.sent_ids = sent;
  await Promise.all(rest.map((p) => waitIds(p, sent, 20000)));
  const newLead = (await isLead()).map((l, i) => (l ? i : -1)).filter((i) => i >= 0);
  run.data.new_leader = newLead;
  run.check('exactly one new leader among the remaining tabs', newLead.length === 1 && newLead[0] !== lead0, newLead);
  const lists = await Promise.all(rest.map((p) => listOf(p)));
  for (const [i, l] of lists.entries()) {
    const ids = l.map((m) => m.id);
    run.check(`tab ${i}: sent ids exactly once, in order`, sameList(ids.filter((id) => sent.includes(id)), sent) &&
      !dupes(ids).length && isAscending(ids), tail(ids));
  }
  await Promise.all(rest.map((p) => connected(p)));
  const n = await pollUntil(subscribers, (v) => v === before + 1, 10000);
  await sleep(2500); // the old leader's stream, if it were still counted, would show now
  const n2 = await subscribers();
  run.check('server back to one stream for the browser', n === before + 1 && n2 === before + 1,
    { before, now: n, later: n2 });
};

// 4. apache2 -k graceful (done by the driver) with two browsers open (three tabs):
// presence goes 🔴 then 🟢, every page ends with every posted message exactly once.
SCENARIOS.graceful = async (run) => {
  await run.launch();
  // browser 1 with two tabs (leader + follower: the follower gets everything
  // relayed), browser 2 with one
  const ctx1 = await run.context();
  const pages = [await run.open(ctx1, { name: 'g1' }), await run.open(ctx1),
    await run.open(await run.context(), { name: 'g2' })];
  run.data.leaders = await Promise.all(pages.map((p) => p.evaluate(() => window.h2chat.isLeader())));
  run.check('browser 1: one leader tab, one follower; browser 2: its own leader',
    sameList(run.data.leaders, [true, false, true]), run.data.leaders);
  const marks = await Promise.all(pages.map((p) => p.evaluate(() => window.__rec.presence.length)));
  const ask = async (event) => {
    emit({ event, scenario: run.name });
    const line = await nextStdinLine(60000);
    if (line === null) throw new Error(`the driver closed stdin instead of answering "${event}"`);
    const msg = JSON.parse(line);
    if (!Array.isArray(msg.ids)) throw new Error(`bad answer to "${event}": ${line}`);
    return msg.ids;
  };
  // round 1: the driver posts, restarts Apache gracefully, posts during and right after
  const ids = await ask('ready');
  const backUp = (p, i) => p.waitForFunction((from) => {
    const seq = window.__rec.presence.slice(from).map((x) => x.state);
    const down = seq.indexOf('disconnected');
    return down >= 0 && seq.indexOf('connected', down) > down &&
      document.getElementById('presence').dataset.state === 'connected';
  }, marks[i], { timeout: 30000 });
  await Promise.all(pages.map((p, i) => backUp(p, i).catch(() => {})));
  await Promise.all(pages.map((p) => waitIds(p, ids, 30000).catch(() => {})));
  // round 2: every page is back: the driver counts streams and posts again (live delivery)
  ids.push(...await ask('reconnected'));
  run.data.posted_ids = ids;
  run.check('the driver posted messages', ids.length > 0, ids);
  await Promise.all(pages.map((p) => waitIds(p, ids, 30000).catch(() => {})));
  await sleep(1000); // a late duplicate would show up now
  for (const [i, p] of pages.entries()) {
    const trans = (await p.evaluate(() => window.__rec.presence)).slice(marks[i]);
    const seq = trans.map((x) => `${x.state}:${x.text}`);
    run.data[`presence_${i}`] = seq;
    const down = seq.indexOf('disconnected:🔴');
    run.check(`page ${i}: #presence went 🔴 then 🟢`, down >= 0 && seq.indexOf('connected:🟢', down) > down, seq);
    const now = await p.evaluate(() => [document.getElementById('presence').dataset.state,
      document.getElementById('presence').textContent]);
    run.check(`page ${i}: ends connected 🟢`, now[0] === 'connected' && now[1] === '🟢', now);
    const shown = (await listOf(p)).map((m) => m.id);
    const fromFirst = shown.filter((id) => id >= Math.min(...ids));
    run.data[`ids_${i}`] = fromFirst;
    run.check(`page ${i}: every posted message exactly once, in order`, sameList(fromFirst, ids), {
      missing: ids.filter((id) => !shown.includes(id)), dupes: dupes(shown), shown: fromFirst });
  }
};

// 5. Screenshots at 360x740 and 1280x800 with a short conversation.
SCENARIOS.screenshots = async (run) => {
  await run.launch();
  const ctx = await run.context({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1,
    locale: 'en-US', timezoneId: 'UTC', colorScheme: 'light' });
  await ctx.addInitScript(() => { try { localStorage.setItem('h2chat.name', 'ann'); } catch (e) { /* */ } });
  const page = await run.open(ctx);
  const convo = [
    ['bob', 'Morning! Is the chat still up after the deploy?'],
    ['ann', 'Yes: one held HTTP/2 stream per browser, the other tabs share it.'],
    ['cy', 'And a graceful restart?'],
    ['ann', 'Clients resume with their last id: nothing lost, nothing twice 🎉'],
    ['bob', 'Multi-line works too:\n• Enter sends\n• Shift+Enter adds a line'],
    ['cy', '<b>markup</b> stays text 👍'],
    ['ann', 'Ship it 🚀'],
  ];
  const ids = [];
  for (const [u, t] of convo) ids.push(await apiPost(u, t));
  await waitIds(page, ids);
  await page.evaluate(() => document.fonts.ready);
  await page.locator('#text').fill('Sounds good');
  mkdirSync(opt.artifacts, { recursive: true });
  const shots = {};
  for (const [w, h] of [[360, 740], [1280, 800]]) {
    await page.setViewportSize({ width: w, height: h });
    await sleep(300);
    const file = resolve(opt.artifacts, `page-${w}.png`);
    await page.screenshot({ path: file });
    shots[w] = file;
    const box = await page.evaluate(() => ({
      scrollW: document.documentElement.scrollWidth, clientW: document.documentElement.clientWidth,
      composerBottom: document.getElementById('composer').getBoundingClientRect().bottom,
      innerH: window.innerHeight,
      lastVisible: (() => {
        const l = document.getElementById('messages');
        const last = l.lastElementChild;
        if (!last) return false;
        const a = l.getBoundingClientRect(); const b = last.getBoundingClientRect();
        return b.bottom <= a.bottom + 1 && b.top >= a.top - 1;
      })(),
    }));
    run.data[`layout_${w}`] = box;
    run.check(`${w}px: no horizontal overflow`, box.scrollW <= box.clientW, box);
    run.check(`${w}px: composer inside the viewport`, box.composerBottom <= box.innerH + 1, box);
    run.check(`${w}px: newest message scrolled into view`, box.lastVisible, box);
  }
  run.data.screenshots = shots;
  run.data.presence = await page.textContent('#presence');
  // no rooms here: the room bar stays hidden; who is online is the count
  const online = await page.textContent('#online-count');
  run.check('no rooms: the room bar hidden, who is online "1 online"', online === '1 online' &&
    await page.evaluate(() => document.getElementById('rooms').hidden && !window.h2chat.roomsOn()), online);
};

// 6. The composer: Enter sends, Shift+Enter adds a line, Send disabled while the
// text is empty, a 413 for an oversized message shows in #error.
SCENARIOS.composer = async (run) => {
  await run.launch();
  const ctx = await run.context();
  const p = await run.open(ctx, { name: 'kim' });
  const posts = [];
  p.on('request', (r) => { if (r.method() === 'POST') posts.push(r.url()); });
  const disabled = () => p.evaluate(() => document.getElementById('send').disabled);

  await p.fill('#text', '');
  run.check('Send disabled with an empty text', await disabled());
  await p.fill('#text', '   \n  ');
  run.check('Send disabled with only blanks', await disabled());
  await p.press('#text', 'Enter');
  await sleep(300);
  run.check('Enter with only blanks sends nothing', posts.length === 0, [...posts]);

  await p.fill('#text', '');
  await p.type('#text', 'line one');
  run.check('Send enabled once there is text', !(await disabled()));
  await p.press('#text', 'Shift+Enter');
  await p.type('#text', 'line two');
  const val = await p.inputValue('#text');
  run.check('Shift+Enter adds a newline, sends nothing', val === 'line one\nline two' && posts.length === 0,
    { val, posts: [...posts] });
  const r = await sendKeyEnter(p, 'line one\nline two');
  run.check('Enter sends (201)', r.status === 201 && Number.isSafeInteger(r.id), r);
  if (r.id !== null) {
    const shown = await p.$eval(`#messages > [data-id="${r.id}"]`, (e) => e.querySelector('.text').innerText);
    run.check('the newline is rendered as a line break', shown === 'line one\nline two', shown);
  }
  await p.waitForFunction(() => document.getElementById('text').value === '');
  run.check('textarea cleared after sending', (await p.inputValue('#text')) === '');
  run.check('Send disabled again after sending', await disabled());
  run.check('#error empty after a good send', (await p.textContent('#error')) === '');

  // oversized: > 4096 bytes of body
  const big = 'x'.repeat(5000);
  await p.fill('#text', big);
  run.check('Send enabled for the long text', !(await disabled()));
  const before = (await listOf(p)).length;
  const bigP = p.waitForResponse((r) => r.request().method() === 'POST');
  await p.click('#send');
  let bigResp = null;
  try { bigResp = await bigP; } catch (e) { run.check('oversized POST got an answer', false, String(e)); }
  if (bigResp) run.check('oversized POST -> 413', bigResp.status() === 413, bigResp.status());
  await p.waitForFunction(() => document.getElementById('error').textContent.trim() !== '', null, { timeout: 5000 })
    .catch(() => {});
  const err = await p.textContent('#error');
  run.data.error_text = err;
  mkdirSync(opt.artifacts, { recursive: true });
  await p.screenshot({ path: join(opt.artifacts, 'composer-413.png') });
  run.check('#error shows the 413', /4096|too large|413/i.test(err), err);
  run.check('#error is visible', await p.isVisible('#error'), err);
  run.check('the text stays in the textarea for editing', (await p.inputValue('#text')) === big);
  run.check('no message added', (await listOf(p)).length === before);

  // a good send clears the error
  await p.fill('#text', 'short again');
  const okP = p.waitForResponse((r) => r.request().method() === 'POST');
  await p.press('#text', 'Enter');
  const ok = await okP;
  run.check('a good send after the 413 -> 201', ok.status() === 201, ok.status());
  await p.waitForFunction(() => document.getElementById('error').textContent === '', null, { timeout: 5000 })
    .catch(() => {});
  run.check('#error cleared by the next send', (await p.textContent('#error')) === '');
};

/* ---------------- rooms (t/test_browser_rooms.py) ---------------- */

// The page's view of a room: its fragment, its room bar and who is online.
const roomView = (page) => page.evaluate(() => ({
  room: window.h2chat.room(),
  hash: location.hash,
  bar: !document.getElementById('rooms').hidden,
  links: [...document.querySelectorAll('#room-list a')].map((a) => a.textContent),
  current: [...document.querySelectorAll('#room-list a[aria-current="page"]')].map((a) => a.textContent),
  online: document.getElementById('online-count').textContent,
  members: [...document.querySelectorAll('#online-list li')].map((li) => li.textContent),
}));
const texts = async (page) => (await listOf(page)).map((m) => m.text);
const waitTexts = (page, want, timeout = T) => page.waitForFunction((w) => {
  const have = new Set([...document.querySelectorAll('#messages > [data-id] .text')].map((e) => e.textContent));
  return w.every((t) => have.has(t));
}, want, { timeout, polling: 50 });
const waitGone = (page, id, timeout = T) => page.waitForFunction((i) =>
  !document.querySelector(`#messages > [data-id="${i}"]`), String(id), { timeout, polling: 50 });
// "who is online" as the page shows it: members' names (H2ChatPresence members)
// or "N online" (count); waits until it matches.
const waitOnline = (page, members, timeout = T) => page.waitForFunction(([want, named]) => {
  const shown = [...document.querySelectorAll('#online-list li')].map((li) => li.textContent).sort();
  const count = document.getElementById('online-count').textContent;
  return named ? JSON.stringify(shown) === JSON.stringify([...want].sort())
    : count === `${want.length} online`;
}, [members, process.env.H2CHAT_MEMBERS === '1'], { timeout, polling: 100 });

// Two people (two browsers) in two rooms, switching rooms, who is online, a
// message a moderator deletes (the driver's DELETE) vanishing from both, a room
// cleared while a second tab of the same browser shows another room (one stream
// for both tabs; the clear ends it and the resume loses nothing of the other room).
SCENARIOS.rooms = async (run) => {
  const tag = Date.now().toString(36);
  const t = (s) => `${s} ${tag}`;
  const before = await settledSubscribers();
  const red0 = await apiPost('cy', t('red before'), 'red');
  const blue0 = await apiPost('cy', t('blue before'), 'blue');
  await run.launch();
  const ctxA = await run.context();
  const ctxB = await run.context();
  const a = await run.open(ctxA, { name: 'ann', path: '/#red' });
  const b = await run.open(ctxB, { name: 'bob', path: '/#blue' });
  await waitTexts(a, [t('red before')]);
  await waitTexts(b, [t('blue before')]);
  await a.waitForFunction(() => window.h2chat.roomsOn() && !document.getElementById('rooms').hidden);
  const va = await roomView(a);
  run.data.view_a = va;
  run.check('ann at /#red: the room bar lists Main and #red, #red current', va.bar && va.room === 'red' &&
    sameList(va.links, ['Main', '#red']) && sameList(va.current, ['#red']), va);
  run.check('each page shows only its room', !(await texts(a)).includes(t('blue before')) &&
    !(await texts(b)).includes(t('red before')), { a: await texts(a), b: await texts(b) });
  await waitOnline(a, ['ann']).catch(() => {});
  await waitOnline(b, ['bob']).catch(() => {});
  run.data.online_alone = [(await roomView(a)).online, (await roomView(b)).online];
  run.check('alone in their rooms: who is online shows one each', (await roomView(a)).online.startsWith('1 online') &&
    (await roomView(b)).online.startsWith('1 online'), [await roomView(a), await roomView(b)]);

  // each writes in their own room; the other does not see it
  const ra = await sendUI(a, t('ann in red'));
  run.check('ann posts in #red -> 201', ra.status === 201, ra);
  const rb = await sendUI(b, t('bob in blue'));
  run.check('bob posts in #blue -> 201', rb.status === 201, rb);
  await sleep(500);
  run.check('messages stay in their rooms', !(await texts(b)).includes(t('ann in red')) &&
    !(await texts(a)).includes(t('bob in blue')), { a: await texts(a), b: await texts(b) });

  // bob joins #red by name: its messages (from before he came) show, both are online there
  await b.fill('#join-name', 'red');
  await b.press('#join-name', 'Enter');
  await waitTexts(b, [t('red before'), t('ann in red')]);
  const vb = await roomView(b);
  run.data.view_b_red = vb;
  run.check('bob joined #red by name: #red in the URL, the bar and current', vb.hash === '#red' &&
    vb.room === 'red' && sameList(vb.links, ['Main', '#blue', '#red']) && sameList(vb.current, ['#red']), vb);
  run.check('in #red bob sees none of #blue', !(await texts(b)).includes(t('bob in blue')), await texts(b));
  const bothOk = await Promise.all([a, b].map((p) => waitOnline(p, ['ann', 'bob']).then(() => true, () => false)));
  run.data.online_both = [(await roomView(a)).online, (await roomView(b)).online,
    (await roomView(a)).members, (await roomView(b)).members];
  run.check('both in #red: who is online shows two on both pages', bothOk.every(Boolean), run.data.online_both);
  mkdirSync(opt.artifacts, { recursive: true });
  await b.screenshot({ path: join(opt.artifacts, 'rooms-red.png') });
  await b.setViewportSize({ width: 360, height: 740 });
  await b.screenshot({ path: join(opt.artifacts, 'rooms-red-360.png') });
  const narrow = await b.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);
  run.check('360px: the room bar does not overflow the page', narrow);
  await b.setViewportSize({ width: 1000, height: 760 });
  const rb2 = await sendUI(b, t('bob in red'));
  await waitTexts(a, [t('bob in red')]);
  run.check('bob posts in #red, ann sees it', rb2.status === 201, rb2);

  // bob switches back to #blue with the room bar
  await b.click('#room-list a[href="#blue"]');
  await waitTexts(b, [t('blue before'), t('bob in blue')]);
  run.check('back in #blue: its messages, none of #red', !(await texts(b)).some((x) => x.includes('red')),
    await texts(b));
  const aloneAgain = await waitOnline(a, ['ann']).then(() => true, () => false);
  run.check('bob left #red: ann is alone there again', aloneAgain, await roomView(a));

  // ann opens a second tab at #blue: one stream for her browser carries both rooms
  const a2 = await run.open(ctxA, { path: '/#blue' });
  await waitTexts(a2, [t('blue before'), t('bob in blue')]);
  run.check('ann\'s second tab (#blue) shows #blue\'s messages', !(await texts(a2)).some((x) => x.includes('red')),
    await texts(a2));
  const blueBoth = await Promise.all([a2, b].map((p) => waitOnline(p, ['ann', 'bob']).then(() => true, () => false)));
  run.check('#blue: ann (her second tab, on her one stream) and bob online, ann once', blueBoth.every(Boolean),
    [await roomView(a2), await roomView(b)]);
  const leaders = await Promise.all([a, a2].map((p) => p.evaluate(() => window.h2chat.isLeader())));
  run.check('ann\'s tabs: one leader', leaders.filter(Boolean).length === 1, leaders);
  const subs = await pollUntil(subscribers, (n) => n === before + 2, 10000);
  await sleep(2500);
  const subs2 = await subscribers();
  run.data.subscribers = { before, now: subs, later: subs2 };
  run.check('two browsers, three tabs, two rooms: two held streams', subs === before + 2 && subs2 === before + 2,
    run.data.subscribers);
  const rb3 = await sendUI(b, t('bob in blue again'));
  await waitTexts(a2, [t('bob in blue again')]);
  run.check('ann\'s follower tab gets #blue live', rb3.status === 201, rb3);
  run.check('ann\'s #red tab does not show #blue', !(await texts(a)).includes(t('bob in blue again')), await texts(a));

  // a moderator deletes bob's message: it vanishes from both pages that show #blue
  await askDriver(run, 'delete', 30000, { room: 'blue', id: rb.id });
  const goneB = await waitGone(b, rb.id).then(() => true, () => false);
  const goneA2 = await waitGone(a2, rb.id).then(() => true, () => false);
  run.check('the deleted message vanished from bob\'s page', goneB, await texts(b));
  run.check('the deleted message vanished from ann\'s #blue tab', goneA2, await texts(a2));
  run.check('the other #blue messages stay', (await texts(b)).includes(t('blue before')) &&
    (await texts(a2)).includes(t('bob in blue again')), { b: await texts(b), a2: await texts(a2) });

  // a moderator clears #red: ann's #red tab empties; the resume of her one stream
  // loses nothing of #blue (the driver posts to both right after the clear)
  const after = await askDriver(run, 'clear', 30000, { room: 'red' });
  const [blueAfter, redAfter] = after;
  await waitIds(a2, [blueAfter]).catch(() => {});
  await waitIds(b, [blueAfter]).catch(() => {});
  await waitIds(a, [redAfter]).catch(() => {});
  await sleep(1000);
  const la = await listOf(a);
  run.data.red_after_clear = la.map((m) => [m.id, m.text]);
  run.check('ann\'s #red tab: emptied by the clear, then only the message posted after it',
    sameList(la.map((m) => m.id), [redAfter]), run.data.red_after_clear);
  for (const [name, p] of [['ann #blue tab', a2], ['bob', b]]) {
    const ids = (await listOf(p)).map((m) => m.id);
    run.check(`${name}: the #blue message posted right after the clear, once; ids ascending`,
      ids.filter((id) => id === blueAfter).length === 1 && isAscending(ids) && !dupes(ids).length, ids);
  }
  const notice = await a.textContent('#notice');
  run.check('ann\'s #red tab says the room was cleared', /cleared/i.test(notice), notice);
  run.check('no gap notice on ann\'s #blue tab', !/missed/.test(await a2.textContent('#notice')),
    await a2.textContent('#notice'));

  // ann's leader tab (#red) closes: her #blue tab takes the stream over and
  // resumes #blue by id (posted while no tab leads: once)
  const lead = leaders[0] ? a : a2;
  const other = lead === a ? a2 : a;
  await lead.close({ runBeforeUnload: false });
  const handed = [await apiPost('cy', t('blue during the handoff'), 'blue')];
  handed.push((await sendUI(b, t('bob after the handoff'))).id);
  const gotHanded = await waitIds(other, handed, 20000).then(() => true, () => false);
  const idsOther = (await listOf(other)).map((m) => m.id);
  run.check('ann\'s leader tab closes: the other tab leads, gets #blue posted meanwhile once, in order',
    gotHanded && await other.evaluate(() => window.h2chat.isLeader()) &&
      handed.every((id) => idsOther.filter((x) => x === id).length === 1) && isAscending(idsOther),
    { handed, ids: idsOther });
  const subs3 = await pollUntil(subscribers, (n) => n === before + 2, 10000);
  run.check('after the handoff: still two held streams', subs3 === before + 2, subs3);
  run.data.ids = { red0, blue0, ra: ra.id, rb: rb.id, rb2: rb2.id, rb3: rb3.id, after, handed };
};

/* ---------------- the client library alone (t/test_client_browser.py) ---------------- */

// A bare page that runs htdocs/h2chat-client.js and records what it hands over
// (served by the context's route, same origin, so it shares the page's lock and
// channel names and loads the library from Apache).
const LIB_PAGE = '/__client-test.html';
const LIB_HTML = `<!doctype html><meta charset="utf-8"><title>h2chat client test</title>
<script type="module">
import { H2ChatClient } from '/h2chat-client.js';
const lib = { msgs: [], states: [], gaps: [], resets: [], errors: [] };
window.__lib = lib;
const c = new H2ChatClient('/msgs');
c.on('message', (m) => lib.msgs.push(m.id));
c.on('state', (st) => lib.states.push({ ...st, t: Date.now() }));
c.on('gap', (g) => lib.gaps.push(g));
c.on('reset', (r) => lib.resets.push(r));
c.on('error', (e) => lib.errors.push(String(e && e.message || e)));
window.__client = c;
c.start();
</script>`;

async function libContext(run, extra = {}) {
  const ctx = await run.context(extra);
  await ctx.route(BASE + LIB_PAGE, (route) => route.fulfill({ status: 200,
    contentType: 'text/html; charset=utf-8', body: LIB_HTML }));
  return ctx;
}

async function openLib(run, ctx, wait = true) {
  const page = await ctx.newPage();
  const log = { dialogs: [], errors: [], console: [], tag: `p${run.pages.length}` };
  page.h2log = log;
  page.on('pageerror', (e) => log.errors.push(String(e && e.stack || e)));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') log.console.push(`${m.type()}: ${m.text()}`);
  });
  run.pages.push(page);
  await page.goto(BASE + LIB_PAGE, { waitUntil: 'load' });
  if (wait) await libConnected(page);
  return page;
}

const libConnected = (page, timeout = T) => page.waitForFunction(
  () => window.__client && window.__client.connected, null, { timeout });
const libIds = (page) => page.evaluate(() => window.__lib.msgs);
const libWaitIds = (page, ids, timeout = T) => page.waitForFunction((want) => {
  const have = new Set(window.__lib.msgs);
  return want.every((id) => have.has(id));
}, ids, { timeout, polling: 50 });
const libLeader = (page) => page.evaluate(() => window.__client.leader);

// Sends {"event": ...} to the driver and returns the ids of its answer.
async function askDriver(run, event, timeout = 90000, extra = {}) {
  emit({ event, scenario: run.name, ...extra });
  const line = await nextStdinLine(timeout);
  if (line === null) throw new Error(`the driver closed stdin instead of answering "${event}"`);
  const msg = JSON.parse(line);
  if (!Array.isArray(msg.ids)) throw new Error(`bad answer to "${event}": ${line}`);
  return msg.ids;
}

// Each page's ids from the first posted one on must be exactly `ids`.
async function checkExactlyOnce(run, pages, ids, tag = 'page') {
  for (const [i, p] of pages.entries()) {
    const got = await libIds(p);
    const from = got.filter((id) => id >= Math.min(...ids));
    run.data[`ids_${i}`] = from;
    run.check(`${tag} ${i}: every posted message exactly once, in order`, sameList(from, ids),
      { missing: ids.filter((id) => !got.includes(id)), dupes: dupes(got), got: from });
  }
}

// Resume across `apache2 -k graceful` while a third party posts all along:
// browser 1 with a leader and a follower tab, browser 2 with one tab.
SCENARIOS['lib-graceful'] = async (run) => {
  await run.launch();
  const ctx1 = await libContext(run);
  const pages = [await openLib(run, ctx1), await openLib(run, ctx1),
    await openLib(run, await libContext(run))];
  run.data.leaders = await Promise.all(pages.map(libLeader));
  run.check('browser 1: leader + follower; browser 2: its own leader',
    sameList(run.data.leaders, [true, false, true]), run.data.leaders);
  const marks = await Promise.all(pages.map((p) => p.evaluate(() => window.__lib.states.length)));
  const ids = await askDriver(run, 'ready');
  const backUp = (p, i) => p.waitForFunction((from) => {
    const seq = window.__lib.states.slice(from).map((x) => x.connected);
    const down = seq.indexOf(false);
    return down >= 0 && seq.indexOf(true, down) > down && window.__client.connected;
  }, marks[i], { timeout: 30000 });
  await Promise.all(pages.map((p, i) => backUp(p, i).catch(() => {})));
  await Promise.all(pages.map((p) => libWaitIds(p, ids, 30000).catch(() => {})));
  ids.push(...await askDriver(run, 'reconnected'));
  run.data.posted_ids = ids;
  run.check('the driver posted messages', ids.length >= 10, ids.length);
  await Promise.all(pages.map((p) => libWaitIds(p, ids, 30000).catch(() => {})));
  await sleep(1000); // a late duplicate would show up now
  for (const [i, p] of pages.entries()) {
    const st = (await p.evaluate(() => window.__lib.states)).slice(marks[i]);
    const seq = st.map((x) => `${x.connected ? 'up' : 'down'}:${x.status}`);
    run.data[`states_${i}`] = seq;
    const down = seq.findIndex((x) => x.startsWith('down'));
    run.check(`page ${i}: went down, then up again`, down >= 0 && seq.indexOf('up:connected', down) > down &&
      seq[seq.length - 1] === 'up:connected', seq);
    const [gaps, resets] = await p.evaluate(() => [window.__lib.gaps, window.__lib.resets]);
    run.check(`page ${i}: no gap, no reset`, !gaps.length && !resets.length, { gaps, resets });
  }
  await checkExactlyOnce(run, pages, ids);
};

// Tab sharing: five tabs, one held stream; the leader closes, another resumes;
// where the Web Locks API is missing every tab reads its own stream.
SCENARIOS['lib-tabs'] = async (run) => {
  await run.launch();
  const before = await settledSubscribers();
  run.data.subscribers_before = before;
  const ctx = await libContext(run);
  const tabs = [];
  for (let i = 0; i < 5; i++) tabs.push(await openLib(run, ctx));
  const leaders = async (list) => (await Promise.all(list.map(libLeader)))
    .map((l, i) => (l ? i : -1)).filter((i) => i >= 0);
  const lead = await leaders(tabs);
  run.data.leaders = lead;
  run.check('exactly one leader tab', lead.length === 1, lead);
  const seen = [await pollUntil(subscribers, (n) => n === before + 1, 10000)];
  for (let i = 0; i < 5; i++) { await sleep(400); seen.push(await subscribers()); }
  run.data.subscribers_open = seen;
  run.check('five tabs: H2ChatSubscribers = before + 1, and stays so', seen.every((n) => n === before + 1), seen);
  const sent = [await apiPost('tabs', 'one'), await apiPost('tabs', 'two'), await apiPost('tabs', 'three')];
  await Promise.all(tabs.map((p) => libWaitIds(p, sent)));

  await tabs[lead[0]].close({ runBeforeUnload: false });
  const rest = tabs.filter((p) => !p.isClosed());
  sent.push(await apiPost('tabs', 'while the leader changes 1'), await apiPost('tabs', 'while the leader changes 2'));
  await Promise.all(rest.map((p) => libWaitIds(p, sent, 20000).catch(() => {})));
  sent.push(await apiPost('tabs', 'after the handoff'));
  await Promise.all(rest.map((p) => libWaitIds(p, sent, 20000).catch(() => {})));
  const newLead = await leaders(rest);
  run.data.new_leader = newLead;
  run.check('exactly one new leader among the remaining tabs', newLead.length === 1, newLead);
  await checkExactlyOnce(run, rest, sent, 'tab');
  const n = await pollUntil(subscribers, (v) => v === before + 1, 10000);
  await sleep(2500);
  const n2 = await subscribers();
  run.data.subscribers_after_handoff = [n, n2];
  run.check('after the handoff: still one stream for the browser', n === before + 1 && n2 === before + 1,
    { before, now: n, later: n2 });

  // close() on the leading tab: it lets the lock go and stops; another tab leads
  const closer = rest[newLead[0]];
  const others = rest.filter((p) => p !== closer);
  const closedAt = (await libIds(closer)).length;
  await closer.evaluate(() => window.__client.close());
  const afterClose = await apiPost('tabs', 'after close()');
  await Promise.all(others.map((p) => libWaitIds(p, [afterClose], 20000).catch(() => {})));
  const lead3 = await leaders(others);
  run.data.leader_after_close = lead3;
  run.check('close() on the leader: one other tab leads', lead3.length === 1, lead3);
  run.check('close() on the leader: the other tabs get the next message once',
    (await Promise.all(others.map(libIds))).every((l) => l.filter((id) => id === afterClose).length === 1));
  const cs = await closer.evaluate(() => [window.__client.leader, window.__client.connected,
    window.__lib.states[window.__lib.states.length - 1].status, window.__lib.msgs.length]);
  run.check('the closed client: not leader, not connected, state closed, nothing delivered after close()',
    !cs[0] && !cs[1] && cs[2] === 'closed' && cs[3] === closedAt, cs);
  const n4 = await pollUntil(subscribers, (v) => v === before + 1, 10000);
  await sleep(2500);
  const n5 = await subscribers();
  run.data.subscribers_after_close = [n4, n5];
  run.check('after close(): still one stream for the browser', n4 === before + 1 && n5 === before + 1,
    { before, now: n4, later: n5 });

  // fallback: no navigator.locks in this browser -> each tab its own stream
  const ctx2 = await libContext(run);
  await ctx2.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined, configurable: true });
  });
  const plain = [await openLib(run, ctx2), await openLib(run, ctx2)];
  run.check('without Web Locks: every tab leads its own stream',
    (await Promise.all(plain.map(libLeader))).every(Boolean));
  const n3 = await pollUntil(subscribers, (v) => v === before + 3, 10000);
  run.data.subscribers_fallback = n3;
  run.check('without Web Locks: one stream per tab (before + 1 + 2)', n3 === before + 3, { before, now: n3 });
  const last = await apiPost('tabs', 'to the plain tabs');
  await Promise.all(plain.map((p) => libWaitIds(p, [last]).catch(() => {})));
  run.check('without Web Locks: each tab gets the message once',
    (await Promise.all(plain.map(libIds))).every((l) => l.filter((id) => id === last).length === 1));
};

// Backoff while Apache is down (the driver stops it, then starts it again):
// attempts spread out with growing waits, then a resume with since= and no loss.
SCENARIOS['lib-backoff'] = async (run) => {
  await run.launch();
  const ctx = await libContext(run);
  const page = await openLib(run, ctx);
  const gets = [];
  page.on('request', (r) => {
    if (r.method() === 'GET' && new URL(r.url()).pathname === '/msgs') gets.push({ t: Date.now(), url: r.url() });
  });
  const ids = await askDriver(run, 'ready');     // two messages posted
  await libWaitIds(page, ids);
  const lastBefore = await page.evaluate(() => window.__client.lastId);
  const markG = gets.length;
  const markS = await page.evaluate(() => window.__lib.states.length);
  await askDriver(run, 'stop');                   // answered once Apache is gone
  const tStopped = Date.now();
  const downFor = 16000;
  await sleep(downFor);
  const down = gets.slice(markG).map((g) => g.t);
  const states = (await page.evaluate(() => window.__lib.states)).slice(markS);
  ids.push(...await askDriver(run, 'start'));     // Apache back, three more posted
  await libWaitIds(page, ids, 25000).catch(() => {});
  await libConnected(page, 5000).catch(() => {});
  await sleep(1000);
  const gapsMs = down.slice(1).map((t, i) => t - down[i]);
  // retries[0]: after the stream ended (before attempt 1); retries[j]: after attempt j failed
  const retries = states.filter((x) => !x.connected && x.attempt > 0);
  run.data.attempts_while_down = down.length;
  run.data.gaps_ms = gapsMs;
  run.data.retries = retries.map((x) => `${x.status}#${x.attempt}:${x.delay}`);
  run.check('while down (stop + 16 s): between 3 and 12 attempts (a tight loop makes hundreds)',
    down.length >= 3 && down.length <= 12, down.length);
  // the first wait follows the stream's end: Apache's graceful stop ended it
  // with a reconnect hint (H2ChatReconnectSpread auto: 0 .. 1 s for one held
  // stream), which replaces that one wait; the later ones are the backoff's
  const ceiling = (a) => (a === 1 ? 1000 : Math.min(10000, 500 * 2 ** (a - 1)));
  run.check('each wait within its doubling ceiling (full jitter: 0 .. min(10 s, 0.5 s * 2^(n-1)); the first: the stop\'s reconnect hint, 0 .. 1 s)',
    retries.length >= 3 && retries.every((x) => x.delay >= 0 && x.delay <= ceiling(x.attempt)),
    run.data.retries);
  run.check('attempt numbers count up from 1 while down', retries.length >= 3 && retries[0].attempt === 1 &&
    retries.every((x, i) => i === 0 || x.attempt === retries[i - 1].attempt + 1), run.data.retries);
  const paired = gapsMs.map((g, k) => ({ gap: g, delay: retries[k + 1] ? retries[k + 1].delay : null,
    afterStop: down[k] >= tStopped })).filter((x) => x.afterStop && x.delay !== null);
  run.data.gap_vs_delay = paired;
  run.check('the attempts really wait their delays (observed gap = delay, +-700 ms)',
    paired.length >= 2 && paired.every((x) => Math.abs(x.gap - x.delay) <= 700), paired);
  run.check('the waits grow: the ceiling reached 4 s or more, and a wait after the first two >= 1 s',
    retries.length && retries[retries.length - 1].attempt >= 4 && gapsMs.length > 2 &&
      Math.max(...gapsMs.slice(2)) >= 1000, { gapsMs, retries: run.data.retries });
  const after = gets.slice(markG + down.length);
  run.data.after_start = after.map((g) => g.url);
  run.check('every attempt, and the one that works, asks for since=<last id before the stop>',
    gets.length > markG && gets.slice(markG).every((g) => g.url.endsWith(`?since=${lastBefore}`)),
    gets.slice(markG).map((g) => g.url).slice(-3));
  run.check('connected again after the start', await page.evaluate(() => window.__client.connected));
  const [gaps, resets] = await page.evaluate(() => [window.__lib.gaps, window.__lib.resets]);
  run.check('no gap, no reset (the journal keeps the ids)', !gaps.length && !resets.length, { gaps, resets });
  await checkExactlyOnce(run, [page], ids);
};

// The browser's own EventSource on a stream of two rooms (?room=es-a&room=es-b)
// across `apache2 -k graceful`: the server ends the stream with a retry: hint,
// EventSource comes back by itself with Last-Event-ID, and that one id resumes
// both rooms exactly (run by t/test_eventsource_rooms.py: the driver posts to
// both rooms and to a third around the restart, and reads in the error log
// where the second stream started; DevTools does not show the header).
const ES_PAGE = '/__eventsource-test.html';
const ES_HTML = `<!doctype html><meta charset="utf-8"><title>EventSource rooms</title>
<script>
const es = { events: [], opens: 0, errors: 0 };
window.__es = es;
const source = new EventSource('/msgs?room=es-a&room=es-b');
const note = (type) => (e) => {
  const d = JSON.parse(e.data);
  es.events.push({ type, id: d.id, room: d.room, lastEventId: e.lastEventId });
};
for (const t of ['message', 'gap', 'reset']) source.addEventListener(t, note(t));
source.onopen = () => { es.opens++; };
source.onerror = () => { es.errors++; };
</script>`;

SCENARIOS['es-rooms'] = async (run) => {
  await run.launch();
  const ctx = await run.context();
  await ctx.route(BASE + ES_PAGE, (route) => route.fulfill({ status: 200,
    contentType: 'text/html; charset=utf-8', body: ES_HTML }));
  const page = await ctx.newPage();
  page.h2log = { dialogs: [], errors: [], console: [], tag: 'es' };
  page.on('pageerror', (e) => page.h2log.errors.push(String(e && e.stack || e)));
  run.pages.push(page);
  await page.goto(BASE + ES_PAGE, { waitUntil: 'load' });
  await page.waitForFunction(() => window.__es.opens === 1, null, { timeout: T });
  const mine = (id) => page.waitForFunction((want) =>
    window.__es.events.some((e) => e.id === want), id, { timeout: 30000, polling: 50 });
  const ids = await askDriver(run, 'ready');
  // back after the restart: opened again, and everything posted so far there
  await page.waitForFunction(() => window.__es.opens >= 2, null, { timeout: 30000 }).catch(() => {});
  await Promise.all(ids.map((id) => mine(id).catch(() => {})));
  ids.push(...await askDriver(run, 'reconnected'));
  await Promise.all(ids.map((id) => mine(id).catch(() => {})));
  await sleep(1000); // a late duplicate would show up now
  const es = await page.evaluate(() => window.__es);
  const got = es.events.filter((e) => e.type === 'message' && e.id >= Math.min(...ids));
  run.data = { posted: ids, got: got.map((e) => [e.id, e.room]), opens: es.opens };
  run.check('EventSource opened again after the restart', es.opens >= 2, es.opens);
  run.check('both rooms\' messages exactly once, in id order', sameList(got.map((e) => e.id), ids),
    { missing: ids.filter((id) => !got.some((e) => e.id === id)), dupes: dupes(got.map((e) => e.id)) });
  run.check('each event\'s lastEventId is its id', got.every((e) => e.lastEventId === String(e.id)),
    got.filter((e) => e.lastEventId !== String(e.id)).slice(0, 5));
  run.check('only the stream\'s rooms', got.every((e) => e.room === 'es-a' || e.room === 'es-b'),
    got.map((e) => e.room));
  run.check('no gap, no reset', !es.events.some((e) => e.type !== 'message'),
    es.events.filter((e) => e.type !== 'message'));
};

/* ---------------- main ---------------- */

async function runOne(name) {
  const run = new Run(name);
  const started = Date.now();
  let error = null;
  let timer;
  try {
    await Promise.race([
      SCENARIOS[name](run),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`scenario timed out after ${opt.timeout} ms`)), opt.timeout); }),
    ]);
    await run.finish();
  } catch (e) {
    error = String(e && e.stack || e).split('\n').slice(0, 8).join('\n');
  } finally {
    clearTimeout(timer);
  }
  const ok = !error && run.checks.every((c) => c.ok);
  if (!ok) await run.failShots();
  await run.close();
  const result = { scenario: name, ok, ms: Date.now() - started, checks: run.checks, data: run.data, error };
  emit(result);
  return ok;
}

async function main() {
  if (!BASE) usage('no base URL: set H2CHAT_URL or pass --url');
  // the default: the page's scenarios that need no driver
  const list = names.length ? names : Object.keys(SCENARIOS).filter((n) => n !== 'graceful' &&
    n !== 'rooms' && !n.startsWith('lib-') && !n.startsWith('es-'));
  for (const n of list) if (!SCENARIOS[n]) usage(`unknown scenario ${n} (have: ${Object.keys(SCENARIOS).join(', ')})`);
  let allOk = true;
  for (const n of list) allOk = (await runOne(n)) && allOk;
  if (stdinLines) stdinLines.rl.close();
  process.exitCode = allOk ? 0 : 1;
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(1)); // playwright closes the browser it launched on exit
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
