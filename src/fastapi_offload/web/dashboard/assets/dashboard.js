// The fastapi-offload dashboard. Every string shown is user data (task names, errors,
// stacks): it reaches the page through textContent only, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const pageError = $("page-error");

window.addEventListener("error", (event) => {
  pageError.textContent = `Page error: ${event.message}`;
});
window.addEventListener("unhandledrejection", (event) => {
  pageError.textContent = `Page error: ${event.reason}`;
});

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function setText(node, text) {
  const value = text === undefined || text === null ? "" : String(text);
  if (node.textContent !== value) node.textContent = value; // keeps a selection alive
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(1)} s`;
  if (value < 3600) return `${Math.floor(value / 60)}m ${Math.floor(value % 60)}s`;
  return `${Math.floor(value / 3600)}h ${Math.floor((value % 3600) / 60)}m`;
}

function ago(now, then) {
  if (!then) return "";
  const gap = Math.max(now - then, 0);
  if (gap < 60) return `${Math.floor(gap)}s ago`;
  if (gap < 3600) return `${Math.floor(gap / 60)}m ago`;
  return `${Math.floor(gap / 3600)}h ago`;
}

function until(now, then) {
  if (!then) return "";
  const gap = then - now;
  if (gap < 1) return "now";
  if (gap < 60) return `in ${Math.ceil(gap)}s`;
  if (gap < 3600) return `in ${Math.floor(gap / 60)}m`;
  if (gap < 86400) return `in ${Math.floor(gap / 3600)}h ${Math.floor((gap % 3600) / 60)}m`;
  return `in ${Math.floor(gap / 86400)}d`;
}

// `package.module.function` -> ["function", "package.module"]: the name that tells tasks
// apart first, its module below.
function splitName(name) {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? [name, ""] : [name.slice(dot + 1), name.slice(0, dot)];
}

function firstLine(text, limit = 140) {
  const line = String(text).split("\n")[0];
  return line.length > limit ? `${line.slice(0, limit - 1)}…` : line;
}

// A <details> whose summary is the first line and whose body is the whole text; kept
// across updates so that an opened one stays open.
function disclosure(holder, text, summaryText) {
  let details = holder.querySelector("details");
  if (!text) {
    if (details) details.remove();
    return;
  }
  if (!details) {
    details = el("details");
    details.append(el("summary"), el("pre"));
    holder.append(details);
  }
  setText(details.firstChild, summaryText ?? firstLine(text));
  setText(details.lastChild, text);
}

// -- lanes -----------------------------------------------------------------------------

const lanes = new Map();

function renderLane(lane) {
  let view = lanes.get(lane.name);
  if (!view) {
    const card = el("section", "card lane");
    const head = el("div", "lane-head");
    const big = el("div", "big");
    const running = el("span");
    const capacity = el("span", "muted");
    big.append(running, capacity);
    head.append(el("h2", "", lane.name), big);
    const bar = el("progress");
    const counts = el("dl", "counts");
    const cells = {};
    for (const [key, label] of [
      ["waiting", "waiting"], ["succeeded", "done"], ["failed", "failed"],
      ["cancelled", "cancelled"], ["retried", "retried"], ["abandoned", "abandoned"],
    ]) {
      cells[key] = el("dd", key);
      const term = el("dt", "", label);
      if (key === "abandoned") {
        term.title = "threads still running a task that timed out: each holds a slot";
      }
      counts.append(term, cells[key]);
    }
    card.append(head, bar, counts);
    $("lanes").append(card);
    view = { running, capacity, bar, cells };
    lanes.set(lane.name, view);
  }
  // The loop lane has no workers: its bound counts running tasks, there is no "full".
  const unbounded = lane.capacity >= lane.max_pending;
  setText(view.running, lane.running);
  setText(view.capacity, unbounded ? " running" : ` / ${lane.capacity} running`);
  view.bar.max = Math.max(lane.capacity, 1);
  view.bar.value = lane.running;
  view.bar.classList.toggle("invisible", unbounded); // keeps the cards' rows aligned
  for (const key of Object.keys(view.cells)) setText(view.cells[key], lane[key]);
}

// -- tasks -----------------------------------------------------------------------------

const rows = new Map();

function taskRow(id) {
  let row = rows.get(id);
  if (row) return row;
  const tr = el("tr");
  tr.dataset.id = id;
  const cells = Array.from({ length: 7 }, () => el("td"));
  cells[3].className = cells[5].className = "num";
  tr.append(...cells);
  const state = el("span", "state");
  const attempts = el("div", "sub");
  cells[0].append(state, attempts);
  const title = el("div", "mono");
  const name = el("span", "name");
  const call = el("span", "muted");
  const sub = el("span", "sub");
  const process = el("span", "sub process");
  title.append(name, call, sub, process);
  const result = el("div", "mono result"); // one line; the whole kept text when opened
  const problem = el("div");
  cells[1].append(title, result, problem);
  const bar = el("progress");
  const message = el("div", "message");
  cells[4].append(bar, message);
  row = { tr, cells, state, attempts, name, call, sub, process, result, problem, bar, message };
  row.button = null;
  rows.set(id, row);
  return row;
}

// Computed here rather than sent: a running task's duration changes with every tick of
// the clock, and a patch carries only what changed.
function duration(task, now) {
  if (task.started_at === null || task.started_at === undefined) return null;
  return Math.max((task.finished_at ?? now) - task.started_at, 0);
}

function renderTask(task, snapshot) {
  const row = taskRow(task.id);
  setText(row.state, task.state);
  row.state.dataset.state = task.state;
  const retrying = task.live && task.attempts > 0 && task.state === "pending";
  const tries = task.retries === null ? "" : ` of ${task.retries + 1}`;
  setText(row.attempts, task.attempts > 1 || retrying ? `attempt ${task.attempts}${tries}` : "");
  const [short] = splitName(task.name);
  setText(row.name, short);
  row.name.title = task.name; // the module on hover: one line per task
  // Another process's row has no arguments: they never reach the store as text.
  const shown = snapshot.show_arguments && task.arguments !== undefined;
  setText(row.call, shown ? `(${task.arguments ?? ""})` : "");
  // The id's last 8 digits: its random part (the first 12 are the time it was made).
  setText(row.sub, ` ${task.id.slice(-8)}`);
  row.sub.title = task.id;
  // With a shared store every row names its process (host:pid); this page's is marked.
  const where = snapshot.shared ? task.process || "an unknown process" : "";
  setText(row.process, where ? ` · ${where}` : "");
  row.process.title = task.here ? "the process that served this page" : "another process";
  row.process.classList.toggle("elsewhere", !task.here);
  // A kept result can be long JSON: one line, cut, the whole kept text when clicked.
  disclosure(row.result, task.result === null ? null : `→ ${task.result}`);
  const label = retrying ? `retrying after: ${firstLine(task.error || "")}` : undefined;
  disclosure(row.problem, task.error, label);
  row.problem.dataset.state = retrying ? "retrying" : task.state; // colours the summary
  setText(row.cells[2], task.lane);
  // A scheduled task has no duration yet: when it is due instead (this process's rows).
  const due = task.state === "scheduled" && task.due_at ? task.due_at - snapshot.now : null;
  const took = seconds(duration(task, snapshot.now));
  setText(row.cells[3], due === null ? took : `in ${seconds(Math.max(due, 0))}`);
  row.cells[3].title = due === null ? "" : `due ${new Date(task.due_at * 1000).toLocaleString()}`;
  const progress = task.progress;
  row.bar.hidden = progress === null;
  if (progress !== null) row.bar.value = progress;
  const percent = progress === null ? "" : `${Math.round(progress * 100)}%`;
  setText(row.message, [percent, task.progress_message].filter(Boolean).join(" · "));
  setText(row.cells[5], ago(snapshot.now, task.created_at));
  renderCancel(row, task, snapshot);
  return row.tr;
}

function renderCancel(row, task, snapshot) {
  const wanted = snapshot.cancel && task.live;
  if (!wanted) {
    if (row.button) row.button.remove();
    row.button = null;
    return;
  }
  if (row.button) return;
  row.button = el("button", "", "Cancel");
  row.button.type = "button";
  row.button.title = `Cancel ${task.name}`;
  row.button.addEventListener("click", () => cancelTask(task.id, row.button));
  row.cells[6].append(row.button);
}

async function cancelTask(id, button) {
  button.disabled = true;
  setText(button, "Cancelling…");
  try {
    const response = await fetch(`tasks/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (!response.ok && response.status !== 409) {
      notice(`Could not cancel task ${id}: HTTP ${response.status}`);
    }
  } catch (error) {
    notice(`Could not cancel task ${id}: ${error}`);
  }
}

