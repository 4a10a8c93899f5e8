// The portal's page: the workspaces table, live from the plugin's watches (server-sent
// events), a workspace's pods, claims, access lines and terminal, and create, start, stop
// and delete. It builds the DOM with textContent only: nothing from the cluster is ever
// parsed as HTML. What each part shows is decided in view.js.
"use strict";

const V = window.DevenvView;
const token = new URLSearchParams(location.search).get("token") || "";
const state = { doc: null, selected: null, terminal: null, tiersShown: false, adminShown: false, eventsFor: null };

function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function renderTable() {
  const doc = state.doc;
  const now = Date.now();
  document.getElementById("scope").textContent =
    doc.namespace === null ? "all namespaces" : "namespace " + doc.namespace;
  document.getElementById("errors").replaceChildren(...(doc.errors || []).map((e) => el("div", e)));
  renderTiers(doc);
  const cols = V.columns(doc);
  document.querySelector("#workspaces thead tr").replaceChildren(
    ...cols.map((c) => el("th", c[0], { scope: "col" })), el("th", "Actions", { scope: "col" }));
  const rows = document.createDocumentFragment();
  for (const w of doc.workspaces) {
    const key = V.key(w);
    const tr = el("tr", null, { tabindex: "0", "data-key": key, class: "ws" });
    if (state.selected === key) tr.classList.add("selected");
    V.cells(doc, w, now).forEach((text, i) => {
      const cell = el(i === 0 ? "th" : "td", text, i === 0 ? { scope: "row" } : {});
      if (cols[i][0] === "Status") cell.className = "status-" + w.status;
      tr.append(cell);
    });
    const stopped = V.isStopped(w);
    const button = el("button", stopped ? "Start" : "Stop", {
      type: "button", "aria-label": (stopped ? "Start " : "Stop ") + w.name,
    });
    button.addEventListener("click", (ev) => {
      ev.stopPropagation();
      act(w.namespace, w.name, stopped ? "start" : "stop");
    });
    const actions = el("td");
    actions.append(button);
    tr.append(actions);
    tr.addEventListener("click", () => select(key));
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(key); });
    rows.append(tr);
  }
  document.querySelector("#workspaces tbody").replaceChildren(rows);
  document.getElementById("empty").hidden = !doc.synced || doc.workspaces.length > 0;
  renderDetail();
  if (doc.namespace === null && !state.adminShown) {
    state.adminShown = true;
    loadAdmin();
  }
}

function li(text) {
  return el("li", text);
}

// The admin view (-A): `status`'s checks, quotas, the lifecycle controller's leader.
async function loadAdmin() {
  const section = document.getElementById("admin");
  section.hidden = false;
  const status = document.getElementById("admin-status");
  const quotas = document.getElementById("admin-quotas");
  try {
    const res = await fetch("api/admin", { headers: { "X-Devenv-Token": token } });
    const a = await res.json();
    if (!res.ok) {
      status.replaceChildren(li(a.error || res.statusText));
      return;
    }
    const s = a.status;
    const leader = a.leader.error || ("lifecycle controller leader: " + a.leader.holder +
      (a.leader.renewed ? " (renewed " + V.ago(a.leader.renewed, Date.now()) + ")" : ""));
    status.replaceChildren(...[
      "webhook: " + s.webhookHealth, "certificate: " + s.certificate,
      "mutating webhook: " + s.mutatingWebhook, "validating webhook: " + s.validatingWebhook,
      leader, "storage: " + s.defaultStorageClass, "network policy: " + s.networkPolicy,
      ...(s.problems || []).map((p) => "problem: " + p),
    ].map(li));
    if (Array.isArray(a.quotas)) {
      quotas.replaceChildren(...(a.quotas.length ? a.quotas.map((q) =>
        li(q.namespace + " (" + q.name + "): " + V.quotaLines(q).join(", "))) : [li("no quotas")]));
    } else {
      quotas.replaceChildren(li(a.quotas.error));
    }
  } catch (e) {
    status.replaceChildren(li("cannot read the cluster's status: " + e));
  }
}

// A workspace's events, read when its page opens and again when the table changes.
async function loadEvents(w) {
  const key = V.key(w);
  if (state.eventsFor === key + "@pending") return;
  state.eventsFor = key + "@pending";
  const list = document.getElementById("events");
  try {
    const res = await fetch("api/workspaces/" + encodeURIComponent(w.namespace) + "/" +
      encodeURIComponent(w.name) + "/events", { headers: { "X-Devenv-Token": token } });
    const body = await res.json();
    if (state.selected !== key) return;
    const vscode = document.getElementById("vscode");
    if (res.ok && body.vscode) {
      const a = el("a", "Open in VS Code (Remote-SSH)", { href: body.vscode });
      vscode.replaceChildren(a);
    } else {
      vscode.replaceChildren(el("span", "VS Code: run kubectl devenv ssh-config --write -n " +
        w.namespace + " once, then a link appears here"));
    }
    const now = Date.now();
    const items = res.ok ? body.events.map((e) => {
      const item = li(V.eventLine(e, now));
      if (e.warning) item.className = "warning";
      return item;
    }) : [li(body.error || res.statusText)];
    list.replaceChildren(...(items.length ? items : [li("no recent events")]));
  } finally {
    if (state.eventsFor === key + "@pending") state.eventsFor = key;
  }
}

function renderTiers(doc) {
  if (state.tiersShown || !doc.tiers || !doc.tiers.length) return;
  const select = document.getElementById("create-tier");
  select.replaceChildren(...doc.tiers.map((t) => {
    const o = el("option", V.tierLabel(t), { value: t.name });
    // Selected, and selected again when the form is reset after a create.
    o.defaultSelected = o.selected = t.default;
    return o;
  }));
  document.getElementById("scale-tier").append(
    ...doc.tiers.map((t) => el("option", V.tierLabel(t), { value: t.name })));
  state.tiersShown = true;
}

