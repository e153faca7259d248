// citarion-host dashboard. One EventSource for everything live (the tail, the LOGOS panel); the REST
// API for aggregates the host computes (fleet, positions, PnL...), refreshed once a second for the
// visible page, not at all while the browser tab is hidden. The DOM is written only where a figure
// changed: a card, a pill or a header figure that reads the same is left alone, so a quiet fleet costs
// the browser no layout. Charts: plotly.js (served from the installed plotly package). No framework,
// no build.
"use strict";

const CONTROL = { "X-Citarion-Control": "1", "Content-Type": "application/json" };
const TAIL_ROWS = 200;      // rows kept in the tail table
const TAIL_BUFFER = 5000;   // events kept to re-filter the tail
const TAIL_EVERY_MS = 250;  // the tail is redrawn at most this often: a fast run must not cost a row per event
const SIGNAL_ROWS = 100;
const SIGNALS_EVERY_MS = 250;    // the LOGOS panel and signals likewise while shown,
const SIGNALS_HIDDEN_MS = 1000;  // and at most once a second while another page is shown
const BOTS_EVERY_MS = 100;        // the fleet redrawn this soon after a bot's lifecycle event

const state = {
  received: 0,         // events received over SSE (the overhead benchmark reads it)
  tail: [],            // recent events (any topic), newest last
  pendingTail: [],     // received while rendering was pending
  paused: false,
  filter: ">",
  connected: false,
  reconnects: 0,
  lastId: null,
  signals: [],         // newest first
  latest: {},          // series -> source -> signal row (from SSE, merged with REST)
  decisions: {},       // series -> decision row
  bots: [],
  series: null,
  popoverBot: null,
};

