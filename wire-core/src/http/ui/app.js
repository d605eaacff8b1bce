// The Wire console: a page per view, drawn from the node's own JSON endpoints and redrawn
// every second. No framework, no network beyond the node that served it.
"use strict";

const main = document.getElementById("main");
const history = {}; // pipeline -> [{t, in, out}] for its throughput chart
let timer = null;
// The Authorization header of the signed-in user (kept for this tab only), and what
// `/auth/me` says the user may do.
let authorization = sessionStorage.getItem("wire-authorization");
let me = null;
let signingIn = false;

class SignInNeeded extends Error {}

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function api(path, options = {}) {
  // "XMLHttpRequest" asks the node not to answer 401 with a Basic challenge, which would
  // open the browser's own login dialog instead of this page's.
  const headers = { "X-Requested-With": "XMLHttpRequest", ...(options.headers || {}) };
  if (authorization && !headers.Authorization) headers.Authorization = authorization;
  const r = await fetch(path, { ...options, headers });
  if (r.status === 401) throw new SignInNeeded((await r.json().catch(() => ({}))).detail || "sign in");
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  if (!r.ok) {
    const why = body && body.detail ? body.detail : text;
    throw new Error(`${r.status}: ${why}`);
  }
  return body;
}

function table(headers, rows, label) {
  const head = headers.map((h) => `<th scope="col">${esc(h)}</th>`).join("");
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("");
  return `<table aria-label="${esc(label)}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function age(ms) {
  if (!ms) return "—";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 60 ? `${s.toFixed(1)} s ago` : `${(s / 60).toFixed(1)} min ago`;
}

// Cluster: members, roles, liveness, and this node's Raft indexes.
async function cluster() {
  const s = await api("/status");
  document.getElementById("node").textContent = `node ${s.node_id} (${s.role})`;
  const leader = s.leader ? s.leader.id : null;
  const rows = (s.members || []).map((m) => [
    esc(m.id),
    m.id === leader ? '<span class="good">leader</span>' : esc(m.voter === false ? "learner" : "follower"),
    m.alive === false ? '<span class="bad">not alive</span>' : '<span class="good">alive</span>',
    esc(m.http_addr), esc(m.raft_addr), esc(m.last_heard_ms != null ? `${m.last_heard_ms} ms` : "—"),
    esc(m.partitions ?? 0), m.draining ? "draining" : "",
  ]);
  return `<h1>Cluster</h1>
    <p>Leader: <strong id="leader">${esc(leader ?? "none")}</strong> · term ${esc(s.term)} ·
    this node's log ${esc(s.last_log_index ?? "—")}, committed ${esc(s.committed_index ?? "—")}, applied ${esc(s.applied_index ?? "—")}</p>
    ${table(["id", "role", "liveness", "HTTP", "Raft", "last heard", "partitions", ""], rows, "members")}`;
}

function counters(status) {
  let input = 0, output = 0, dead = 0;
  const sources = new Set((status.spec.sources || []).map((s, i) => s.id || `source${i}`));
  const sinks = new Set((status.spec.sinks || []).map((s, i) => s.id || `sink${i}`));
  for (const [id, c] of Object.entries(status.steps || {})) {
    if (sources.has(id)) input += c.records_out;
    if (sinks.has(id)) output += c.records_in;
    dead += c.dead_lettered || 0;
  }
  return { input, output, dead };
}

function rate(name, c) {
  const h = (history[name] = history[name] || []);
  h.push({ t: Date.now(), in: c.input, out: c.output });
  while (h.length > 180) h.shift();
  if (h.length < 2) return { in: 0, out: 0 };
  const a = h[h.length - 2], b = h[h.length - 1];
  const dt = Math.max(0.001, (b.t - a.t) / 1000);
  return { in: (b.in - a.in) / dt, out: (b.out - a.out) / dt };
}

async function pipelines() {
  const list = await api("/pipelines");
  const rows = [];
  for (const p of list.pipelines || []) {
    const name = p.spec.name;
    const s = await api(`/pipelines/${encodeURIComponent(name)}`);
    const c = counters(s);
    const kept = series(s);
    const r = kept.length ? kept[kept.length - 1] : rate(name, c);
    const lag = (s.partitions || []).reduce((a, q) => a + (q.lag || 0), 0);
    const last = Math.max(0, ...(s.partitions || []).map((q) => q.last_checkpoint_ms || 0));
    rows.push([`<a href="#/pipelines/${encodeURIComponent(name)}">${esc(name)}</a>`, esc(s.state),
      `${r.in.toFixed(0)} / ${r.out.toFixed(0)}`, esc(c.dead), esc(lag), esc(age(last))]);
  }
  return `<h1>Pipelines</h1>${rows.length ? table(["name", "state", "records/s in / out", "dead letters", "lag", "last checkpoint"], rows, "pipelines") : "<p>No pipelines.</p>"}`;
}

// The DAG as columns: sources, transforms by depth, sinks; each edge says how many records
// went along it (the upstream step's records out).
function dag(status) {
  const spec = status.spec, steps = status.steps || {};
  const nodes = [], depth = {};
  (spec.sources || []).forEach((s, i) => { const id = s.id || `source${i}`; depth[id] = 0; nodes.push({ id, kind: s.type, col: 0, inputs: [] }); });
  let previous = (spec.sources || []).map((s, i) => s.id || `source${i}`);
  (spec.transforms || []).forEach((t, i) => {
    const id = t.id || `transform${i}`;
    const inputs = t.inputs || previous;
    const col = 1 + Math.max(0, ...inputs.map((x) => depth[x] ?? 0));
    depth[id] = col;
    nodes.push({ id, kind: t.type, col, inputs });
    previous = [id];
  });
  const last = 1 + Math.max(0, ...Object.values(depth));
  (spec.sinks || []).forEach((s, i) => nodes.push({ id: s.id || `sink${i}`, kind: s.type, col: last, inputs: s.inputs || previous }));
  const perCol = {};
  for (const n of nodes) { n.row = perCol[n.col] = (perCol[n.col] ?? -1) + 1; }
  const W = 170, H = 64, gx = 70, gy = 24;
  const pos = (n) => ({ x: 10 + n.col * (W + gx), y: 10 + n.row * (H + gy) });
  const byId = Object.fromEntries(nodes.map((n) => [n.id, n]));
  let edges = "", boxes = "";
  for (const n of nodes) {
    const p = pos(n);
    for (const i of n.inputs) {
      const from = byId[i]; if (!from) continue;
      const q = pos(from);
      const count = steps[i] ? steps[i].records_out : 0;
      const x1 = q.x + W, y1 = q.y + H / 2, x2 = p.x, y2 = p.y + H / 2;
      edges += `<path class="edge" d="M${x1},${y1} C${x1 + 35},${y1} ${x2 - 35},${y2} ${x2},${y2}"/>`;
      edges += `<text class="edge-count" x="${(x1 + x2) / 2 - 20}" y="${(y1 + y2) / 2 - 4}">${esc(count)}</text>`;
    }
    const c = steps[n.id] || {};
    boxes += `<g class="node" data-step="${esc(n.id)}"><rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="6"/>
      <text x="${p.x + 8}" y="${p.y + 18}">${esc(n.id)}</text>
      <text x="${p.x + 8}" y="${p.y + 36}" class="muted">${esc(n.kind)}</text>
      <text x="${p.x + 8}" y="${p.y + 54}">in ${esc(c.records_in ?? 0)} · out ${esc(c.records_out ?? 0)}${c.dead_lettered ? ` · dead ${esc(c.dead_lettered)}` : ""}</text></g>`;
  }
  const width = 20 + (last + 1) * (W + gx), height = 20 + (Math.max(...Object.values(perCol)) + 1) * (H + gy);
  return `<svg role="img" aria-label="the pipeline's steps and how many records each passed on" width="${width}" height="${height}">${edges}${boxes}</svg>`;
}

// The spec as YAML (the same document `wire pipeline apply` takes).
function yaml(v, pad = "") {
  const scalar = (x) => {
    if (x === null || x === undefined) return "null";
    if (typeof x === "string") return /^[A-Za-z0-9_./-]+$/.test(x) && !/^(true|false|null|yes|no|on|off|[0-9.eE+-]+)$/i.test(x) ? x : JSON.stringify(x);
    return String(x);
  };
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return v.map((x) => {
      const inner = yaml(x, pad + "  ");
      return typeof x === "object" && x !== null && !Array.isArray(x) && Object.keys(x).length
        ? `\n${pad}- ${inner.trimStart()}` : `\n${pad}- ${inner}`;
    }).join("");
  }
  if (typeof v === "object" && v !== null) {
    const keys = Object.keys(v);
    if (!keys.length) return "{}";
    return keys.map((k) => {
      const x = v[k];
      const nested = typeof x === "object" && x !== null && (Array.isArray(x) ? x.length : Object.keys(x).length);
      return `\n${pad}${scalar(k)}:${nested ? yaml(x, pad + "  ") : " " + yaml(x, pad + "  ")}`;
    }).join("");
  }
  return scalar(v);
}

// Records/s per second from the counters the nodes keep (the last minutes, whenever the
// page was opened); a restarted job's counters start again from zero, so no rate is negative.
function series(s) {
  const t = s.throughput || [];
  const out = [];
  for (let i = 1; i < t.length; i++) {
    const dt = Math.max(1, t[i].t - t[i - 1].t);
    out.push({
      in: Math.max(0, (t[i].records_in - t[i - 1].records_in) / dt),
      out: Math.max(0, (t[i].records_out - t[i - 1].records_out) / dt),
    });
  }
  return out;
}

function chart(s) {
  const points = series(s).map((p) => p.out);
  const max = Math.max(1, ...points);
  const W = 600, H = 120;
  const line = points.map((v, i) => `${(i / Math.max(1, points.length - 1)) * W},${H - (v / max) * H}`).join(" ");
  return `<svg class="chart" role="img" data-points="${points.length}" aria-label="records written per second, last minutes (peak ${max.toFixed(0)})" width="${W}" height="${H + 4}"><polyline points="${line}"/></svg>
    <p class="muted">peak ${max.toFixed(0)} records/s over the last ${points.length} s (kept by the nodes)</p>`;
}

async function pipeline(name) {
  const s = await api(`/pipelines/${encodeURIComponent(name)}`);
  rate(name, counters(s));
  const parts = (s.partitions || []).map((p) => [esc(p.partition), esc(p.node), esc(p.state), esc(p.epoch),
    `<code>${esc(JSON.stringify(p.positions || {}))}</code>`, esc(p.read ?? "—"), esc(p.lag ?? "—"), esc(p.watermark ?? "—")]);
  const errors = (s.errors || []).map((e) => `<li class="bad">${esc(e)}</li>`).join("");
  const dead = (s.dead_letters || []).map((d) => [esc(new Date(d.time_ms).toISOString()), esc(d.step),
    `<span class="bad">${esc(d.error)}</span>`, `<code>${esc(d.raw ?? d.raw_base64 ?? "")}</code>`, esc(`${d.source}/${d.split}@${d.offset}`)]);
  return `<h1>Pipeline ${esc(name)}</h1>
    <p>State: <strong id="state">${esc(s.state)}</strong> · version ${esc(s.version)} · desired ${esc(s.desired)}</p>
    ${errors ? `<ul>${errors}</ul>` : ""}
    ${may("pipelines") ? `<p><button id="pause" data-act="pause">Pause</button><button id="resume" data-act="resume">Resume</button><button id="delete" class="danger" data-act="delete">Delete</button></p>` : `<p class="muted">Your user may not change pipelines (no 'pipelines' permission).</p>`}
    <h2>Steps</h2>${dag(s)}
    <h2>Throughput</h2>${chart(s)}
    <h2>Partitions</h2>${table(["partition", "node", "state", "epoch", "positions", "read", "lag", "watermark"], parts, "partitions")}
    <h2>Recent dead letters</h2>${dead.length ? table(["time", "step", "reason", "record", "from"], dead, "dead letters") : "<p>None.</p>"}
    <h2>Spec</h2>
    <details open><summary>YAML</summary><pre id="spec-yaml">${esc(yaml(s.spec).trimStart())}</pre></details>
    <details><summary>JSON</summary><pre id="spec-json">${esc(JSON.stringify(s.spec, null, 2))}</pre></details>`;
}

async function kv(query) {
  if (!may("read")) return `<h1>Key-value</h1><p class="muted">Your user may not read keys (no 'read' permission).</p>`;
  const prefix = query.get("prefix") || "";
  const after = query.get("after") || "";
  const params = new URLSearchParams({ prefix, limit: "50" });
  if (after) params.set("after", after);
  const page = await api(`/kv?${params}`);
  const rows = (page.items || []).map((i) => [`<code>${esc(i.key)}</code>`, esc(i.value ?? `(base64) ${i.value_base64}`)]);
  const next = page.more ? `<a id="next" href="#/kv?${new URLSearchParams({ prefix, after: page.next_after })}">Next page</a>` : "";
  return `<h1>Key-value</h1>
    <form id="kvform"><label for="prefix">Prefix</label><input id="prefix" name="prefix" value="${esc(prefix)}"><button type="submit">Search</button></form>
    ${table(["key", "value"], rows, "keys")}${next}`;
}

function route() {
  const hash = location.hash || "#/";
  const [path, qs] = hash.slice(1).split("?");
  const query = new URLSearchParams(qs || "");
  for (const a of document.querySelectorAll("nav a")) {
    const target = a.getAttribute("href").slice(1);
    a.toggleAttribute("aria-current", path === target || (target !== "/" && path.startsWith(target)));
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  if (path.startsWith("/pipelines/")) return () => pipeline(decodeURIComponent(path.slice("/pipelines/".length)));
  if (path === "/pipelines") return pipelines;
  if (path === "/kv") return () => kv(query);
  return cluster;
}

function may(permission) {
  return !me || me.permissions.includes(permission);
}

function utf8base64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function signInForm(why) {
  return `<h1>Sign in</h1>
    ${why ? `<p class="bad" role="alert">${esc(why)}</p>` : ""}
    <form id="signin">
      <p><label for="user">User</label><input id="user" name="user" autocomplete="username"></p>
      <p><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password"></p>
      <p><label for="token">or a bearer token</label><input id="token" name="token" type="password" autocomplete="off"></p>
      <p><button type="submit" id="signin-button">Sign in</button></p>
    </form>`;
}

function showUser() {
  const who = document.getElementById("who");
  if (me && me.user) {
    who.innerHTML = `signed in as <strong>${esc(me.user)}</strong> <button id="signout" type="button">Sign out</button>`;
  } else {
    who.textContent = "";
  }
}

async function whoami() {
  me = await api("/auth/me");
  if (me.auth_required && !me.user) throw new SignInNeeded("");
  showUser();
}

async function draw() {
  if (signingIn) return;
  const view = route();
  try {
    if (!me) await whoami();
    const html = await view();
    const focused = document.activeElement && document.activeElement.id;
    main.innerHTML = html;
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  } catch (e) {
    if (e instanceof SignInNeeded) {
      signingIn = true;
      me = null;
      showUser();
      main.innerHTML = signInForm(authorization ? e.message : "");
      document.getElementById("user").focus();
      return;
    }
    main.innerHTML = `<h1>Error</h1><p class="bad" role="alert">${esc(e.message)}</p>`;
  }
}

document.getElementById("who").addEventListener("click", (ev) => {
  if (ev.target.id !== "signout") return;
  sessionStorage.removeItem("wire-authorization");
  authorization = null;
  me = null;
  draw();
});

main.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-act]");
  if (!b) return;
  const name = decodeURIComponent(location.hash.slice("#/pipelines/".length));
  const act = b.dataset.act;
  if (act === "delete" && !confirm(`Delete pipeline ${name}?`)) return;
  try {
    if (act === "delete") {
      await api(`/pipelines/${encodeURIComponent(name)}`, { method: "DELETE" });
      location.hash = "#/pipelines";
    } else {
      await api(`/pipelines/${encodeURIComponent(name)}/${act}`, { method: "POST" });
    }
  } catch (e) {
    alert(e.message);
  }
  draw();
});

main.addEventListener("submit", async (ev) => {
  if (ev.target.id === "signin") {
    ev.preventDefault();
    const user = document.getElementById("user").value;
    const token = document.getElementById("token").value;
    authorization = token ? `Bearer ${token}` : `Basic ${utf8base64(`${user}:${document.getElementById("password").value}`)}`;
    sessionStorage.setItem("wire-authorization", authorization);
    signingIn = false;
    me = null;
    draw();
    return;
  }
  if (ev.target.id !== "kvform") return;
  ev.preventDefault();
  const prefix = document.getElementById("prefix").value;
  location.hash = `#/kv?${new URLSearchParams({ prefix })}`;
});

window.addEventListener("hashchange", draw);
draw();
timer = setInterval(() => { if (!document.hidden && !document.activeElement?.matches("input")) draw(); }, 1000);
