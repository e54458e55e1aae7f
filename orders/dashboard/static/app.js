// The dashboard page: one EventSource, one render per pushed state, SVG charts drawn here (no library).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let updates = 0;
let latest = null;

const count = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const money = (s) => (s === null || s === undefined ? "–" : Number(s).toFixed(2));
const rate = (n) => (n === null || n === undefined ? "–" : Number(n).toFixed(1));

function duration(seconds) {
  const s = Math.floor(seconds);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return m ? `${m}m ${s % 60}s` : `${s % 60}s`;
}

function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString("en-GB", { hour12: false });
}

function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// "<run prefix>-<sequence>": the prefix is what a narrow screen shortens, the sequence always shows.
// A dead letter's detail ends with its trace id, a link to the trace backend's page when its URL is known.
function detailCell(entry, tracesUrl) {
  const td = cell(entry.detail, "detail");
  if (!entry.trace) return td;
  const trace = document.createElement(tracesUrl ? "a" : "span");
  trace.className = "trace";
  trace.textContent = ` trace ${entry.trace}`;
  if (tracesUrl) {
    trace.href = `${tracesUrl}/zipkin/traces/${encodeURIComponent(entry.trace)}`;
    trace.target = "_blank";
    trace.rel = "noopener";
  }
  td.append(trace);
  return td;
}

function orderCell(orderId) {
  const td = cell("", "id");
  const cut = orderId.lastIndexOf("-");
  const prefix = document.createElement("span");
  prefix.className = "prefix";
  prefix.textContent = cut > 0 ? orderId.slice(0, cut) : "";
  td.append(prefix, cut > 0 ? orderId.slice(cut) : orderId);
  td.title = orderId;
  return td;
}

function fillTable(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells);
      return tr;
    }),
  );
}

// ---- charts -------------------------------------------------------------------------------------

