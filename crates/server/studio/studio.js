// warmpool studio: plain JavaScript, no libraries, no build step.
// It reads and acts only through warmpool's public API (the same the CLI uses)
// and the admin-only read-only SQL and table endpoints.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (sel) => document.querySelector(sel);

/** Creates an element with attributes and children (strings become text). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

/** An API error: the problem document's title and detail. */
class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || "HTTP " + status);
    this.status = status;
    this.problem = problem;
  }
}

/** Calls the API. Changes carry X-Requested-With, which a cross-site form cannot. */
async function api(path, options = {}) {
  const headers = { "X-Requested-With": "warmpool-studio", Accept: "application/json" };
  const init = { method: options.method || "GET", headers, credentials: "same-origin" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (options.signal) init.signal = options.signal;
  const r = await fetch(path, init);
  if (r.status === 401) {
    // The session ended: back to the login form.
    window.location.assign("/studio");
    throw new ApiError(401, { title: "Unauthorized", detail: "the session has ended" });
  }
  const text = await r.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = { title: "HTTP " + r.status, detail: text };
  }
  if (!r.ok) throw new ApiError(r.status, body || { title: "HTTP " + r.status });
  return body;
}

// ---- formatting ----

function duration(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return "";
  const neg = ms < 0;
  let s = Math.round(Math.abs(ms) / 1000);
  let out;
  if (s < 60) out = s + "s";
  else if (s < 3600) out = Math.floor(s / 60) + "m " + (s % 60) + "s";
  else if (s < 86400) out = Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  else out = Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  return neg ? "-" + out : out;
}

function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

function stateBadge(state) {
  return el("span", { class: "state state-" + state, text: state });
}

// ---- state ----

const state = {
  pools: null,
  history: null,
  containers: [],
  selected: null,
  eventsNext: 0,
  events: [],
  locations: new Set(),
  table: null,
  tableOffset: 0,
  tablePage: 50,
  tableTruncated: false,
};

function setLive(ok, text) {
  const live = $("#live");
  live.textContent = text;
  live.classList.toggle("ok", ok);
  live.classList.toggle("down", !ok);
}

// ---- pools ----

function failedLastHour(pool, location) {
  const samples = (state.history && state.history.samples) || [];
  if (samples.length === 0) return 0;
  const find = (s) => s.pools.find((p) => p.pool === pool && p.location === location);
  const last = find(samples[samples.length - 1]);
  if (!last) return 0;
  for (const s of samples) {
    const first = find(s);
    if (first) return Math.max(0, last.failures - first.failures);
  }
  return 0;
}

function renderPools() {
  const box = $("#pools");
  const list = state.pools ? state.pools.pools : [];
  box.replaceChildren();
  if (list.length === 0) {
    box.append(el("p", { class: "muted", text: "No pools." }));
    return;
  }
  for (const p of list) {
    state.locations.add(p.location);
    const claims = p.hits + p.misses;
    const ratio = claims ? Math.round((100 * p.hits) / claims) + "%" : "–";
    const failed = failedLastHour(p.pool, p.location);
    const field = (name, label, value, cls) =>
      el("div", {}, el("dt", { text: label }), el("dd", { class: cls || name, "data-field": name, text: value }));
    const total = Math.max(p.target, p.ready + p.allocated, 1);
    const card = el(
      "article",
      { class: "card", "data-pool": p.pool, "data-location": p.location, "aria-label": `Pool ${p.pool} in ${p.location}` },
      el("h3", {}, p.pool, " ", el("span", { class: "loc", text: "· " + p.location })),
      el(
        "dl",
        {},
        field("target", "target", p.target),
        field("desired", "desired", p.desired),
        field("revision", "revision", p.revision),
        field("ready", "ready", p.ready),
        field("starting", "starting", p.starting),
        field("allocated", "allocated", p.allocated),
        field("failed", "failed (1 h)", failed),
        field("hit-ratio", "warm hits", ratio, "ratio"),
      ),
      el(
        "div",
        { class: "bar", "aria-hidden": "true" },
        el("span", { class: "ready", "data-width": (100 * p.ready) / total }),
        el("span", { class: "allocated", "data-width": (100 * p.allocated) / total }),
      ),
      el("p", { class: "reason muted", "data-field": "reason", title: "why desired is what it is", text: p.reason }),
      p.lastError
        ? el("p", { class: "last-error", "data-field": "last-error" }, el("strong", { text: "Last error " + clock(p.lastErrorAt) + ": " }), p.lastError)
        : null,
    );
    for (const span of card.querySelectorAll(".bar span")) span.style.width = span.dataset.width + "%";
    box.append(card);
  }
  const sel = $("#f-location");
  const current = sel.value;
  const have = new Set([...sel.options].map((o) => o.value));
  for (const l of [...state.locations].sort()) {
    if (!have.has(l)) sel.append(el("option", { value: l, text: l }));
  }
  sel.value = current;
}

