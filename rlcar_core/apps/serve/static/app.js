// rlcar serve: the page. Plain JS, no build step; charts by the vendored uPlot.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const POLL_MS = 1000;
const COLOURS = ["#e0503c", "#4f9df0", "#8fd18f", "#e8c14f", "#c07be0", "#5fd0c8", "#f08fb0", "#aaaaaa"];
const $ = (selector, scope = document) => scope.querySelector(selector);

function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(withToken(path), options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

// A notice stays while it is news: it goes at the next action, or after NOTICE_MS (an "already
// training" refusal must not sit on the page for minutes).
const NOTICE_MS = 8000;
let noticeTimer = null;
function notice(message) {
  const box = $("#notice");
  box.textContent = message || "";
  box.hidden = !message;
  clearTimeout(noticeTimer);
  if (message) noticeTimer = setTimeout(() => { box.hidden = true; }, NOTICE_MS);
}

function formValues(form) {
  const values = {};
  for (const [key, value] of new FormData(form).entries()) if (value !== "") values[key] = value;
  return values;
}

// ---------------------------------------------------------------------------------------------------
// Tabs

let activeTab = "runs";
function showTab(name) {
  activeTab = name;
  for (const button of document.querySelectorAll("nav button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== "tab-" + name;
  if (name !== "drive" && name !== "race") live.stop();
  if (name !== "latent") latent.stop();
  if (name === "race") refreshLeaderboard();
}
for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => showTab(button.dataset.tab));

// ---------------------------------------------------------------------------------------------------
// Metrics of runs, fetched incrementally: each poll asks only for records past the last count.

const series = new Map(); // run name -> {count, eval:{x,progress,return}, episodes:{...}, losses:{x, series}}

function emptySeries() {
  return { count: 0, eval: { x: [], progress: [], return: [] }, episodes: { x: [], progress: [], return: [] }, losses: { x: [], series: {} } };
}

function appendSeries(store, part) {
  for (const key of ["eval", "episodes"]) for (const field of ["x", "progress", "return"]) store[key][field].push(...part[key][field]);
  const rows = store.losses.x.length;
  store.losses.x.push(...part.losses.x);
  for (const [name, values] of Object.entries(part.losses.series)) {
    if (!store.losses.series[name]) store.losses.series[name] = new Array(rows).fill(null);
    store.losses.series[name].push(...values);
  }
  for (const values of Object.values(store.losses.series)) while (values.length < store.losses.x.length) values.push(null);
  store.count = part.count;
}

async function fetchMetrics(run) {
  const store = series.get(run) || emptySeries();
  series.set(run, store);
  const part = await api(`/api/metrics?run=${encodeURIComponent(run)}&since=${store.count}`);
  if (part.count < store.count) { series.set(run, emptySeries()); return fetchMetrics(run); } // rewritten on resume
  appendSeries(store, part);
  return store;
}

const PANELS = [];
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => PANELS.forEach((panel) => panel.resize()), 150);
});

// One panel of charts for a main run plus runs overlaid for comparison.
class ChartPanel {
  constructor(element) {
    this.element = element; this.charts = {}; this.runs = [];
    PANELS.push(this);
  }

  // Charts share the panel's width: two a row (three for the smaller loss charts), never under 300 px.
  chartWidth(small) {
    const room = this.element.clientWidth || document.body.clientWidth || 960;
    const columns = small ? 3 : 2;
    return Math.max(300, Math.floor((room - 16 * (columns - 1)) / columns) - 16);
  }

  resize() {
    for (const chart of Object.values(this.charts)) chart.setSize({ width: this.chartWidth(chart.small), height: chart.height });
  }

  setRuns(runs) {
    const key = runs.join("\n");
    if (key === this.runs.join("\n")) return;
    this.runs = runs;
    for (const chart of Object.values(this.charts)) chart.destroy();
    this.charts = {};
    this.element.innerHTML = "";
    this.element.dataset.points = "0";
  }

  async refresh() {
    if (!this.runs.length) return;
    const stores = [];
    for (const run of this.runs) {
      try { stores.push(await fetchMetrics(run)); } catch (error) { stores.push(emptySeries()); }
    }
    const overlay = (pick) => this.runs.map((run, i) => ({ label: run, xs: pick(stores[i]).x, ys: pick(stores[i]).y }));
    this.draw("progress", "held-out progress", overlay((s) => ({ x: s.eval.x, y: s.eval.progress })), "progress (laps)");
    this.draw("return", "held-out return", overlay((s) => ({ x: s.eval.x, y: s.eval.return })), "return");
    this.draw("episodes", "episode return (training)", overlay((s) => ({ x: s.episodes.x, y: s.episodes.return })), "return");
    // One chart per loss: on one axis a reconstruction loss of ~200 would flatten every other one.
    const main = stores[0];
    for (const [name, ys] of Object.entries(main.losses.series)) {
      this.draw("loss:" + name, `${name} (${this.runs[0]})`, [{ label: name, xs: main.losses.x, ys }], "loss", true);
    }
    let points = 0;
    for (const store of stores) points += store.eval.x.length + store.episodes.x.length + store.losses.x.length;
    this.element.dataset.points = String(points);
    this.emptyNote(points ? "" : `No chart for ${this.runs.join(", ")}: no metrics.jsonl records yet. ` +
      "Shipped agents (pretrained/) keep only their checkpoints and card; a run being trained shows its first points within a minute.");
  }

