// The fleetkey web console: plain JavaScript, no build step, nothing fetched from elsewhere.
// It calls the API's own routes under /console/api/ with the session cookie (HttpOnly: this
// script never sees it) and the session's CSRF token, which it keeps in memory only.
"use strict";

let csrf = null;        // the session's CSRF token (memory only; a reload asks the server again)
let refreshTimer = null;
// Each navigation starts a new generation; a page still loading for an older one (a slow refresh
// of the page left) must not draw over the new one.
let generation = 0;

// ---------------------------------------------------------------- DOM helpers (no innerHTML)

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows, emptyText) {
  if (rows.length === 0) return el("p", { class: "empty" }, emptyText || "(none)");
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) =>
      c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))))));
}

function card(label, value, id) {
  return el("div", { class: "card", id: id }, el("div", { class: "label" }, label),
            el("div", { class: "value" }, value));
}

const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
const shortId = (id) => (id && id.length > 12 ? id.slice(0, 12) + "…" : id || "");

// ---------------------------------------------------------------- the API

async function api(method, path, body) {
  const r = await fetch("/console/api" + path, {
    method,
    headers: Object.assign({ "X-Fleetkey-Csrf": csrf || "" },
                           body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
    credentials: "same-origin",
  });
  const text = await r.text();
  const data = text ? JSON.parse(text) : {};
  if (r.status === 401) {
    showSignIn("Your session ended: sign in again.");
    throw new Error("signed out");
  }
  if (!r.ok) throw new Error((data && data.message) || ("HTTP " + r.status));
  return data;
}

// ---------------------------------------------------------------- sign in and out

function showSignIn(message) {
  csrf = null;
  generation++;  // nothing still loading draws any more
  clearInterval(refreshTimer);
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("view").hidden = true;
  document.getElementById("signin").hidden = false;
  document.getElementById("signin-error").textContent = message || "";
}

function signedIn(session) {
  csrf = session.csrfToken;
  document.getElementById("signin").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("who").textContent = session.accessKeyId;
  document.getElementById("view").hidden = false;
  route();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const r = await fetch("/console/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ accessKeyId: form.accessKeyId.value.trim(),
                           secretAccessKey: form.secretAccessKey.value }),
    credentials: "same-origin",
  });
  form.secretAccessKey.value = "";  // not kept anywhere
  const data = await r.json();
  if (!r.ok) {
    document.getElementById("signin-error").textContent = data.message || "sign-in failed";
    return;
  }
  signedIn(data);
}

async function signOut() {
  await fetch("/console/session", { method: "DELETE", headers: { "X-Fleetkey-Csrf": csrf || "" },
                                    credentials: "same-origin" });
  showSignIn("Signed out.");
}

// ---------------------------------------------------------------- confirmation

function confirmAction(text) {
  return new Promise((resolve) => {
    const modal = document.getElementById("modal");
    document.getElementById("modal-text").textContent = text;
    modal.hidden = false;
    const done = (answer) => {
      modal.hidden = true;
      document.getElementById("modal-confirm").onclick = null;
      document.getElementById("modal-cancel").onclick = null;
      resolve(answer);
    };
    document.getElementById("modal-confirm").onclick = () => done(true);
    document.getElementById("modal-cancel").onclick = () => done(false);
  });
}

// ---------------------------------------------------------------- views

function setView(gen, title, ...content) {
  if (gen !== generation) return;
  const v = document.getElementById("view");
  v.replaceChildren(el("h1", {}, title), ...content);
}

function activeNav(id) {
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.id === id);
}

async function overview(gen) {
  activeNav("nav-overview");
  const [status, activity, hour, expiring] = await Promise.all([
    api("GET", "/fleetkey/status"),
    api("GET", "/fleetkey/activity?minutes=10"),
    api("GET", "/fleetkey/activity?minutes=60"),
    api("GET", "/fleetkey/expiring-certificates?withinSeconds=" + 30 * 86400),
  ]);
  const connected = status.clusterConnections !== undefined ? status.clusterConnections
                                                             : status.connections;
  const certs = status.certificates || {};
  const refusals = Object.entries(hour.refusals || {}).sort((a, b) => b[1] - a[1]);
  setView(gen, "Fleet overview",
    el("div", { class: "cards" },
      card("Connected now", connected ?? "–", "card-connected"),
      card("Connects / min (10 min)", activity.connectsPerMinute.toFixed(1), "card-connects"),
      card("Provisionings / min (10 min)", activity.provisioningsPerMinute.toFixed(1),
           "card-provisionings"),
      card("Things", status.things ?? "–", "card-things"),
      card("Certificates ACTIVE", certs.ACTIVE ?? 0, "card-active"),
      card("Expiring within 30 days", expiring.certificates.length, "card-expiring")),
    el("h2", {}, "Refusals in the last hour, by cause"),
    table(["event", "cause", "count"], refusals.map(([k, n]) => {
      const [event, cause] = k.split(":");
      return [event, cause, n];
    }), "No refusals in the last hour."),
    el("h2", {}, "Certificates expiring within 30 days"),
    table(["certificate", "status", "not after"], expiring.certificates.map((c) => [
      el("td", { class: "mono" }, c.certificateId), c.status, iso(c.notAfter * 1000)])));
}