// ---- charts ----

/** Draws lines over the last hour into `box`: series are {name, cls, values}. */
function lineChart(box, times, series, label, unit) {
  // Drawn at the box's own width, so that text is not stretched.
  const W = Math.max(320, Math.round(box.clientWidth || 600)), H = 150, L = 46, R = 8, T = 10, B = 20;
  const now = Date.now();
  const x0 = now - 3600 * 1000;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max > 0 ? niceMax(max) : 1;
  const sx = (t) => L + ((t - x0) / (now - x0)) * (W - L - R);
  const sy = (v) => T + (1 - v / max) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  const title = svg("title");
  title.textContent = label;
  root.append(title);
  root.append(svg("line", { class: "axis", x1: L, y1: sy(0), x2: W - R, y2: sy(0) }));
  root.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: sy(0) }));
  const text = (x, y, s, anchor) => {
    const t = svg("text", { x, y, "text-anchor": anchor || "start" });
    t.textContent = s;
    root.append(t);
  };
  text(L - 4, T + 4, fmtNum(max) + unit, "end");
  text(L - 4, sy(0), "0", "end");
  for (const m of [60, 45, 30, 15]) text(sx(now - m * 60000), H - 5, "-" + m + "m", "middle");
  text(W - R, H - 5, "now", "end");
  for (const s of series) {
    let d = "";
    let pen = false;
    for (let i = 0; i < times.length; i++) {
      const v = s.values[i];
      if (v === null || v === undefined || times[i] < x0) {
        pen = false;
        continue;
      }
      d += (pen ? "L" : "M") + sx(times[i]).toFixed(1) + " " + sy(v).toFixed(1) + " ";
      pen = true;
    }
    if (d) root.append(svg("path", { class: "line " + s.cls, d }));
  }
  box.replaceChildren(root);
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtNum(v) {
  return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 100) / 100);
}

function renderCharts() {
  const samples = (state.history && state.history.samples) || [];
  const times = samples.map((s) => Date.parse(s.at));
  const sum = (s, f) => s.pools.reduce((a, p) => a + p[f], 0);
  const ready = samples.map((s) => sum(s, "ready"));
  const allocated = samples.map((s) => sum(s, "allocated"));
  const last = samples.length ? samples.length - 1 : -1;
  lineChart(
    $("#chart-depth"),
    times,
    [
      { cls: "ready", values: ready },
      { cls: "allocated", values: allocated },
    ],
    last >= 0 ? `Pool depth over the last hour; now ${ready[last]} ready, ${allocated[last]} allocated` : "Pool depth: no data yet",
    "",
  );
  const p50 = samples.map((s) => s.claimP50Ms);
  const p99 = samples.map((s) => s.claimP99Ms);
  const lastLat = [...samples].reverse().find((s) => s.claimP50Ms !== null);
  lineChart(
    $("#chart-latency"),
    times,
    [
      { cls: "p50", values: p50 },
      { cls: "p99", values: p99 },
    ],
    lastLat
      ? `Claim latency over the last hour; latest p50 ${fmtNum(lastLat.claimP50Ms)} ms, p99 ${fmtNum(lastLat.claimP99Ms)} ms`
      : "Claim latency: no claims in the last hour",
    " ms",
  );
}

async function refreshPools() {
  const [pools, history, status] = await Promise.all([
    api("/v1/pools"),
    api("/v1/stats/history"),
    api("/v1/status"),
  ]);
  state.pools = pools;
  state.history = history;
  renderPools();
  renderCharts();
  renderTasks(status.tasks);
}

// ---- background tasks ----