  emptyNote(message) {
    let note = $(".empty", this.element);
    if (!message) { if (note) note.remove(); return; }
    if (!note) { note = document.createElement("p"); note.className = "empty"; this.element.prepend(note); }
    note.textContent = message;
  }

  draw(id, title, lines, yLabel = "", small = false) {
    lines = lines.filter((line) => line.xs.length);
    if (!lines.length) return;
    const data = uPlot.join(lines.map((line) => [Float64Array.from(line.xs), line.ys.map((y) => (y === null ? null : y))]));
    const shape = lines.map((l) => l.label).join("\n");
    let chart = this.charts[id];
    if (chart && chart.shape !== shape) { chart.destroy(); chart = null; }
    if (!chart) {
      const holder = document.createElement("div");
      holder.className = "chart";
      holder.dataset.chart = id;
      this.element.appendChild(holder);
      chart = new uPlot({
        title, width: this.chartWidth(small), height: small ? 200 : 240,
        scales: { x: { time: false } },
        axes: [{ stroke: "#9aa0a6", grid: { stroke: "#2c3038" }, label: "env steps" },
          { stroke: "#9aa0a6", grid: { stroke: "#2c3038" }, label: yLabel, size: 60 }],
        series: [{ label: "env steps" }, ...lines.map((line, i) => ({
          label: line.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true,
          points: { show: data[0].length < 60 },
        }))],
      }, data, holder);
      chart.shape = shape;
      chart.small = small;
      this.charts[id] = chart;
    } else {
      chart.setData(data);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Runs dashboard

const dashboard = new ChartPanel($("#runs-charts"));
let runRows = [];
let selectedRun = null;
const compared = new Set();

function fmt(value, digits = 0) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return digits ? value.toFixed(digits) : value.toLocaleString();
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${fmt(v)}`).join("; ");
  return String(value);
}

// A shipped agent's score on held-out tracks, from its card (agent.json): what the README's table says.
function cardScore(row) {
  const score = row.shipped && row.shipped.score;
  if (!score || typeof score.return_mean !== "number") return "-";
  const spread = typeof score.return_std === "number" ? ` ± ${score.return_std.toFixed(1)}` : "";
  return `${score.return_mean.toFixed(1)}${spread} (${score.episodes ?? "?"} episodes)`;
}

function renderRuns() {
  const body = $("#runs-table tbody");
  body.innerHTML = "";
  for (const row of runRows) {
    const tr = document.createElement("tr");
    tr.dataset.run = row.name;
    tr.classList.toggle("selected", row.name === selectedRun);
    const cells = [row.name, row.kind, row.env, row.obs, fmt(row.episodes), fmt(row.env_steps),
      fmt(row.best_progress, 3), cardScore(row), row.checkpoint_summary || "-"];
    const tick = document.createElement("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = compared.has(row.name);
    box.addEventListener("click", (event) => {
      event.stopPropagation();
      box.checked ? compared.add(row.name) : compared.delete(row.name);
      chartSelection();
    });
    tick.appendChild(box);
    tr.appendChild(tick);
    for (const cell of cells) { const td = document.createElement("td"); td.textContent = cell ?? "-"; tr.appendChild(td); }
    tr.addEventListener("click", () => { selectedRun = row.name; renderRuns(); chartSelection(); });
    body.appendChild(tr);
  }
}

function chartSelection() {
  const runs = selectedRun ? [selectedRun, ...[...compared].filter((r) => r !== selectedRun)] : [...compared];
  dashboard.setRuns(runs);
  dashboard.refresh();
}

// Drive and race list only the drivers that can drive the env chosen beside them.
const DRIVER_ENV = { "#drive-driver": "#drive-env", "#race-driver": "#race-env" };

function fillDriverSelect(id) {
  const select = $(id);
  const previous = select.value;
  const env = DRIVER_ENV[id] ? $(DRIVER_ENV[id]).value : null;
  select.innerHTML = "";
  if (id === "#drive-driver") select.add(new Option("you (keyboard only)", "you"));
  drivers.forEach((driver, i) => {
    if (!env || !driver.envs || driver.envs.includes(env)) select.add(new Option(driver.label, String(i)));
  });
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

function fillDrivers(drivers) {
  for (const id of ["#drive-driver", "#race-driver", "#video-driver"]) fillDriverSelect(id);
  const latentSelect = $("#latent-driver");
  const latentPrevious = latentSelect.value;
  latentSelect.innerHTML = "";
  drivers.forEach((driver, i) => { if (showsLatents(driver)) latentSelect.add(new Option(driver.label, String(i))); });
  if ([...latentSelect.options].some((o) => o.value === latentPrevious)) latentSelect.value = latentPrevious;
  $("#latent-empty").hidden = latentSelect.options.length > 0;
  for (const select of document.querySelectorAll(".learned-runs")) {
    const previous = select.value;
    select.innerHTML = "";
    const learned = runRows.filter((row) => drivers.some((d) => d.run === row.name));
    for (const row of learned) select.add(new Option(row.name, row.name));
    if (previous) select.value = previous;
  }
}

let drivers = [];
async function refreshRuns() {
  try {
    const data = await api("/api/runs");
    $("#root").textContent = "root: " + data.root;
    const changed = JSON.stringify(data.runs) !== JSON.stringify(runRows);
    runRows = data.runs;
    if (JSON.stringify(data.drivers) !== JSON.stringify(drivers)) { drivers = data.drivers; fillDrivers(drivers); }
    if (!selectedRun && runRows.length) {
      const trained = runRows.filter((r) => r.kind && r.kind !== "play");
      selectedRun = (trained[0] || runRows[0]).name;
      chartSelection();
    }
    if (changed) renderRuns();
  } catch (error) { notice(error.message); }
}

// ---------------------------------------------------------------------------------------------------
// Live driving over a WebSocket: JSON status then a JPEG frame, again and again; keys go the other way.

const live = {
  socket: null, view: null, frames: 0, since: performance.now(), url: null,

  start(view, driver, track, race, env = "rlcar", maxSteps = null) {
    this.stop();
    notice("");
    const params = new URLSearchParams({ track: String(track), env });
    if (maxSteps) params.set("max_steps", String(maxSteps));
    if (driver) {
      params.set("agent", driver.agent);
      if (driver.run) { params.set("run", driver.run); params.set("checkpoint", driver.checkpoint); }
    }
    if (race) params.set("race", "1");
    liveState(view, "connecting… (the first start loads and compiles the car: a few seconds)");
    const socket = new WebSocket(socketUrl(`/ws/drive?${params}`));
    socket.binaryType = "blob";
    this.socket = socket;
    this.view = view;
    this.frames = 0;
    this.since = performance.now();
    this.env = env;
    // T hands the car over only in the Drive tab with an AI chosen; otherwise it says why not.
    this.canToggle = view === "drive" && Boolean(driver);
    this.toggleNote = view === "race"
      ? "T does nothing in a race: you drive your car, the AI its own"
      : "T hands the car to an AI: choose one under Driver (this one is keyboard only) and press Start";
    this.panes = [];  // the images the next binary messages go to: yours, then the AI's (CarRacing race)
    const twoPanes = view === "race" && env === "carracing";
    $(`#${view}-frame`).classList.toggle("carracing", env === "carracing");
    // A key already held when the car is ready (pressed while it loaded) drives from the first frame.
    socket.onopen = () => { for (const key of heldKeys) this.send({ type: "key", key, down: true }); };
    if (view === "race") {
      $("#race-live").classList.toggle("two", twoPanes);
      $("#race-ai-pane").hidden = !twoPanes;
      $("#race-you-caption").hidden = !twoPanes;
      $("#race-scores").hidden = !twoPanes;
      $("#race-result").hidden = true;
      $("#race-ai-name").textContent = driver ? driver.label : "AI";
      $("#race-hint").textContent = twoPanes
        ? "you drive the left car, the AI the right one, each on its own copy of the track; R races again"
        : "you drive the red car; the AI is the blue ghost on the same track";
    }
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        const meta = JSON.parse(event.data);
        this.panes = meta.panes === 2 ? [`${view}-frame`, `${view}-ai-frame`] : [`${view}-frame`];
        this.status(meta);
        return;
      }
      const id = this.panes.shift() || `${view}-frame`;
      const url = URL.createObjectURL(event.data);
      const img = $(`#${id}`);
      img.onload = () => URL.revokeObjectURL(url);
      img.src = url;
      img.hidden = false;
      if (id !== `${view}-frame`) return;
      if (!this.frames && !this.failed) liveState(view, "");
      this.frames += 1;
    };
    this.failed = false;
    socket.onclose = (event) => {
      if (this.socket !== socket) return;  // a newer start replaced it
      if (event.code >= 4000 && event.reason && !this.failed) this.fail(event.reason);
      else if (!this.failed) liveState(view, event.code === 1001 ? "the server stopped" : "disconnected: press Start again");
    };
  },

  stop() {
    if (this.socket) { this.socket.close(); this.socket = null; }
  },

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  },

  fail(message) {
    this.failed = true;
    notice(message);
    liveState(this.view, message, true);
    $(`#${this.view}-frame`).hidden = true;  // no black box with a broken image: the message says why
  },

  status(meta) {
    if (meta.error) { this.fail(meta.error); return; }
    const view = this.view;
    // Speed, progress, time and return are in the frame's own panel (drawn from the same step): the
    // page does not repeat them beside it, it keeps them on the image for scripts and tests.
    const frame = $(`#${view}-frame`).dataset;
    frame.speed = meta.speed_kmh.toFixed(1);
    frame.progress = meta.progress.toFixed(4);
    frame.step = String(meta.step);
    if (view === "drive") {
      $("#drive-mode").textContent = meta.driver;
      const seconds = (performance.now() - this.since) / 1000;
      if (seconds > 1) { $("#drive-fps").textContent = (this.frames / seconds).toFixed(1); this.frames = 0; this.since = performance.now(); }
      if (meta.last_episode) {
        const e = meta.last_episode;
        $("#drive-last").textContent = `return ${e.episode_return.toFixed(1)}, progress ${(100 * e.progress).toFixed(0)} %` +
          (e.saved ? " (saved for eval --human)" : "");
      }
    } else {
      if (meta.cars) raceScores(meta.cars, meta.result);
      if (meta.last_lap) {
        const lap = meta.last_lap;
        const what = lap.lap_time !== undefined ? `${lap.lap_time.toFixed(1)} s` : `score ${lap.score.toFixed(1)}`;
        $("#race-last").textContent = `${lap.driver}: ${what} (#${lap.rank})`;
        if (lap.when !== live.lastLapShown) { live.lastLapShown = lap.when; refreshLeaderboard(); }
      }
    }
  },
};