function renderTasks(snapshot) {
  const seen = new Set();
  const ordered = snapshot.tasks.map((task) => {
    seen.add(task.id);
    return renderTask(task, snapshot);
  });
  for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
  $("tasks").tBodies[0].replaceChildren(...ordered); // the same nodes: open details stay open
  $("no-tasks").hidden = ordered.length > 0;
  $("tasks").hidden = ordered.length === 0;
  setText($("task-count"), ordered.length ? `${ordered.length} shown` : "");
}

// -- periodic tasks --------------------------------------------------------------------

function renderSchedules(snapshot) {
  const found = snapshot.schedules || [];
  $("schedules-card").hidden = found.length === 0;
  setText($("schedule-count"), found.length ? `${found.length}` : "");
  $("schedules").tBodies[0].replaceChildren(...found.map((item) => {
    const tr = el("tr");
    tr.dataset.name = item.name;
    const [short, module] = splitName(item.name);
    const name = el("td", "mono");
    name.append(el("span", "name", short), el("div", "sub", module));
    const last = el("td");
    if (item.last_run) {
      last.append(el("div", "", ago(snapshot.now, item.last_run)));
      const id = el("div", "sub mono", item.last_task_id ? item.last_task_id.slice(-8) : "");
      id.title = item.last_task_id || "";
      last.append(id);
    } else {
      last.append(el("span", "muted", "not yet"));
    }
    const state = el("td");
    if (item.last_state) {
      const pill = el("span", "state", item.last_state);
      pill.dataset.state = item.last_state;
      state.append(pill);
    }
    const policies = [item.catch_up ? "catch_up" : "", item.overlap ? "overlap" : ""];
    const schedule = el("td", "mono", item.schedule);
    const shown = policies.filter(Boolean).join(", ");
    if (shown) schedule.append(el("div", "sub", shown));
    tr.append(name, schedule, last, state, el("td", "num", until(snapshot.now, item.next_run)));
    return tr;
  }));
}