function renderTasks(tasks) {
  const now = Date.now();
  $("#tasks tbody").replaceChildren(
    ...tasks.map((t) => {
      const last = t.last;
      const outcome = t.runningSince
        ? el("span", { class: "state state-starting", text: "running" })
        : last
          ? el("span", { class: "state " + (last.outcome === "ok" ? "state-ready" : "state-failed"), text: last.outcome })
          : el("span", { class: "muted", text: "not run yet" });
      return el(
        "tr",
        { "data-task": t.name, "data-outcome": last ? last.outcome : "" },
        el("th", { scope: "row", class: "mono", text: t.name }),
        el("td", { class: "num", text: t.periodSeconds < 1 ? Math.round(t.periodSeconds * 1000) + " ms" : duration(t.periodSeconds * 1000) }),
        el("td", { class: "num", text: String(t.runs) }),
        el("td", { class: "num", text: String(t.errors) }),
        el("td", { class: "num", "data-since": last ? last.startedAt : null, text: last ? duration(now - Date.parse(last.startedAt)) + " ago" : "" }),
        el("td", { class: "num", text: last ? fmtNum(last.durationMs) + " ms" : "" }),
        el("td", {}, outcome, last ? el("span", { class: "detail", text: " " + last.detail }) : null),
      );
    }),
  );
}

// ---- containers ----

function containersPath() {
  const q = new URLSearchParams();
  const s = $("#f-state").value;
  const l = $("#f-location").value;
  const sel = $("#f-label").value.trim();
  if (s) q.set("state", s);
  if (l) q.set("location", l);
  if (sel) q.set("label", sel);
  q.set("limit", "1000");
  return "/v1/containers?" + q.toString();
}

let containersSeq = 0;

/** Re-reads the containers; a label selector the API refuses is shown by its input. */
async function refreshContainers() {
  const seq = ++containersSeq;
  const input = $("#f-label");
  const box = $("#f-label-error");
  let list;
  try {
    list = await api(containersPath());
  } catch (e) {
    if (seq !== containersSeq) return;
    if (e.problem && e.problem.field === "label") {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-errormessage", "f-label-error");
      showError(box, e);
      state.containers = [];
      renderContainers();
      return;
    }
    throw e;
  }
  // An older request answered after a newer one: keep the newer answer.
  if (seq !== containersSeq) return;
  input.removeAttribute("aria-invalid");
  input.removeAttribute("aria-errormessage");
  box.hidden = true;
  state.containers = list.containers;
  renderContainers();
}

/** A container's labels as `k=v` chips (sorted by key, as the API sends them). */
function labelChips(labels) {
  const entries = Object.entries(labels || {});
  if (entries.length === 0) return [];
  return entries.map(([k, v]) => el("span", { class: "label mono", "data-key": k, text: k + "=" + v }));
}

/** Metadata in one line (the whole of it in the tooltip). */
function compactJson(v) {
  if (v === null || v === undefined) return "";
  const s = JSON.stringify(v);
  return s.length > 60 ? s.slice(0, 59) + "…" : s;
}