// A CarRacing race: both cars' measures as they grow, then who did better on each.
function raceScores(cars, result) {
  const table = $("#race-scores");
  const shown = {
    score: (c) => c.score.toFixed(1),
    tiles: (c) => `${c.tiles} / ${c.tiles_total}`,
    off_road_seconds: (c) => c.off_road_seconds.toFixed(1) + " s",
    seconds: (c) => c.seconds.toFixed(1) + " s" + (c.ended ? ` (${c.ended})` : ""),
    action: (c) => `steer ${c.action[0] >= 0 ? "+" : ""}${c.action[0].toFixed(2)} · gas ${c.action[1].toFixed(2)} · brake ${c.action[2].toFixed(2)}`,
  };
  for (const [measure, text] of Object.entries(shown)) {
    for (const who of ["you", "ai"]) {
      const cell = $(`tr[data-measure='${measure}'] td.${who}`, table);
      cell.textContent = text(cars[who]);
      cell.classList.toggle("better", Boolean(result && result.better[measure] === who));
      if (measure === "action") cell.classList.toggle("idle", Boolean(cars[who].ended));
    }
  }
  table.dataset.youScore = String(cars.you.score);
  table.dataset.aiScore = String(cars.ai.score);
  table.dataset.youSteps = String(cars.you.steps);
  table.dataset.aiSteps = String(cars.ai.steps);
  $("#race-you-caption").textContent = `you: ${cars.you.score.toFixed(1)}` + (cars.you.ended ? ` (${cars.you.ended})` : "");
  $("#race-ai-caption").textContent = `${cars.ai.driver}: ${cars.ai.score.toFixed(1)}` + (cars.ai.ended ? ` (${cars.ai.ended})` : "");
  const box = $("#race-result");
  box.hidden = !result;
  if (!result) return;
  const { you, ai, better, winner } = result;
  const lead = winner === "tie" ? "A tie" : winner === "you" ? "You win" : "The AI wins";
  const words = { score: "score", tiles: "tiles", off_road_seconds: "time off the road" };
  const yours = Object.keys(words).filter((k) => better[k] === "you").map((k) => words[k]);
  box.textContent = `${lead}: ${you.score.toFixed(1)} to ${ai.score.toFixed(1)}; tiles ${you.tiles} to ${ai.tiles}; ` +
    `off the road ${you.off_road_seconds.toFixed(1)} s to ${ai.off_road_seconds.toFixed(1)} s` +
    (yours.length ? ` (you did better on ${yours.join(", ")})` : "") + ". R races again.";
}