async function things(gen, params) {
  activeNav("nav-things");
  const query = new URLSearchParams({ maxResults: "250" });
  if (params.get("type")) query.set("thingTypeName", params.get("type"));
  if (params.get("attr") && params.get("value")) {
    query.set("attributeName", params.get("attr"));
    query.set("attributeValue", params.get("value"));
  }
  let list = [];
  let token = null;
  do {  // at most 2,000 things in the page: filter on the server, search here
    if (token) query.set("nextToken", token);
    const page = await api("GET", "/things?" + query.toString());
    list = list.concat(page.things || []);
    token = page.nextToken;
  } while (token && list.length < 2000);
  const search = (params.get("q") || "").toLowerCase();
  const shown = list.filter((t) => t.thingName.toLowerCase().includes(search));
  const form = el("form", { class: "filters", id: "things-filter", onsubmit: (e) => {
    e.preventDefault();
    const f = new URLSearchParams();
    for (const k of ["q", "type", "attr", "value"]) if (e.target[k].value) f.set(k, e.target[k].value);
    location.hash = "#/things?" + f.toString();
  } },
    el("label", {}, "Search by name", el("input", { name: "q", id: "thing-search", value: params.get("q") || "" })),
    el("label", {}, "Thing type", el("input", { name: "type", value: params.get("type") || "" })),
    el("label", {}, "Attribute", el("input", { name: "attr", value: params.get("attr") || "" })),
    el("label", {}, "= value", el("input", { name: "value", value: params.get("value") || "" })),
    el("button", { type: "submit", id: "thing-search-button" }, "Filter"));
  setView(gen, "Things",
    form,
    table(["thing", "type", "attributes"], shown.map((t) => [
      el("td", {}, el("a", { href: "#/things/" + encodeURIComponent(t.thingName),
                             class: "thing-link" }, t.thingName)),
      t.thingTypeName || "",
      Object.entries(t.attributes || {}).map(([k, v]) => k + "=" + v).join(", ")]),
    search ? "No thing matches." : "No things yet."));
}

async function thing(gen, name) {
  activeNav("nav-things");
  const enc = encodeURIComponent(name);
  const [desc, principals, groups, diagnosis, timeline] = await Promise.all([
    api("GET", "/things/" + enc),
    api("GET", "/things/" + enc + "/principals"),
    api("GET", "/things/" + enc + "/thing-groups"),
    api("GET", "/fleetkey/diagnose/" + enc),
    api("GET", "/fleetkey/timeline/" + enc + "?limit=50"),
  ]);
  const certRows = [];
  for (const arn of principals.principals || []) {
    const id = arn.split("/").pop();
    const [cert, policies] = await Promise.all([
      api("GET", "/certificates/" + id),
      api("POST", "/attached-policies/" + encodeURIComponent(arn)),
    ]);
    const d = cert.certificateDescription;
    const diag = (diagnosis.certificates || []).find((c) => c.certificateId === id) || {};
    const conns = (diag.connections || []).map((c) => c.clientId + " from " + c.source + " since " + c.since);
    const actions = [];
    if (d.status === "ACTIVE")
      actions.push(el("button", { class: "warn", id: "deactivate-" + id,
                                  onclick: () => changeStatus(name, id, "INACTIVE") }, "Deactivate"));
    if (d.status !== "REVOKED")
      actions.push(el("button", { class: "danger", id: "revoke-" + id,
                                  onclick: () => changeStatus(name, id, "REVOKED") }, "Revoke"));
    certRows.push([
      el("td", { class: "mono" }, id),
      el("td", { class: "status-" + d.status, id: "status-" + id }, d.status),
      d.validity ? iso(d.validity.notAfter * 1000) : "",
      (policies.policies || []).map((p) => p.policyName).join(", "),
      el("td", { id: "connections-" + id }, conns.length ? conns.join("; ") : "not connected"),
      el("td", {}, actions)]);
  }
  setView(gen, name,
    el("div", { class: "verdict " + diagnosis.verdict, id: "verdict" },
       el("strong", {}, diagnosis.verdict.replace("_", " ")), ": ", diagnosis.summary),
    el("p", {}, "Type: ", desc.thingTypeName || "none", " · version ", desc.version,
       " · groups: ", (groups.thingGroups || []).map((g) => g.groupName).join(", ") || "none",
       " · attributes: ",
       Object.entries(desc.attributes || {}).map(([k, v]) => k + "=" + v).join(", ") || "none"),
    el("h2", {}, "Certificates"),
    table(["certificate", "status", "valid until", "policies", "live connection", ""], certRows,
          "No certificate is attached."),
    el("h2", {}, "Timeline (newest first)"),
    el("div", { id: "timeline" },
      table(["time", "event", "reason", "client", "certificate", "by", "detail"],
            (timeline.events || []).map((e) => [iso(e.time), e.event, e.reason, e.clientId,
                                                 el("td", { class: "mono" }, shortId(e.certificateId)),
                                                 e.actor, e.detail]),
            "Nothing recorded yet.")));
}