function renderContainers() {
  const body = $("#containers tbody");
  const now = Date.now();
  const focusedId = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : null;
  const rows = [...state.containers].reverse(); // newest first
  body.replaceChildren(
    ...rows.map((c) => {
      state.locations.add(c.location);
      const age = now - Date.parse(c.createdAt);
      const expires = c.expiresAt && !c.stoppedAt ? duration(Date.parse(c.expiresAt) - now) : "";
      return el(
        "tr",
        {
          tabindex: 0,
          "data-id": c.id,
          "data-state": c.state,
          "aria-selected": state.selected === c.id ? "true" : "false",
          onclick: () => select(c.id),
          onkeydown: rowKeys,
        },
        el("td", {}, stateBadge(c.state)),
        el("td", { text: c.pool }),
        el("td", { text: c.location }),
        el("td", { class: "num", "data-field": "revision", text: c.revision }),
        el("td", { class: "num", "data-since": c.createdAt, text: duration(age) }),
        el("td", { class: "num", "data-until": c.expiresAt && !c.stoppedAt ? c.expiresAt : null, text: expires }),
        el("td", { class: "mono", text: c.address || "" }),
        el("td", { class: "labels", "data-field": "labels" }, labelChips(c.labels)),
        el("td", {
          class: "mono metadata",
          "data-field": "metadata",
          title: c.metadata === null || c.metadata === undefined ? null : JSON.stringify(c.metadata, null, 2),
          text: compactJson(c.metadata),
        }),
        el("th", { scope: "row", class: "mono", title: c.id, text: shortId(c.id) }),
      );
    }),
  );
  $("#containers-count").textContent = rows.length + (rows.length === 1 ? " container" : " containers");
  if (focusedId) {
    const again = body.querySelector(`tr[data-id="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
}

/** Moves ages and expiries on in place (rows are not rebuilt, so clicks land). */
function tickAges() {
  const now = Date.now();
  for (const td of document.querySelectorAll("#containers td[data-since]")) {
    td.textContent = duration(now - Date.parse(td.dataset.since));
  }
  for (const td of document.querySelectorAll("#containers td[data-until]")) {
    td.textContent = duration(Date.parse(td.dataset.until) - now);
  }
}

/** Enter or Space opens a row; arrows move between rows. */
function rowKeys(ev) {
  const tr = ev.currentTarget;
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    tr.click();
  } else if (ev.key === "ArrowDown" && tr.nextElementSibling) {
    ev.preventDefault();
    tr.nextElementSibling.focus();
  } else if (ev.key === "ArrowUp" && tr.previousElementSibling) {
    ev.preventDefault();
    tr.previousElementSibling.focus();
  }
}

async function select(id) {
  state.selected = id;
  for (const tr of document.querySelectorAll("#containers tbody tr")) {
    tr.setAttribute("aria-selected", tr.dataset.id === id ? "true" : "false");
  }
  $("#detail").hidden = false;
  $(".split").classList.add("with-detail");
  $("#detail-error").hidden = true;
  await refreshDetail();
  $("#detail-h").focus();
}

async function refreshDetail() {
  const id = state.selected;
  if (!id) return;
  const [c, ev] = await Promise.all([
    api("/v1/containers/" + encodeURIComponent(id)),
    api("/v1/events?container=" + encodeURIComponent(id) + "&limit=1000"),
  ]);
  if (state.selected !== id) return;
  $("#detail-h").textContent = "Container " + shortId(c.id);
  const dl = $("#detail-fields");
  const row = (k, v) => (v === null || v === undefined || v === "" ? [] : [el("dt", { text: k }), el("dd", { text: String(v) })]);
  dl.replaceChildren(
    ...row("id", c.id),
    el("dt", { text: "state" }),
    el("dd", { "data-field": "state" }, stateBadge(c.state)),
    ...row("pool", c.pool),
    ...row("location", c.location),
    ...row("revision", c.revision),
    ...row("address", c.address),
    ...row("runtime", c.runtime + (c.runtimeHandle ? " (" + c.runtimeHandle + ")" : "")),
    ...row("on demand", c.onDemand ? "yes" : "no"),
    ...row("created", c.createdAt),
    ...row("ready", c.readyAt),
    ...row("allocated", c.allocatedAt),
    ...row("expires", c.expiresAt),
    ...row("stopped", c.stoppedAt),
    ...row("stop reason", c.stopReason),
    ...row("exit code", c.exitCode),
    ...(Object.keys(c.labels || {}).length
      ? [el("dt", { text: "labels" }), el("dd", { "data-field": "labels" }, labelChips(c.labels))]
      : []),
    ...(c.metadata === null || c.metadata === undefined
      ? []
      : [el("dt", { text: "metadata" }), el("dd", {}, el("pre", { class: "mono wrap", "data-field": "metadata", text: JSON.stringify(c.metadata, null, 2) }))]),
  );
  const live = ["starting", "ready", "allocated"].includes(c.state);
  $("#release").disabled = !live;
  $("#detail-events tbody").replaceChildren(
    ...ev.events.map((e) =>
      el("tr", {}, el("td", { class: "num", text: e.seq }), el("td", { text: clock(e.at) }), el("td", { text: e.from || "" }), el("td", {}, stateBadge(e.to)), el("td", { class: "wrap", text: e.reason || "" })),
    ),
  );
}

function closeDetail() {
  const id = state.selected;
  state.selected = null;
  $("#detail").hidden = true;
  $(".split").classList.remove("with-detail");
  for (const tr of document.querySelectorAll("#containers tbody tr")) tr.setAttribute("aria-selected", "false");
  const row = id && document.querySelector(`#containers tr[data-id="${CSS.escape(id)}"]`);
  if (row) row.focus();
}

async function release() {
  const id = state.selected;
  if (!id) return;
  const btn = $("#release");
  btn.disabled = true;
  try {
    await api("/v1/containers/" + encodeURIComponent(id), { method: "DELETE" });
    await Promise.all([refreshDetail(), refreshContainers(), refreshPools()]);
  } catch (e) {
    showError($("#detail-error"), e);
    btn.disabled = false;
  }
}

// ---- events ----

function renderEvents() {
  $("#events tbody").replaceChildren(
    ...[...state.events].reverse().map((e) =>
      el(
        "tr",
        { "data-seq": e.seq },
        el("td", { class: "num", text: e.seq }),
        el("td", { text: clock(e.at) }),
        el("td", { class: "mono", title: e.containerId, text: shortId(e.containerId) }),
        el("td", { text: e.from || "" }),
        el("td", {}, stateBadge(e.to)),
        el("td", { class: "wrap", text: e.reason || "" }),
      ),
    ),
  );
}

const KEEP_EVENTS = 200;

function addEvents(list) {
  state.events.push(...list);
  if (state.events.length > KEEP_EVENTS) state.events.splice(0, state.events.length - KEEP_EVENTS);
}

/** Reads every page up to the newest event, keeping the last ones. */
async function catchUpEvents() {
  for (;;) {
    const page = await api("/v1/events?after=" + state.eventsNext + "&limit=1000");
    addEvents(page.events);
    state.eventsNext = page.next;
    if (page.events.length < 1000) break;
  }
  renderEvents();
}

let refreshTimer = null;

/** Re-reads what events may have changed, at most a few times a second. */
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    try {
      await Promise.all([refreshPools(), refreshContainers(), state.selected ? refreshDetail() : null]);
    } catch (e) {
      console.warn("refresh failed", e);
    }
  }, 150);
}

