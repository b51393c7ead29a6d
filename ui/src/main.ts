// The dashboard page: hash-routed views over the dashboard server's JSON.
// Every refresh asks afresh; when the node is unreachable the views are
// cleared and a banner says so, so nothing stale passes for current.
import cytoscape from "cytoscape";
import * as shape from "./shape";

const POLL_MS = 2000;
const $ = (sel: string) => document.querySelector(sel) as HTMLElement;
const esc = (s: unknown) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

class Unreachable extends Error {}

async function getJSON(path: string): Promise<any> {
  let r: Response;
  try {
    r = await fetch(path, { cache: "no-store" });
  } catch (e) {
    throw new Unreachable("the dashboard process does not answer");
  }
  const body = await r.json().catch(() => ({}));
  if (r.status === 503) throw new Unreachable(body.error ?? "node unreachable");
  if (!r.ok) throw new Error(body.error ?? `HTTP ${r.status}`);
  return body;
}

function setBanner(err?: Error) {
  const b = $("#banner");
  if (!err) { b.hidden = true; document.body.dataset.state = "live"; return; }
  b.hidden = false;
  document.body.dataset.state = err instanceof Unreachable ? "unreachable" : "error";
  b.textContent = err instanceof Unreachable ? `node unreachable, retrying — ${err.message}` : `error: ${err.message}`;
  $("#view").innerHTML = "";
  cy = undefined;
}

let cy: cytoscape.Core | undefined;
let sortKey: shape.SortKey = "p99Ms";
let ascending = false;
let lastRows: shape.Pair[] = [];
const filter: shape.Filter = {};

