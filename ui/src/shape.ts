// Data shaping for the dashboard: pure functions over the JSON the
// dashboard server relays (protojson of the node's answers). No DOM here,
// so `node --test` checks it without a browser.

export interface Window {
  seconds: number;
  requests: string | number;
  errors: string | number;
  requestsPerSecond: number;
  successPercent: number;
  p50Ms: number;
  p99Ms: number;
}
export interface Edge {
  callerAgent: string;
  calleeAgent: string;
  capability: string;
  windows: Window[];
  nodes: string[];
}
export interface Agent {
  id: string;
  node: string;
  capabilities?: { name: string }[];
}
export interface Pair {
  caller: string;
  callee: string;
  capability: string;
  rps: number;
  requests: number;
  errors: number;
  errorPercent: number;
  p50Ms: number;
  p99Ms: number;
  level: ErrorLevel;
}
export type ErrorLevel = "ok" | "degraded" | "failing";

// The window the dashboard shows: the one-minute one, as `meshnode traffic`
// does by default; the shortest when the node sends no such window.
export const WINDOW_SECONDS = 60;

// errorLevel buckets an error rate. The page shows the level as a word and
// a line style as well as a colour, so it reads without colour vision.
export function errorLevel(errorPercent: number): ErrorLevel {
  if (errorPercent >= 5) return "failing";
  if (errorPercent > 0) return "degraded";
  return "ok";
}

function pickWindow(e: Edge): Window | undefined {
  return e.windows.find((w) => w.seconds === WINDOW_SECONDS) ?? e.windows[0];
}

// pairs lists the edges with calls in the window, as matrix rows.
export function pairs(edges: Edge[]): Pair[] {
  const out: Pair[] = [];
  for (const e of edges ?? []) {
    const w = pickWindow(e);
    const requests = Number(w?.requests ?? 0);
    if (!w || requests === 0) continue;
    const errors = Number(w.errors ?? 0);
    const errorPercent = (100 * errors) / requests;
    out.push({
      caller: e.callerAgent, callee: e.calleeAgent, capability: e.capability,
      rps: w.requestsPerSecond, requests, errors, errorPercent,
      p50Ms: w.p50Ms, p99Ms: w.p99Ms, level: errorLevel(errorPercent),
    });
  }
  return out;
}

export type SortKey = "caller" | "callee" | "capability" | "rps" | "errorPercent" | "p50Ms" | "p99Ms";

const pairName = (p: Pair) => `${p.caller}\u0000${p.callee}\u0000${p.capability}`;

// sortPairs orders rows by key (numbers highest first unless ascending);
// ties by name so rows do not jump between refreshes.
export function sortPairs(rows: Pair[], key: SortKey, ascending = false): Pair[] {
  const dir = ascending ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = a[key], y = b[key];
    let c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    if (typeof x !== "number") c = -c; // names read A→Z by default
    if (c !== 0) return dir * c;
    return pairName(a) < pairName(b) ? -1 : pairName(a) > pairName(b) ? 1 : 0;
  });
}

// slowest is the n pairs with the highest p99 latency.
export function slowest(rows: Pair[], n = 10): Pair[] {
  return sortPairs(rows, "p99Ms").slice(0, n);
}

// noIncoming lists registered agents no call reached in the window.
export function noIncoming(rows: Pair[], agents: Agent[]): string[] {
  const called = new Set(rows.map((r) => r.callee));
  return (agents ?? []).map((a) => a.id).filter((id) => !called.has(id)).sort();
}

export interface GraphElement {
  group: "nodes" | "edges";
  data: Record<string, string | number>;
  classes?: string;
  position?: { x: number; y: number };
}

export interface Filter { node?: string; capability?: string; errorsOnly?: boolean }

// filterPairs keeps the pairs touching node (as caller's or callee's),
// of capability, and with errors when errorsOnly.
export function filterPairs(rows: Pair[], f: Filter): Pair[] {
  return rows.filter((r) =>
    (!f.node || nodeOf(r.caller) === f.node || nodeOf(r.callee) === f.node) &&
    (!f.capability || r.capability === f.capability) &&
    (!f.errorsOnly || r.errors > 0));
}

// Layout: one column per node, its agents two abreast, so a vertex stays
// where it was between refreshes and groups never overlap; columns and
// the two agents of a row are staggered so edges do not run through vertices.
export const COLUMN_WIDTH = 280, AGENT_DX = 110, AGENT_DY = 90;