const $ = (id) => document.getElementById(id);
const fmt = (x, d = 2) => (x === null || x === undefined ? "-" : Number(x).toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d }));
const signed = (x) => (x > 0 ? "+" : "") + fmt(x);
const time = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "-");
// Write a text only when it changed: the same text written again still costs a style and layout pass.
function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
function setClass(el, name) { if (el.className !== name) el.className = name; }
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${path}: ${detail}`);
  }
  return response.json();
}

function toast(text, bad) {
  const el = $("toast");
  el.textContent = text;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

// -- NATS wildcard matching (the tail filter) ----------------------------------------------------
function matches(pattern, topic) {
  const p = pattern.split("."), t = topic.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== "*" && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}
let filterPatterns = [">"];
function filterMatches(topic) {
  return filterPatterns.some((p) => p === ">" || matches(p, topic));
}

// -- one line about an event ---------------------------------------------------------------------
function summary(e) {
  const p = e.payload || {};
  const where = p.symbol ? `${p.symbol}@${p.exchange}` : "";
  switch (e.entity) {
    case "signal": return `${p.direction} ${where} conf ${fmt(p.confidence)}${p.reason ? " · " + p.reason : ""}`;
    case "order": return `${p.side} ${fmt(p.quantity, 6)} ${where} ${p.status}${p.averagePrice ? " @ " + fmt(p.averagePrice) : ""} ${p.botId || ""}`;
    case "position": return `${p.botId} ${where} qty ${fmt(p.quantity, 6)} pnl ${signed((p.realizedPnl || 0) + (p.unrealizedPnl || 0))}`;
    case "candle": return `${where} c ${fmt(p.close)}`;
    case "ticker": return `${where} last ${fmt(p.last)}`;
    case "decision": return `${p.direction} ${where} conf ${fmt(p.confidence)} agree ${fmt(p.agreement)}`;
    case "alert": return `${p.severity || ""} ${p.kind || ""} ${p.message || ""}`;
    case "bot": return `${p.botId} ${p.state}${p.reason ? ": " + p.reason : ""}`;
    default: return Object.entries(p).filter(([, v]) => typeof v !== "object").slice(0, 5).map(([k, v]) => `${k}=${v}`).join(" ");
  }
}

// -- the live feed ---------------------------------------------------------------------------------
// What the page streams: on the live tail, what its filter asks for; elsewhere only what the panels
// update live (signals and LOGOS decisions, risk and system reports): a fast run's market data and
// positions reach those pages through the REST figures, not event by event.
// The fleet's cards are REST figures; of the live feed they only need the bots' lifecycle (a card
// redrawn as soon as a bot stops, fails or restarts), so the fleet page streams nothing else.
const PANEL_TOPICS = ["trading.signal.>", "analytics.decision.>", "risk.>", "system.>"];
const FLEET_TOPICS = ["system.bot.>"];
let source = null;
let streaming = "";
let streamingPage = "";

function streamTopics() {
  if (page === "tail") return filterPatterns;
  return page === "fleet" ? FLEET_TOPICS : PANEL_TOPICS;
}

function connect() {
  const topics = streamTopics();
  const key = topics.join(" ");
  if (source && key === streaming) return;
  // A new filter on the same page: resume from the last event seen, so nothing is missed. Another
  // page: start at the live end (its REST figures cover the past), or a page that streamed little
  // (the fleet) would pull the whole window back in.
  const resume = source && streamingPage === page;
  if (source) source.close();
  streaming = key;
  streamingPage = page;
  const query = topics.map((t) => "topic=" + encodeURIComponent(t));
  if (resume && state.lastId) query.push("lastEventId=" + encodeURIComponent(state.lastId));
  source = new EventSource("/events?" + query.join("&"));
  source.onopen = () => { state.connected = true; renderStream(); };
  source.onerror = () => {
    if (state.connected) state.reconnects += 1;
    state.connected = false;
    renderStream();
  };
  source.onmessage = (message) => {
    state.received += 1;
    const event = JSON.parse(message.data);
    event.position = message.lastEventId || null;
    state.lastId = message.lastEventId || state.lastId;
    receive(event);
  };
  source.addEventListener("gap", (m) => toast(`live feed: ${JSON.parse(m.data).lost} event(s) lost (too slow, or resumed too late)`, true));
  source.addEventListener("reset", () => toast("live feed: resumed from the start of the window", true));
}

function receive(event) {
  state.tail.push(event);
  if (state.tail.length > 2 * TAIL_BUFFER) state.tail.splice(0, state.tail.length - TAIL_BUFFER);
  if (!state.paused) {
    state.pendingTail.push(event);
    if (state.pendingTail.length > 2 * TAIL_ROWS) state.pendingTail.splice(0, state.pendingTail.length - TAIL_ROWS);
    scheduleTail();
  }
  if (event.domain === "system" && event.entity === "bot") {
    scheduleBots();
  } else if (event.entity === "signal") {
    const row = asRow(event);
    state.signals.unshift(row);
    if (state.signals.length > SIGNAL_ROWS) state.signals.length = SIGNAL_ROWS;
    const series = `${row.payload.exchange}:${row.payload.symbol}`;
    const source = (event.metadata && event.metadata.botId) || event.source;
    (state.latest[series] = state.latest[series] || {})[source] = row;
    scheduleSignals();
  } else if (event.entity === "decision") {
    const row = asRow(event);
    state.decisions[`${row.payload.exchange}:${row.payload.symbol}`] = row;
    scheduleSignals();
  }
}

function asRow(e) {
  return { id: e.id, topic: e.topic, source: e.source, timestamp: e.timestamp, time: (e.metadata && e.metadata.dataTime) || e.timestamp, payload: e.payload || {} };
}

let botsScheduled = false;
function scheduleBots() {  // a bot's lifecycle changed: its card and pill now, not at the next second
  if (botsScheduled) return;
  botsScheduled = true;
  setTimeout(() => { botsScheduled = false; refreshBots().catch(() => {}); }, BOTS_EVERY_MS);
}

let tailScheduled = false;
function scheduleTail() {
  if (tailScheduled) return;
  tailScheduled = true;
  setTimeout(() => requestAnimationFrame(() => { tailScheduled = false; flushTail(); }), TAIL_EVERY_MS);
}
function flushTail() {
  const body = $("tail");
  if (page !== "tail") {  // drawn when shown: keep only what the table would keep
    state.pendingTail.splice(0, Math.max(0, state.pendingTail.length - TAIL_ROWS));
    return;
  }
  const fresh = state.pendingTail.splice(0).filter((e) => filterMatches(e.topic)).slice(-TAIL_ROWS);
  const fragment = document.createDocumentFragment();
  for (const e of fresh) fragment.prepend(tailRow(e));
  body.prepend(fragment);
  while (body.children.length > TAIL_ROWS) body.lastChild.remove();
  $("tail-count").textContent = `${body.children.length} shown${state.paused ? " (paused)" : ""}`;
}
function tailRow(e) {
  const tr = document.createElement("tr");
  tr.className = "tail-row";
  tr.dataset.id = e.id;
  tr.dataset.topic = e.topic;
  tr.innerHTML = `<td>${esc(e.position || "")}</td><td>${time(e.timestamp)}</td><td class="topic">${esc(e.topic)}</td><td>${esc(e.source)}</td><td>${esc(summary(e))}</td>`;
  tr.addEventListener("click", () => {
    const next = tr.nextSibling;
    if (next && next.classList && next.classList.contains("json")) { next.remove(); return; }
    const detail = document.createElement("tr");
    detail.className = "json";
    detail.innerHTML = `<td colspan="5"><pre>${esc(JSON.stringify(e, null, 2))}</pre><a href="#lineage/${esc(e.id)}">lineage</a></td>`;
    tr.after(detail);
  });
  return tr;
}
function refilterTail() {
  $("tail").innerHTML = "";
  state.pendingTail = state.tail.filter((e) => filterMatches(e.topic)).slice(-TAIL_ROWS);
  flushTail();
}

// -- header, fleet and controls --------------------------------------------------------------------
function renderStream() {
  const el = $("stream");
  el.textContent = state.connected ? `live${state.reconnects ? " · " + state.reconnects + " reconnect(s)" : ""}` : "reconnecting…";
  el.className = "pill " + (state.connected ? "ok" : "warn");
}

async function refreshOverview() {
  const o = await api("/api/overview");
  setText($("host-name"), o.host);
  setText($("backend"), `${o.backend}${o.deterministic ? " · deterministic" : ""}${o.finished ? " · feed completed" : ""}`);
  setText($("ready"), o.ready ? "ready" : "not ready");
  setClass($("ready"), "pill " + (o.ready ? "ok" : "bad"));
  setText($("events"), `${o.events.toLocaleString()} events`);
  setText($("rate"), `${Math.round(o.eventsPerS).toLocaleString()}/s`);
  setText($("drops"), `${o.sseDropped} lost`);
}

async function refreshBots() {
  state.bots = await api("/api/bots");
  renderStrip();
  renderFleet();
}

let stripDrawn = "";
function renderStrip() {  // rebuilt only when a bot came, went or changed state (clicks: see DOMContentLoaded)
  const key = state.bots.map((bot) => `${bot.id} ${bot.code} ${bot.state}`).join("\n");
  if (key === stripDrawn) return;
  stripDrawn = key;
  const strip = $("strip");
  strip.innerHTML = "";
  for (const bot of state.bots) {
    const pill = document.createElement("button");
    pill.className = "bot-pill";
    pill.dataset.state = bot.state;
    pill.dataset.bot = bot.id;
    pill.textContent = bot.id;
    pill.title = `${bot.id} (${bot.code}) ${bot.state}`;
    strip.append(pill);
  }
}

function openPopover(botId, anchor) {
  const pop = $("popover");
  state.popoverBot = botId;
  $("popover-title").textContent = botId;
  const rect = anchor.getBoundingClientRect();
  pop.style.left = `${rect.left}px`;
  pop.style.top = `${rect.bottom + window.scrollY + 4}px`;
  pop.hidden = false;
}

function renderFleet() {
  const root = $("fleet");
  const groups = {};
  for (const bot of state.bots) (groups[bot.categoryName] = groups[bot.categoryName] || []).push(bot);
  for (const [name, bots] of Object.entries(groups)) {
    let group = root.querySelector(`.category[data-name="${CSS.escape(name)}"]`);
    if (!group) {
      group = document.createElement("div");
      group.className = "category";
      group.dataset.name = name;
      group.innerHTML = `<h3>${esc(name)}</h3><div class="cards"></div>`;
      root.append(group);
    }
    const cards = group.querySelector(".cards");
    for (const bot of bots) {
      let card = cards.querySelector(`.bot-card[data-bot="${CSS.escape(bot.id)}"]`);
      if (!card) {
        card = document.createElement("div");
        card.className = "bot-card";
        card.dataset.bot = bot.id;
        cards.append(card);
      }
      const html = `
        <div class="card-head"><strong>${esc(bot.id)}</strong> <span class="muted">${esc(bot.code)} · ${esc(bot.plugin)}</span>
          <span class="state state-${bot.state}">${esc(bot.state)}</span></div>
        <div class="card-figures">
          <span title="handled per second">in ${fmt(bot.inPerS, 0)}/s</span><span title="published per second">out ${fmt(bot.outPerS, 0)}/s</span>
          <span>handled ${bot.handled.toLocaleString()}</span><span class="${bot.pnl >= 0 ? "up" : "down"}">PnL ${signed(bot.pnl)}</span>
          <span>fills ${bot.fills}</span><span>alerts ${bot.alerts}</span><span>backlog ${bot.backlog}</span><span>dropped ${bot.dropped}</span>
          <span>restarts ${bot.restarts}</span><span>errors ${bot.errors}</span></div>
        ${bot.lastError ? `<div class="error" title="last error">${esc(bot.lastError)}</div>` : ""}
        <div class="card-controls">
          <button class="control" data-action="stop" ${bot.state === "stopped" || bot.state === "disabled" ? "disabled" : ""}>Stop</button>
          <button class="control" data-action="start" ${bot.state === "running" || bot.state === "disabled" ? "disabled" : ""}>Start</button>
          <button class="control" data-action="restart" ${bot.state === "disabled" ? "disabled" : ""}>Restart</button>
        </div>`;
      if (card.dataset.state !== bot.state) card.dataset.state = bot.state;
      if (card.drawn !== html) {  // a card whose figures did not change is not touched
        card.drawn = html;
        card.innerHTML = html;
      }
    }
  }
}

async function control(botId, action) {
  try {
    const result = await api(`/api/bots/${encodeURIComponent(botId)}/${action}`, { method: "POST", headers: CONTROL });
    toast(`${botId}: ${action} → ${result.state}`);
  } catch (error) {
    toast(String(error.message || error), true);
  }
  await refreshBots();
}

async function reloadConfig() {
  try {
    const result = await api("/api/reload", { method: "POST", headers: CONTROL });
    toast(result.status === "rejected" ? `reload rejected: ${result.errors.join("; ")}` : `reload ${result.status}`, result.status === "rejected");
  } catch (error) {
    toast(String(error.message || error), true);
  }
  await refreshBots();
}

// -- topology ----------------------------------------------------------------------------------------
async function refreshTopology() {
  const graph = await api("/api/topology");
  const columns = [0, 1, 2].map((c) => graph.nodes.filter((n) => n.column === c).length || 1);
  const at = {};
  for (const node of graph.nodes) at[node.id] = [node.column, 1 - (node.rank + 0.5) / columns[node.column]];
  const lines = (marked) => {
    const x = [], y = [];
    for (const edge of graph.edges.filter((e) => e.marked === marked)) {
      const a = at[edge.source], b = at[edge.target];
      if (!a || !b) continue;
      x.push(a[0], b[0], null); y.push(a[1], b[1], null);
    }
    return { x, y };
  };
  const normal = lines(false), marked = lines(true);
  const nodes = (isMarked) => {
    const chosen = graph.nodes.filter((n) => n.marked === isMarked);
    return {
      x: chosen.map((n) => at[n.id][0]), y: chosen.map((n) => at[n.id][1]),
      text: chosen.map((n) => n.label),
      hovertext: chosen.map((n) => [n.label, ...(n.findings || [])].join("<br>")),
      textposition: chosen.map((n) => (n.column === 0 ? "middle left" : n.column === 2 ? "middle right" : "top center")),
    };
  };
  const good = nodes(false), bad = nodes(true);
  const traces = [
    { ...normal, mode: "lines", line: { color: "#9aa5b1", width: 1 }, hoverinfo: "skip", name: "can reach" },
    { ...marked, mode: "lines", line: { color: "#d64545", width: 3 }, hoverinfo: "skip", name: "finding" },
    { ...good, mode: "markers+text", marker: { size: 12, color: "#2f6fab" }, hoverinfo: "text", name: "bots and patterns" },
    { ...bad, mode: "markers+text", marker: { size: 16, color: "#d64545", line: { width: 2, color: "#7a0000" } }, hoverinfo: "text", name: "marked by check" },
  ];
  const layout = {
    margin: { l: 170, r: 170, t: 30, b: 10 }, showlegend: true, legend: { orientation: "h" },
    xaxis: { visible: false, range: [-0.35, 2.35] }, yaxis: { visible: false, range: [-0.02, 1.02] },
    annotations: graph.columns.map((name, i) => ({ x: i, y: 1.04, text: `<b>${name}</b>`, showarrow: false, xref: "x", yref: "paper" })),
  };
  Plotly.react("topology-graph", traces, layout, { displayModeBar: false, responsive: true });
  const list = $("topology-findings");
  list.innerHTML = graph.findings.length ? "" : "<li class='muted'>no findings</li>";
  for (const f of graph.findings) {
    const li = document.createElement("li");
    li.className = `finding ${f.severity}`;
    li.dataset.bot = f.bot_id || "";
    li.dataset.key = f.key;
    li.textContent = f.text;
    list.append(li);
  }
}

// -- trading -------------------------------------------------------------------------------------------
async function refreshTrading() {
  const [prices, pnl, positions, orders] = await Promise.all([
    api(`/api/prices${state.series ? "?series=" + encodeURIComponent(state.series) : ""}`),
    api("/api/pnl"), api("/api/positions"), api("/api/orders"),
  ]);
  const select = $("series");
  if (select.options.length !== prices.series.length) {
    select.innerHTML = prices.series.map((s) => `<option>${esc(s)}</option>`).join("");
  }
  state.series = prices.selected;
  if (prices.selected) select.value = prices.selected;
  const side = (s) => prices.fills.filter((f) => f.payload.side === s);
  const fillTrace = (s, symbol, color) => {
    const fills = side(s);
    return {
      x: fills.map((f) => f.time), y: fills.map((f) => f.payload.averagePrice || f.payload.price),
      customdata: fills.map((f) => f.id), mode: "markers", name: s === "BUY" ? "buy fills" : "sell fills",
      marker: { symbol, size: 10, color }, text: fills.map((f) => `${f.payload.botId} ${s} ${f.payload.quantity}`),
      hovertemplate: "%{text}<br>%{y}<extra></extra>",
    };
  };
  Plotly.react("price-chart", [
    { x: prices.prices.x, y: prices.prices.y, mode: "lines", name: `${prices.selected || ""} close`, line: { color: "#52606d" } },
    fillTrace("BUY", "triangle-up", "#2f9e44"), fillTrace("SELL", "triangle-down", "#d64545"),
  ], { title: { text: `price and fills: ${prices.selected || "no data yet"}` }, margin: { t: 40, l: 60, r: 10, b: 40 }, xaxis: { type: "date" } }, { displayModeBar: false, responsive: true });
  const chart = $("price-chart");
  if (!chart.dataset.clicks) {
    chart.dataset.clicks = "1";
    chart.on("plotly_click", (data) => { const id = data.points[0].customdata; if (id) location.hash = `#lineage/${id}`; });
  }
  const equity = Object.entries(pnl.bots).map(([bot, s]) => ({ x: s.x, y: s.y, mode: "lines", name: bot }));
  equity.push({ x: pnl.total.x, y: pnl.total.y, mode: "lines", name: "total", line: { width: 3, color: "#111" } });
  Plotly.react("pnl-chart", equity, { title: { text: "PnL per bot and in total (realized + unrealized)" }, margin: { t: 40, l: 60, r: 10, b: 40 }, xaxis: { type: "date" } }, { displayModeBar: false, responsive: true });
  $("positions").innerHTML = positions.map((p) => `<tr><td>${esc(p.bot)}</td><td>${esc(p.exchange)}:${esc(p.symbol)}</td><td>${fmt(p.quantity, 6)}</td><td>${fmt(p.entryPrice)}</td><td>${fmt(p.markPrice)}</td><td>${signed(p.realizedPnl)}</td><td>${signed(p.unrealizedPnl)}</td></tr>`).join("");
  $("open-orders").innerHTML = orders.open.map((o) => `<tr><td>${esc(o.payload.orderId)}</td><td>${esc(o.payload.botId)}</td><td>${esc(o.payload.side)}</td><td>${fmt(o.payload.quantity, 6)}</td><td>${esc(o.payload.status)}</td></tr>`).join("") || "<tr><td colspan=5 class=muted>none</td></tr>";
  const fills = orders.recent.filter((o) => o.topic.startsWith("trading.order.filled")).slice(0, 30);
  $("fills").innerHTML = fills.map((f) => `<tr class="fill-row" data-id="${esc(f.id)}"><td>${time(f.time)}</td><td>${esc(f.payload.botId)}</td><td>${esc(f.payload.side)}</td><td>${esc(f.payload.exchange)}:${esc(f.payload.symbol)}</td><td>${fmt(f.payload.quantity, 6)}</td><td><a href="#lineage/${esc(f.id)}">${fmt(f.payload.averagePrice)}</a></td></tr>`).join("");
}

