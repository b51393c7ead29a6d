const WINDOW_SECONDS = 60;
function errorLevel(errorPercent) {
  if (errorPercent >= 5) return "failing";
  if (errorPercent > 0) return "degraded";
  return "ok";
}
function pickWindow(e) {
  return e.windows.find((w) => w.seconds === WINDOW_SECONDS) ?? e.windows[0];
}
function pairs(edges) {
  const out = [];
  for (const e of edges ?? []) {
    const w = pickWindow(e);
    const requests = Number(w?.requests ?? 0);
    if (!w || requests === 0) continue;
    const errors = Number(w.errors ?? 0);
    const errorPercent = 100 * errors / requests;
    out.push({
      caller: e.callerAgent,
      callee: e.calleeAgent,
      capability: e.capability,
      rps: w.requestsPerSecond,
      requests,
      errors,
      errorPercent,
      p50Ms: w.p50Ms,
      p99Ms: w.p99Ms,
      level: errorLevel(errorPercent)
    });
  }
  return out;
}
const pairName = (p) => `${p.caller}\0${p.callee}\0${p.capability}`;
function sortPairs(rows, key, ascending = false) {
  const dir = ascending ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = a[key], y = b[key];
    let c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    if (typeof x !== "number") c = -c;
    if (c !== 0) return dir * c;
    return pairName(a) < pairName(b) ? -1 : pairName(a) > pairName(b) ? 1 : 0;
  });
}
function slowest(rows, n = 10) {
  return sortPairs(rows, "p99Ms").slice(0, n);
}
function noIncoming(rows, agents) {
  const called = new Set(rows.map((r) => r.callee));
  return (agents ?? []).map((a) => a.id).filter((id) => !called.has(id)).sort();
}
function filterPairs(rows, f) {
  return rows.filter((r) => (!f.node || nodeOf(r.caller) === f.node || nodeOf(r.callee) === f.node) && (!f.capability || r.capability === f.capability) && (!f.errorsOnly || r.errors > 0));
}
const COLUMN_WIDTH = 280, AGENT_DX = 110, AGENT_DY = 90;
const nodeOf = (id) => id.split("/")[0];
function graphElements(rows, agents, f = {}) {
  const filtering = !!(f.node || f.capability || f.errorsOnly);
  rows = filterPairs(rows, f);
  const ids = new Set((agents ?? []).map((a) => a.id).filter((id) => !filtering || f.node && !f.capability && !f.errorsOnly && nodeOf(id) === f.node));
  for (const r of rows) {
    if (r.caller) ids.add(r.caller);
    ids.add(r.callee);
  }
  const out = [];
  const hosts = new Set([...ids].map(nodeOf));
  for (const h of [...hosts].sort()) out.push({ group: "nodes", data: { id: `node:${h}`, label: h, kind: "node" } });
  const hostList = [...hosts].sort(), row = /* @__PURE__ */ new Map();
  for (const id of [...ids].sort()) {
    const h = nodeOf(id), i = row.get(h) ?? 0;
    row.set(h, i + 1);
    out.push({
      group: "nodes",
      data: { id, label: id.slice(id.indexOf("/") + 1), parent: `node:${h}`, kind: "agent" },
      position: { x: hostList.indexOf(h) * COLUMN_WIDTH + i % 2 * AGENT_DX, y: Math.floor(i / 2) * AGENT_DY + hostList.indexOf(h) % 2 * AGENT_DY * 0.6 + i % 2 * AGENT_DY * 0.4 }
    });
  }
  const maxRps = Math.max(1e-9, ...rows.map((r) => r.rps));
  for (const r of rows) {
    if (!r.caller) continue;
    out.push({
      group: "edges",
      data: {
        id: `${r.caller}->${r.callee}|${r.capability}`,
        source: r.caller,
        target: r.callee,
        capability: r.capability,
        rps: r.rps,
        width: 1 + 7 * (r.rps / maxRps),
        errorPercent: r.errorPercent,
        p99Ms: r.p99Ms,
        level: r.level,
        label: r.level === "ok" ? "" : `${r.errorPercent.toFixed(0)}% err`
      },
      classes: r.level
    });
  }
  return out;
}
const enc = new TextEncoder();
const VOTE_CONTEXT = "meshnode/quorum/vote/v1";
function b64(s) {
  if (!s) return new Uint8Array(0);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
function voteMessage(v) {
  const parts = [];
  const u32 = (n) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n >>> 0, false);
    parts.push(b);
  };
  const bytes = (b) => {
    u32(b.length);
    parts.push(b);
  };
  const str = (s) => bytes(enc.encode(s ?? ""));
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
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
function keyAt(keys, agentId, at) {
  for (const k of keys ?? []) {
    const from = BigInt(k.fromIndex ?? 0), until = BigInt(k.untilIndex ?? 0);
    const pub = b64(k.publicKey);
    if (k.agentId === agentId && from <= at && (until === 0n || at < until) && pub.length === 32) return pub;
  }
  return void 0;
}
function webCryptoVerify(subtle) {
  return async (pub, sig, msg) => {
    const key = await subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    return subtle.verify({ name: "Ed25519" }, key, sig, msg);
  };
}
async function verifyBundle(bundle, trust, verify) {
  const checks = [];
  const done = (what, ok, detail) => {
    checks.push({ what, ok, detail });
    return ok;
  };
  const result = () => {
    const failed = checks.find((c) => !c.ok);
    return { verified: !failed, checks, failed };
  };
  const d = bundle?.decision ?? {};
  const cert = d.certificate;
  if (!done("certificate present", !!cert && (cert.votes ?? []).length > 0, cert ? `${(cert.votes ?? []).length} votes` : "the decision carries no quorum certificate")) return result();
  const cluster = hex(b64(trust?.clusterId));
  if (!done("cluster", cert.clusterId === cluster, `certificate for ${cert.clusterId}, this cluster is ${cluster}`)) return result();
  const at = BigInt(d.commitIndex ?? 0);
  const electorate = new Map((cert.electorate ?? []).map((v) => [v.agentId, v.node]));
  const hosts = /* @__PURE__ */ new Set(), voters = /* @__PURE__ */ new Set();
  for (const v of cert.votes) {
    const who = v.voterAgentId ?? "";
    const same = v.clusterId === cert.clusterId && v.proposalId === cert.proposalId && v.payloadDigest === cert.payloadDigest && (v.round ?? 0) === (cert.round ?? 0) && (v.choice ?? 0) === (cert.choice ?? 0);
    if (!done(`vote of ${who}: matches the certificate`, same, same ? "cluster, proposal, payload, round and choice agree" : "the vote is for something else than the certificate")) return result();
    const inElectorate = electorate.get(who) === v.voterNode;
    if (!done(`vote of ${who}: in the electorate`, inElectorate, inElectorate ? `on ${v.voterNode}` : `${who} on ${v.voterNode} is not in the electorate`)) return result();
    if (!done(`vote of ${who}: one vote per voter`, !voters.has(who), "")) return result();
    voters.add(who);
    const sharedOk = cert.rule?.allowSharedHosts || !hosts.has(v.voterNode ?? "");
    if (!done(`vote of ${who}: distinct host`, sharedOk, `${v.voterNode}`)) return result();
    hosts.add(v.voterNode ?? "");
    const pub = keyAt(bundle.keys, who, at);
    if (!done(`vote of ${who}: key at index ${at}`, !!pub, pub ? hex(pub).slice(0, 16) + "\u2026" : "no recorded vote key at the decision's commit index")) return result();
    let good = false;
    try {
      good = await verify(pub, b64(v.signature), voteMessage(v));
    } catch (e) {
      good = false;
    }
    if (!done(`vote of ${who}: Ed25519 signature`, good, good ? "verifies (WebCrypto)" : "does not verify against the agent's key")) return result();
  }
  return result();
}
export {
  AGENT_DX,
  AGENT_DY,
  COLUMN_WIDTH,
  VOTE_CONTEXT,
  WINDOW_SECONDS,
  b64,
  errorLevel,
  filterPairs,
  graphElements,
  hex,
  keyAt,
  noIncoming,
  nodeOf,
  pairs,
  slowest,
  sortPairs,
  verifyBundle,
  voteMessage,
  webCryptoVerify
};