function graphView(rows: shape.Pair[], agents: shape.Agent[]) {
  const els = shape.graphElements(rows, agents, filter);
  const key = els.map((e) => e.data.id).join(",");
  if (!cy || cy.scratch("key") !== key) {
    const nodes = [...new Set(agents.map((a) => shape.nodeOf(a.id)).concat(rows.map((r) => shape.nodeOf(r.callee))))].sort();
    const caps = [...new Set(rows.map((r) => r.capability))].sort();
    const opts = (all: string[], cur?: string) => `<option value="">all</option>` + all.map((v) => `<option${v === cur ? " selected" : ""}>${esc(v)}</option>`).join("");
    $("#view").innerHTML = `<form class="filters" aria-label="filter the graph">
      <label>node <select id="f-node">${opts(nodes, filter.node)}</select></label>
      <label>capability <select id="f-cap">${opts(caps, filter.capability)}</select></label>
      <label><input type="checkbox" id="f-err"${filter.errorsOnly ? " checked" : ""}> pairs with errors only</label></form>
      <div class="graph-wrap"><div id="graph" role="img" aria-label="agent interaction graph"></div>
      <aside><div id="detail" aria-live="polite">Select an edge or an agent.</div>
      <h3>Pairs</h3><ul id="edge-list">${els.filter((e) => e.group === "edges").map((e) => `<li><button data-edge="${esc(e.data.id)}">${esc(e.data.source)} → ${esc(e.data.target)} ${esc(e.data.capability)}${e.classes === "ok" ? "" : ` (${esc(e.classes)})`}</button></li>`).join("")}</ul></aside></div>
      <p class="legend"><span class="l-ok">── ok</span> <span class="l-degraded">- - degraded (errors)</span> <span class="l-failing">··· failing (≥5% errors)</span>; width: requests/s</p>`;
    cy = cytoscape({
      container: $("#graph"), elements: els as any, layout: { name: "preset", fit: true, padding: 30 },
      style: [
        { selector: "node[kind='node']", style: { label: "data(label)", "text-valign": "top", "background-color": "#eef", "border-color": "#99a", "border-width": 1 } },
        { selector: "node[kind='agent']", style: { label: "data(label)", "background-color": "#4477aa", color: "#000", "font-size": 10 } },
        { selector: "edge", style: { width: "data(width)", "curve-style": "unbundled-bezier", "control-point-distances": 40, "control-point-weights": 0.5, "target-arrow-shape": "triangle", label: "data(label)", "font-size": 9 } },
        // Paul Tol's colour-blind-safe pair, plus line style and a label.
        { selector: "edge.ok", style: { "line-color": "#4477aa", "target-arrow-color": "#4477aa", "line-style": "solid" } },
        { selector: "edge.degraded", style: { "line-color": "#ccbb44", "target-arrow-color": "#ccbb44", "line-style": "dashed" } },
        { selector: "edge.failing", style: { "line-color": "#ee6677", "target-arrow-color": "#ee6677", "line-style": "dotted" } },
        { selector: ":selected", style: { "overlay-opacity": 0.2 } },
      ],
    });
    cy.scratch("key", key);
    const onFilter = () => {
      filter.node = ($("#f-node") as HTMLSelectElement).value || undefined;
      filter.capability = ($("#f-cap") as HTMLSelectElement).value || undefined;
      filter.errorsOnly = ($("#f-err") as HTMLInputElement).checked;
      graphView(lastRows, agents);
    };
    for (const id of ["#f-node", "#f-cap", "#f-err"]) $(id).addEventListener("change", onFilter);
    // The edge list beside the graph is the keyboard's way in: each button
    // selects its edge and shows the same detail a click on the edge does.
    document.querySelectorAll<HTMLButtonElement>("button[data-edge]").forEach((b) => b.addEventListener("click", () => {
      const e = cy?.getElementById(b.dataset.edge ?? "");
      if (e && e.nonempty()) { cy!.elements().unselect(); e.select(); e.emit("tap"); }
    }));
    cy.on("tap", "edge", (ev) => {
      const d = ev.target.data();
      $("#detail").innerHTML = `<h3>${esc(d.source)} → ${esc(d.target)}</h3><dl><dt>capability</dt><dd>${esc(d.capability)}</dd>
        <dt>requests/s</dt><dd>${d.rps.toFixed(2)}</dd><dt>errors</dt><dd>${d.errorPercent.toFixed(1)}% (${esc(d.level)})</dd><dt>p99</dt><dd>${d.p99Ms.toFixed(1)} ms</dd></dl>`;
    });
    cy.on("tap", "node[kind='agent']", (ev) => {
      const id = ev.target.id();
      const mine = lastRows.filter((r) => r.caller === id || r.callee === id);
      $("#detail").innerHTML = `<h3>${esc(id)}</h3><p>${mine.length} pairs</p><ul>${mine.map((r) => `<li>${esc(r.caller)} → ${esc(r.callee)} ${esc(r.capability)}: ${r.errorPercent.toFixed(1)}% errors</li>`).join("")}</ul>`;
    });
  } else {
    for (const e of els) cy.getElementById(String(e.data.id)).data(e.data);
    for (const e of els) if (e.classes) cy.getElementById(String(e.data.id)).classes(e.classes);
  }
}

function matrixView(rows: shape.Pair[], agents: shape.Agent[]) {
  const cols: [shape.SortKey, string][] = [["caller", "caller"], ["callee", "callee"], ["capability", "capability"], ["rps", "req/s"], ["errorPercent", "errors"], ["p50Ms", "p50 ms"], ["p99Ms", "p99 ms"]];
  const row = (r: shape.Pair) => `<tr class="${r.level}"><td>${esc(r.caller || "-")}</td><td>${esc(r.callee)}</td><td>${esc(r.capability)}</td><td>${r.rps.toFixed(2)}</td>
    <td>${r.errorPercent.toFixed(1)}% <span class="level">${r.level}</span></td><td>${r.p50Ms.toFixed(1)}</td><td>${r.p99Ms.toFixed(1)}</td></tr>`;
  const head = cols.map(([k, l]) => `<th aria-sort="${k === sortKey ? (ascending ? "ascending" : "descending") : "none"}"><button data-sort="${k}">${l}${k === sortKey ? (ascending ? " ▲" : " ▼") : ""}</button></th>`).join("");
  $("#view").innerHTML = `<h2>Pairs</h2><table id="pairs"><thead><tr>${head}</tr></thead><tbody>${shape.sortPairs(rows, sortKey, ascending).map(row).join("")}</tbody></table>
    <h2>10 slowest (p99)</h2><table id="slowest"><thead><tr>${cols.map(([, l]) => `<th>${l}</th>`).join("")}</tr></thead><tbody>${shape.slowest(rows).map(row).join("")}</tbody></table>
    <h2>No incoming traffic</h2><ul id="idle">${shape.noIncoming(rows, agents).map((a) => `<li>${esc(a)}</li>`).join("")}</ul>`;
  document.querySelectorAll<HTMLButtonElement>("button[data-sort]").forEach((b) => b.addEventListener("click", () => {
    const k = b.dataset.sort as shape.SortKey;
    ascending = k === sortKey ? !ascending : false;
    sortKey = k;
    matrixView(lastRows, agents);
  }));
}

