// Drives Debian's Chromium, headless, with playwright-core: a page served
// from an origin of its own (as a web app's page would be) subscribes to a
// gateway stream over WebSocket, EventSource or WebSocketStream and keeps
// what it receives. Reports JSON lines on stdout; reads commands
// ("resume") on stdin. Run by test_gateway_browser.py.
"use strict";

const http = require("http");
const readline = require("readline");
const { chromium } = require("playwright-core");

const cfg = JSON.parse(process.argv[2]);
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");

// The page: it reads its settings from its query string, so the same page
// serves every mode.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Strom live tail</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 24px; }
 #count { font-size: 40px; font-weight: bold; }
 table { border-collapse: collapse; margin-top: 12px; }
 td, th { border: 1px solid #ccc; padding: 2px 8px; font-family: monospace; }
</style></head>
<body>
<h1>Strom gateway: <span id="mode"></span> on <span id="topic"></span></h1>
<div>state: <span id="state">connecting</span></div>
<div><span id="count">0</span> records</div>
<div>errors: <span id="errors">none</span></div>
<table><thead><tr><th>partition</th><th>offset</th><th>key</th><th>value</th></tr></thead><tbody id="last"></tbody></table>
<script>
const q = new URLSearchParams(location.search);
const gateway = q.get("gateway"), topic = q.get("topic"), mode = q.get("mode");
const want = Number(q.get("n")), pauseAfter = Number(q.get("pauseAfter") || 0);
document.getElementById("mode").textContent = mode;
document.getElementById("topic").textContent = topic;
window.got = [];
window.errors = [];
window.state = "connecting";
let tail = [];
function setState(s) { window.state = s; document.getElementById("state").textContent = s; }
function render() {
  document.getElementById("count").textContent = String(window.got.length);
  document.getElementById("errors").textContent = window.errors.length ? window.errors.join("; ") : "none";
  document.getElementById("last").innerHTML = tail.map((r) =>
    "<tr><td>" + r.partition + "</td><td>" + r.offset + "</td><td>" + JSON.stringify(r.key) +
    "</td><td>" + JSON.stringify(r.value).slice(0, 60) + "</td></tr>").join("");
}
window.render = render;
let drawing = false;
function take(text) {
  const r = JSON.parse(text);
  if (r.error_code !== undefined) { window.errors.push(r.error_code + " " + r.message); return; }
  // Values are {"n": i} (json) or base64 whose first 8 bytes are i (binary).
  const n = typeof r.value === "object" && r.value !== null ? r.value.n : Number(atob(r.value).slice(0, 8));
  window.got.push([r.partition, r.offset, n]);
  tail.push(r);
  if (tail.length > 10) tail.shift();
  if (window.got.length >= want) setState("done");
  if (!drawing) { drawing = true; requestAnimationFrame(() => { drawing = false; render(); }); }
}
const path = "/ws/v1/topics/" + encodeURIComponent(topic) + "/records?" + q.get("query");
if (mode === "websocket") {
  const ws = new WebSocket(gateway.replace(/^http/, "ws") + path);
  ws.onopen = () => setState("subscribed");
  ws.onmessage = (e) => take(e.data);
  ws.onerror = () => window.errors.push("websocket error");
  ws.onclose = (e) => { if (window.state !== "done") window.errors.push("websocket closed " + e.code); };
} else if (mode === "sse") {
  const es = new EventSource(gateway + path);
  es.onopen = () => setState("subscribed");
  // The gateway names its events "record" (onmessage sees only unnamed ones).
  es.addEventListener("record", (e) => { take(e.data); if (window.state === "done") es.close(); });
  window.reconnects = 0;
  es.onerror = () => {
    // With reconnect=1 a dropped connection is expected: the EventSource
    // opens it again itself, naming the last event it got.
    if (q.get("reconnect") === "1" && es.readyState === EventSource.CONNECTING) { window.reconnects++; return; }
    window.errors.push("eventsource error, readyState " + es.readyState); es.close(); render();
  };
} else if (mode === "produce") {
  // The other way: the page writes records over the produce socket; each
  // answer (in order) names the record's partition and offset.
  const ws = new WebSocket(gateway.replace(/^http/, "ws") + "/ws/v1/topics/" + encodeURIComponent(topic) +
    "/produce?" + q.get("query"));
  ws.onopen = () => {
    setState("subscribed");
    for (let i = 0; i < want; i++) ws.send(JSON.stringify({ key: "k" + i, value: { n: i }, partition: 0 }));
  };
  ws.onmessage = (e) => {
    const a = JSON.parse(e.data);
    if (a.error_code !== undefined) { window.errors.push(a.error_code + " " + a.message); return; }
    window.got.push([a.partition, a.offset, window.got.length]);
    tail.push({ partition: a.partition, offset: a.offset, key: "k" + (window.got.length - 1), value: "written" });
    if (tail.length > 10) tail.shift();
    if (window.got.length >= want) { setState("done"); ws.close(); }
    if (!drawing) { drawing = true; requestAnimationFrame(() => { drawing = false; render(); }); }
  };
  ws.onerror = () => window.errors.push("websocket error");
} else if (mode === "slow") {
  // WebSocketStream reads only when asked: a reader that stops asking stops
  // the browser reading from the socket, so the gateway sees a slow client.
  let resume;
  const resumed = new Promise((r) => { resume = r; });
  window.resume = () => resume();
  (async () => {
    if (typeof WebSocketStream === "undefined") throw new Error("this Chromium has no WebSocketStream");
    const wss = new WebSocketStream(gateway.replace(/^http/, "ws") + path);
    const { readable } = await wss.opened;
    setState("subscribed");
    const reader = readable.getReader();
    while (window.got.length < want) {
      if (window.got.length === pauseAfter && window.state !== "reading") {
        setState("paused");
        render();
        await resumed;
        setState("reading");
      }
      const { value, done } = await reader.read();
      if (done) { window.errors.push("stream ended"); break; }
      take(value);
    }
    wss.close();
  })().catch((e) => { window.errors.push(String(e)); render(); });
}
</script></body></html>`;

async function main() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(PAGE);
  });
  await new Promise((r) => server.listen(cfg.page_port || 0, "127.0.0.1", r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    headless: true,
    // As root (CI containers) Chromium refuses to start with its sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  emit({ event: "launched", version: browser.version(), origin });
  const page = await browser.newPage({ viewport: { width: 960, height: 640 } });
  page.on("console", (m) => emit({ event: "console", text: m.text() }));
  page.on("pageerror", (e) => emit({ event: "pageerror", text: String(e) }));
  const params = new URLSearchParams({
    gateway: cfg.gateway, topic: cfg.topic, mode: cfg.mode, n: String(cfg.n),
    pauseAfter: String(cfg.pause_after || 0), query: cfg.query || "", reconnect: cfg.reconnect ? "1" : "0",
  });
  await page.goto(`${origin}/?${params}`);
  await page.waitForFunction(() => window.state !== "connecting" || window.errors.length > 0,
    null, { timeout: 30000, polling: 50 });
  const first = await page.evaluate(() => ({ state: window.state, errors: window.errors }));
  // A slow page may be paused already, a fast one done.
  const opened = first.errors.length === 0 && first.state !== "connecting";
  emit({ event: opened ? "subscribed" : "failed", ...first });
  if (opened) {
    if (cfg.mode === "slow") {
      await page.waitForFunction(() => window.state === "paused" || window.errors.length > 0,
        null, { timeout: 30000, polling: 50 });
      emit({ event: "paused", received: await page.evaluate(() => window.got.length) });
      const lines = readline.createInterface({ input: process.stdin });
      for await (const line of lines) {
        if (line.trim() === "resume") break;
      }
      await page.evaluate(() => window.resume());
    }
    await page.waitForFunction(
      (n) => window.got.length >= n || window.errors.length > 0,
      cfg.n, { timeout: cfg.timeout_ms || 120000, polling: 100 });
  }
  await page.evaluate(() => window.render());
  if (cfg.screenshot) await page.screenshot({ path: cfg.screenshot, fullPage: true });
  const result = await page.evaluate(() => ({
    got: window.got, errors: window.errors, state: window.state, reconnects: window.reconnects || 0,
  }));
  emit({ event: "done", ...result });
  await browser.close();
  server.close();
}

main().then(() => process.exit(0), (e) => {
  emit({ event: "error", message: String((e && e.stack) || e) });
  process.exit(1);
});
