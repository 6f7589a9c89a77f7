// adam's web page: the runs under the server's runs dir, the Batch API's batches, and a chat playground.
// Plain DOM, no build step. Data from the server only ever becomes text nodes (h() below), never markup.
"use strict";

(() => {
  const KEY_STORE = "adam.apiKey";
  const PAGE_SIZE = 50;
  const view = document.getElementById("view");
  let generation = 0; // bumped on every navigation: a view that finishes loading late draws nothing
  let timers = [];

  // ---- DOM: every string becomes a text node; attributes are set one by one, never parsed as HTML
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function draw(gen, ...nodes) {
    if (gen === generation) view.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== "" && n !== null && n !== undefined));
  }

  function failure(err) {
    return h("p", { class: "error", role: "alert" }, String(err && err.message ? err.message : err));
  }

  const number = (value, digits = 0) =>
    value === null || value === undefined || value === "" ? "" : Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
  const when = (iso) => (iso ? String(iso).replace("T", " ").replace(/\+00:00$/, " UTC") : "");
  const runHref = (id) => "#/run/" + encodeURIComponent(id);
  const sweepHref = (id) => "#/sweep/" + encodeURIComponent(id);
  const apiPath = (id) => "/ui/api/runs/" + id.split("/").map(encodeURIComponent).join("/");
  const badge = (status) => h("span", { class: "badge status-" + String(status || "unknown").replace(/[^a-z_]/g, "") }, status || "unknown");

  // ---- the API key: asked for once, kept in this tab's session storage, sent as a bearer token
  let asking = null;

  function askKey(message) {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const dialog = document.getElementById("key-dialog");
      const input = document.getElementById("key-input");
      document.getElementById("key-message").textContent = message;
      input.value = "";
      document.getElementById("key-form").onsubmit = (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_STORE, key);
        dialog.close();
        asking = null;
        resolve();
      };
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  async function api(path, options = {}) {
    for (;;) {
      const headers = new Headers(options.headers || {});
      const key = sessionStorage.getItem(KEY_STORE);
      if (key) headers.set("Authorization", "Bearer " + key);
      const reply = await fetch(path, { ...options, headers });
      if (reply.status !== 401) return reply;
      await askKey(key ? "The server refused that key. Enter its API key:" : "This server needs its API key:");
    }
  }

  function errorText(body, reply) {
    const error = body && body.error;
    const message = typeof error === "string" ? error : error && error.message;
    return message || reply.status + " " + reply.statusText;
  }

  async function getJson(path) {
    const reply = await api(path);
    const body = await reply.json().catch(() => null);
    if (!reply.ok) throw new Error(errorText(body, reply));
    return body;
  }

  // ---- the runs list
  async function showRuns(gen) {
    draw(gen, h("h1", {}, "Runs"), h("p", { class: "muted" }, "Loading…"));
    let data;
    try {
      data = await getJson("/ui/api/runs");
    } catch (err) {
      return draw(gen, h("h1", {}, "Runs"), failure(err));
    }
    const filter = h("input", { id: "runs-filter", type: "search", placeholder: "Filter by name, job, model, status" });
    const rows = data.runs.map((run) =>
      h("tr", { "data-text": [run.id, run.job, run.model, run.status, run.sweep].join(" ").toLowerCase() },
        h("td", {}, when(run.started)),
        h("td", {}, h("a", { class: "run-link", href: runHref(run.id), "data-run": run.id }, run.id)),
        h("td", {}, run.job || ""),
        h("td", {}, run.model || ""),
        h("td", {}, badge(run.status)),
        h("td", { class: "num" }, number(run.counts.ok)),
        h("td", { class: "num" }, number(run.counts.failed)),
        h("td", { class: "num" }, number(run.counts.records_per_s, 1)),
        h("td", { class: "num" }, run.wall_time_s === null || run.wall_time_s === undefined ? "" : number(run.wall_time_s, 1) + " s")));
    filter.addEventListener("input", () => {
      const text = filter.value.trim().toLowerCase();
      for (const row of rows) row.hidden = Boolean(text) && !row.dataset.text.includes(text);
    });
    const sweeps = data.sweeps.length
      ? [h("h2", {}, "Sweeps"),
        h("table", { id: "sweeps" },
          h("thead", {}, h("tr", {}, ["Started", "Sweep", "Jobs", "Report"].map((c) => h("th", {}, c)))),
          h("tbody", {}, data.sweeps.map((sweep) => h("tr", {},
            h("td", {}, when(sweep.started)),
            h("td", {}, h("a", { class: "sweep-link", href: sweepHref(sweep.id), "data-sweep": sweep.id }, sweep.id)),
            h("td", { class: "num" }, sweep.runs.length),
            h("td", {}, sweep.report ? "report.md, report.csv, chart" : "none yet")))))]
      : [];
    draw(gen,
      h("h1", {}, "Runs"),
      h("p", { class: "muted" }, "Under ", h("code", {}, data.root), data.truncated ? " (the walk stopped early: too many folders)" : ""),
      sweeps,
      h("h2", {}, "Run dirs ", h("span", { class: "muted" }, "(" + data.runs.length + ")")),
      filter,
      data.runs.length
        ? h("table", { id: "runs" },
          h("thead", {}, h("tr", {}, ["Started", "Run", "Job", "Model", "Status", "OK", "Failed", "Records/s", "Wall time"].map((c) => h("th", {}, c)))),
          h("tbody", {}, rows))
        : h("p", { class: "muted" }, "No run dirs yet: run `python -m adam` and they appear here."));
  }

  // ---- one run: its manifest, results and errors
  async function showRun(gen, id) {
    draw(gen, h("h1", {}, "Run ", h("code", {}, id)), h("p", { class: "muted" }, "Loading…"));
    let run;
    try {
      run = await getJson(apiPath(id) + "/summary");
    } catch (err) {
      return draw(gen, h("h1", {}, "Run ", h("code", {}, id)), failure(err));
    }
    if (run.kind === "sweep") {
      location.replace(sweepHref(id));
      return;
    }
    const counts = run.counts || {};
    const facts = [
      ["Job", run.job], ["Model", run.model], ["Backend", run.backend], ["Started", when(run.started)],
      ["Finished", when(run.finished)], ["Wall time", run.wall_time_s === null || run.wall_time_s === undefined ? "" : run.wall_time_s + " s"],
      ["OK", number(counts.ok)], ["Failed", number(counts.failed)], ["Records/s", number(counts.records_per_s, 2)],
      ["Tokens/s", number(counts.tokens_per_s, 2)],
    ].filter(([, value]) => value !== undefined && value !== null && value !== "");
    const panel = h("section", { id: "panel" });
    const tabs = [
      ["results", "Results"], ["errors", "Errors"], ["manifest", "Manifest"],
    ].map(([kind, label]) => h("button", { class: "tab", id: "tab-" + kind, type: "button", onclick: () => open(kind) }, label));
    const open = (kind) => {
      for (const tab of tabs) tab.setAttribute("aria-selected", String(tab.id === "tab-" + kind));
      if (kind === "manifest") panel.replaceChildren(h("pre", { id: "manifest" }, JSON.stringify(run.manifest, null, 2)));
      else panel.replaceChildren(linesPanel(id, kind));
    };
    draw(gen,
      h("h1", {}, "Run ", h("code", { id: "run-id" }, id), " ", badge(run.status)),
      h("p", {}, h("a", { href: "#/runs" }, "← all runs"), run.sweep ? [" · ", h("a", { href: sweepHref(run.sweep), class: "parent-sweep" }, "its sweep")] : ""),
      run.error ? h("p", { class: "error" }, run.error) : "",
      h("dl", { class: "facts" }, facts.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
      h("div", { class: "tabs", role: "tablist" }, tabs),
      panel);
    open(run.files && run.files.results === undefined && run.files.errors !== undefined ? "errors" : "results");
  }

  // A page of results.jsonl or errors.jsonl, read by the server from its offset index; or the lines matching a search.
  function linesPanel(id, kind) {
    const state = { offset: 0, query: "", back: [] };
    const search = h("input", { id: "search", type: "search", placeholder: "Search " + kind + " by id or text" });
    const status = h("span", { id: "lines-status", class: "muted" });
    const prev = h("button", { id: "prev", type: "button", onclick: () => go(state.back.pop() ?? 0, false) }, "← Previous");
    const next = h("button", { id: "next", type: "button" }, "Next →");
    const jump = h("input", { id: "jump", type: "number", min: "1", placeholder: "line", title: "Go to line" });
    const body = h("tbody", {});
    const table = h("table", { id: kind, class: "lines" },
      h("thead", {}, h("tr", {}, (kind === "errors" ? ["Line", "Id", "Input line", "Code", "Message"] : ["Line", "Id", "Output", "Finish", "Tokens"]).map((c) => h("th", {}, c)))),
      body);
    const form = h("form", { class: "toolbar", onsubmit: (event) => { event.preventDefault(); state.query = search.value.trim(); state.back = []; go(0, false); } },
      search, h("button", { id: "search-go", type: "submit" }, "Search"),
      h("button", { type: "button", onclick: () => { search.value = ""; state.query = ""; state.back = []; go(0, false); } }, "Clear"),
      h("span", { class: "spacer" }), jump,
      h("button", { type: "button", onclick: () => { const line = Number(jump.value); if (line >= 1) { state.query = ""; search.value = ""; state.back = []; go(line - 1, false); } } }, "Go"));
    let loading = 0;

    async function go(offset, forward) {
      const mine = ++loading;
      if (forward) state.back.push(state.offset);
      state.offset = offset;
      status.textContent = state.query ? "Searching…" : "Loading…";
      const params = new URLSearchParams({ offset: String(offset), limit: String(PAGE_SIZE) });
      if (state.query) params.set("q", state.query);
      let page;
      try {
        page = await getJson(apiPath(id) + "/" + kind + "?" + params);
      } catch (err) {
        if (mine === loading) { status.textContent = ""; body.replaceChildren(h("tr", {}, h("td", { colspan: "5" }, failure(err)))); }
        return;
      }
      if (mine !== loading) return;
      body.replaceChildren(...page.lines.flatMap((line) => lineRows(kind, line)));
      if (!page.lines.length) body.append(h("tr", {}, h("td", { colspan: "5", class: "muted" }, state.query ? "No matches here." : "No lines.")));
      const total = number(page.total);
      if (state.query) {
        const end = page.next === null ? page.total : page.next;
        status.textContent = page.lines.length + " matching “" + state.query + "” in lines " + number(offset + 1) + "–" + number(end) + " of " + total +
          (page.next === null ? "" : " (more after)");
      } else {
        status.textContent = page.total ? "Lines " + number(offset + 1) + "–" + number(offset + page.lines.length) + " of " + total : "No " + kind + " in this run.";
      }
      prev.disabled = offset === 0 && !state.back.length;
      next.disabled = page.next === null;
      next.onclick = () => go(page.next, true);
    }
    go(0, false);
    return h("div", {}, form, h("div", { class: "pager" }, prev, next, status), table);
  }

  function shortened(value) {
    // vectors shortened for display: [0.1, 0.2, … 1024 numbers]
    if (Array.isArray(value) && value.length > 8 && value.every((v) => typeof v === "number")) {
      return value.slice(0, 4).concat(["… " + value.length + " numbers"]);
    }
    if (Array.isArray(value)) return value.map(shortened);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shortened(v)]));
    return value;
  }

  const body0 = (record) => (record.response && record.response.body) || {};

  function outputOf(record) {
    if (typeof record.text === "string") return record.text;
    if (Array.isArray(record.embedding)) return "embedding, " + record.embedding.length + " dimensions";
    if (Array.isArray(record.hits)) return record.hits.length + " hits";
    const body = record.response && record.response.body; // a Batch API output line
    const choice = body && Array.isArray(body.choices) && body.choices[0];
    if (choice && choice.message && typeof choice.message.content === "string") return choice.message.content;
    if (record.error) return "error: " + (record.error.message || JSON.stringify(record.error));
    return JSON.stringify(shortened(record));
  }

  function lineRows(kind, line) {
    const record = line.record;
    let cells;
    if (!record) {
      cells = ["", h("span", { class: "error" }, "not a JSON object: " + line.raw), "", ""];
    } else if (kind === "errors") {
      const error = record.error && typeof record.error === "object" ? record.error : { message: record.error };
      cells = [record.id ?? record.custom_id ?? "", record.line ?? "", error.code ?? "", error.message ?? ""];
    } else {
      const output = outputOf(record);
      const usage = record.usage || {};
      const finish = record.finish_reason ?? (body0(record).choices || [{}])[0].finish_reason ?? "";
      cells = [record.id ?? record.custom_id ?? "", h("div", { class: "text" }, output), finish, number(usage.total_tokens ?? body0(record).usage?.total_tokens)];
    }
    const detail = h("tr", { class: "detail", hidden: true }, h("td", { colspan: "5" }, h("pre", {}, record ? JSON.stringify(shortened(record), null, 2) : line.raw)));
    const row = h("tr", { class: "line", "data-line": line.line, onclick: () => { detail.hidden = !detail.hidden; } },
      h("td", { class: "num" }, line.line + 1), cells.map((cell) => h("td", {}, cell)));
    return [row, detail];
  }

  // ---- a sweep: its report and chart, and its jobs
  async function showSweep(gen, id) {
    draw(gen, h("h1", {}, "Sweep ", h("code", {}, id)), h("p", { class: "muted" }, "Loading…"));
    let report;
    try {
      report = await getJson(apiPath(id) + "/report");
    } catch (err) {
      return draw(gen, h("h1", {}, "Sweep ", h("code", {}, id)), h("p", {}, h("a", { href: "#/runs" }, "← all runs")), failure(err));
    }
    const chart = h("figure", { id: "chart" });
    if (report.chart) {
      api(apiPath(id) + "/report.png").then(async (reply) => {
        if (!reply.ok) throw new Error("report.png: " + reply.status);
        const url = URL.createObjectURL(await reply.blob());
        chart.replaceChildren(h("img", { id: "chart-img", src: url, alt: "report.png: records/s, tokens/s and peak memory per job" }), h("figcaption", { class: "muted" }, "report.png"));
      }).catch((err) => chart.replaceChildren(failure(err)));
    }
    const columns = ["job", "overrides", "model", "status", "records_ok", "records_failed", "records_per_s", "tokens_per_s", "peak_memory_mb", "wall_time_s"];
    const most = Math.max(0, ...report.rows.map((r) => Number(r.records_per_s) || 0));
    const bars = h("div", { id: "bars", class: "bars" }, h("h2", {}, "Records/s by job"), report.rows.map((row) =>
      h("div", { class: "bar-row" },
        h("span", { class: "bar-label" }, row.job + (row.overrides ? " · " + row.overrides : "")),
        h("span", { class: "bar-track" }, h("span", { class: "bar", "data-width": most ? Math.round(100 * (Number(row.records_per_s) || 0) / most) : 0 })),
        h("span", { class: "num" }, number(row.records_per_s, 1)))));
    for (const bar of bars.querySelectorAll(".bar")) bar.style.width = bar.dataset.width + "%"; // CSSOM: allowed by the page's CSP
    draw(gen,
      h("h1", {}, "Sweep ", h("code", { id: "sweep-id" }, id)),
      h("p", {}, h("a", { href: "#/runs" }, "← all runs")),
      chart,
      report.rows.length ? bars : "",
      h("h2", {}, "report.csv"),
      h("table", { id: "report" },
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c.replace(/_/g, " "))))),
        h("tbody", {}, report.rows.map((row) => h("tr", {}, columns.map((c) =>
          h("td", { class: c === "job" || c === "overrides" || c === "model" || c === "status" ? "" : "num" },
            c === "job" && row.run ? h("a", { class: "run-link", href: runHref(row.run), "data-run": row.run }, row.job)
              : c === "status" ? badge(row.status) : row[c] ?? "")))))),
      report.markdown ? h("details", {}, h("summary", {}, "report.md"), h("pre", {}, report.markdown)) : "");
  }

  // ---- the Batch API's batches, refreshed while any is running
  async function showBatches(gen) {
    let data;
    try {
      data = await getJson("/ui/api/batches");
    } catch (err) {
      return draw(gen, h("h1", {}, "Batches"), failure(err));
    }
    if (!data.enabled) {
      return draw(gen, h("h1", {}, "Batches"), h("p", { class: "muted" }, "The Batch API is off: the server was started without a state dir (job.state_dir)."));
    }
    const active = data.data.some((b) => ["validating", "in_progress", "finalizing", "cancelling"].includes(b.status));
    draw(gen,
      h("h1", {}, "Batches"),
      h("p", { class: "muted" }, "Created through /v1/files and /v1/batches (the OpenAI Batch API)." + (active ? " Refreshing while batches run." : "")),
      data.data.length
        ? h("table", { id: "batches" },
          h("thead", {}, h("tr", {}, ["Created", "Batch", "Endpoint", "Status", "Progress", "Done / failed / total", "Run"].map((c) => h("th", {}, c)))),
          h("tbody", {}, data.data.map((b) => {
            const c = b.request_counts || { total: 0, completed: 0, failed: 0 };
            return h("tr", { "data-batch": b.id },
              h("td", {}, b.created_at ? new Date(b.created_at * 1000).toISOString().replace("T", " ").slice(0, 19) : ""),
              h("td", {}, h("code", {}, b.id)),
              h("td", {}, b.endpoint),
              h("td", {}, badge(b.status)),
              h("td", {}, h("progress", { max: String(c.total || 1), value: String(c.completed + c.failed) })),
              h("td", { class: "num" }, c.completed + " / " + c.failed + " / " + c.total),
              h("td", {}, b.run ? h("a", { class: "run-link", href: runHref(b.run), "data-run": b.run }, "results") : ""));
          })))
        : h("p", { class: "muted" }, "No batches yet."));
    if (active && gen === generation) timers.push(setTimeout(() => gen === generation && showBatches(gen), 2000));
  }

  // ---- the playground: a chat with the served model, streamed from the server's own /v1/chat/completions
  const chat = { messages: [], controller: null };

  async function showChat(gen) {
    let info;
    try {
      info = await getJson("/ui/api/info");
    } catch (err) {
      return draw(gen, h("h1", {}, "Playground"), failure(err));
    }
    const models = info.models.filter((m) => m.chat);
    if (!models.length) return draw(gen, h("h1", {}, "Playground"), h("p", { class: "muted" }, "This server serves no chat model."));
    const model = h("select", { id: "chat-model" }, models.map((m) => h("option", { value: m.id }, m.id)));
    const system = h("input", { id: "chat-system", type: "text", placeholder: "System prompt (optional)" });
    const temperature = h("input", { id: "chat-temperature", type: "number", min: "0", max: "2", step: "0.1", value: "0.7", title: "temperature" });
    const log = h("div", { id: "chat-log", class: "chat-log" });
    const input = h("textarea", { id: "chat-input", rows: "3", placeholder: "Say something (Enter sends, Shift+Enter for a new line)" });
    const send = h("button", { id: "chat-send", type: "submit" }, "Send");
    const stop = h("button", { id: "chat-stop", type: "button", disabled: true, onclick: () => chat.controller && chat.controller.abort() }, "Stop");
    const status = h("span", { id: "chat-status", class: "muted" });
    const bubble = (role, text) => h("div", { class: "msg " + role }, h("div", { class: "role" }, role), h("div", { class: "content" }, text));
    for (const m of chat.messages) log.append(bubble(m.role, m.content));
    const clear = h("button", { type: "button", onclick: () => { chat.messages = []; log.replaceChildren(); } }, "Clear");
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
    });
    const form = h("form", { id: "chat-form", onsubmit: async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text || chat.controller) return;
      input.value = "";
      chat.messages.push({ role: "user", content: text });
      log.append(bubble("user", text));
      const answer = bubble("assistant", "");
      const content = answer.querySelector(".content");
      const thinking = h("div", { class: "thinking", hidden: true });
      content.before(thinking);
      log.append(answer);
      chat.controller = new AbortController();
      send.disabled = true; stop.disabled = false; status.textContent = "Streaming…";
      const messages = (system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []).concat(chat.messages);
      let usage = null;
      try {
        await streamChat({ model: model.value, messages, stream: true, stream_options: { include_usage: true }, temperature: Number(temperature.value) },
          (delta, chunk) => {
            if (delta.reasoning_content || delta.reasoning) { thinking.hidden = false; thinking.append(delta.reasoning_content || delta.reasoning); }
            if (delta.content) content.append(delta.content); // a text node per piece: never markup
            if (chunk.usage) usage = chunk.usage;
            log.scrollTop = log.scrollHeight;
          }, chat.controller.signal);
        status.textContent = usage ? "Done: " + usage.completion_tokens + " tokens." : "Done.";
      } catch (err) {
        status.textContent = err.name === "AbortError" ? "Stopped." : "";
        if (err.name !== "AbortError") answer.append(failure(err));
      } finally {
        chat.messages.push({ role: "assistant", content: content.textContent });
        answer.classList.add("done");
        chat.controller = null; send.disabled = false; stop.disabled = true;
      }
    } }, input, h("div", { class: "toolbar" }, send, stop, clear, status));
    draw(gen,
      h("h1", {}, "Playground"),
      h("div", { class: "toolbar" }, h("label", {}, "Model ", model), h("label", {}, "Temperature ", temperature)),
      system, log, form);
    input.focus();
  }

  async function streamChat(body, onDelta, signal) {
    const reply = await api("/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
    if (!reply.ok) throw new Error(errorText(await reply.json().catch(() => null), reply));
    const reader = reply.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) { // one server-sent event per blank-line-ended block
        const data = buffer.slice(0, cut).split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        buffer = buffer.slice(cut + 2);
        if (!data) continue;
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
        onDelta((chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {}, chunk);
      }
    }
  }

  // ---- navigation: #/runs, #/run/<name>, #/sweep/<name>, #/batches, #/chat
  const routes = [
    [/^#\/run\/(.+)$/, (gen, m) => showRun(gen, decodeURIComponent(m[1])), "nav-runs"],
    [/^#\/sweep\/(.+)$/, (gen, m) => showSweep(gen, decodeURIComponent(m[1])), "nav-runs"],
    [/^#\/batches$/, (gen) => showBatches(gen), "nav-batches"],
    [/^#\/chat$/, (gen) => showChat(gen), "nav-chat"],
    [/^/, (gen) => showRuns(gen), "nav-runs"],
  ];

  function route() {
    const gen = ++generation;
    for (const t of timers) clearTimeout(t);
    timers = [];
    const hash = location.hash || "#/runs";
    for (const [pattern, show, nav] of routes) {
      const match = hash.match(pattern);
      if (!match) continue;
      for (const link of document.querySelectorAll("nav a")) link.toggleAttribute("aria-current", link.id === nav);
      show(gen, match);
      return;
    }
  }

  async function served() {
    try {
      const info = await getJson("/ui/api/info");
      document.getElementById("served").textContent = "serving " + info.models.map((m) => m.id).join(", ");
    } catch (err) {
      document.getElementById("served").textContent = "";
    }
  }

  window.addEventListener("hashchange", route);
  route();
  served();
})();