function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return withToken(`${scheme}://${location.host}${path}`);
}

function liveState(view, message, error = false) {
  const box = $(`#${view}-state`);
  if (!box) return;
  box.textContent = message;
  box.classList.toggle("error", error);
}

const KEY_NAMES = new Set(["arrowup", "arrowdown", "arrowleft", "arrowright", "w", "a", "s", "d"]);
const heldKeys = new Set();
function onKey(event, down) {
  if (activeTab === "latent" && down && event.key === " " && !event.target.matches("input, select, textarea, button")) {
    event.preventDefault();
    latent.togglePause();
    return;
  }
  if (activeTab !== "drive" && activeTab !== "race") return;
  if (event.target.matches("input, select, textarea")) return;
  const key = event.key.toLowerCase();
  if (KEY_NAMES.has(key)) {
    event.preventDefault();
    down ? heldKeys.add(key) : heldKeys.delete(key);
    if (!event.repeat) live.send({ type: "key", key, down });
  } else if (down && !event.repeat && (key === "t" || key === "r")) {
    if (key === "t" && !live.canToggle) { liveState(live.view || activeTab, live.toggleNote); return; }
    live.send({ type: key === "t" ? "toggle" : "reset" });
  }
}
window.addEventListener("keydown", (event) => onKey(event, true));
window.addEventListener("keyup", (event) => onKey(event, false));
window.addEventListener("blur", () => { heldKeys.clear(); live.send({ type: "blur" }); });

