// inferq /ui: a small page over the public API. No dependencies; text is written with
// textContent only. Keys live in sessionStorage (this tab only).
"use strict";
(() => {
  const TENANT = "inferq.key", OPERATOR = "inferq.operatorKey";
  const $ = (id) => document.getElementById(id);
  const store = window.sessionStorage;
  let timer = null, route = "";

  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") n.className = v; else n.setAttribute(k, v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) n.append(kid);
    return n;
  }
  const announce = (msg) => { $("announce").textContent = msg; };
  const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
  const pct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(0) + "%");
  const ago = (s) => (s === null || s === undefined ? "–" : s < 60 ? s.toFixed(1) + " s" :
    s < 3600 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h");

  async function api(path, key, init) {
    const r = await fetch(path, Object.assign({}, init, {
      headers: Object.assign({ Authorization: "Bearer " + key }, (init || {}).headers),
      cache: "no-store" }));
    if (!r.ok) {
      let detail = r.status + " " + r.statusText;
      try { const p = await r.json(); detail = p.detail || p.title || detail; } catch (_) { /* not JSON */ }
      const e = new Error(detail); e.status = r.status; throw e;
    }
    return r;
  }
  function authFailed(e, which) {
    if (e.status === 401 || e.status === 403) { store.removeItem(which); go("#/signin"); return true; }
    return false;
  }
  function schedule(fn, ms) { clearTimeout(timer); timer = setTimeout(fn, ms); }

  // --- views ---
  function show(view) {
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== view;
    const signedIn = store.getItem(TENANT) || store.getItem(OPERATOR);
    $("nav").hidden = !signedIn;
    $("nav-jobs").hidden = !store.getItem(TENANT);
    $("nav-operator").hidden = !store.getItem(OPERATOR);
    for (const a of document.querySelectorAll("#nav a")) {
      if (location.hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }
  function go(hash) { if (location.hash === hash) render(); else location.hash = hash; }

  function render() {
    clearTimeout(timer);
    const h = location.hash || "#/";
    const fresh = h !== route; route = h;
    let m;
    if (h.startsWith("#/operator") && store.getItem(OPERATOR)) { show("view-operator"); operator(); }
    else if ((m = h.match(/^#\/jobs\/([^/]+)$/)) && store.getItem(TENANT)) { show("view-job"); job(decodeURIComponent(m[1]), fresh); }
    else if (h === "#/jobs" && store.getItem(TENANT)) { show("view-jobs"); jobs(); }
    else if (h !== "#/signin" && store.getItem(TENANT)) { go("#/jobs"); return; }
    else if (h !== "#/signin" && store.getItem(OPERATOR)) { go("#/operator"); return; }
    else { show("view-signin"); }
    if (fresh) { const h1 = document.querySelector("main > section:not([hidden]) h1"); if (h1) { h1.tabIndex = -1; h1.focus(); } }
  }

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = $("key").value.trim();
    const role = new FormData(ev.target).get("role");
    $("signin-error").textContent = "";
    if (!key) { $("signin-error").textContent = "Enter a key."; $("key").focus(); return; }
    try {
      await api(role === "operator" ? "/v1/operator/overview" : "/v1/jobs?limit=1", key);
      store.setItem(role === "operator" ? OPERATOR : TENANT, key);
      $("key").value = "";
      announce("Signed in.");
      go(role === "operator" ? "#/operator" : "#/jobs");
    } catch (e) {
      $("signin-error").textContent = e.status === 403 ? "That is a tenant key, not an operator key."
        : e.status === 401 ? "Unknown key." : "Could not sign in: " + e.message;
      $("key").setAttribute("aria-invalid", "true"); $("key").focus();
    }
  });
  $("sign-out").addEventListener("click", () => {
    store.removeItem(TENANT); store.removeItem(OPERATOR); announce("Signed out."); go("#/signin");
  });

  // A job's progress: a stacked bar (succeeded, failed, running) with its numbers in words.
  function progress(doc) {
    const c = doc.counts, t = Math.max(1, c.total), done = c.succeeded + c.failed;
    const bar = el("div", { class: "meter", role: "progressbar", "aria-valuemin": "0",
      "aria-valuemax": String(c.total), "aria-valuenow": String(done),
      "aria-valuetext": `${done} of ${c.total} items done`, "aria-label": "Progress of job " + doc.job_id });
    for (const [cls, n] of [["m-ok", c.succeeded], ["m-bad", c.failed], ["m-run", c.running]]) {
      const s = el("span", { class: cls }); s.style.width = (100 * n / t) + "%"; bar.append(s);
    }
    return bar;
  }
  function facts(doc) {
    const c = doc.counts, dl = el("dl", { class: "facts" });
    const add = (k, v) => { if (v !== null && v !== undefined) dl.append(el("div", {}, el("dt", {}, k), el("dd", {}, v))); };
    add("Done", `${fmt(c.succeeded + c.failed)} / ${fmt(c.total)}`);
    add("Succeeded", fmt(c.succeeded)); add("Failed", fmt(c.failed));
    add("Running", fmt(c.running)); add("Pending", fmt(c.pending));
    add("Outcome", doc.outcome);
    if (doc.estimated_completion_at) {
      const s = Math.max(0, (Date.parse(doc.estimated_completion_at) - Date.now()) / 1000);
      add("ETA", "about " + ago(s));
    }
    if (doc.queue_position !== null && doc.queue_position !== undefined) add("Queue position", fmt(doc.queue_position));
    add("Model", `${doc.model}@${doc.model_version}`); add("Priority", doc.priority);
    add("Created", new Date(doc.created_at).toLocaleString());
    if (doc.finished_at) add("Finished", new Date(doc.finished_at).toLocaleString());
    if (doc.error) add("Error", `${doc.error.code}: ${doc.error.message}`);
    return dl;
  }
  const badge = (status) => el("span", { class: "badge st-" + status }, status);
  const live = (doc) => doc.status === "queued" || doc.status === "running";

  async function jobs() {
    const key = store.getItem(TENANT);
    try {
      const page = await (await api("/v1/jobs?limit=50", key)).json();
      $("jobs-error").textContent = "";
      const list = $("jobs"); list.replaceChildren();
      for (const doc of page.jobs) {
        list.append(el("li", { class: "job", "data-job": doc.job_id, "data-status": doc.status },
          el("div", { class: "job-head" },
            el("a", { href: "#/jobs/" + encodeURIComponent(doc.job_id), class: "mono" }, doc.job_id),
            badge(doc.status)),
          progress(doc), facts(doc)));
      }
      $("jobs-empty").hidden = page.jobs.length > 0;
      schedule(jobs, page.jobs.some(live) ? 1000 : 2000);
    } catch (e) {
      if (authFailed(e, TENANT)) return;
      $("jobs-error").textContent = "Could not load jobs: " + e.message;
      schedule(jobs, 5000);
    }
  }

  let failedCursor = null, announced = "";
  async function job(id, fresh) {
    const key = store.getItem(TENANT);
    $("job-id").textContent = id;
    if (fresh) { $("failed").hidden = true; $("failed").tBodies[0].replaceChildren(); failedCursor = null; announced = ""; $("download-link").hidden = true; }
    try {
      const doc = await (await api("/v1/jobs/" + encodeURIComponent(id), key)).json();
      $("job-error").textContent = "";
      const card = $("job-card");
      card.dataset.status = doc.status;
      card.replaceChildren(el("p", {}, "Status ", badge(doc.status)), progress(doc), facts(doc));
      $("cancel").hidden = !live(doc);
      if (live(doc)) { schedule(() => job(id, false), 1000); return; }
      if (announced !== id) { announced = id; announce(`Job ${doc.status}: ${doc.counts.succeeded} succeeded, ${doc.counts.failed} failed.`); await failed(id, true); }
    } catch (e) {
      if (authFailed(e, TENANT)) return;
      $("job-error").textContent = e.status === 404 ? "No such job (unknown, expired or not yours)." : "Could not load the job: " + e.message;
    }
  }
  async function failed(id, first) {
    const key = store.getItem(TENANT);
    const q = "?status=failed&limit=100" + (failedCursor && !first ? "&cursor=" + encodeURIComponent(failedCursor) : "");
    const page = await (await api("/v1/jobs/" + encodeURIComponent(id) + "/results" + q, key)).json();
    const body = $("failed").tBodies[0];
    if (first) body.replaceChildren();
    for (const it of page.items) {
      const e = it.error || {};
      body.append(el("tr", {}, el("td", { "data-label": "Index", class: "num" }, String(it.index)),
        el("td", { "data-label": "Id", class: "mono" }, it.id || "–"), el("td", { "data-label": "Code" }, e.code || "–"),
        el("td", { "data-label": "Retryable" }, e.retryable ? "yes" : "no"), el("td", { "data-label": "Message" }, e.message || "")));
    }
    failedCursor = page.next_cursor;
    $("failed").hidden = body.rows.length === 0;
    $("failed-empty").hidden = body.rows.length > 0;
    $("failed-more").hidden = !failedCursor;
  }
  $("failed-more").addEventListener("click", () => {
    const id = $("job-id").textContent;
    failed(id, false).catch((e) => { $("job-error").textContent = "Could not load more: " + e.message; });
  });
  $("download").addEventListener("click", async () => {
    const id = $("job-id").textContent, btn = $("download");
    btn.disabled = true; announce("Preparing the download…");
    try {
      const blob = await (await api("/v1/jobs/" + encodeURIComponent(id) + "/results.jsonl", store.getItem(TENANT))).blob();
      const a = $("download-link");
      if (a.href) URL.revokeObjectURL(a.href);
      a.href = URL.createObjectURL(blob); a.download = id + ".jsonl";
      a.textContent = `Save ${id}.jsonl (${fmt(blob.size)} bytes)`; a.hidden = false;
      a.click(); a.focus(); announce("Download ready.");
    } catch (e) { $("job-error").textContent = "Download failed: " + e.message; }
    btn.disabled = false;
  });
  $("cancel").addEventListener("click", async () => {
    const id = $("job-id").textContent;
    if (!window.confirm("Cancel job " + id + "? Items not yet run will fail as cancelled.")) return;
    try { await api("/v1/jobs/" + encodeURIComponent(id) + "/cancel", store.getItem(TENANT), { method: "POST" }); announce("Cancelled."); job(id, false); }
    catch (e) { $("job-error").textContent = "Cancel failed: " + e.message; }
  });

  // --- operator ---
  function meter(cls, x, label) {
    const m = el("div", { class: "meter", role: "img", "aria-label": label });
    const s = el("span", { class: cls }); s.style.width = Math.min(100, 100 * (x || 0)) + "%"; m.append(s);
    return m;
  }
  const td = (label, v, cls) => el("td", { "data-label": label, class: cls }, v);
  async function operator() {
    try {
      const o = await (await api("/v1/operator/overview", store.getItem(OPERATOR))).json();
      $("op-error").textContent = "";
      $("op-generated").textContent = "As of " + new Date(o.generated_at).toLocaleTimeString() + ".";
      $("op-dlq").textContent = fmt(o.dead_letters);
      $("op-runner-count").textContent = fmt(o.runners.length);
      $("op-depth").textContent = fmt(o.queues.reduce((a, q) => a + q.depth, 0));
      const rows = (id, items, make, empty) => {
        const b = $(id).tBodies[0]; b.replaceChildren();
        for (const it of items) b.append(make(it));
        if (!items.length) b.append(el("tr", {}, el("td", { colspan: "5" }, empty)));
      };
      rows("op-queues", o.queues, (q) => el("tr", {}, td("Model", q.model), td("Priority", q.priority),
        td("Depth (items)", fmt(q.depth), "num"), td("Oldest chunk age", ago(q.oldest_age_s), "num")), "No queued work.");
      rows("op-runners", o.runners, (r) => el("tr", {}, td("Model", `${r.model}@${r.version}`),
        td("Runner", r.runner_id, "mono"),
        td("Busy", el("div", { class: "bars" }, meter("m-share", r.busy_ratio, "busy " + pct(r.busy_ratio)), el("small", {}, pct(r.busy_ratio) + " busy"))),
        td("Capacity (items/s)", r.capacity_items_s ? r.capacity_items_s.toFixed(1) : "–", "num"),
        td("Last heartbeat", ago(r.heartbeat_age_s) + " ago", "num")), "No live runner.");
      $("op-window").textContent = o.throughput_window_s > 0
        ? `Shares of the items finished in the last ${o.throughput_window_s.toFixed(0)} s (sampled while this page is open).`
        : "Throughput shares appear after a second sample (a few seconds).";
      rows("op-tenants", o.tenants, (t) => el("tr", {}, td("Tenant", t.tenant), td("Weight", String(t.weight), "num"),
        td("Backlog", fmt(t.backlog), "num"), td("Finished in window", fmt(t.items_finished), "num"),
        td("Throughput share vs weight share", el("div", { class: "bars" },
          meter("m-share", t.throughput_share, "throughput share " + pct(t.throughput_share)),
          meter("m-weight", t.weight_share, "weight share " + pct(t.weight_share)),
          el("small", {}, `throughput ${pct(t.throughput_share)} · weight ${pct(t.weight_share)}`)))), "No tenants.");
      const dl = $("op-dlq-list"); dl.replaceChildren();
      for (const d of o.dead_letters_by_model) dl.append(el("li", {}, `${d.model}@${d.version}: ${fmt(d.count)}`));
      $("op-dlq-empty").hidden = o.dead_letters_by_model.length > 0;
      $("op-notes").replaceChildren(...o.notes.map((n) => el("li", {}, n)));
      schedule(operator, 3000);
    } catch (e) {
      if (authFailed(e, OPERATOR)) return;
      $("op-error").textContent = "Could not load the overview: " + e.message;
      schedule(operator, 5000);
    }
  }

  window.addEventListener("hashchange", render);
  render();
})();
