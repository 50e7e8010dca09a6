// Batchgate console: the tenant's batches through the public /v1 API, no framework, no build step.
// The key lives in `state.key` only (this tab's memory): never in storage, cookies or the URL.
// Every value from the API reaches the page as text (textContent), never as HTML.
"use strict";

(() => {
  // The API sits beside the page: <base>/console/ -> <base>/v1/, whether <base> is a host, a stage
  // (https://host/<stage>/) or a custom domain.
  const API = new URL("../v1/", location.href.split("#")[0]);
  const TERMINAL = new Set(["completed", "failed", "expired", "cancelled"]);
  const CANCELLABLE = new Set(["validating", "in_progress", "finalizing"]);
  const PAGE = 20;
  const POLL_ACTIVE_MS = 1000;
  const POLL_IDLE_MS = 10000;
  const TIMELINE = [
    ["created_at", "created"], ["in_progress_at", "in progress"], ["finalizing_at", "finalizing"],
    ["completed_at", "completed"], ["failed_at", "failed"], ["cancelling_at", "cancelling"],
    ["cancelled_at", "cancelled"], ["expired_at", "expired"],
  ];

  const state = { key: null, view: 0, timer: null, listLimit: PAGE };
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, message, code) { super(message); this.status = status; this.code = code; }
  }

  // -- DOM -------------------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function notify(message) {
    const el = $("notice");
    el.textContent = message || "";
    el.hidden = !message;
  }

  const label = (status) => String(status).replace(/_/g, " ");
  const badge = (status) => h("span", { class: `badge ${status}`, "data-status": status }, label(status));
  const num = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "—");

  function age(seconds) {
    const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h`;
    return `${Math.floor(s / 86400)} d`;
  }

  const when = (seconds) => new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");

  function progress(batch) {
    const c = batch.request_counts || { total: 0, completed: 0, failed: 0 };
    const done = c.completed + c.failed;
    const bar = h("progress", { max: Math.max(c.total, 1), "aria-label": "progress" });
    // Unknown until validation has counted the lines: an indeterminate bar (no value); a batch that
    // ended without lines (failed validation) shows an empty one.
    if (c.total > 0 || TERMINAL.has(batch.status)) bar.value = done;
    const pct = c.total > 0 ? `${Math.floor((100 * done) / c.total)}%` : "—";
    return h("div", { class: "progress", "data-done": done, "data-total": c.total },
      bar, h("span", { class: "pct" }, pct));
  }

  const counts = (batch) => {
    const c = batch.request_counts || { total: 0, completed: 0, failed: 0 };
    return h("span", { class: "counts" }, `${num(c.completed)} ok`, c.failed ? h("span", { class: "bad" }, ` · ${num(c.failed)} failed`) : "",
      ` · ${num(c.total)} total`);
  };

  // -- API -------------------------------------------------------------------------------------------
  async function call(path, options = {}) {
    const headers = { Authorization: `Bearer ${state.key}`, ...(options.headers || {}) };
    let res;
    try {
      res = await fetch(new URL(path, API), { ...options, headers, cache: "no-store", credentials: "omit" });
    } catch (err) {
      throw new ApiError(0, `The API did not answer (${err.message}).`);
    }
    if (res.type !== "opaqueredirect" && !res.ok) {
      let message = `${res.status} ${res.statusText}`, code;
      try {
        const body = await res.json();
        if (body && body.error) { message = body.error.message || message; code = body.error.code; }
      } catch (_) { /* not JSON: keep the status line */ }
      if (res.status === 401) forget(message);
      throw new ApiError(res.status, message, code);
    }
    return res;
  }

  const json = async (path, options) => (await call(path, options)).json();
  const postJson = (path, body, headers) => json(path, {
    method: "POST", headers: { "Content-Type": "application/json", ...(headers || {}) }, body: JSON.stringify(body),
  });

  // -- key -------------------------------------------------------------------------------------------
  async function connect(event) {
    event.preventDefault();
    const input = $("api-key");
    const key = input.value.trim();
    if (!key) return;
    state.key = key;
    try {
      await json("batches?limit=1");
    } catch (err) {
      if (state.key) { state.key = null; notify(err.message); }
      return;
    }
    input.value = "";
    $("key-form").hidden = true;
    $("session").hidden = false;
    $("session-label").textContent = `Key …${key.slice(-4)}`;
    notify("");
    route();
  }

  function forget(message) {
    state.key = null;
    $("key-form").hidden = false;
    $("session").hidden = true;
    notify(message || "");
    route();
  }

  // -- views -----------------------------------------------------------------------------------------
  function show(id) {
    for (const view of ["welcome", "list-view", "batch-view"]) $(view).hidden = view !== id;
  }

  function schedule(view, fn, ms) {
    if (view !== state.view) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(() => { if (view === state.view) fn(); }, ms);
  }

  function route() {
    state.view += 1;
    clearTimeout(state.timer);
    if (!state.key) { show("welcome"); return; }
    const match = /^#\/batches\/([A-Za-z0-9_-]{1,128})$/.exec(location.hash);
    if (match) showBatch(match[1], state.view);
    else { show("list-view"); refreshList(state.view); }
  }

  async function listBatches(limit) {
    const all = [];
    let after = null, more = true;
    while (more && all.length < limit) {
      const query = new URLSearchParams({ limit: String(Math.min(100, limit - all.length)) });
      if (after) query.set("after", after);
      const page = await json(`batches?${query}`);
      all.push(...page.data);
      more = page.has_more;
      after = page.last_id;
      if (!page.data.length) break;
    }
    return { data: all, hasMore: more };
  }

  async function refreshList(view) {
    let page;
    try {
      page = await listBatches(state.listLimit);
    } catch (err) {
      if (view === state.view) { notify(err.message); schedule(view, () => refreshList(view), POLL_IDLE_MS); }
      return;
    }
    if (view !== state.view) return;
    notify("");
    const rows = page.data.map((b) => h("tr", { "data-id": b.id, "data-status": b.status },
      h("td", null, h("a", { href: `#/batches/${encodeURIComponent(b.id)}`, class: "mono" }, b.id),
        b.metadata && b.metadata.description ? h("div", { class: "muted small" }, b.metadata.description) : ""),
      h("td", null, badge(b.status)),
      h("td", null, progress(b)),
      h("td", null, counts(b)),
      h("td", { class: "num" }, num(b.usage ? b.usage.total_tokens : null)),
      h("td", { title: when(b.created_at) }, age(b.created_at))));
    $("batches").tBodies[0].replaceChildren(...rows);
    $("empty").hidden = rows.length > 0;
    $("more").hidden = !page.hasMore;
    $("list-updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
    const active = page.data.some((b) => !TERMINAL.has(b.status));
    schedule(view, () => refreshList(view), active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  async function createBatch(event) {
    event.preventDefault();
    const file = $("input-file").files[0];
    const status = $("create-status");
    if (!file) { status.textContent = "Choose a JSONL file first."; return; }
    const button = $("create");
    button.disabled = true;
    try {
      status.textContent = `Uploading ${file.name} (${num(file.size)} bytes)…`;
      const uploaded = await uploadFile(file, (text) => { status.textContent = text; });
      status.textContent = `Uploaded ${uploaded.id}; starting the batch…`;
      const idempotency = window.crypto && crypto.randomUUID ? { "Idempotency-Key": crypto.randomUUID() } : {};
      const batch = await postJson("batches", {
        input_file_id: uploaded.id, endpoint: $("endpoint").value, completion_window: "24h",
        metadata: { description: `${file.name} (console)`.slice(0, 512) },
      }, idempotency);
      status.textContent = "";
      $("create-form").reset();
      location.hash = `#/batches/${encodeURIComponent(batch.id)}`;
    } catch (err) {
      status.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }

  // POST /v1/files takes what fits one request (4 MiB by default); a larger file goes through the
  // Uploads API in parts. Neither limit is known up front: a 413 says "smaller", so the part size
  // halves until parts fit (parts may differ in size; the server regroups them).
  const PART_BYTES = 4 * 1024 * 1024;
  const MIN_PART_BYTES = 8 * 1024;

  async function uploadFile(file, progressText) {
    if (file.size <= PART_BYTES) {
      const form = new FormData();
      form.append("purpose", "batch");
      form.append("file", file, file.name);
      try {
        return await json("files", { method: "POST", body: form });
      } catch (err) {
        if (err.status !== 413) throw err;
      }
    }
    const upload = await postJson("uploads", {
      filename: file.name, purpose: "batch", bytes: file.size, mime_type: "application/jsonl",
    });
    const partIds = [];
    let offset = 0, size = Math.min(PART_BYTES, file.size);
    while (offset < file.size) {
      const form = new FormData();
      form.append("data", file.slice(offset, offset + size), file.name);
      try {
        const part = await json(`uploads/${encodeURIComponent(upload.id)}/parts`, { method: "POST", body: form });
        partIds.push(part.id);
        offset += size;
        progressText(`Uploading ${file.name}: ${num(offset)} of ${num(file.size)} bytes…`);
      } catch (err) {
        if (err.status !== 413 || size <= MIN_PART_BYTES) throw err;
        size = Math.max(MIN_PART_BYTES, Math.floor(size / 2));
      }
    }
    const done = await postJson(`uploads/${encodeURIComponent(upload.id)}/complete`, { part_ids: partIds });
    return done.file;
  }

  // The batch page: a fixed skeleton whose parts are refreshed in place, so a button the user is
  // pressing is never swapped out under the pointer.
  function showBatch(id, view) {
    const section = $("batch-view");
    const cancel = h("button", { id: "cancel", type: "button", class: "danger", hidden: true }, "Cancel batch");
    const parts = {
      status: h("span", { id: "batch-status" }),
      progress: h("div", { id: "batch-progress" }),
      timeline: h("ol", { id: "timeline", class: "timeline" }),
      errors: h("div", { id: "validation-errors" }),
      usage: h("dl", { id: "usage", class: "facts" }),
      files: h("div", { id: "files" }),
      details: h("dl", { id: "details", class: "facts" }),
    };
    section.replaceChildren(
      h("p", null, h("a", { href: "#/" }, "← All batches")),
      h("div", { class: "titlebar" }, h("h1", { class: "mono" }, id), parts.status, h("span", { class: "grow" }), cancel),
      h("div", { class: "card" }, h("h2", null, "Progress"), parts.progress),
      h("div", { class: "grid" },
        h("div", { class: "card" }, h("h2", null, "Timeline"), parts.timeline),
        h("div", { class: "card" }, h("h2", null, "Usage"), parts.usage),
        h("div", { class: "card" }, h("h2", null, "Files"), parts.files),
        h("div", { class: "card" }, h("h2", null, "Details"), parts.details)),
      parts.errors);
    show("batch-view");
    let filesKey = null;

    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        render(await json(`batches/${encodeURIComponent(id)}/cancel`, { method: "POST" }));
      } catch (err) {
        notify(err.message);
        cancel.disabled = false;
      }
    });

    function render(batch) {
      if (view !== state.view) return;
      parts.status.replaceChildren(badge(batch.status));
      cancel.hidden = !CANCELLABLE.has(batch.status);
      parts.progress.replaceChildren(progress(batch), counts(batch));
      const events = TIMELINE.filter(([field]) => batch[field]).map(([field, name]) => [batch[field], name, field]);
      events.sort((a, b) => a[0] - b[0]);
      const lines = events.map(([t, name, field]) => h("li", { "data-event": field },
        h("span", { class: "event" }, name), h("time", { datetime: new Date(t * 1000).toISOString() }, when(t))));
      if (batch.expires_at && !TERMINAL.has(batch.status)) {
        lines.push(h("li", { class: "future", "data-event": "expires_at" }, h("span", { class: "event" }, "expires"),
          h("time", null, when(batch.expires_at))));
      }
      parts.timeline.replaceChildren(...lines);
      const u = batch.usage;
      parts.usage.replaceChildren(...(u ? [
        ["input tokens", u.input_tokens], ["cached", u.input_tokens_details && u.input_tokens_details.cached_tokens],
        ["output tokens", u.output_tokens],
        ["reasoning", u.output_tokens_details && u.output_tokens_details.reasoning_tokens],
        ["total tokens", u.total_tokens],
      ].flatMap(([k, v]) => [h("dt", null, k), h("dd", { class: "num" }, num(v))]) : [h("dd", { class: "muted" }, "none yet")]));
      parts.details.replaceChildren(...[
        ["endpoint", batch.endpoint], ["model", batch.model], ["window", batch.completion_window],
        ...Object.entries(batch.metadata || {}).map(([k, v]) => [`metadata.${k}`, v]),
      ].filter(([, v]) => v).flatMap(([k, v]) => [h("dt", null, k), h("dd", null, String(v))]));
      const errors = (batch.errors && batch.errors.data) || [];
      parts.errors.replaceChildren(...(errors.length ? [h("div", { class: "card" },
        h("h2", null, `Validation errors (${errors.length})`),
        h("table", { id: "errors-table" },
          h("thead", null, h("tr", null, h("th", null, "Line"), h("th", null, "Code"), h("th", null, "Param"),
            h("th", null, "Message"))),
          h("tbody", null, errors.map((e) => h("tr", null, h("td", { class: "num line" }, e.line ?? "—"),
            h("td", { class: "mono" }, e.code || ""), h("td", { class: "mono" }, e.param || ""),
            h("td", null, e.message || ""))))))] : []));
      const key = [batch.input_file_id, batch.output_file_id, batch.error_file_id].join("|");
      if (key !== filesKey) {
        filesKey = key;
        parts.files.replaceChildren(h("dl", { class: "facts" }, [
          ["input", batch.input_file_id, "input"], ["output", batch.output_file_id, "output"],
          ["errors", batch.error_file_id, "error"],
        ].flatMap(([name, fileId, kind]) => [h("dt", null, name), h("dd", null, fileId ? [
          h("span", { class: "mono" }, fileId), " ",
          h("button", { type: "button", class: "secondary small", "data-download": kind,
            onclick: (ev) => download(fileId, `${batch.id}_${kind}.jsonl`, ev.currentTarget) }, "Download"),
        ] : h("span", { class: "muted" }, "—"))])));
      }
      const next = TERMINAL.has(batch.status) ? null : POLL_ACTIVE_MS;
      if (next) schedule(view, load, next);
    }

    async function load() {
      try {
        render(await json(`batches/${encodeURIComponent(id)}`));
        if (view === state.view) notify("");
      } catch (err) {
        if (view !== state.view) return;
        notify(err.message);
        if (err.status !== 404) schedule(view, load, POLL_IDLE_MS);
      }
    }
    load();
  }

  // -- downloads -------------------------------------------------------------------------------------
  // The content needs the Authorization header, so it is fetched here and saved through a Blob link.
  // A file over the server's inline limit is an S3 presigned URL instead: `?redirect=json` asks for
  // that URL as JSON (the browser would otherwise follow the 302 to another origin, which this page's
  // connect-src does not allow), and the URL, which needs no key, is opened as a download.
  async function download(fileId, fallbackName, button) {
    if (button) button.disabled = true;
    try {
      let name = fallbackName;
      try { name = (await json(`files/${encodeURIComponent(fileId)}`)).filename || name; } catch (_) { /* keep */ }
      const res = await call(`files/${encodeURIComponent(fileId)}/content?redirect=json`, { redirect: "manual" });
      if (res.type === "opaqueredirect") {
        throw new ApiError(0, `File ${fileId} is too large to pass through the API; download it with `
          + "`curl -L` or the SDK.");
      }
      const type = (res.headers.get("Content-Type") || "").toLowerCase();
      if (type.startsWith("application/json")) {
        const notice = await res.json();
        if (notice && notice.object === "file.content.redirect" && /^https?:/.test(notice.url)) {
          save(notice.url, name, true);
          return;
        }
        save(URL.createObjectURL(new Blob([JSON.stringify(notice)])), name, false);
        return;
      }
      save(URL.createObjectURL(await res.blob()), name, false);
    } catch (err) {
      notify(err.message);
    } finally {
      if (button) button.disabled = false;
    }
  }

  function save(href, name, external) {
    const link = h("a", { href, download: name, hidden: true, rel: "noopener noreferrer", target: external ? "_blank" : null });
    document.body.append(link);
    link.click();
    link.remove();
    if (!external) setTimeout(() => URL.revokeObjectURL(href), 60000);
  }

  // -- start -----------------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", connect);
    $("forget").addEventListener("click", () => forget(""));
    $("create-form").addEventListener("submit", createBatch);
    $("more").addEventListener("click", () => { state.listLimit += PAGE; route(); });
    window.addEventListener("hashchange", route);
    document.body.dataset.ready = "true";
    route();
  });
})();
