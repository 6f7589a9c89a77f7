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

  // The one place markup enters the page: an answer's Markdown, rendered and cleaned by the server (markdown-it-py
  // with raw HTML off, then nh3 to a short list of tags, no images, no attributes but a link's href).
  function sanitizedHtml(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    for (const a of template.content.querySelectorAll("a")) { a.target = "_blank"; a.rel = "noopener noreferrer nofollow"; }
    return h("div", { class: "markdown" }, template.content);
  }

  function askedNode(asked) {
    if (asked === null || asked === undefined) return h("p", { class: "muted" }, "Not kept in this run (job.keep_input=false, or an older run).");
    if (typeof asked === "string") return h("div", { class: "text-full" }, asked);
    if (Array.isArray(asked) && asked.every((m) => m && typeof m === "object" && "role" in m)) {
      return h("div", {}, asked.map((m) => h("div", { class: "msg " + String(m.role).replace(/[^a-z]/g, "") },
        h("div", { class: "role" }, m.role), h("div", { class: "content" }, typeof m.content === "string" ? m.content : JSON.stringify(m.content)))));
    }
    return h("div", { class: "text-full" }, JSON.stringify(asked, null, 2));
  }

  function answerNode(text, html) {
    if (html) return sanitizedHtml(html);
    return h("div", { class: "text-full" }, text ?? "");
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
  const compareHref = (ids) => "#/compare?" + new URLSearchParams(ids.map((id) => ["runs", id]));
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
    const picks = []; // in the order they were ticked: the first is the one the others are compared with
    const compareGo = h("button", { id: "compare-go", type: "button", disabled: true, onclick: () => { location.hash = compareHref(picks); } }, "Compare selected");
    const picked = (event) => {
      const at = picks.indexOf(event.target.value);
      if (event.target.checked && at < 0) picks.push(event.target.value);
      if (!event.target.checked && at >= 0) picks.splice(at, 1);
      compareGo.disabled = picks.length < 2;
    };
    const rows = data.runs.map((run) =>
      h("tr", { "data-text": [run.id, run.job, run.model, run.status, run.sweep].join(" ").toLowerCase() },
        h("td", {}, h("input", { type: "checkbox", class: "pick", value: run.id, title: "Compare this run", "aria-label": "pick " + run.id, onchange: picked })),
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
      h("div", { class: "toolbar" }, filter, compareGo, h("span", { class: "muted" }, "Tick two runs or more to see their answers side by side (the first ticked is the base).")),
      data.runs.length
        ? h("table", { id: "runs" },
          h("thead", {}, h("tr", {}, ["", "Started", "Run", "Job", "Model", "Status", "OK", "Failed", "Records/s", "Wall time"].map((c) => h("th", {}, c)))),
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
      const v = line.view || {};
      const output = v.answer ?? outputOf(record);
      const usage = record.usage || {};
      const finish = record.finish_reason ?? (body0(record).choices || [{}])[0].finish_reason ?? "";
      cells = [v.id ?? record.custom_id ?? record.id ?? "", h("div", { class: "text" }, output), finish, number(usage.total_tokens ?? body0(record).usage?.total_tokens)];
    }
    const seen = line.view;
    const qa = seen ? h("div", { class: "qa" },
      h("section", { class: "asked" }, h("h3", {}, "Asked"), askedNode(seen.asked)),
      h("section", { class: "answer" }, h("h3", {}, "Answer"), answerNode(seen.answer ?? outputOf(record), seen.answer_html))) : "";
    const detail = h("tr", { class: "detail", hidden: true }, h("td", { colspan: "5" }, qa,
      h("pre", { class: "json" }, record ? JSON.stringify(shortened(record), null, 2) : line.raw)));
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
    const jobRuns = report.rows.map((row) => row.run).filter(Boolean);
    draw(gen,
      h("h1", {}, "Sweep ", h("code", { id: "sweep-id" }, id)),
      h("p", {}, h("a", { href: "#/runs" }, "← all runs"),
        jobRuns.length > 1 ? [" · ", h("a", { id: "compare-sweep", href: compareHref(jobRuns) }, "compare the jobs' answers")] : ""),
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

  // ---- runs side by side: a page of the first run's results, each id's answer in every run, differences marked
  function words(text) { return String(text ?? "").split(/(\s+)/).filter((t) => t !== ""); }

  // The base's words against another answer's, by their longest common subsequence: [kind, text] pieces.
  function wordDiff(base, other) {
    const a = words(base), b = words(other);
    if (a.length * b.length > 4e6) return null; // too long to compare word by word: the row is marked all the same
    const table = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
    for (let i = a.length - 1; i >= 0; i--) for (let j = b.length - 1; j >= 0; j--) {
      table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    }
    const out = [];
    let i = 0, j = 0;
    while (i < a.length || j < b.length) {
      if (i < a.length && j < b.length && a[i] === b[j]) { out.push(["same", a[i]]); i++; j++; }
      else if (j < b.length && (i === a.length || table[i][j + 1] >= table[i + 1][j])) out.push(["add", b[j++]]);
      else out.push(["del", a[i++]]);
    }
    return out.reduce((joined, piece) => { // neighbours of one kind read as one change
      const last = joined[joined.length - 1];
      if (last && last[0] === piece[0]) last[1] += piece[1];
      else joined.push([...piece]);
      return joined;
    }, []);
  }

  function diffNode(base, other) {
    const pieces = wordDiff(base, other);
    if (!pieces) return h("div", { class: "text-full" }, other);
    return h("div", { class: "text-full" }, pieces.map(([kind, text]) => {
      if (kind === "same") return text;
      const [, before, words, after] = text.match(/^(\s*)([\s\S]*?)(\s*)$/); // the spaces around a change are not marked
      return [before, words ? h(kind === "add" ? "ins" : "del", { class: "diff-" + kind }, words) : "", after];
    }));
  }

  async function showCompare(gen, runs) {
    const title = h("h1", {}, "Compare ", runs.length, " runs");
    if (runs.length < 2) return draw(gen, title, h("p", { class: "error" }, "Pick two runs or more."));
    const state = { offset: 0, back: [] };
    const onlyDiff = h("input", { id: "only-differs", type: "checkbox" });
    const status = h("span", { id: "compare-status", class: "muted" });
    const prev = h("button", { id: "compare-prev", type: "button", onclick: () => go(state.back.pop() ?? 0) }, "← Previous");
    const next = h("button", { id: "compare-next", type: "button" }, "Next →");
    const body = h("tbody", {});
    const table = h("table", { id: "compare", class: "compare" },
      h("colgroup", {}, h("col", { class: "c-id" }), runs.map(() => h("col", {}))),
      h("thead", {}, h("tr", {}, h("th", {}, "Id · asked"), runs.map((run, k) =>
        h("th", {}, k === 0 ? "" : "vs first: ", h("a", { class: "run-link", href: runHref(run), "data-run": run }, run))))),
      body);
    const filter = () => { for (const row of body.querySelectorAll("tr.pair")) row.hidden = onlyDiff.checked && !row.classList.contains("differs"); };
    onlyDiff.addEventListener("change", filter);
    async function go(offset, forward) {
      if (forward) state.back.push(state.offset);
      state.offset = offset;
      status.textContent = "Loading…";
      const params = new URLSearchParams(runs.map((r) => ["runs", r]));
      params.set("offset", String(offset));
      params.set("limit", String(PAGE_SIZE));
      let page;
      try {
        page = await getJson("/ui/api/compare?" + params);
      } catch (err) {
        status.textContent = "";
        return body.replaceChildren(h("tr", {}, h("td", { colspan: String(runs.length + 1) }, failure(err))));
      }
      if (gen !== generation) return;
      body.replaceChildren(...page.rows.map((row) => {
        const base = row.answers[0] && row.answers[0].text;
        return h("tr", { class: "pair" + (row.differs ? " differs" : ""), "data-id": String(row.id) },
          h("td", { class: "id-cell" }, h("div", {}, h("code", {}, row.id), row.differs ? [" ", h("span", { class: "badge status-partial" }, "differs")] : ""),
            h("div", { class: "asked" }, askedNode(row.asked))),
          row.answers.map((answer, k) => h("td", { class: "answer" },
            answer === null ? h("span", { class: "muted missing" }, "no result for this id")
              : k > 0 && row.differs ? diffNode(base, answer.text) : answerNode(answer.text, answer.html))));
      }));
      const differing = page.rows.filter((r) => r.differs).length;
      status.textContent = page.total ? "Ids " + number(offset + 1) + "–" + number(offset + page.rows.length) + " of " + number(page.total) +
        " in the first run; " + differing + " differ on this page" : "The first run has no results.";
      prev.disabled = offset === 0 && !state.back.length;
      next.disabled = page.next === null;
      next.onclick = () => go(page.next, true);
      filter();
    }
    draw(gen, title,
      h("p", {}, h("a", { href: "#/runs" }, "← all runs"), " · rows are the first run's ids; words another run adds are ",
        h("ins", { class: "diff-add" }, "marked"), ", words it leaves out ", h("del", { class: "diff-del" }, "struck"), "."),
      h("div", { class: "pager" }, prev, next, h("label", {}, onlyDiff, " only rows that differ"), status),
      table);
    go(0, false);
  }

  // ---- the Batch API's batches, refreshed while any is running; upload and create, cancel, download
  const ACTIVE = ["validating", "in_progress", "finalizing", "cancelling"];

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
    const note = h("p", { id: "batches-note", class: "muted" });
    const holder = h("div", { id: "batches-holder" });
    let pending = null; // one refresh timer at a time, however often a click asks for one
    const refresh = async () => {
      clearTimeout(pending);
      if (gen !== generation) return;
      let fresh = data;
      data = null;
      if (!fresh) {
        try {
          fresh = await getJson("/ui/api/batches");
        } catch (err) {
          return holder.replaceChildren(failure(err));
        }
      }
      if (gen !== generation) return;
      const active = fresh.data.some((b) => ACTIVE.includes(b.status));
      note.textContent = "Created here or through /v1/files and /v1/batches (the OpenAI Batch API)." + (active ? " Refreshing while batches run." : "");
      holder.replaceChildren(fresh.data.length ? batchesTable(fresh.data, refresh) : h("p", {}, "No batches yet."));
      if (active) { pending = setTimeout(refresh, 2000); timers.push(pending); }
    };
    draw(gen, h("h1", {}, "Batches"), note, uploadForm(refresh), holder);
    refresh();
  }

  function uploadForm(refresh) {
    const file = h("input", { id: "batch-file", type: "file", accept: ".jsonl,application/jsonl,application/x-ndjson" });
    const endpoint = h("select", { id: "batch-endpoint" }, ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"].map((e) => h("option", { value: e }, e)));
    const status = h("span", { id: "batch-status", class: "muted" });
    const go = h("button", { id: "batch-create", type: "submit" }, "Upload and create batch");
    return h("form", { class: "upload", onsubmit: async (event) => {
      event.preventDefault();
      if (!file.files.length) { status.textContent = "Choose a JSONL file of requests first."; return; }
      go.disabled = true;
      status.textContent = "Uploading…";
      try {
        const form = new FormData();
        form.append("purpose", "batch");
        form.append("file", file.files[0]);
        const uploaded = await api("/v1/files", { method: "POST", body: form });
        const upBody = await uploaded.json().catch(() => null);
        if (!uploaded.ok) throw new Error("upload: " + errorText(upBody, uploaded));
        status.textContent = "Creating the batch…";
        const created = await api("/v1/batches", { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ input_file_id: upBody.id, endpoint: endpoint.value, completion_window: "24h" }) });
        const batch = await created.json().catch(() => null);
        if (!created.ok) throw new Error(errorText(batch, created));
        status.textContent = "Created " + batch.id + ".";
        file.value = "";
        refresh();
      } catch (err) {
        status.textContent = String(err.message || err);
      } finally {
        go.disabled = false;
      }
    } }, h("label", {}, "Requests (JSONL) ", file), h("label", {}, "Endpoint ", endpoint), go, status);
  }

  async function download(fileId, name) {
    const reply = await api("/v1/files/" + encodeURIComponent(fileId) + "/content");
    if (!reply.ok) throw new Error(errorText(await reply.json().catch(() => null), reply));
    const url = URL.createObjectURL(await reply.blob());
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function batchesTable(batches, refresh) {
    return h("table", { id: "batches" },
      h("thead", {}, h("tr", {}, ["Created", "Batch", "Endpoint", "Status", "Progress", "Done / failed / total", "Run", "Actions"].map((c) => h("th", {}, c)))),
      h("tbody", {}, batches.map((b) => {
        const c = b.request_counts || { total: 0, completed: 0, failed: 0 };
        const said = h("span", { class: "error" });
        const act = (label, cls, fn) => h("button", { type: "button", class: cls, onclick: async (event) => {
          event.target.disabled = true;
          try { await fn(); } catch (err) { said.textContent = String(err.message || err); } finally { event.target.disabled = false; }
        } }, label);
        const actions = [
          ACTIVE.includes(b.status) && b.status !== "cancelling" ? act("Cancel", "batch-cancel", async () => {
            const reply = await api("/v1/batches/" + encodeURIComponent(b.id) + "/cancel", { method: "POST" });
            if (!reply.ok) throw new Error(errorText(await reply.json().catch(() => null), reply));
            refresh();
          }) : "",
          b.output_file_id ? act("Output", "batch-output", () => download(b.output_file_id, b.id + "_output.jsonl")) : "",
          b.error_file_id ? act("Errors", "batch-errors", () => download(b.error_file_id, b.id + "_errors.jsonl")) : "",
          said,
        ];
        return h("tr", { "data-batch": b.id },
          h("td", {}, b.created_at ? new Date(b.created_at * 1000).toISOString().replace("T", " ").slice(0, 19) : ""),
          h("td", {}, h("code", {}, b.id)),
          h("td", {}, b.endpoint),
          h("td", {}, badge(b.status)),
          h("td", {}, h("progress", { max: String(c.total || 1), value: String(c.completed + c.failed) })),
          h("td", { class: "num" }, c.completed + " / " + c.failed + " / " + c.total),
          h("td", {}, b.run ? h("a", { class: "run-link", href: runHref(b.run), "data-run": b.run }, "results") : ""),
          h("td", { class: "actions" }, actions));
      })));
  }

  // ---- the playground: a chat with the served model, streamed from the server's own /v1/chat/completions
  // The conversation and the settings live in the tab (session storage): a reload or another view keeps them.
  const CHAT_STORE = "adam.chat";
  const chat = { messages: [], settings: {}, controller: null };
  try {
    const kept = JSON.parse(sessionStorage.getItem(CHAT_STORE) || "{}");
    if (Array.isArray(kept.messages)) chat.messages = kept.messages.filter((m) => m && typeof m.role === "string" && typeof m.content === "string");
    if (kept.settings && typeof kept.settings === "object") chat.settings = kept.settings;
  } catch (err) { sessionStorage.removeItem(CHAT_STORE); }
  const keepChat = () => sessionStorage.setItem(CHAT_STORE, JSON.stringify({ messages: chat.messages, settings: chat.settings }));

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
    const maxTokens = h("input", { id: "chat-max-tokens", type: "number", min: "1", step: "1", placeholder: "default", title: "max_tokens" });
    const topP = h("input", { id: "chat-top-p", type: "number", min: "0", max: "1", step: "0.05", placeholder: "1", title: "top_p" });
    const seed = h("input", { id: "chat-seed", type: "number", step: "1", placeholder: "none", title: "seed" });
    const json = h("input", { id: "chat-json", type: "checkbox", title: "response_format: json_object" });
    const fields = { model, system, temperature, max_tokens: maxTokens, top_p: topP, seed };
    for (const [name, field] of Object.entries(fields)) {
      if (chat.settings[name] !== undefined && (name !== "model" || models.some((m) => m.id === chat.settings[name]))) field.value = chat.settings[name];
      field.addEventListener("change", () => { chat.settings[name] = field.value; keepChat(); });
    }
    json.checked = Boolean(chat.settings.json);
    json.addEventListener("change", () => { chat.settings.json = json.checked; keepChat(); });
    const log = h("div", { id: "chat-log", class: "chat-log" });
    const input = h("textarea", { id: "chat-input", rows: "3", placeholder: "Say something (Enter sends, Shift+Enter for a new line)" });
    const send = h("button", { id: "chat-send", type: "submit" }, "Send");
    const stop = h("button", { id: "chat-stop", type: "button", disabled: true, onclick: () => chat.controller && chat.controller.abort() }, "Stop");
    const status = h("span", { id: "chat-status", class: "muted" });
    const bubble = (role, text) => h("div", { class: "msg " + role }, h("div", { class: "role" }, role), h("div", { class: "content" }, text));
    for (const m of chat.messages) log.append(bubble(m.role, m.content));
    const clear = h("button", { id: "chat-clear", type: "button", onclick: () => { chat.messages = []; keepChat(); log.replaceChildren(); } }, "Clear");
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
    });
    const form = h("form", { id: "chat-form", onsubmit: async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text || chat.controller) return;
      input.value = "";
      chat.messages.push({ role: "user", content: text });
      keepChat();
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
        const body = { model: model.value, messages, stream: true, stream_options: { include_usage: true }, temperature: Number(temperature.value) };
        if (maxTokens.value !== "") body.max_tokens = Number(maxTokens.value);
        if (topP.value !== "") body.top_p = Number(topP.value);
        if (seed.value !== "") body.seed = Number(seed.value);
        if (json.checked) body.response_format = { type: "json_object" };
        await streamChat(body,
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
        keepChat();
        answer.classList.add("done");
        chat.controller = null; send.disabled = false; stop.disabled = true;
      }
    } }, input, h("div", { class: "toolbar" }, send, stop, clear, status));
    draw(gen,
      h("h1", {}, "Playground"),
      h("div", { class: "toolbar" }, h("label", {}, "Model ", model), h("label", {}, "Temperature ", temperature),
        h("label", {}, "Max tokens ", maxTokens), h("label", {}, "Top p ", topP), h("label", {}, "Seed ", seed),
        h("label", { title: "response_format: {type: json_object}" }, json, " JSON object")),
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

  // ---- navigation: #/runs, #/run/<name>, #/sweep/<name>, #/compare?runs=<a>&runs=<b>, #/batches, #/chat
  const routes = [
    [/^#\/run\/(.+)$/, (gen, m) => showRun(gen, decodeURIComponent(m[1])), "nav-runs"],
    [/^#\/sweep\/(.+)$/, (gen, m) => showSweep(gen, decodeURIComponent(m[1])), "nav-runs"],
    [/^#\/compare\?(.*)$/, (gen, m) => showCompare(gen, new URLSearchParams(m[1]).getAll("runs")), "nav-runs"],
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