// -- processes -------------------------------------------------------------------------

function laneFigure(lane) {
  if (!lane) return "";
  // The loop lane has no workers (its bound, max_pending, counts running tasks).
  const unbounded = lane.name === "loop";
  const running = unbounded ? `${lane.running} running` : `${lane.running} / ${lane.capacity}`;
  return lane.waiting ? `${running} · ${lane.waiting} waiting` : running;
}

function renderProcesses(snapshot) {
  const shared = snapshot.shared;
  const found = snapshot.processes || [];
  setText($("scope"), shared
    ? `all processes (${found.length}) · this page: ${snapshot.process}`
    : `this process only (${snapshot.process})`);
  $("scope").title = shared
    ? "Every process sharing the task store: its tasks, labelled host:pid, and its lanes."
    : "The task store is memory: under uvicorn --workers N each process keeps its own " +
      "tasks, and this page shows the one that answered. A shared store (sqlite:/// or " +
      "redis://) shows them all.";
  $("scope").dataset.shared = shared;
  const caption = $("lanes-of");
  caption.hidden = !shared;
  setText(caption, `Lanes of this page's process, ${snapshot.process}; every process below.`);
  $("processes-card").hidden = !shared;
  if (!shared) return;
  setText($("process-count"), `${found.length} live`);
  const names = found.length ? found[0].lanes.map((lane) => lane.name) : [];
  const head = $("processes").tHead.rows[0];
  const wanted = ["Process", "Started", ...names, "Updated"];
  if (head.textContent !== wanted.join("")) {
    const last = wanted.length - 1;
    head.replaceChildren(...wanted.map((text, i) => el("th", i === last ? "num" : "", text)));
  }
  $("processes").tBodies[0].replaceChildren(...found.map((item) => {
    const tr = el("tr");
    tr.dataset.process = item.process;
    const label = el("td", "mono", item.process);
    if (item.here) label.append(el("span", "muted", " (this page)"));
    const byName = new Map(item.lanes.map((lane) => [lane.name, lane]));
    tr.append(label, el("td", "", ago(snapshot.now, item.started_at)),
      ...names.map((name) => el("td", "mono", laneFigure(byName.get(name)))),
      el("td", "num", item.here ? "now" : ago(snapshot.now, item.at)));
    return tr;
  }));
}

// -- reports ---------------------------------------------------------------------------

function renderList(id, items, build) {
  const list = $(id);
  list.replaceChildren(...items.map(build));
  $(`no-${id}`).hidden = items.length > 0;
}

function code(text) {
  return el("code", "", text);
}