$("#drive-env").addEventListener("change", () => fillDriverSelect("#drive-driver"));
$("#race-env").addEventListener("change", () => { fillDriverSelect("#race-driver"); refreshLeaderboard(); });

$("#drive-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const values = formValues(event.target);
  const driver = values.driver === "you" ? null : drivers[Number(values.driver)];
  live.start("drive", driver, values.track || 0, false, values.env);
  document.activeElement.blur();
});

$("#race-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const values = formValues(event.target);
  const driver = drivers[Number(values.driver)];
  if (!driver) { notice(`no AI can race on ${values.env}: train one, or copy a pretrained/ agent under the root`); return; }
  $("#board-track").textContent = values.track || 0;
  live.start("race", driver, values.track || 0, true, values.env, values.max_steps);
  document.activeElement.blur();
  refreshLeaderboard();
});

// Each env's board: RLCar ranks lap times, CarRacing-v3 race scores.
const BOARD_COLUMNS = {
  rlcar: [["lap time", (e) => e.lap_time.toFixed(1) + " s"]],
  carracing: [["score", (e) => e.score.toFixed(1)], ["tiles", (e) => `${e.tiles} / ${e.tiles_total}`],
    ["off road", (e) => e.off_road_seconds.toFixed(1) + " s"]],
};

async function refreshLeaderboard() {
  const env = $("#race-env").value;
  const track = $("#board-track").textContent;
  $("#board-env").textContent = env === "carracing" ? "CarRacing-v3" : "RLCar";
  const board = await api(`/api/leaderboard?env=${env}&track=${encodeURIComponent(track)}`).catch(() => ({ entries: [] }));
  const columns = BOARD_COLUMNS[env] || BOARD_COLUMNS.rlcar;
  const head = $("#leaderboard thead tr");
  head.innerHTML = "";
  for (const name of ["#", "driver", ...columns.map((c) => c[0]), "when"]) {
    const th = document.createElement("th"); th.textContent = name; head.appendChild(th);
  }
  const body = $("#leaderboard tbody");
  body.innerHTML = "";
  board.entries.forEach((entry, i) => {
    const tr = document.createElement("tr");
    tr.dataset.kind = entry.kind;
    const cells = [i + 1, entry.driver, ...columns.map(([, show]) => { try { return show(entry); } catch { return "-"; } }), entry.when];
    for (const cell of cells) {
      const td = document.createElement("td"); td.textContent = cell; tr.appendChild(td);
    }
    body.appendChild(tr);
  });
}

// ---------------------------------------------------------------------------------------------------
// The latent space, live: a World Models or DreamerV3 car; each decision the server sends frames, z, h
// and the action. Paused, a slider moves one z dimension (a DreamerV3 variable's class) and the server
// answers with the decoded frame and the action taken on it. The state names its model's parts
// (`labels`) and its sliders' range (`slider`), so one view serves both.

// A learned agent that sees camera frames (a model of sensors has no frame to reconstruct).
function showsLatents(driver) {
  return (driver.agent === "worldmodel" || driver.agent === "dreamer") && driver.obs !== "sensors";
}