// -- signals and LOGOS -----------------------------------------------------------------------------------
async function refreshConsensus() {
  const [rows, signals] = await Promise.all([api("/api/consensus"), api("/api/signals")]);
  for (const row of rows) {
    if (row.decision) state.decisions[row.series] = row.decision;
    state.latest[row.series] = { ...row.signals, ...(state.latest[row.series] || {}) };
  }
  const known = new Set(state.signals.map((s) => s.id));
  for (const s of signals) if (!known.has(s.id)) state.signals.push(s);
  state.signals.sort((a, b) => b.timestamp - a.timestamp || (b.id > a.id ? 1 : -1));
  state.signals.length = Math.min(state.signals.length, SIGNAL_ROWS);
  renderSignals();
}

// Signals arrive by the hundred per second in a fast replay: drawing both tables on every animation
// frame (even on a page that does not show them) took the browser more CPU than the host's whole
// replay (docs/ui.md "Cost"). The state is kept up to date per event; the tables are drawn at most
// every SIGNALS_EVERY_MS while the signals page is shown, every SIGNALS_HIDDEN_MS otherwise.
let signalsScheduled = false;
function scheduleSignals() {
  if (signalsScheduled) return;
  signalsScheduled = true;
  const delay = page === "signals" ? SIGNALS_EVERY_MS : SIGNALS_HIDDEN_MS;
  setTimeout(() => requestAnimationFrame(() => { signalsScheduled = false; renderSignals(); }), delay);
}
function renderSignals() {
  const series = [...new Set([...Object.keys(state.decisions), ...Object.keys(state.latest)])].sort();
  $("consensus").innerHTML = series.map((s) => {
    const d = state.decisions[s];
    const latest = Object.entries(state.latest[s] || {}).map(([source, sig]) =>
      `<span class="vote ${sig.payload.direction === "LONG" ? "up" : "down"}" data-id="${esc(sig.id)}" title="${esc(sig.payload.reason || "")}">${esc(source)} ${esc(sig.payload.direction)} ${fmt(sig.payload.confidence)}</span>`).join(" ");
    return `<tr class="series-row" data-series="${esc(s)}"><td>${esc(s)}</td><td>${d ? esc(d.payload.direction) : "-"}</td><td>${d ? fmt(d.payload.confidence) : "-"}</td><td>${d ? fmt(d.payload.agreement) : "-"}</td><td>${latest}</td></tr>`;
  }).join("");
  $("signals").innerHTML = state.signals.map((s) => `<tr class="signal-row" data-id="${esc(s.id)}"><td>${time(s.time)}</td><td>${esc(s.source)}</td><td>${esc(s.payload.direction)}</td><td>${esc(s.payload.exchange)}:${esc(s.payload.symbol)}</td><td>${fmt(s.payload.confidence)}</td><td>${esc(s.payload.reason || "")}</td></tr>`).join("");
}

