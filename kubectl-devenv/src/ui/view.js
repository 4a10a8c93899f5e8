// The portal's view logic, apart from the DOM: what each column shows, relative times,
// the access lines and the create form's request. Pure functions, loaded by the page
// (as window.DevenvView) and by its component tests under Node
// (kubectl-devenv/ui/view.test.js, `node --test`).
"use strict";
(function (root) {
  function span(seconds) {
    const s = Math.abs(Math.round(seconds));
    if (s < 120) return s + "s";
    if (s < 7200) return Math.round(s / 60) + "m";
    if (s < 172800) return Math.round(s / 3600) + "h";
    return Math.round(s / 86400) + "d";
  }

  // "5m ago" for a past RFC 3339 time; "-" when there is none.
  function ago(t, now) {
    return t ? span((now - Date.parse(t)) / 1000) + " ago" : "-";
  }

  // "in 3h" for a future time, "due" once it has passed; "-" when there is none.
  function until(t, now) {
    if (!t) return "-";
    const s = (Date.parse(t) - now) / 1000;
    return s > 0 ? "in " + span(s) : "due";
  }

  function inUse(doc, w) {
    return (doc.usage || {})[w.namespace + "/" + w.name];
  }
  function servesUsage(doc) {
    return Object.keys(doc.usage || {}).length > 0;
  }
  // Backup columns only where backups are a thing: a workspace was backed up, or the
  // policy schedules them (the table then has a next backup).
  function servesBackups(doc) {
    return (doc.workspaces || []).some((w) => w.lastBackup || w.nextBackup);
  }

  // The next scheduled backup: a time, or "when started" for a stopped workspace that
  // has been backed up since it stopped (`get` says the same).
  function nextBackup(w, now) {
    return w.nextBackup === "when started" ? "when started" : until(w.nextBackup, now);
  }

  // The table's columns: [header, cell text of a row, shown for this document?].
  const COLUMNS = [
    ["Name", (w) => w.name],
    ["Namespace", (w) => w.namespace, (doc) => doc.namespace === null],
    ["Status", (w) => w.status],
    ["Ready", (w) => w.ready],
    ["Tier", (w) => w.tier],
    ["CPU", (w) => w.cpu],
    ["CPU in use", (w, now, doc) => (inUse(doc, w) || {}).cpu || "-", servesUsage],
    ["Memory", (w) => w.memory],
    ["Memory in use", (w, now, doc) => (inUse(doc, w) || {}).memory || "-", servesUsage],
    ["Storage", (w) => w.storage],
    ["Owner", (w) => w.owner],
    ["Last activity", (w, now) => ago(w.lastActivity, now)],
    ["Stops", (w, now) => until(w.stopsAt, now)],
    ["Expires", (w, now) => until(w.expiresAt, now)],
    ["Last backup", (w, now) => ago(w.lastBackup, now), servesBackups],
    ["Next backup", nextBackup, servesBackups],
  ];

  function columns(doc) {
    return COLUMNS.filter((c) => !c[2] || c[2](doc));
  }

  // The cells of a workspace's row, as text.
  function cells(doc, w, now) {
    return columns(doc).map((c) => String(c[1](w, now, doc)));
  }

  // Stopped: no replicas wanted (READY is ready/replicas).
  function isStopped(w) {
    return /\/0$/.test(w.ready);
  }

  function key(w) {
    return w.namespace + "/" + w.name;
  }

  // How to reach a workspace, as the CLI spells it.
  function accessLines(w) {
    const ns = " -n " + w.namespace;
    return [
      "kubectl devenv ssh " + w.name + ns,
      "kubectl devenv exec " + w.name + ns,
      "kubectl devenv ssh-config --write" + ns + "   # then: ssh or VS Code Remote-SSH",
      "kubectl devenv port-forward " + w.name + " 8080" + ns,
    ];
  }

  // The create form's fields as the request body; secrets are comma- or space-separated.
  function createBody(fields) {
    const text = (v) => (v || "").trim();
    const body = {};
    for (const f of ["tier", "image", "repo"]) if (text(fields[f])) body[f] = text(fields[f]);
    const secrets = text(fields.secrets).split(/[\s,]+/).filter((s) => s);
    if (secrets.length) body.secrets = secrets;
    return body;
  }

  // The scale form's fields as the request body: what was filled in.
  function scaleBody(fields) {
    const body = {};
    const replicas = (fields.replicas || "").trim();
    if (replicas !== "") body.replicas = Number(replicas);
    if ((fields.tier || "").trim()) body.tier = fields.tier.trim();
    return body;
  }

  // Whether what was typed confirms the purge of `w`: its name, exactly.
  function purgeConfirmed(w, typed) {
    return (typed || "").trim() === w.name;
  }

  // A tier's option text: its name and what it gives.
  function tierLabel(t) {
    return t.name + " (" + t.cpu + " CPU, " + t.memory + ")" + (t.default ? " — default" : "");
  }

  // An event's line: when, what, why.
  function eventLine(e, now) {
    const count = e.count > 1 ? " (×" + e.count + ")" : "";
    return ago(e.time, now) + " · " + e.object + " · " + e.reason + count + ": " + e.message;
  }

  // The admin view's quota lines: "limits.cpu 2500m of 8".
  function quotaLines(q) {
    return q.resources.map((r) => r[0] + " " + r[1] + " of " + r[2]);
  }

  const DevenvView = { eventLine, quotaLines, span, ago, until, columns, cells, isStopped, key, accessLines, createBody, scaleBody, purgeConfirmed, tierLabel };
  if (typeof module === "object" && module.exports) module.exports = DevenvView;
  else root.DevenvView = DevenvView;
})(this);