const latent = {
  socket: null, state: null, sliders: [], probes: 0,

  start(driver, track) {
    this.stop();
    notice("");
    const params = new URLSearchParams({ run: driver.run, checkpoint: driver.checkpoint, track: String(track) });
    liveState("latent", "connecting… (loading the model and compiling it: a few seconds)");
    const socket = new WebSocket(socketUrl(`/ws/latent?${params}`));
    this.socket = socket;
    this.failed = false;
    this.state = null;
    this.probes = 0;  // counts the answers to slider moves of this view only
    Object.assign($("#latent-view").dataset, { step: "-1", probes: "0" });
    socket.onmessage = (event) => this.show(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.buttons(false);
      if (event.code >= 4000 && event.reason && !this.failed) this.fail(event.reason);
      else if (!this.failed) liveState("latent", event.code === 1001 ? "the server stopped" : "disconnected: press Start again");
    };
  },

  stop() {
    if (this.socket) { const socket = this.socket; this.socket = null; socket.close(); }
    this.buttons(false);
  },

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  },

  togglePause() { if (this.state) this.send({ type: this.state.paused ? "resume" : "pause" }); },

  fail(message) {
    this.failed = true;
    notice(message);
    liveState("latent", message, true);
  },

  buttons(on) {
    $("#latent-pause").disabled = !on;
    $("#latent-reset-z").disabled = !on || !this.state || !this.state.paused || !this.state.edited.length;
  },

  makeSliders(size, range) {
    const holder = $("#latent-sliders");
    holder.innerHTML = "";
    this.sliders = [];
    for (let i = 0; i < size; i++) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { type: "range", min: String(range.min), max: String(range.max), step: String(range.step), value: "0" });
      input.dataset.index = String(i);
      input.setAttribute("aria-label", `z${i}`);
      const value = document.createElement("output");
      input.addEventListener("input", () => {
        value.textContent = sliderText(Number(input.value), range);
        this.send({ type: "set_z", index: i, value: Number(input.value) });
      });
      label.append(`z${i}`, input, value);
      holder.appendChild(label);
      this.sliders.push({ label, input, value });
    }
  },

  show(state) {
    if (state.error) { this.fail(state.error); return; }
    const first = !this.state;
    const view = $("#latent-view");
    if (this.state && this.state.paused && state.paused && this.state.step === state.step) {
      this.probes += 1;
      view.dataset.probes = String(this.probes);
    }
    if (first || this.state.kind !== state.kind || this.sliders.length !== state.z.length) {
      this.name(state.labels);
      this.makeSliders(state.z.length, state.slider);
    }
    this.state = state;
    view.dataset.step = String(state.step);
    view.dataset.paused = String(state.paused);
    $("#latent-camera").src = state.camera;
    $("#latent-reconstruction").src = state.reconstruction;
    liveState("latent", state.paused
      ? (state.edited.length ? `paused: ${state.labels.actor} acts on your z (moved: ${state.edited.map((i) => "z" + i).join(", ")})` : "paused: move a z slider")
      : `driving: ${$("#latent-driver").selectedOptions[0]?.textContent || ""}, track ${state.track}`);
    $("#latent-pause").textContent = state.paused ? "Resume" : "Pause";
    this.buttons(true);
    const a = state.action;
    const bars = document.querySelectorAll("#latent-action .bar span");
    bars[0].style.left = `${50 + 50 * Math.min(0, a.steer)}%`;
    bars[0].style.width = `${50 * Math.abs(a.steer)}%`;
    bars[1].style.width = `${100 * a.gas}%`;
    bars[2].style.width = `${100 * a.brake}%`;
    $("#latent-steer").textContent = a.steer.toFixed(2);
    $("#latent-gas").textContent = a.gas.toFixed(2);
    $("#latent-brake").textContent = a.brake.toFixed(2);
    $("#latent-action-note").textContent = state.edited.length ? `(what ${state.labels.actor} would do with your z)` : "";
    const h = state.h;
    $("#latent-h-summary").textContent =
      `${h.size} values · |h| ${h.norm.toFixed(2)} · mean ${h.mean.toFixed(3)} · std ${h.std.toFixed(3)} · min ${h.min.toFixed(2)} · max ${h.max.toFixed(2)}`;
    drawStrip($("#latent-h"), h.values);
    if (state.z_probabilities) drawClasses($("#latent-z"), state.z_probabilities, state.z, new Set(state.edited));
    else drawBars($("#latent-z"), state.z, state.z_seen, new Set(state.edited), state.slider.max);
    $("#latent-step").textContent = `${state.step} (episode ${state.episode + 1})`;
    $("#latent-speed").textContent = state.speed_kmh.toFixed(1) + " km/h";
    $("#latent-progress").textContent = (100 * state.progress).toFixed(1) + " %";
    $("#latent-last").textContent = state.last_return === null ? "-" : `return ${state.last_return.toFixed(1)}`;
    state.z.forEach((v, i) => {
      const slider = this.sliders[i];
      slider.input.disabled = !state.paused;
      if (document.activeElement !== slider.input) slider.input.value = String(v);
      slider.value.textContent = sliderText(v, state.slider);
      slider.label.classList.toggle("edited", state.edited.includes(i));
    });
  },

  // What this model's parts are called: World Models' V, M and C, or DreamerV3's RSSM, decoder and actor.
  name(labels) {
    $("#latent-actor-label").textContent = labels.actor;
    $("#latent-reconstruction-label").textContent = labels.reconstruction;
    $("#latent-h-label").textContent = labels.h;
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = labels.z_hint;
    $("#latent-z-label").replaceChildren(`${labels.z} `, hint);
  },
};