async function clusterView() {
  const { status, members } = await getJSON("/api/cluster");
  const ms: any[] = members.members ?? [];
  const voters = ms.filter((m) => /voter|leader/i.test(m.raftRole ?? "") && !/non/i.test(m.raftRole ?? "")).map((m) => m.name);
  const expires = status.certificateExpiresAt ? new Date(status.certificateExpiresAt) : undefined;
  const hours = expires ? (expires.getTime() - Date.now()) / 3.6e6 : NaN;
  $("#view").innerHTML = `<h2>Cluster ${esc(status.clusterId)}</h2>
    <dl class="kv" id="summary"><dt>Raft leader</dt><dd id="leader">${esc(status.leader || "none known")}</dd>
    <dt>Raft voters</dt><dd id="voters">${esc(voters.join(", ") || "-")}</dd>
    <dt>this node</dt><dd>${esc(status.name)} (${esc(status.role)}, ${esc(status.version)})</dd>
    <dt>its certificate expires</dt><dd id="cert-expiry">${expires ? `${esc(expires.toISOString())} (in ${hours.toFixed(1)} h${hours < 2 ? ", RENEWAL DUE" : ""})` : "-"}</dd>
    <dt>registry index</dt><dd>${esc(status.registryIndex)}</dd></dl>
    <h2>Members (${ms.length})</h2><table id="members"><thead><tr><th>name</th><th>status</th><th>role</th><th>Raft</th><th>agents</th><th>in flight</th><th>address</th><th>version</th></tr></thead><tbody>
    ${ms.map((m) => `<tr class="card"><td>${esc(m.name)}</td><td>${esc(m.status)}</td><td>${esc(m.role)}</td><td>${esc(m.raftRole || "-")}</td><td>${esc(m.agents)}</td><td>${esc(m.inFlight)}</td><td>${esc(m.address)}</td><td>${esc(m.version)}</td></tr>`).join("")}</tbody></table>`;
}

async function decisionsView() {
  const { decisions } = await getJSON("/api/decisions");
  const ds = decisions.decisions ?? [];
  $("#view").innerHTML = `<h2>Decisions</h2><table id="decisions"><thead><tr><th>id</th><th>kind</th><th>status</th><th>outcome</th><th>votes</th></tr></thead><tbody>
    ${ds.map((d: any) => `<tr><td><a href="#decision/${encodeURIComponent(d.proposal?.id)}">${esc(d.proposal?.id)}</a></td><td>${esc(d.proposal?.kind)}</td><td>${esc(d.status)}</td><td>${esc(d.outcome)}</td><td>${(d.votes ?? []).length}</td></tr>`).join("")}</tbody></table>`;
}

const CHOICES = ["unspecified", "approve", "reject", "abstain"];

async function decisionView(id: string) {
  const body = await getJSON(`/api/decisions/${encodeURIComponent(id)}/bundle`);
  await showVerification(body.bundle, body.trust);
}