// nodeOf is the node an agent id ("node/name") runs on.
export const nodeOf = (id: string) => id.split("/")[0];

// graphElements builds the interaction graph: agents as vertices inside one
// compound vertex per node, a call pair as an edge whose width follows its
// rate. Calls made on no agent's behalf (caller "") have no vertex to start
// from; the matrix still lists them.
export function graphElements(rows: Pair[], agents: Agent[], f: Filter = {}): GraphElement[] {
  const filtering = !!(f.node || f.capability || f.errorsOnly);
  rows = filterPairs(rows, f);
  // Filtered, the graph shows the agents of the pairs kept (and, by node,
  // that node's agents); unfiltered, every registered agent.
  const ids = new Set<string>((agents ?? []).map((a) => a.id).filter((id) => !filtering || (f.node && !f.capability && !f.errorsOnly && nodeOf(id) === f.node)));
  for (const r of rows) {
    if (r.caller) ids.add(r.caller);
    ids.add(r.callee);
  }
  const out: GraphElement[] = [];
  const hosts = new Set([...ids].map(nodeOf));
  for (const h of [...hosts].sort()) out.push({ group: "nodes", data: { id: `node:${h}`, label: h, kind: "node" } });
  const hostList = [...hosts].sort(), row = new Map<string, number>();
  for (const id of [...ids].sort()) {
    const h = nodeOf(id), i = row.get(h) ?? 0;
    row.set(h, i + 1);
    out.push({
      group: "nodes", data: { id, label: id.slice(id.indexOf("/") + 1), parent: `node:${h}`, kind: "agent" },
      position: { x: hostList.indexOf(h) * COLUMN_WIDTH + (i % 2) * AGENT_DX, y: Math.floor(i / 2) * AGENT_DY + (hostList.indexOf(h) % 2) * AGENT_DY * 0.6 + (i % 2) * AGENT_DY * 0.4 },
    });
  }
  const maxRps = Math.max(1e-9, ...rows.map((r) => r.rps));
  for (const r of rows) {
    if (!r.caller) continue;
    out.push({
      group: "edges",
      data: {
        id: `${r.caller}->${r.callee}|${r.capability}`, source: r.caller, target: r.callee,
        capability: r.capability, rps: r.rps, width: 1 + 7 * (r.rps / maxRps),
        errorPercent: r.errorPercent, p99Ms: r.p99Ms, level: r.level,
        label: r.level === "ok" ? "" : `${r.errorPercent.toFixed(0)}% err`,
      },
      classes: r.level,
    });
  }
  return out;
}

// ---- decision bundles, verified here rather than taken on the node's word ----

const enc = new TextEncoder();

// VOTE_CONTEXT is quorum.VoteContext: domain separation for vote signatures.
export const VOTE_CONTEXT = "meshnode/quorum/vote/v1";

export function b64(s: string | undefined): Uint8Array {
  if (!s) return new Uint8Array(0);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

export interface Vote {
  clusterId?: string; proposalId?: string; payloadDigest?: string; termsDigest?: string;
  round?: number; choice?: number; voterAgentId?: string; voterNode?: string; reason?: string; signature?: string;
}

// voteMessage is quorum.VoteMessage: each variable-length field as a 4-byte
// big-endian length and its bytes, integers as 4 bytes big-endian, in the
// order the Go code signs them. Any difference and no signature verifies.
export function voteMessage(v: Vote): Uint8Array {
  const parts: Uint8Array[] = [];
  const u32 = (n: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n >>> 0, false); parts.push(b); };
  const bytes = (b: Uint8Array) => { u32(b.length); parts.push(b); };
  const str = (s: string | undefined) => bytes(enc.encode(s ?? ""));
  str(VOTE_CONTEXT);
  str(v.clusterId);
  str(v.proposalId);
  bytes(b64(v.payloadDigest));
  bytes(b64(v.termsDigest));
  u32(v.round ?? 0);
  u32(v.choice ?? 0);
  str(v.voterAgentId);
  str(v.voterNode);
  str(v.reason);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}

export interface AgentKey { agentId: string; publicKey: string; fromIndex?: string | number; untilIndex?: string | number }