// -- risk -----------------------------------------------------------------------------------------------
async function refreshRisk() {
  const a = await api("/api/alerts");
  $("alert-counts").innerHTML = a.counts.map((c) => `<tr><td>${esc(c.kind)}</td><td>${esc(c.severity)}</td><td>${c.count}</td></tr>`).join("") || "<tr><td colspan=3 class=muted>none</td></tr>";
  $("blocks").innerHTML = a.blocks.map((b) => `<tr><td>${esc(b.payload.botId)}</td><td>${esc(b.payload.kind)}</td><td>${esc(b.payload.reason)}</td></tr>`).join("") || "<tr><td colspan=3 class=muted>none</td></tr>";
  $("alerts").innerHTML = a.recent.slice(0, 50).map((r) => `<tr class="sev-${esc(r.payload.severity)}"><td>${time(r.time)}</td><td>${esc(r.payload.severity)}</td><td>${esc(r.payload.kind)}</td><td>${esc(r.payload.message)}</td></tr>`).join("");
}

// -- bus --------------------------------------------------------------------------------------------------
async function refreshBus() {
  const b = await api("/api/bus");
  const s = b.stats;
  const figures = {
    backend: s.backend, connected: b.connected ? "yes" : "NO", published: s.published, "events/s": b.rates.events ?? 0,
    malformed: s.malformed, "handler failures": s.handler_failures, "dead letters": b.deadLetters,
    "overflow reports": b.overflowReports, "browser streams": b.sse.open, "lost by browsers": b.feed.dropped,
    window: `${b.feed.retained}/${b.feed.window}`, positions: b.feed.positions,
  };
  $("bus-figures").innerHTML = Object.entries(figures).map(([k, v]) => `<div><span class="muted">${esc(k)}</span><strong>${esc(v)}</strong></div>`).join("");
  Plotly.react("bus-chart", [
    { x: b.history.map((h) => h.t), y: b.history.map((h) => h.events), mode: "lines", name: "events/s" },
    { x: b.history.map((h) => h.t), y: b.history.map((h) => h.sse_dropped), mode: "lines", name: "lost by browsers/s", yaxis: "y2" },
  ], { title: { text: "bus throughput" }, margin: { t: 40, l: 60, r: 60, b: 40 }, xaxis: { type: "date" }, yaxis2: { overlaying: "y", side: "right" } }, { displayModeBar: false, responsive: true });
  $("subscriptions").innerHTML = s.subscriptions.map((x) => `<tr><td>${esc(x.name)}</td><td>${esc(x.patterns.join(" | "))}</td><td>${x.delivered}</td><td>${x.failed}</td><td>${x.pending}</td><td>${x.dropped.low + x.dropped.normal}</td></tr>`).join("");
  $("system").innerHTML = b.system.slice(0, 50).map((r) => `<tr><td>${time(r.timestamp)}</td><td>${esc(r.topic)}</td><td>${esc(summary({ entity: r.topic.split(".")[1], payload: r.payload }))}</td></tr>`).join("") || "<tr><td colspan=3 class=muted>none</td></tr>";
  $("streams").innerHTML = b.sse.streams.map((x) => `<tr><td>${x.id}</td><td>${esc(x.client)}</td><td>${esc(x.patterns.join(" "))}</td><td>${x.sent}</td><td>${x.dropped}</td></tr>`).join("");
}