/** Long-polls the events endpoint; every batch triggers a refresh. */
async function followEvents() {
  for (;;) {
    try {
      const page = await api("/v1/events?after=" + state.eventsNext + "&limit=1000&wait=25");
      setLive(true, "Live");
      if (page.events.length) {
        addEvents(page.events);
        state.eventsNext = page.next;
        renderEvents();
        scheduleRefresh();
      }
    } catch (e) {
      setLive(false, "Disconnected: retrying…");
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

// ---- database ----

async function loadTables() {
  const list = $("#tables");
  try {
    const { tables } = await api("/v1/tables");
    list.replaceChildren(
      ...tables.map((t) =>
        el(
          "li",
          {},
          el(
            "button",
            {
              type: "button",
              "data-table": t.name,
              "aria-pressed": state.table === t.name ? "true" : "false",
              onclick: () => openTable(t, 0),
            },
            el("span", { text: t.name }),
            el("span", { class: "muted", text: t.rows + (t.rows === 1 ? " row" : " rows") }),
          ),
        ),
      ),
    );
    if (!state.table && tables.length) openTable(tables[0], 0);
  } catch (e) {
    list.replaceChildren(el("li", {}, errorBox(e)));
  }
}

async function openTable(t, offset) {
  state.table = t.name;
  state.tableOffset = Math.max(0, offset);
  for (const b of document.querySelectorAll("#tables button")) b.setAttribute("aria-pressed", b.dataset.table === t.name ? "true" : "false");
  $("#columns").replaceChildren(
    el("h3", { text: "Columns of " + t.name }),
    el(
      "ul",
      { class: "cols" },
      ...t.columns.map((c) => el("li", {}, el("code", { text: c.name }), " ", el("span", { class: "muted", text: [c.type, c.primaryKey ? "key" : "", c.notNull ? "not null" : ""].filter(Boolean).join(", ") }))),
    ),
  );
  $("#rows-h").textContent = "Rows of " + t.name;
  const box = $("#table-rows");
  try {
    const r = await api(`/v1/tables/${encodeURIComponent(t.name)}/rows?offset=${state.tableOffset}&limit=${state.tablePage}`);
    state.tableTruncated = r.truncated;
    box.replaceChildren(resultTable(r, "Rows of " + t.name));
    const shown = r.rows.length;
    $("#page-info").textContent = shown ? `rows ${state.tableOffset + 1}–${state.tableOffset + shown} of ${t.rows}` : "no rows";
    $("#page-prev").disabled = state.tableOffset === 0;
    $("#page-next").disabled = !r.truncated;
    $("#page-prev").onclick = () => openTable(t, state.tableOffset - state.tablePage);
    $("#page-next").onclick = () => openTable(t, state.tableOffset + state.tablePage);
  } catch (e) {
    box.replaceChildren(errorBox(e));
  }
}

function cellTd(v) {
  if (v === null) return el("td", { class: "null", text: "NULL" });
  if (typeof v === "number") return el("td", { class: "num", text: String(v) });
  return el("td", { class: String(v).length > 40 ? "wrap" : "", text: String(v) });
}

function resultTable(r, caption) {
  return el(
    "table",
    { class: "data" },
    el("caption", { class: "sr-only", text: caption }),
    el("thead", {}, el("tr", {}, ...r.columns.map((c) => el("th", { scope: "col", text: c })))),
    el("tbody", {}, ...r.rows.map((row) => el("tr", {}, ...row.map(cellTd)))),
  );
}

function errorBox(e) {
  const box = el("div", { class: "error", role: "alert" });
  fillError(box, e);
  return box;
}

function fillError(box, e) {
  const p = e.problem || {};
  box.replaceChildren(el("strong", { text: (p.status || e.status || "") + " " + (p.title || "Error") }), e.message);
}

function showError(box, e) {
  fillError(box, e);
  box.hidden = false;
}

async function runSql(ev) {
  if (ev) ev.preventDefault();
  const errBox = $("#sql-error");
  const info = $("#sql-info");
  const out = $("#sql-result");
  const btn = $("#sql-run");
  errBox.hidden = true;
  info.textContent = "Running…";
  btn.disabled = true;
  try {
    const r = await api("/v1/sql", { method: "POST", body: { sql: $("#sql").value } });
    out.replaceChildren(resultTable(r, "Query result"));
    info.textContent =
      `${r.rows.length} ${r.rows.length === 1 ? "row" : "rows"} in ${r.elapsedMs} ms` + (r.truncated ? " (truncated at the row limit)" : "");
  } catch (e) {
    out.replaceChildren();
    info.textContent = "";
    showError(errBox, e);
  } finally {
    btn.disabled = false;
  }
}

// ---- tabs ----

function showTab(name, focus) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.id === "tab-" + name;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !on;
  }
  if (name === "database") loadTables();
  if (history.replaceState) history.replaceState(null, "", name === "overview" ? "#" : "#" + name);
}

function tabKeys(ev) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const i = tabs.indexOf(ev.currentTarget);
  let j = null;
  if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
  else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
  else if (ev.key === "Home") j = 0;
  else if (ev.key === "End") j = tabs.length - 1;
  if (j !== null) {
    ev.preventDefault();
    showTab(tabs[j].id.slice(4), true);
  }
}

