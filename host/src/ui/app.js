// bitwrk host admin UI: renders /api/... JSON and follows /api/events (SSE) for live
// updates. Plain DOM building (no innerHTML with data), so names from the network are text.
"use strict";

const state = {
  activities: new Map(), // id -> activity
  trades: new Map(), // key -> trade
  workers: new Map(), // slot -> worker
  mandates: [],
  articles: new Map(), // id -> {name, version, published}
  books: new Map(), // id -> book | {error}
};

// ---------- helpers ----------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}
const $ = (id) => document.getElementById(id);
const sat = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US") + " sat");
const short = (s, n = 10) => (s && s.length > n ? s.slice(0, n) + "…" : s || "");
function time(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function duration(ms) {
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}
function articleName(id, fallback) {
  const a = state.articles.get(id);
  return (a && a.name) || fallback || short(id, 12);
}
function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  box.classList.toggle("hidden", !msg);
}

// The token state-changing calls carry (the host refuses browser POSTs without it).
let sessionToken = null;
async function api(method, path, body, retried = false) {
  const opts = { method, headers: {} };
  if (method !== "GET") {
    if (sessionToken === null) {
      const s = await fetch("/api/session");
      if (!s.ok) throw new Error("no UI session: " + s.status);
      sessionToken = (await s.json()).token;
    }
    opts.headers["X-Bitwrk-Token"] = sessionToken;
  }
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    let code = null;
    try { const j = await r.json(); msg = j.message || msg; code = j.error; } catch (_) { /* not JSON */ }
    // A restarted host has a new token: fetch it again, once.
    if (code === "forbidden_token" && !retried) {
      sessionToken = null;
      return api(method, path, body, true);
    }
    throw new Error(msg);
  }
  return r.status === 204 ? null : r.json();
}

// ---------- account ----------
async function loadAccount() {
  try {
    const info = await api("GET", "/api/info");
    $("address").textContent = info.address;
    const acc = await api("GET", "/api/account");
    $("available").textContent = sat(acc.available_sat);
    $("available").dataset.sat = acc.available_sat;
    $("blocked").textContent = sat(acc.blocked_sat);
    $("record").textContent =
      `bought ${acc.trades_bought}, sold ${acc.trades_sold}; ` +
      `disputes won ${acc.disputes_won}, lost ${acc.disputes_lost}; ` +
      `faults as seller ${acc.seller_faults}; lapsed ${acc.lapsed}`;
  } catch (e) {
    $("available").textContent = "?";
    $("blocked").textContent = "?";
    $("record").textContent = "?";
    $("available").title = e.message;
  }
}

// ---------- activities ----------
function renderActivities() {
  const all = [...state.activities.values()];
  const pending = all.filter((a) => a.state === "pending").sort((a, b) => a.id - b.id);
  const done = all.filter((a) => a.state !== "pending").sort((a, b) => b.id - a.id).slice(0, 50);
  $("pending-count").textContent = pending.length ? String(pending.length) : "";
  // Keyed by activity id: a card that stays pending keeps its DOM node, so a click or a
  // half-filled mandate form is never lost to an update of another card.
  const box = $("activities");
  const cards = new Map([...box.querySelectorAll(".card[data-activity-id]")].map((c) => [c.dataset.activityId, c]));
  box.replaceChildren(...pending.map((a) => cards.get(String(a.id)) || activityCard(a)));
  if (!pending.length) box.append(el("p", { class: "empty" }, "Nothing waits for your permission."));
  $("activity-history-body").replaceChildren(...done.map((a) =>
    el("tr", { dataset: { activityId: a.id, state: a.state } },
      el("td", { class: "id" }, a.id),
      el("td", {}, articleName(a.article, a.article_name)),
      el("td", {}, el("span", { class: "badge " + a.side }, a.side)),
      el("td", { class: "num" }, sat(a.price_sat)),
      el("td", {}, decisionBadge(a)),
      el("td", {}, time(a.decided_ms)))));
}