async function changeStatus(thingName, id, status) {
  const what = status === "REVOKED"
    ? "Revoke certificate " + id + "? Its connections are cut at once and it can never be activated again."
    : "Deactivate certificate " + id + "? Its connections are cut at once; it can be activated again.";
  if (!(await confirmAction(what))) return;
  await api("PUT", "/certificates/" + id + "?newStatus=" + status);
  await thing(generation, thingName);
}

async function provisioning(gen) {
  activeNav("nav-provisioning");
  const [templates, counters] = await Promise.all([
    api("GET", "/provisioning-templates"),
    api("GET", "/fleetkey/metrics"),
  ]);
  const count = (prefix, result) => counters[prefix + "." + result] || 0;
  const claims = {};
  for (const [k, v] of Object.entries(counters)) {
    const m = /^provisioning\.claim\.([0-9a-f]{64})\.(accepted|rejected)$/.exec(k);
    if (m) (claims[m[1]] = claims[m[1]] || { accepted: 0, rejected: 0 })[m[2]] = v;
  }
  setView(gen, "Provisioning templates and claims",
    el("h2", {}, "Templates"),
    table(["template", "type", "enabled", "RegisterThing accepted", "rejected", "description"],
      (templates.templates || []).map((t) => [t.templateName, t.type || "FLEET_PROVISIONING",
        el("td", {}, el("span", { class: "pill " + (t.enabled ? "on" : "off") }, t.enabled ? "enabled" : "disabled")),
        count("provisioning.template." + t.templateName, "accepted"),
        count("provisioning.template." + t.templateName, "rejected"), t.description || ""]),
      "No provisioning templates."),
    el("h2", {}, "Claim certificates (requests answered since this node started)"),
    table(["claim certificate", "accepted", "rejected"], Object.entries(claims).map(([id, c]) => [
      el("td", { class: "mono" }, id), c.accepted, c.rejected]),
      "No claim has been used since this node started."));
}

// ---------------------------------------------------------------- routing

async function route() {
  if (!csrf) return;
  clearInterval(refreshTimer);
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = hash.split("?");
  const params = new URLSearchParams(qs || "");
  const gen = ++generation;
  let render;
  if (path === "/") render = () => overview(gen);
  else if (path === "/things") render = () => things(gen, params);
  else if (path.startsWith("/things/")) render = () => thing(gen, decodeURIComponent(path.slice(8)));
  else if (path === "/provisioning") render = () => provisioning(gen);
  else render = () => overview(gen);
  const run = () => render().catch((e) => {
    if (e.message !== "signed out" && gen === generation)
      document.getElementById("view").prepend(el("p", { class: "error" }, e.message));
  });
  await run();
  // Live pages refresh themselves (not the things list, whose filters are being typed).
  if (path === "/" || path.startsWith("/things/")) refreshTimer = setInterval(run, 3000);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("signin-form").addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", signOut);
  const r = await fetch("/console/session", { credentials: "same-origin" });
  if (r.ok) signedIn(await r.json());
  else showSignIn("");
});