// ---- start ----

async function start() {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.addEventListener("click", () => showTab(tab.id.slice(4), false));
    tab.addEventListener("keydown", tabKeys);
  }
  $("#filters").addEventListener("change", () => refreshContainers().catch((e) => console.warn(e)));
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    refreshContainers().catch((e) => console.warn(e));
  });
  // The label selector filters as it is typed, once typing pauses.
  let labelTimer = null;
  $("#f-label").addEventListener("input", () => {
    clearTimeout(labelTimer);
    labelTimer = setTimeout(() => refreshContainers().catch((e) => console.warn(e)), 250);
  });
  $("#release").addEventListener("click", release);
  $("#detail-close").addEventListener("click", closeDetail);
  $("#detail").addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeDetail();
  });
  $("#sql-form").addEventListener("submit", runSql);
  $("#sql").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) runSql(e);
  });
  if (location.hash === "#database") showTab("database", false);
  try {
    await Promise.all([refreshPools(), refreshContainers(), catchUpEvents()]);
    setLive(true, "Live");
  } catch (e) {
    setLive(false, "Cannot reach warmpool: " + e.message);
  }
  // Ages, expiries and the charts move with time even without events.
  setInterval(tickAges, 1000);
  setInterval(() => refreshPools().catch(() => {}), 10000);
  followEvents();
}

document.addEventListener("DOMContentLoaded", start);