// keyAt is quorum.HistoryKeys: the key agentId held at Raft index `at`.
export function keyAt(keys: AgentKey[], agentId: string, at: bigint): Uint8Array | undefined {
  for (const k of keys ?? []) {
    const from = BigInt(k.fromIndex ?? 0), until = BigInt(k.untilIndex ?? 0);
    const pub = b64(k.publicKey);
    if (k.agentId === agentId && from <= at && (until === 0n || at < until) && pub.length === 32) return pub;
  }
  return undefined;
}

export interface Check { what: string; ok: boolean; detail: string }
export interface Verification { verified: boolean; checks: Check[]; failed?: Check }

// Ed25519Verify is WebCrypto's verify, injected so tests and pages share it.
export type Ed25519Verify = (publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array) => Promise<boolean>;

export function webCryptoVerify(subtle: SubtleCrypto): Ed25519Verify {
  return async (pub, sig, msg) => {
    const key = await subtle.importKey("raw", pub as BufferSource, { name: "Ed25519" }, false, ["verify"]);
    return subtle.verify({ name: "Ed25519" }, key, sig as BufferSource, msg as BufferSource);
  };
}

// verifyBundle checks a decision's quorum certificate from the bundle: it
// was cast in this cluster, every vote agrees with the certificate, comes
// from the electorate, on distinct hosts unless the rule allows shared
// ones, and is signed by the key its agent held when the decision was
// committed. It stops at the first failed check and names it. (The rule's
// threshold and the operator-signed policy are `meshnode quorum verify`'s.)
export async function verifyBundle(bundle: any, trust: any, verify: Ed25519Verify): Promise<Verification> {
  const checks: Check[] = [];
  const done = (what: string, ok: boolean, detail: string): boolean => { checks.push({ what, ok, detail }); return ok; };
  const result = (): Verification => {
    const failed = checks.find((c) => !c.ok);
    return { verified: !failed, checks, failed };
  };
  const d = bundle?.decision ?? {};
  const cert = d.certificate;
  if (!done("certificate present", !!cert && (cert.votes ?? []).length > 0, cert ? `${(cert.votes ?? []).length} votes` : "the decision carries no quorum certificate")) return result();
  const cluster = hex(b64(trust?.clusterId));
  if (!done("cluster", cert.clusterId === cluster, `certificate for ${cert.clusterId}, this cluster is ${cluster}`)) return result();
  const at = BigInt(d.commitIndex ?? 0);
  const electorate = new Map<string, string>((cert.electorate ?? []).map((v: any) => [v.agentId, v.node]));
  const hosts = new Set<string>(), voters = new Set<string>();
  for (const v of cert.votes as Vote[]) {
    const who = v.voterAgentId ?? "";
    const same = v.clusterId === cert.clusterId && v.proposalId === cert.proposalId && v.payloadDigest === cert.payloadDigest &&
      (v.round ?? 0) === (cert.round ?? 0) && (v.choice ?? 0) === (cert.choice ?? 0);
    if (!done(`vote of ${who}: matches the certificate`, same, same ? "cluster, proposal, payload, round and choice agree" : "the vote is for something else than the certificate")) return result();
    const inElectorate = electorate.get(who) === v.voterNode;
    if (!done(`vote of ${who}: in the electorate`, inElectorate, inElectorate ? `on ${v.voterNode}` : `${who} on ${v.voterNode} is not in the electorate`)) return result();
    if (!done(`vote of ${who}: one vote per voter`, !voters.has(who), "")) return result();
    voters.add(who);
    const sharedOk = cert.rule?.allowSharedHosts || !hosts.has(v.voterNode ?? "");
    if (!done(`vote of ${who}: distinct host`, sharedOk, `${v.voterNode}`)) return result();
    hosts.add(v.voterNode ?? "");
    const pub = keyAt(bundle.keys, who, at);
    if (!done(`vote of ${who}: key at index ${at}`, !!pub, pub ? hex(pub).slice(0, 16) + "…" : "no recorded vote key at the decision's commit index")) return result();
    let good = false;
    try { good = await verify(pub!, b64(v.signature), voteMessage(v)); } catch (e) { good = false; }
    if (!done(`vote of ${who}: Ed25519 signature`, good, good ? "verifies (WebCrypto)" : "does not verify against the agent's key")) return result();
  }
  return result();
}