function decisionBadge(a) {
  const text = { permitted: a.mandate ? "permitted by mandate #" + a.mandate : "permitted", forbidden: "forbidden",
    timed_out: "timed out", withdrawn: "withdrawn" }[a.state] || a.state;
  const cls = a.state === "permitted" ? "ok" : a.state === "withdrawn" ? "" : "bad";
  return el("span", { class: "badge " + cls }, text);
}

function activityCard(a) {
  const remember = el("input", { type: "checkbox", class: "remember" });
  const trades = el("input", { type: "number", min: "1", step: "1", value: "10", class: "m-trades", "aria-label": "trades" });
  const minutes = el("input", { type: "number", min: "1", step: "1", placeholder: "minutes", class: "m-minutes", "aria-label": "minutes" });
  const anyArticle = el("input", { type: "checkbox", class: "m-any" });
  const buttons = [];
  const decide = async (verb) => {
    buttons.forEach((b) => (b.disabled = true));
    try {
      let body;
      if (verb === "permit" && remember.checked) {
        const spec = { side: a.side, article: anyArticle.checked ? null : a.article, price_sat: a.price_sat };
        if (trades.value) spec.trades = Number(trades.value);
        if (minutes.value) spec.minutes = Number(minutes.value);
        body = { mandate: spec };
      }
      const updated = await api("POST", `/api/activities/${a.id}/${verb}`, body);
      state.activities.set(updated.id, updated);
      showError("");
      renderActivities();
    } catch (e) {
      showError(`Could not ${verb} activity ${a.id}: ${e.message}`);
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  const permit = el("button", { class: "permit", dataset: { action: "permit" }, onclick: () => decide("permit") }, "Permit");
  const forbid = el("button", { class: "forbid", dataset: { action: "forbid" }, onclick: () => decide("forbid") }, "Forbid");
  buttons.push(permit, forbid);
  const verb = a.side === "buy" ? "Buy" : "Sell";
  const limit = a.side === "buy" ? "up to" : "from";
  return el("div", { class: "card", dataset: { activityId: a.id, state: a.state } },
    el("div", { class: "what" },
      el("div", { class: "title" }, `${verb} ${articleName(a.article, a.article_name)} for ${sat(a.price_sat)}`),
      el("div", { class: "sub" }, "Activity #" + a.id + " · article ", el("span", { class: "id" }, short(a.article, 16)),
        " · waiting since " + time(a.created_ms))),
    el("div", { class: "mandate-opts" },
      el("label", {}, remember, ` and from now on ${a.side} ${limit} ${sat(a.price_sat)}`),
      el("label", {}, "for ", trades, " trades"),
      el("label", {}, "or ", minutes, " min"),
      el("label", {}, anyArticle, " any article")),
    el("div", { class: "buttons" }, permit, forbid));
}

// ---------- trades ----------
const okPhases = new Set(["finished"]);
function phaseBadge(t) {
  let cls = "wait";
  if (t.finished) cls = t.error ? "bad" : "ok";
  else if (okPhases.has(t.phase)) cls = "ok";
  return el("span", { class: "badge " + cls }, t.phase.replaceAll("_", " "));
}
function renderTrades() {
  const rows = [...state.trades.values()].sort((a, b) => b.started_ms - a.started_ms).slice(0, 200);
  $("no-trades").classList.toggle("hidden", rows.length > 0);
  $("trades").replaceChildren(...rows.map((t) =>
    el("tr", { dataset: { tradeKey: t.key, phase: t.phase, finished: String(t.finished) } },
      el("td", {}, articleName(t.article, t.article_name), el("div", { class: "id" }, t.tx ? "tx " + short(t.tx, 14) : t.bid ? "bid " + short(t.bid, 14) : "")),
      el("td", {}, el("span", { class: "badge " + t.side }, t.side)),
      el("td", { class: "num" }, sat(t.price_sat), t.fee_sat ? el("div", { class: "id fee" }, "fee " + sat(t.fee_sat)) : ""),
      el("td", {}, phaseBadge(t)),
      el("td", {}, el("div", { class: "steps" }, (t.events || []).map((e) =>
        el("span", { title: time(e.at_ms) }, e.phase.replaceAll("_", " "))))),
      el("td", {}, time(t.started_ms)),
      // From the permission on: the wait for a click is not part of the trade's time.
      el("td", { class: "num", title: t.permitted_ms ? "" : "waiting for permission" },
        t.permitted_ms ? duration(Math.max(0, t.updated_ms - t.permitted_ms)) : "—"),
      el("td", { class: t.error ? "error-text" : "" }, t.error ? el("span", { class: "badge bad", title: t.error }, short(t.error, 60)) : t.outcome || ""))));
}

// ---------- workers ----------
function renderWorkers() {
  const rows = [...state.workers.values()].sort((a, b) => a.slot - b.slot);
  // A sell bid waiting for the user's permission: say so, rather than "not selling".
  const asking = [...state.activities.values()].filter((a) => a.side === "sell" && a.state === "pending");
  $("no-workers").classList.toggle("hidden", rows.length > 0);
  $("no-workers").textContent = asking.length > 0
    ? "Waiting for your permission to sell " + [...new Set(asking.map((a) => a.article_name))].join(", ") + ": permit it under Activities above."
    : "This host is not selling.";
  $("workers").replaceChildren(...rows.map((w) =>
    el("tr", { dataset: { slot: w.slot, busy: String(w.busy) } },
      el("td", { class: "id" }, w.slot),
      el("td", {}, articleName(w.article, w.article_name)),
      el("td", {}, el("span", { class: "badge " + (w.busy ? "wait" : "ok") }, w.busy ? "working" : "idle")),
      el("td", { class: "id" }, short(w.tx, 16)),
      el("td", {}, time(w.started_ms)))));
}

// ---------- mandates ----------
function renderMandates() {
  const rows = state.mandates;
  $("no-mandates").classList.toggle("hidden", rows.length > 0);
  $("mandates").replaceChildren(...rows.map((m) =>
    el("tr", { dataset: { mandateId: m.id } },
      el("td", { class: "id" }, m.id),
      el("td", {}, el("span", { class: "badge " + m.side }, m.side)),
      el("td", {}, m.article ? articleName(m.article) : "any"),
      el("td", { class: "num" }, (m.side === "buy" ? "≤ " : "≥ ") + sat(m.price_sat)),
      el("td", { class: "num" }, m.trades_left === null ? "∞" : m.trades_left),
      el("td", {}, m.expires_ms ? new Date(m.expires_ms).toLocaleString() : "until revoked"),
      el("td", { class: "num" }, m.used),
      el("td", {}, el("button", { class: "small secondary", dataset: { action: "revoke" }, onclick: async (ev) => {
        ev.target.disabled = true;
        try { await api("DELETE", `/api/mandates/${m.id}`); showError(""); }
        catch (e) { showError(`Could not revoke mandate ${m.id}: ${e.message}`); ev.target.disabled = false; }
      } }, "Revoke")))));
}

function renderArticleChoices() {
  const sel = $("mandate-article");
  const current = sel.value;
  sel.replaceChildren(el("option", { value: "*" }, "any article"),
    ...[...state.articles.entries()].map(([id, a]) => el("option", { value: id }, `${a.name || short(id)}${a.version ? " " + a.version : ""}`)));
  sel.value = [...sel.options].some((o) => o.value === current) ? current : "*";
}

$("mandate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  const spec = { side: f.side.value, article: f.article.value === "*" ? null : f.article.value, price_sat: Number(f.price.value) };
  if (f.trades.value) spec.trades = Number(f.trades.value);
  if (f.minutes.value) spec.minutes = Number(f.minutes.value);
  try {
    await api("POST", "/api/mandates", spec);
    f.reset();
    showError("");  // the list follows from the live `mandates` event
  } catch (e) {
    showError("Could not add mandate: " + e.message);
  }
});

// ---------- market ----------
function renderMarket() {
  const box = $("market");
  const ids = [...state.articles.keys()];
  $("no-market").classList.toggle("hidden", ids.length > 0);
  box.replaceChildren(...ids.map((id) => {
    const a = state.articles.get(id);
    const b = state.books.get(id);
    const levels = (list) => list && list.length
      ? list.slice(0, 6).map((l) => el("div", { class: "level" }, el("span", {}, sat(l.price_sat)), el("span", {}, "× " + l.count)))
      : [el("div", { class: "none" }, "none")];
    return el("div", { class: "book", dataset: { article: id } },
      el("h3", {}, a.name || short(id), a.version ? el("span", { class: "id" }, " " + a.version) : null),
      el("div", { class: "meta" }, el("span", { class: "id" }, short(id, 16)),
        b && !b.error ? ` · last price ${sat(b.last_price_sat)}` + (b.median_time_to_match_ms != null ? ` · match in ~${duration(b.median_time_to_match_ms)}` : "") : "",
        b && b.error ? " · " + b.error : ""),
      b && !b.error ? el("div", { class: "sides" },
        el("div", {}, el("h4", {}, "Buy bids"), levels(b.buys)),
        el("div", {}, el("h4", {}, "Sell bids"), levels(b.sells))) : null);
  }));
}

async function loadMarket() {
  try {
    const list = await api("GET", "/api/articles");
    state.articles = new Map(list.map((a) => [a.id, a]));
  } catch (e) {
    // keep what we know (from trades); the book calls will say more
  }
  for (const t of state.trades.values()) if (!state.articles.has(t.article)) state.articles.set(t.article, { name: t.article_name });
  renderArticleChoices();
  await Promise.all([...state.articles.keys()].map(async (id) => {
    try { state.books.set(id, await api("GET", `/api/articles/${id}/book`)); }
    catch (e) {
      const missing = /not_found|no article/.test(e.message);
      state.books.set(id, { error: missing ? "not published on this exchange" : e.message });
    }
  }));
  renderMarket();
}
$("refresh-market").addEventListener("click", () => { loadMarket(); loadAccount(); });

// ---------- loading and live updates ----------
// The event stream starts with a snapshot of everything (and sends a new one if this
// page fell behind); every later change comes after it on the same stream, so applying
// them in order never shows an older state than the host has.
function applySnapshot(s) {
  state.activities = new Map((s.activities || []).map((a) => [a.id, a]));
  state.trades = new Map((s.trades || []).map((t) => [t.key, t]));
  state.workers = new Map((s.workers || []).map((w) => [w.slot, w]));
  state.mandates = s.mandates || [];
  renderActivities(); renderTrades(); renderWorkers(); renderMandates();
  loadAccount();
  loadMarket();
}

// Account and books change with trades; refresh them at most once a second after one.
let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; loadAccount(); loadMarket(); }, 1000);
}

function connect() {
  const live = $("live");
  const es = new EventSource("/api/events");
  const on = (kind, fn) => es.addEventListener(kind, (ev) => fn(JSON.parse(ev.data)));
  on("snapshot", (s) => { applySnapshot(s); live.textContent = "live"; live.className = "live on"; });
  on("activity", (e) => { state.activities.set(e.activity.id, e.activity); renderActivities(); renderWorkers(); });
  on("trade", (e) => {
    const known = state.trades.has(e.trade.key);
    state.trades.set(e.trade.key, e.trade);
    renderTrades();
    if (!known || e.trade.finished) refreshSoon();
  });
  on("worker", (e) => { state.workers.set(e.worker.slot, e.worker); renderWorkers(); });
  on("mandates", (e) => { state.mandates = e.mandates; renderMandates(); });
  es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
}

// Slow background refresh for what changes outside this host (other traders' bids).
setInterval(() => { if (!document.hidden) { loadAccount(); loadMarket(); } }, 30000);
connect();