function renderReports(snapshot) {
  const blocks = snapshot.loop_blocks;
  setText($("block-count"), blocks.count
    ? `${blocks.count} · longest ${seconds(blocks.longest)}` : "");
  renderList("blocks", blocks.recent, (block) => {
    const item = el("li");
    const line = el("div");
    line.append(code(splitName(block.name)[0]), ` held the loop for ${seconds(block.seconds)}`);
    item.append(line, el("div", "sub mono", `${block.where} · ${ago(snapshot.now, block.at)}`));
    disclosure(item, block.stack, "stack while the loop was blocked");
    return item;
  });
  renderList("advice", snapshot.advice, (finding) => {
    const item = el("li");
    const share = `${Math.round(finding.share * 100)}%`;
    item.append(code(splitName(finding.name)[0]), ` holds the GIL ${share} of its time: `);
    if (finding.promoted) item.append("promoted to the process lane (auto_promote).");
    else item.append("mark it ", code("@cpu_bound"), ".");
    const where = `${finding.name} · measured over ${seconds(finding.wall)} on the thread lane`;
    item.append(el("div", "sub mono", where));
    return item;
  });
  const crashes = snapshot.crashes;
  const used = snapshot.process_cpu_seconds;
  const cpu = used ? ` · ${seconds(used)} of CPU used` : "";
  setText($("crash-count"), `${crashes.count} crash${crashes.count === 1 ? "" : "es"}${cpu}`);
  renderList("crashes", crashes.tasks, (task) => {
    const item = el("li");
    item.append(code(splitName(task.name)[0]), ` ${ago(snapshot.now, task.finished_at)}`);
    disclosure(item, task.error);
    return item;
  });
}

// -- the stream ------------------------------------------------------------------------

function notice(text) {
  const node = $("notice");
  setText(node, text);
  node.hidden = !text;
}

function workers(snapshot) {
  const found = snapshot.workers;
  if (!snapshot.backend || !found) return "";
  if (found.count === null) return ` (could not tell its workers)`;
  return ` (${found.count} worker${found.count === 1 ? "" : "s"})`;
}

function render(snapshot) {
  setText($("where"), [
    snapshot.backend ? `backend: ${snapshot.backend}${workers(snapshot)}` : "local lanes",
    `store: ${snapshot.store}`,
  ].join(" · "));
  for (const lane of snapshot.lanes) renderLane(lane);
  renderProcesses(snapshot);
  renderTasks(snapshot);
  renderSchedules(snapshot);
  renderReports(snapshot);
  const problems = [];
  if (!snapshot.accepting) problems.push("Not accepting tasks (starting or shutting down).");
  if (snapshot.rejected) problems.push(`${snapshot.rejected} task(s) refused: a lane was full.`);
  if (snapshot.store_error) problems.push(`Task store: ${snapshot.store_error}`);
  if (snapshot.backend && snapshot.workers && snapshot.workers.count === 0) {
    problems.push(`No ${snapshot.backend} worker consumes the queue: tasks sent there stay ` +
      "pending until one starts.");
  }
  notice(problems.join(" "));
}

// The stream sends one `snapshot`, then `patch` events: the changed and new task rows,
// the ids that left, the rows' order when it changed, and the other keys that changed.
let current = null;

function applyPatch(patch) {
  if (current === null) return; // a patch before its snapshot: the next stream resends it
  current.now = patch.now;
  if (patch.set) Object.assign(current, patch.set);
  const byId = new Map(current.tasks.map((task) => [task.id, task]));
  for (const task of patch.tasks || []) byId.set(task.id, task);
  for (const id of patch.removed || []) byId.delete(id);
  const order = patch.order || current.tasks.map((task) => task.id);
  current.tasks = order.map((id) => byId.get(id)).filter(Boolean);
  render(current);
}

function connect() {
  const status = $("connection");
  const show = (state, text) => {
    status.dataset.state = state;
    setText(status, text);
  };
  const events = new EventSource("events");
  events.addEventListener("open", () => show("live", "live"));
  events.addEventListener("snapshot", (event) => {
    show("live", "live");
    current = JSON.parse(event.data);
    render(current);
  });
  events.addEventListener("patch", (event) => {
    show("live", "live");
    applyPatch(JSON.parse(event.data));
  });
  events.addEventListener("error", () => {
    // The stream ends every 30 s and the browser reconnects by itself; CLOSED means it
    // gave up (the server refused: a 401 or 403, or a 503 for too many open streams).
    if (events.readyState === EventSource.CLOSED) show("closed", "disconnected: reload");
    else show("reconnecting", "reconnecting…");
  });
}

connect();