// showVerification verifies a bundle here, in the browser, and shows it.
async function showVerification(bundle: any, trust: any): Promise<shape.Verification> {
  const v = await shape.verifyBundle(bundle, trust, shape.webCryptoVerify(crypto.subtle));
  const d = bundle.decision ?? {}, cert = d.certificate ?? {};
  $("#view").innerHTML = `<h2>Decision ${esc(d.proposal?.id)}</h2>
    <p id="verdict" class="${v.verified ? "verified" : "failed"}" data-verified="${v.verified}">${v.verified ? "✔ VERIFIED in this browser" : `✘ FAILED: ${esc(v.failed?.what)} — ${esc(v.failed?.detail)}`}</p>
    <p>kind ${esc(d.proposal?.kind)}, outcome ${esc(CHOICES[d.outcome] ?? d.outcome)}, committed at index ${esc(d.commitIndex)}</p>
    <h3>Voters (electorate) and hosts</h3><ul>${(cert.electorate ?? d.proposal?.electorate ?? []).map((e: any) => `<li>${esc(e.agentId)} on ${esc(e.node)}</li>`).join("")}</ul>
    <h3>Votes</h3><table><thead><tr><th>voter</th><th>host</th><th>choice</th><th>reason</th></tr></thead><tbody>${(cert.votes ?? d.votes ?? []).map((x: any) => `<tr><td>${esc(x.voterAgentId)}</td><td>${esc(x.voterNode)}</td><td>${esc(CHOICES[x.choice] ?? x.choice)}</td><td>${esc(x.reason)}</td></tr>`).join("")}</tbody></table>
    <h3>Checks</h3><ol id="checks">${v.checks.map((c) => `<li class="${c.ok ? "pass" : "fail"}">${c.ok ? "pass" : "FAIL"}: ${esc(c.what)} ${esc(c.detail)}</li>`).join("")}</ol>`;
  return v;
}

async function refresh() {
  const route = location.hash.replace(/^#/, "") || "graph";
  document.querySelectorAll("nav a").forEach((a) => a.setAttribute("aria-current", String(a.getAttribute("href") === `#${route.split("/")[0]}`)));
  try {
    if (route === "graph" || route === "matrix") {
      const { traffic, agents } = await getJSON("/api/traffic");
      lastRows = shape.pairs(traffic.edges);
      const note = (traffic.unreachableNodes ?? []).length ? ` (did not answer: ${traffic.unreachableNodes.join(", ")})` : "";
      $("#status").textContent = `${lastRows.length} pairs over the last minute from ${(traffic.nodes ?? []).length} nodes${note}; updated ${new Date().toLocaleTimeString()}`;
      if (route === "graph") { if (!cy) $("#view").innerHTML = ""; graphView(lastRows, agents.agents ?? []); }
      else { cy = undefined; matrixView(lastRows, agents.agents ?? []); }
    } else {
      cy = undefined;
      if (route === "cluster") await clusterView();
      else if (route === "decisions") await decisionsView();
      else if (route.startsWith("decision/")) await decisionView(decodeURIComponent(route.slice(9)));
    }
    setBanner();
  } catch (e) {
    setBanner(e as Error);
  }
}

let timer: number | undefined;
function schedule() {
  clearTimeout(timer);
  const route = location.hash.replace(/^#/, "") || "graph";
  // Decisions do not change under the reader; traffic and the cluster do.
  refresh().finally(() => {
    if (!route.startsWith("decision") || document.body.dataset.state !== "live") timer = setTimeout(schedule, POLL_MS) as unknown as number;
  });
}

window.addEventListener("hashchange", () => { cy = undefined; schedule(); });
schedule();

// For tests and the curious: the page's own state, read from what it drew.
(window as any).dashboard = {
  graph: () => cy ? {
    agents: cy.nodes("[kind='agent']").map((n) => n.id()).sort(),
    edges: cy.edges().map((e) => ({ source: e.data("source"), target: e.data("target"), capability: e.data("capability"), level: e.data("level"), label: e.data("label"), lineStyle: e.style("line-style") })),
  } : undefined,
  verifyAndShow: showVerification,
  getJSON,
};