function svgNode(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceRange(values) {
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let [lo, hi] = [Math.min(...finite), Math.max(...finite)];
  if (lo === hi) [lo, hi] = [lo - Math.max(1, Math.abs(lo) * 0.1), hi + Math.max(1, Math.abs(hi) * 0.1)];
  const pad = (hi - lo) * 0.08;
  return [lo >= 0 && lo - pad < 0 ? 0 : lo - pad, hi + pad];
}

function lineChart(svg, times, series) {
  const width = Math.max(svg.clientWidth, 200);
  const height = Math.max(svg.clientHeight, 120);
  const [left, right, top, bottom] = [48, 8, 8, 20];
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const nodes = [];
  const [lo, hi] = niceRange(series.flatMap((s) => s.values));
  const t0 = times.length ? times[0] : 0;
  const t1 = times.length > 1 ? times[times.length - 1] : t0 + 1;
  const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1e-9)) * (width - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  for (let i = 0; i <= 3; i++) {
    const value = lo + ((hi - lo) * i) / 3;
    const py = y(value);
    nodes.push(svgNode("line", { x1: left, x2: width - right, y1: py, y2: py, class: "grid" }));
    nodes.push(svgNode("text", { x: left - 6, y: py + 4, class: "axis", "text-anchor": "end" }, value.toFixed(hi - lo < 10 ? 1 : 0)));
  }
  if (times.length) {
    nodes.push(svgNode("text", { x: left, y: height - 4, class: "axis" }, clock(t0)));
    nodes.push(svgNode("text", { x: width - right, y: height - 4, class: "axis", "text-anchor": "end" }, clock(t1)));
  }
  series.forEach((s, index) => {
    let path = "";
    let pen = "M";
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        pen = "M";
        return;
      }
      path += `${pen}${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = "L";
    });
    if (path) nodes.push(svgNode("path", { d: path, class: `line s${index}` }));
  });
  svg.replaceChildren(...nodes);
}

// ---- rendering ----------------------------------------------------------------------------------

function renderHealth(health) {
  for (const li of $("health").children) {
    const h = health[li.dataset.service] || { status: "unknown", detail: "" };
    li.className = h.status;
    li.title = `${h.status}: ${h.detail}`;
  }
}

function renderFigures(state) {
  setText("uptime", duration(state.uptime));
  setText("produced", count(state.producer.produced));
  setText("produced-rate", rate(state.producer.rate));
  const p = state.processing || {};
  setText("consumed", count(p.consumed));
  setText("succeeded", count(p.succeeded));
  setText("succeeded-rate", rate(p.rate));
  setText("retry-attempts", count(p.retry_attempts));
  setText("dlq", count(p.dlq));
  const st = p.dlq_stages;
  setText("dlq-stages", st ? `${count(st.decode)} · ${count(st.validate)} · ${count(st.process)}` : "–");
  setText("queued", count(p.queued));
  setText("in-flight", count(p.in_flight));
  const a = state.average || {};
  setText("average", money(a.all_time));
  setText("last100", money(a.last100));
  setText("min", money(a.min));
  setText("max", money(a.max));
}

function renderControls(controls) {
  const demo = controls.producer;
  const status = demo.running
    ? `running at ${demo.rate}/s · sent ${count(demo.sent)}, delivered ${count(demo.delivered)}`
    : `stopped · sent ${count(demo.sent)}, delivered ${count(demo.delivered)}`;
  setText("producer-status", demo.error ? `${status} · error: ${demo.error}` : status);
  Object.assign($("producer-status").dataset, { running: demo.running, sent: demo.sent, delivered: demo.delivered });
  $("producer-stop").disabled = !demo.running;
  const override = controls.failure_rate;
  setText("failure-current", override === null ? "none (workers' FAILURE_RATE)" : `${override}`);
}

function renderTables(state) {
  const lag = state.lag;
  setText("lag-total", lag.total === null ? "unavailable" : `total ${count(lag.total)}`);
  fillTable("lag", lag.partitions.map((p) => [cell(p.partition), cell(count(p.high)), cell(count(p.committed)), cell(count(p.lag))]));
  fillTable(
    "recent",
    state.recent.map((r) => {
      const badge = document.createElement("span");
      badge.className = `badge ${r.status}`;
      badge.textContent = r.status === "dlq" ? "DLQ" : r.status;
      const status = cell("");
      status.append(badge);
      return [cell(clock(r.at), "time"), orderCell(String(r.orderId)), cell(r.product), cell(money(r.price)), status, detailCell(r, state.controls.traces_url)];
    }),
  );
  fillTable(
    "products",
    Object.entries(state.products).map(([name, p]) => [cell(name), cell(count(p.count)), cell(money(p.average))]),
  );
}

function renderCharts(history) {
  lineChart($("average-chart"), history.t, [{ values: history.average }, { values: history.last100 }]);
  lineChart($("throughput-chart"), history.t, [{ values: history.succeeded_rate }, { values: history.produced_rate }]);
}

function render(state) {
  latest = state;
  renderHealth(state.health);
  renderFigures(state);
  renderControls(state.controls);
  renderTables(state);
  renderCharts(state.history);
  setText("errors", state.errors.join(" · "));
}

// ---- live connection and controls ----------------------------------------------------------------

function setConnection(live) {
  const el = $("connection");
  el.textContent = live ? "live" : "reconnecting";
  el.className = `pill ${live ? "ok" : "down"}`;
}

function connect() {
  const events = new EventSource("events");
  events.onopen = () => setConnection(true);
  events.onerror = () => setConnection(false); // EventSource reconnects by itself
  events.onmessage = (event) => {
    updates += 1;
    document.body.dataset.updates = updates;
    render(JSON.parse(event.data));
  };
}

// The session cookie (HttpOnly, SameSite=Strict) goes with every same-origin request by itself.
async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(reply.error || `${response.status} ${response.statusText}`);
  return reply;
}

function control(action) {
  return async (event) => {
    event.preventDefault();
    const message = $("message");
    try {
      await action();
      message.textContent = "";
      message.className = "note";
    } catch (error) {
      message.textContent = error.message;
      message.className = "note error";
    }
  };
}

// With a token set, figures need a session: ask for the token once, then the cookie carries on.
async function signIn() {
  const session = await (await fetch("api/session")).json();
  if (!session.token_required || session.authenticated) return;
  $("login").hidden = false;
  await new Promise((resolve) => {
    $("login-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await post("api/session", { token: $("token").value.trim() });
        $("token").value = "";
        $("login").hidden = true;
        resolve();
      } catch (error) {
        $("login-message").textContent = error.message;
        $("login-message").className = "note error";
      }
    });
  });
}

function setUp() {
  const startProducer = () => post("api/producer", { action: "start", rate: Number($("demo-rate").value) });
  $("producer-form").addEventListener("submit", control(startProducer));
  $("producer-stop").addEventListener("click", control(() => post("api/producer", { action: "stop" })));
  const setRate = () => post("api/failure-rate", { rate: Number($("failure-rate").value) });
  $("failure-form").addEventListener("submit", control(setRate));
  $("failure-reset").addEventListener("click", control(() => post("api/failure-rate", { rate: null })));
  window.addEventListener("resize", () => latest && renderCharts(latest.history));
  signIn().then(connect);
}

setUp();