// A slider's value as the page writes it: a DreamerV3 class is a whole number.
function sliderText(value, range) {
  return range.step >= 1 ? String(Math.round(value)) : value.toFixed(2);
}

// DreamerV3's z: a column per categorical variable, a row per class, lit by the posterior's
// probability; a ring marks the class the actor acts on (yellow where the person set it).
function drawClasses(canvas, probabilities, classes, edited) {
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  const rows = probabilities[0].length;
  const slot = width / probabilities.length;
  const cell = (height - 16) / rows;
  g.font = "11px system-ui";
  g.textAlign = "center";
  probabilities.forEach((column, i) => {
    const x = i * slot + 2;
    column.forEach((p, c) => {
      const lit = Math.round(255 * Math.sqrt(p));  // sqrt: a 5 % class still shows
      g.fillStyle = `rgb(${lit},${Math.round(lit * 0.45)},${Math.round(lit * 0.3)})`;
      g.fillRect(x, c * cell + 1, slot - 4, cell - 2);
    });
    g.strokeStyle = edited.has(i) ? "#e8c14f" : "#e6e6e6";
    g.lineWidth = 2;
    g.strokeRect(x + 1, Math.round(classes[i]) * cell + 2, slot - 6, cell - 4);
    g.fillStyle = "#9aa0a6";
    g.fillText(`z${i}`, x + (slot - 4) / 2, height - 3);
  });
}

function drawBars(canvas, values, seen, edited, limit) {
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  const mid = height / 2 - 8;
  const scale = (mid - 4) / limit;
  const slot = width / values.length;
  g.strokeStyle = "#3a3f48";
  g.beginPath(); g.moveTo(0, mid); g.lineTo(width, mid); g.stroke();
  g.font = "11px system-ui";
  g.textAlign = "center";
  values.forEach((v, i) => {
    const x = i * slot + 2;
    const w = slot - 4;
    const y = v >= 0 ? mid - v * scale : mid;
    g.fillStyle = edited.has(i) ? "#e8c14f" : v >= 0 ? "#e0503c" : "#4f9df0";
    g.fillRect(x, y, w, Math.max(1, Math.abs(v) * scale));
    if (edited.has(i)) {  // where the camera frame put it
      g.fillStyle = "#e6e6e6";
      g.fillRect(x, mid - seen[i] * scale - 1, w, 2);
    }
    g.fillStyle = "#9aa0a6";
    g.fillText(`z${i}`, x + w / 2, height - 3);
  });
}

function drawStrip(canvas, values) {
  const g = canvas.getContext("2d");
  const cell = canvas.width / values.length;
  values.forEach((v, i) => {
    const t = Math.max(-1, Math.min(1, v));
    const c = Math.round(255 * Math.abs(t));
    g.fillStyle = t >= 0 ? `rgb(${c},${Math.round(c * 0.35)},${Math.round(c * 0.25)})` : `rgb(${Math.round(c * 0.3)},${Math.round(c * 0.6)},${c})`;
    g.fillRect(i * cell, 0, Math.ceil(cell), canvas.height);
  });
}

$("#latent-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const values = formValues(event.target);
  const driver = drivers[Number(values.driver)];
  if (!driver) { notice("no World Models run to show: see the note below"); return; }
  latent.start(driver, values.track || 0);
  document.activeElement.blur();
});
$("#latent-pause").addEventListener("click", () => latent.togglePause());
$("#latent-reset-z").addEventListener("click", () => latent.send({ type: "reset_z" }));

// ---------------------------------------------------------------------------------------------------
// Jobs: training, videos and dreams run as `rlcar` child processes of the server.

const trainCharts = new ChartPanel($("#train-charts"));
let trainRun = null;

async function submitJob(path, body) {
  notice("");
  try { const job = await api(path, body); await refreshJobs(); return job; } catch (error) { notice(error.message); return null; }
}

$("#train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const job = await submitJob("/api/train", formValues(event.target));
  if (job) { trainRun = job.run; trainCharts.setRuns([job.run]); }
});

