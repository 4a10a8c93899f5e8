// Component tests of the portal's view logic (src/ui/view.js): `node --test` (tests/run.sh).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const V = require("../src/ui/view.js");

const NOW = Date.parse("2026-12-04T12:00:00Z");
const alice = {
  name: "alice", namespace: "team", status: "Running", ready: "1/1", tier: "small",
  cpu: "500m", memory: "2Gi", storage: "12Gi", owner: "alice@example.com",
  lastActivity: "2026-12-04T11:55:00Z", stopsAt: "2026-12-04T15:00:00Z", pods: [], claims: [],
};

test("relative times read as a person says them", () => {
  assert.equal(V.ago("2026-12-04T11:59:30Z", NOW), "30s ago");
  assert.equal(V.ago("2026-12-04T11:00:00Z", NOW), "60m ago");
  assert.equal(V.ago("2026-12-01T12:00:00Z", NOW), "3d ago");
  assert.equal(V.ago(undefined, NOW), "-");
  assert.equal(V.until("2026-12-04T15:00:00Z", NOW), "in 3h");
  assert.equal(V.until("2026-12-04T11:00:00Z", NOW), "due");
  assert.equal(V.until(null, NOW), "-");
});

test("the namespace column is shown for all namespaces only", () => {
  const one = V.columns({ namespace: "team" }).map((c) => c[0]);
  const all = V.columns({ namespace: null }).map((c) => c[0]);
  assert.ok(!one.includes("Namespace"));
  assert.deepEqual(all.slice(0, 3), ["Name", "Namespace", "Status"]);
  assert.equal(all.length, one.length + 1);
});

test("a row's cells follow the columns", () => {
  const cells = V.cells({ namespace: "team" }, alice, NOW);
  assert.deepEqual(cells, [
    "alice", "Running", "1/1", "small", "500m", "2Gi", "12Gi", "alice@example.com",
    "5m ago", "in 3h", "-",
  ]);
  assert.equal(V.cells({ namespace: null }, alice, NOW)[1], "team");
});

test("backup columns appear once a workspace was backed up or backups are scheduled", () => {
  const plain = V.columns({ namespace: "team", workspaces: [alice] }).map((c) => c[0]);
  assert.ok(!plain.includes("Last backup") && !plain.includes("Next backup"));
  const backed = { ...alice, lastBackup: "2026-12-04T10:00:00Z", nextBackup: "2026-12-05T10:00:00Z" };
  const stopped = { ...alice, ready: "0/0", nextBackup: "when started" };
  const doc = { namespace: "team", workspaces: [alice, backed, stopped] };
  const names = V.columns(doc).map((c) => c[0]);
  assert.deepEqual(names.slice(-2), ["Last backup", "Next backup"]);
  assert.deepEqual(V.cells(doc, backed, NOW).slice(-2), ["2h ago", "in 22h"]);
  assert.deepEqual(V.cells(doc, stopped, NOW).slice(-2), ["-", "when started"]);
  assert.deepEqual(V.cells(doc, alice, NOW).slice(-2), ["-", "-"]);
});

test("stopped means no replicas wanted, whatever is still running", () => {
  assert.equal(V.isStopped(alice), false);
  assert.equal(V.isStopped({ ...alice, ready: "0/0" }), true);
  assert.equal(V.isStopped({ ...alice, ready: "1/0" }), true);
  assert.equal(V.isStopped({ ...alice, ready: "0/10" }), false);
});

test("access lines are the CLI's, in the workspace's namespace", () => {
  const lines = V.accessLines(alice);
  assert.equal(lines[0], "kubectl devenv ssh alice -n team");
  assert.ok(lines.every((l) => l.includes("-n team")));
  assert.ok(lines.some((l) => l.startsWith("kubectl devenv port-forward alice 8080")));
});

test("the create form sends only what was filled in", () => {
  assert.deepEqual(V.createBody({ name: "x", tier: "large", image: " ", repo: "", secrets: "" }), {
    tier: "large",
  });
  assert.deepEqual(V.createBody({ secrets: "gh, npm  aws" }).secrets, ["gh", "npm", "aws"]);
  assert.equal("name" in V.createBody({ name: "x" }), false, "the name is in the URL");
});

test("a tier's label says what it gives", () => {
  assert.equal(V.tierLabel({ name: "small", cpu: "1", memory: "2Gi", default: true }),
    "small (1 CPU, 2Gi) — default");
  assert.equal(V.tierLabel({ name: "large", cpu: "4", memory: "8Gi", default: false }),
    "large (4 CPU, 8Gi)");
});

test("CPU and memory in use are columns only where the metrics API is served", () => {
  const plain = V.columns({ namespace: "team" }).map((c) => c[0]);
  assert.ok(!plain.includes("CPU in use"));
  const doc = { namespace: "team", usage: { "team/alice": { cpu: "12m", memory: "80Mi" } } };
  const cols = V.columns(doc).map((c) => c[0]);
  assert.deepEqual(cols.slice(4, 8), ["CPU", "CPU in use", "Memory", "Memory in use"]);
  const cells = V.cells(doc, alice, NOW);
  assert.deepEqual(cells.slice(4, 8), ["500m", "12m", "2Gi", "80Mi"]);
  assert.equal(V.cells(doc, { ...alice, name: "bob" }, NOW)[5], "-", "no usage reported yet");
});

test("an event reads as when, what and why", () => {
  const e = { time: "2026-12-04T11:58:00Z", object: "pod/alice-0", reason: "FailedScheduling",
    message: "0/1 nodes are available", count: 3, warning: true };
  assert.equal(V.eventLine(e, NOW), "2m ago · pod/alice-0 · FailedScheduling (×3): 0/1 nodes are available");
  assert.equal(V.eventLine({ ...e, count: 1 }, NOW).includes("×"), false);
});

test("quota lines say use against the limit", () => {
  assert.deepEqual(V.quotaLines({ resources: [["pods", "2", "10"], ["limits.cpu", "2500m", "8"]] }),
    ["pods 2 of 10", "limits.cpu 2500m of 8"]);
});

test("the scale form sends the replicas as a number, the tier when chosen", () => {
  assert.deepEqual(V.scaleBody({ replicas: "3", tier: "" }), { replicas: 3 });
  assert.deepEqual(V.scaleBody({ replicas: "0" }), { replicas: 0 }, "0 is a number of replicas");
  assert.deepEqual(V.scaleBody({ replicas: " ", tier: "large" }), { tier: "large" });
  assert.deepEqual(V.scaleBody({}), {});
});

test("a purge is confirmed by the workspace's exact name only", () => {
  assert.equal(V.purgeConfirmed(alice, "alice"), true);
  assert.equal(V.purgeConfirmed(alice, " alice "), true);
  for (const typed of ["", "alic", "Alice", "alice2", undefined]) {
    assert.equal(V.purgeConfirmed(alice, typed), false, String(typed));
  }
});