// -- lineage ----------------------------------------------------------------------------------------------
async function showLineage(id) {
  $("lineage-id").value = id;
  const list = $("lineage");
  list.innerHTML = "";
  try {
    const chain = await api(`/api/lineage/${encodeURIComponent(id)}`);
    for (const hop of chain.hops) {
      const li = document.createElement("li");
      li.className = "hop";
      li.dataset.topic = hop.event.topic;
      li.innerHTML = `<div><strong>${esc(hop.event.topic)}</strong> <span class="muted">${esc(hop.event.source)} · ${esc(hop.event.id)}</span></div><div>${esc(summary({ entity: hop.event.entity, payload: hop.event.payload }))}</div>`;
      li.addEventListener("click", () => li.classList.toggle("open"));
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(hop.event, null, 2);
      li.append(pre);
      list.append(li);
    }
    $("lineage-end").textContent = `${chain.hops.length} event(s); ${chain.end}`;
  } catch (error) {
    $("lineage-end").textContent = String(error.message || error);
  }
}

// -- pages and refresh --------------------------------------------------------------------------------------
const refreshers = { fleet: refreshBots, topology: refreshTopology, trading: refreshTrading, signals: refreshConsensus, risk: refreshRisk, bus: refreshBus };
let page = "fleet";

function route() {
  const [name, arg] = (location.hash.slice(1) || "fleet").split("/");
  page = document.getElementById(`view-${name}`) ? name : "fleet";
  for (const view of document.querySelectorAll(".view")) view.classList.toggle("active", view.id === `view-${page}`);
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.getAttribute("href") === `#${page}`);
  if (document.body.dataset.page !== page) window.scrollTo(0, 0);
  document.body.dataset.page = page;
  if (page === "lineage" && arg) showLineage(decodeURIComponent(arg));
  if (page === "tail") refilterTail();
  connect();
  refresh(true);
}