$("#dream-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitJob("/api/dream", formValues(event.target));
});

$("#video-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const values = formValues(event.target);
  const driver = drivers[Number(values.driver)] || { agent: "heuristic" };
  submitJob("/api/video", { agent: driver.agent, run: driver.run, checkpoint: driver.checkpoint, track: values.track, max_steps: values.max_steps });
});

// Rows are kept and updated in place, keyed by job id: rebuilding the tables every second replaced the
// button under the pointer between press and release, and the click was lost.
function jobRow(body, job, columns) {
  let tr = body.querySelector(`tr[data-job='${job.id}']`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.job = job.id;
    for (let i = 0; i < columns; i++) tr.appendChild(document.createElement("td"));
  }
  tr.children[1].className = "state-" + job.state;
  return tr;
}

function setText(cell, text) {
  if (cell.textContent !== (text ?? "")) cell.textContent = text ?? "";
}

function stopButton(job) {
  const stop = document.createElement("button");
  stop.className = "stop";
  stop.addEventListener("click", () => {
    stop.disabled = true;
    stop.textContent = "stopping…";
    api(`/api/jobs/${job.id}/stop`, {}).then(refreshJobs, (e) => { notice(e.message); stop.disabled = false; });
  });
  return stop;
}

function jobFile(job) {
  if (job.state !== "finished" || !job.output) return null;
  const link = document.createElement("a");
  link.href = withToken(`/files/${job.output}?download=1`);
  link.textContent = "download";
  const play = document.createElement("button");
  play.textContent = "play";
  play.addEventListener("click", () => { const v = $("#video-player"); v.hidden = false; v.src = withToken(`/files/${job.output}`); v.play(); });
  const file = document.createElement("span");
  file.append(link, " ", play);
  return file;
}

// Videos are listed from disk, so a restart of the server (whose job history lives in memory) loses none.
let videoFiles = "";
async function refreshVideos() {
  let videos;
  try { videos = (await api("/api/videos")).videos; } catch (error) { return; }
  const key = JSON.stringify(videos);
  if (key === videoFiles) return;  // unchanged: rows (and their buttons) stay as they are
  videoFiles = key;
  const body = $("#video-files tbody");
  body.replaceChildren(...videos.map((video) => {
    const tr = document.createElement("tr");
    tr.dataset.file = video.file;
    const actions = jobFile({ state: "finished", output: video.file });
    const when = new Date(video.modified * 1000).toLocaleString();
    for (const cell of [video.file.split("/").pop(), video.run || "-", when, actions]) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
      tr.appendChild(td);
    }
    return tr;
  }));
}

async function refreshJobs() {
  let jobs;
  try { jobs = (await api("/api/jobs")).jobs; } catch (error) { return; }
  const bodies = { train: $("#train-jobs tbody"), other: $("#video-jobs tbody") };
  const seen = new Set();
  const order = { train: [], other: [] };
  for (const job of jobs) {
    seen.add(job.id);
    if (job.kind === "train") {
      const tr = jobRow(bodies.train, job, 5);
      const cells = tr.children;
      setText(cells[0], job.run);
      setText(cells[1], job.state);
      setText(cells[2], job.message);
      setText(cells[3], job.command);
      let stop = cells[4].querySelector("button");
      if (!stop) { stop = stopButton(job); cells[4].appendChild(stop); }
      // Enabled only while the job runs; "stopping…" while it saves, then nothing to stop.
      stop.disabled = job.state !== "running";
      setText(stop, job.state === "running" ? "Stop" : job.state === "stopping" ? "stopping…" : "Stop");
      stop.hidden = !["running", "stopping"].includes(job.state);
      order.train.push(tr);
    } else {
      const tr = jobRow(bodies.other, job, 4);
      const cells = tr.children;
      setText(cells[0], `${job.kind} ${job.run}`);
      setText(cells[1], job.state);
      setText(cells[2], job.message);
      if (cells[3].dataset.state !== job.state) {
        cells[3].dataset.state = job.state;
        cells[3].replaceChildren(...[jobFile(job)].filter(Boolean));
      }
      order.other.push(tr);
    }
  }
  for (const [key, body] of Object.entries(bodies)) {
    for (const tr of [...body.children]) if (!seen.has(tr.dataset.job)) tr.remove();
    order[key].forEach((tr, i) => { if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null); });
  }
}

// ---------------------------------------------------------------------------------------------------

async function poll() {
  await refreshRuns();
  if (activeTab === "runs") await dashboard.refresh();
  if (activeTab === "train" || activeTab === "dream") await refreshJobs();
  if (activeTab === "dream") await refreshVideos();
  if (activeTab === "train" && trainRun) await trainCharts.refresh();
  setTimeout(poll, POLL_MS);
}
poll();