function select(key) {
  state.selected = state.selected === key ? null : key;
  state.eventsFor = null;
  document.getElementById("events").replaceChildren(li("loading…"));
  closeTerminal();
  renderTable();
}

function renderDetail() {
  const section = document.getElementById("detail");
  const w = state.doc && state.doc.workspaces.find((x) => V.key(x) === state.selected);
  section.hidden = !w;
  if (!w) return;
  document.getElementById("detail-title").textContent = w.name + " (" + w.status + ")";
  document.getElementById("open-terminal").onclick = () => openTerminal(w);
  loadEvents(w);
  document.getElementById("delete").onclick = () => act(w.namespace, w.name, "delete");
  document.getElementById("access").replaceChildren(...V.accessLines(w).map((line) => {
    const li = el("li");
    li.append(el("code", line));
    return li;
  }));
  document.querySelector("#pods tbody").replaceChildren(...w.pods.map((p) => {
    const tr = el("tr");
    for (const v of [p.name, p.phase, p.ready ? "yes" : "no", p.node || "-"]) tr.append(el("td", v));
    return tr;
  }));
  document.querySelector("#claims tbody").replaceChildren(...w.claims.map((c) => {
    const tr = el("tr");
    for (const v of [c.name, c.phase, c.size, c.requested, c.storageClass]) tr.append(el("td", v));
    return tr;
  }));
}

// Every action is the CLI's (the plugin runs its code); the answer is in its words.
async function act(namespace, name, action, body) {
  const result = document.getElementById("result");
  result.className = "";
  result.textContent = action + " " + name + "…";
  try {
    const path = "api/workspaces/" + encodeURIComponent(namespace) + "/" +
      encodeURIComponent(name) + "/" + action;
    const init = { method: "POST", headers: { "X-Devenv-Token": token } };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const answer = await res.json();
    result.textContent = answer.message || answer.error || res.statusText;
    if (!res.ok) result.className = "error";
    return res.ok;
  } catch (e) {
    result.className = "error";
    result.textContent = action + " " + name + " failed: " + e;
    return false;
  }
}

function closeTerminal() {
  if (state.terminal) {
    state.terminal.socket.close();
    state.terminal.term.dispose();
    state.terminal = null;
  }
  document.getElementById("terminal").replaceChildren();
}

// A login shell in the workspace's first pod, through the plugin (exec, as
// `kubectl devenv exec` does): the terminal's bytes travel as binary WebSocket frames.
function openTerminal(w) {
  closeTerminal();
  const status = document.getElementById("terminal-status");
  const term = new Terminal({ cols: 100, rows: 24 });
  term.open(document.getElementById("terminal"));
  const url = new URL("api/workspaces/" + encodeURIComponent(w.namespace) + "/" +
    encodeURIComponent(w.name) + "/terminal?token=" + encodeURIComponent(token), location.href);
  url.protocol = "ws:";
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  state.terminal = { term, socket };
  status.textContent = "connecting…";
  socket.addEventListener("open", () => {
    status.textContent = "connected to " + w.name;
    socket.send(JSON.stringify({ cols: term.cols, rows: term.rows }));
    term.focus();
  });
  socket.addEventListener("message", (ev) => {
    if (ev.data instanceof ArrayBuffer) term.write(new Uint8Array(ev.data));
  });
  socket.addEventListener("close", (ev) => {
    status.textContent = ev.reason || "the terminal closed (is the workspace running?)";
  });
  term.onData((data) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
}

function setUpScaleForm() {
  const form = document.getElementById("scale");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const w = state.doc && state.doc.workspaces.find((x) => V.key(x) === state.selected);
    if (!w) return;
    const body = V.scaleBody(Object.fromEntries(new FormData(form).entries()));
    if (await act(w.namespace, w.name, "scale", body)) form.reset();
  });
}

// Purge deletes the data: the button stays disabled until the name is typed, and the
// plugin checks the name again (it runs `delete NAME --purge` only then).
function setUpPurgeForm() {
  const form = document.getElementById("purge");
  const button = document.getElementById("purge-button");
  const selected = () => state.doc && state.doc.workspaces.find((x) => V.key(x) === state.selected);
  form.elements.confirm.addEventListener("input", () => {
    const w = selected();
    button.disabled = !w || !V.purgeConfirmed(w, form.elements.confirm.value);
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const w = selected();
    if (!w) return;
    const body = { confirm: form.elements.confirm.value, noBackup: form.elements.noBackup.checked };
    if (await act(w.namespace, w.name, "purge", body)) {
      form.reset();
      button.disabled = true;
    }
  });
}

function setUpCreateForm() {
  const form = document.getElementById("create");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fields = Object.fromEntries(new FormData(form).entries());
    const name = (fields.name || "").trim();
    const namespace = state.doc && state.doc.namespace;
    if (!namespace) {
      document.getElementById("result").textContent =
        "create needs a namespace: run kubectl devenv ui -n NAMESPACE";
      return;
    }
    if (await act(namespace, name, "create", V.createBody(fields))) form.reset();
  });
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("api/events?token=" + encodeURIComponent(token));
  events.addEventListener("workspaces", (ev) => {
    state.doc = JSON.parse(ev.data);
    live.className = "";
    live.textContent = state.doc.synced ? "live" : "loading…";
    renderTable();
  });
  events.addEventListener("error", () => {
    live.className = "down";
    live.textContent = "reconnecting…";
  });
}

setUpCreateForm();
setUpScaleForm();
setUpPurgeForm();
document.getElementById("admin-refresh").addEventListener("click", loadAdmin);
connect();
