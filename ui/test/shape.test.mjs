// Unit tests for the dashboard's data shaping (node --test, no dependencies).
// They import dist/shape.mjs, the committed build of src/shape.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as shape from "../dist/shape.mjs";

const win = (requests, errors, p99Ms, rps = requests / 60) => ({ seconds: 60, requests: String(requests), errors: String(errors), requestsPerSecond: rps, successPercent: 0, p50Ms: p99Ms / 2, p99Ms });
const edge = (caller, callee, capability, w) => ({ callerAgent: caller, calleeAgent: callee, capability, nodes: [], windows: [{ ...w, seconds: 10 }, w] });

const edges = [
  edge("n1/a", "n2/b", "fast", win(100, 0, 5)),
  edge("n1/a", "n3/c", "flaky", win(100, 40, 20)),
  edge("n3/d", "n2/e", "slow", win(50, 1, 300)),
  edge("n3/d", "n2/b", "idle", win(0, 0, 0)),
  edge("", "n2/b", "fast", win(10, 0, 4)),
];
const agents = ["n1/a", "n2/b", "n3/c", "n3/d", "n2/e", "n1/quiet"].map((id) => ({ id, node: id.split("/")[0] }));

test("pairs reads the one-minute window and drops pairs with no calls in it", () => {
  const rows = shape.pairs(edges);
  assert.equal(rows.length, 4);
  const flaky = rows.find((r) => r.capability === "flaky");
  assert.equal(flaky.errorPercent, 40);
  assert.equal(flaky.level, "failing");
  assert.equal(rows.find((r) => r.capability === "slow").level, "degraded");
  assert.equal(rows.find((r) => r.capability === "fast" && r.caller).level, "ok");
});

test("sortPairs: latency highest first, ascending on request, names A to Z", () => {
  const rows = shape.pairs(edges);
  assert.deepEqual(shape.sortPairs(rows, "p99Ms").map((r) => r.capability), ["slow", "flaky", "fast", "fast"]);
  assert.deepEqual(shape.sortPairs(rows, "p99Ms", true).map((r) => r.p99Ms), [4, 5, 20, 300]);
  assert.deepEqual(shape.sortPairs(rows, "caller").map((r) => r.caller), ["", "n1/a", "n1/a", "n3/d"]);
});

test("slowest keeps the n highest p99", () => {
  const rows = shape.pairs(edges);
  assert.deepEqual(shape.slowest(rows, 2).map((r) => r.capability), ["slow", "flaky"]);
  assert.equal(shape.slowest(rows).length, 4);
});

test("noIncoming lists registered agents nobody called in the window", () => {
  assert.deepEqual(shape.noIncoming(shape.pairs(edges), agents), ["n1/a", "n1/quiet", "n3/d"]);
});

test("graphElements: agents inside their node, one edge per agent pair, failing edges labelled", () => {
  const els = shape.graphElements(shape.pairs(edges), agents);
  const nodes = els.filter((e) => e.group === "nodes");
  assert.deepEqual(nodes.filter((n) => n.data.kind === "node").map((n) => n.data.id), ["node:n1", "node:n2", "node:n3"]);
  assert.equal(nodes.find((n) => n.data.id === "n3/c").data.parent, "node:n3");
  const es = els.filter((e) => e.group === "edges");
  assert.equal(es.length, 3, "the call made on no agent's behalf has no vertex to start from");
  const flaky = es.find((e) => e.data.capability === "flaky");
  assert.equal(flaky.classes, "failing");
  assert.equal(flaky.data.label, "40% err");
  assert.ok(es.find((e) => e.data.capability === "fast").data.width > es.find((e) => e.data.capability === "slow").data.width);
});