let refreshing = false;
async function refresh(force) {
  if ((refreshing || document.hidden) && !force) return;  // a hidden tab: nobody to draw for
  refreshing = true;
  try {
    await refreshOverview();
    if (page !== "fleet") await refreshBots();  // the strip of every page
    const refresher = refreshers[page];
    if (refresher) await refresher();
    document.body.dataset.loaded = "1";
  } catch (error) {
    $("ready").textContent = "host unreachable";
    $("ready").className = "pill bad";
  } finally {
    refreshing = false;
  }
}

window.citarion = state;  // for tests and the benchmark (read-only use)
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  $("tail-filter").addEventListener("change", (e) => {
    state.filter = e.target.value.trim() || ">";
    filterPatterns = state.filter.split(/[ ,]+/).filter(Boolean);
    refilterTail();
    connect();
  });
  $("tail-pause").addEventListener("click", (e) => {
    state.paused = !state.paused;
    e.target.textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) refilterTail();
  });
  $("series").addEventListener("change", (e) => { state.series = e.target.value; refreshTrading(); });
  $("lineage-go").addEventListener("click", () => { location.hash = `#lineage/${encodeURIComponent($("lineage-id").value.trim())}`; });
  $("reload").addEventListener("click", reloadConfig);
  // One listener each for the cards' controls and the strip's pills, however often they are redrawn.
  $("fleet").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    const card = button && button.closest(".bot-card");
    if (card) control(card.dataset.bot, button.dataset.action);
  });
  $("strip").addEventListener("click", (e) => {
    const pill = e.target.closest(".bot-pill");
    if (pill) openPopover(pill.dataset.bot, pill);
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(true); });
  for (const button of document.querySelectorAll("#popover button[data-action]")) {
    button.addEventListener("click", async () => { $("popover").hidden = true; await control(state.popoverBot, button.dataset.action); });
  }
  document.addEventListener("click", (e) => {
    if (!e.target.closest("#popover") && !e.target.classList.contains("bot-pill")) $("popover").hidden = true;
  });
  route();
  setInterval(() => refresh(false), 1000);
});
