// The status page at the admin listener's `/` (HAProxy's stats page is the anchor): one HTML
// document, no framework, no CDN (the machines it runs on may have no internet). Its script reads
// /upstreams once a second and redraws: every service with its strategy and routes, each instance
// with its state, weight, in flight, requests per second and error rate (from the change of the
// counters between two reads), and latency (the balancer's EWMA); the ZooKeeper session and data age.
// Laid out as cards in a grid, so it reads from a phone's width to a wall screen; below 40rem each
// instance's row becomes a small grid of labelled fields.

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zoo-proxy status</title>
<style>
  :root { color-scheme: light dark; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #6e7781; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
  header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline; padding: .75rem 1rem; border-bottom: 1px solid #8884; }
  header h1 { font-size: 1.1rem; margin: 0; }
  .muted { color: var(--muted); }
  main { display: grid; gap: 1rem; padding: 1rem; grid-template-columns: repeat(auto-fill, minmax(min(100%, 40rem), 1fr)); }
  section { border: 1px solid #8884; border-radius: .5rem; overflow: hidden; }
  section h2 { font-size: 1rem; margin: 0; padding: .5rem .75rem; background: #8881; display: flex; flex-wrap: wrap; gap: .25rem .75rem; align-items: baseline; }
  .table { overflow-x: auto; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { padding: .3rem .6rem; text-align: right; white-space: nowrap; border-top: 1px solid #8882; }
  th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
  th { font-weight: 600; font-size: .8rem; color: var(--muted); }
  .state { font-weight: 600; }
  .up { color: var(--ok); } .draining, .drained, .override { color: var(--warn); } .ejected, .unhealthy, .down { color: var(--bad); }
  .badge { font-size: .75rem; border: 1px solid currentColor; border-radius: .25rem; padding: 0 .3rem; margin-left: .3rem; }
  #error { color: var(--bad); }
  /* A phone's width: each instance a small grid of labelled fields instead of a 7-column row, so
     nothing scrolls sideways and the state is next to the instance's name. */
  @media (max-width: 40rem) {
    main { padding: .5rem; }
    thead { display: none; }
    table, tbody { display: block; }
    tr { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: .2rem .5rem; padding: .4rem .6rem; border-top: 1px solid #8882; }
    td { display: block; padding: 0; border: 0; text-align: left !important; white-space: normal; overflow-wrap: anywhere; }
    td:first-child { grid-column: 1 / 3; font-weight: 600; }
    td[data-label]::before { content: attr(data-label); display: block; font-size: .7rem; font-weight: 400; color: var(--muted); }
  }
</style>
</head>
<body>
<header>
  <h1>zoo-proxy</h1>
  <span>ZooKeeper: <b id="session" class="state">…</b></span>
  <span class="muted" id="updated"></span>
  <span id="error"></span>
</header>
<main id="services"></main>
<script>
"use strict";
// Counters from the last read, by service and instance key: rates are their change per second.
let last = { at: 0, counts: new Map() };
const el = (tag, attrs, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
// The table's headers; at a phone's width each cell shows its own (data-label) instead.
const COLUMNS = ["instance", "state", "weight", "in flight", "req/s", "errors", "latency (EWMA ms)"];
const fmt = (n, digits) => (Number.isFinite(n) ? n.toFixed(digits) : "-");
function render(report, now) {
  const session = document.getElementById("session");
  const s = report.zookeeper || {};
  session.textContent = s.state || report.session || "?";
  session.className = "state " + (s.state === "connected" ? "up" : "down");
  const services = document.getElementById("services");
  const seconds = last.at === 0 ? 0 : (now - last.at) / 1000;
  const counts = new Map();
  const cards = [];
  for (const [name, svc] of Object.entries(report.services || {})) {
    const head = el("h2", {}, name,
      el("span", { class: "muted" }, "strategy " + svc.strategy),
      el("span", { class: "muted" }, svc.path),
      el("span", { class: "muted" }, "data age " + (svc.dataAgeMs === 0 ? "live" : fmt(svc.dataAgeMs / 1000, 1) + " s")),
      svc.stale ? el("span", { class: "badge draining" }, "stale") : "");
    const rows = [];
    for (const i of svc.instances || []) {
      const key = name + "|" + i.key;
      counts.set(key, { requests: i.requests, failures: i.failures });
      const before = last.counts.get(key);
      const dr = before && seconds > 0 ? (i.requests - before.requests) / seconds : NaN;
      const df = before ? i.failures - before.failures : NaN;
      const dq = before ? i.requests - before.requests : NaN;
      // The proxy's one definition of the state (lib/balancing/instance-state.ts), as /upstreams says it.
      const state = i.state;
      const stateCell = el("td", { class: "state " + state, "data-state": state, "data-label": COLUMNS[1] }, state);
      if (i.override) stateCell.append(el("span", { class: "badge override", "data-override": "1" }, "override"));
      rows.push(el("tr", { "data-instance": i.host + ":" + i.port },
        el("td", { "data-label": COLUMNS[0] }, i.host + ":" + i.port), stateCell,
        el("td", { "data-label": COLUMNS[2] }, fmt(i.weight, 2)), el("td", { "data-label": COLUMNS[3] }, i.inFlight),
        el("td", { "data-label": COLUMNS[4] }, fmt(dr, 1)), el("td", { "data-label": COLUMNS[5] }, dq > 0 ? fmt((100 * df) / dq, 1) + " %" : "-"),
        el("td", { "data-label": COLUMNS[6] }, fmt(i.latencyEwmaMs, 2))));
    }
    const table = el("table", {},
      el("thead", {}, el("tr", {}, ...COLUMNS.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows));
    if (rows.length === 0) table.append(el("caption", { class: "muted" }, "no instances"));
    cards.push(el("section", { "data-service": name }, head, el("div", { class: "table" }, table)));
  }
  services.replaceChildren(...cards);
  last = { at: now, counts };
  document.getElementById("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
}
async function tick() {
  try {
    const res = await fetch("upstreams", { cache: "no-store" });
    if (!res.ok) throw new Error("/upstreams answered " + res.status);
    render(await res.json(), Date.now());
    document.getElementById("error").textContent = "";
  } catch (err) {
    document.getElementById("error").textContent = String(err.message || err);
  } finally {
    setTimeout(tick, 1000);
  }
}
tick();
</script>
</body>
</html>
`