test("voteMessage: length-prefixed big-endian fields", () => {
  const m = shape.voteMessage({ clusterId: "c", proposalId: "p", round: 2, choice: 1, voterAgentId: "n1/a", voterNode: "n1", reason: "" });
  const dv = new DataView(m.buffer);
  assert.equal(dv.getUint32(0), shape.VOTE_CONTEXT.length);
  let off = 4 + shape.VOTE_CONTEXT.length;
  assert.equal(dv.getUint32(off), 1); // cluster id "c"
  off += 5;
  assert.equal(dv.getUint32(off), 1); // proposal id "p"
  off += 5;
  assert.equal(dv.getUint32(off), 0); // empty payload digest
  assert.equal(dv.getUint32(off + 4), 0); // empty terms digest
  assert.equal(dv.getUint32(off + 8), 2); // round
  assert.equal(dv.getUint32(off + 12), 1); // choice
});

// A vote signed by the Go code (quorum.VoteMessage), written by the Go
// test that runs this file: the browser's encoding must match it byte for byte.
const fixture = process.env.MESHNODE_VOTE_FIXTURE;
test("a vote signed by Go verifies here and fails once changed", { skip: !fixture && "MESHNODE_VOTE_FIXTURE not set (the Go test TestUI sets it)" }, async () => {
  const f = JSON.parse(readFileSync(fixture, "utf8"));
  const verify = shape.webCryptoVerify(globalThis.crypto.subtle);
  const cert = { clusterId: f.vote.clusterId, proposalId: f.vote.proposalId, payloadDigest: f.vote.payloadDigest, round: f.vote.round, choice: f.vote.choice,
    electorate: [{ agentId: f.vote.voterAgentId, node: f.vote.voterNode }], votes: [f.vote] };
  const bundle = { decision: { commitIndex: "7", certificate: cert }, keys: [{ agentId: f.vote.voterAgentId, publicKey: f.publicKey, fromIndex: "3", untilIndex: "0" }] };
  const trust = { clusterId: f.clusterIdB64 };
  const good = await shape.verifyBundle(bundle, trust, verify);
  assert.equal(good.verified, true, JSON.stringify(good.failed));

  const tampered = structuredClone(bundle);
  tampered.decision.certificate.votes[0].reason = f.vote.reason + "!";
  const bad = await shape.verifyBundle(tampered, trust, verify);
  assert.equal(bad.verified, false);
  assert.match(bad.failed.what, /Ed25519 signature/);

  const rotated = structuredClone(bundle);
  rotated.keys[0].untilIndex = "5"; // the key was replaced before the commit
  assert.match((await shape.verifyBundle(rotated, trust, verify)).failed.what, /key at index 7/);

  const other = { clusterId: Buffer.from("other").toString("base64") };
  assert.equal((await shape.verifyBundle(bundle, other, verify)).failed.what, "cluster");
});

test("filters: by node (either end), by capability, errors only", () => {
  const rows = shape.pairs(edges);
  assert.deepEqual(shape.filterPairs(rows, { node: "n3" }).map((r) => r.capability).sort(), ["flaky", "slow"]);
  assert.deepEqual(shape.filterPairs(rows, { capability: "fast" }).length, 2);
  assert.deepEqual(shape.filterPairs(rows, { errorsOnly: true }).map((r) => r.capability).sort(), ["flaky", "slow"]);
  const els = shape.graphElements(rows, agents, { errorsOnly: true });
  assert.deepEqual(els.filter((e) => e.group === "nodes" && e.data.kind === "agent").map((e) => e.data.id), ["n1/a", "n2/e", "n3/c", "n3/d"]);
  const byNode = shape.graphElements(rows, agents, { node: "n1" });
  assert.ok(byNode.some((e) => e.data.id === "n1/quiet"), "a node's idle agents stay visible when filtering by node");
});

test("layout: one column per node, no two agents on one spot", () => {
  const els = shape.graphElements(shape.pairs(edges), agents).filter((e) => e.data.kind === "agent");
  const spots = new Set(els.map((e) => `${e.position.x},${e.position.y}`));
  assert.equal(spots.size, els.length);
  const col = (id) => Math.floor(els.find((e) => e.data.id === id).position.x / shape.COLUMN_WIDTH);
  assert.equal(col("n2/b"), col("n2/e"));
  assert.notEqual(col("n1/a"), col("n2/b"));
});
