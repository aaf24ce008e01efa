// The dashboard page: one EventSource on /api/stream; each message is a full snapshot
// (recorder.py) that redraws the tables, the two charts, the events and the logs.
"use strict";

const $ = (id) => document.getElementById(id);
let palette = [];
const colourOf = {};

function nodeColour(name) {
  if (!(name in colourOf)) {
    const known = Object.keys(colourOf).concat([name]).sort();
    known.forEach((n, i) => { colourOf[n] = palette[i % palette.length] || "#999"; });
  }
  return colourOf[name];
}

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    if (c instanceof Node) { const td = document.createElement("td"); td.appendChild(c); tr.appendChild(td); }
    else tr.appendChild(text("td", String(c), typeof c === "number" ? "num" : ""));
  }
  return tr;
}

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren(...rows);
  if (!rows.length) {
    const td = text("td", empty, "empty");
    td.colSpan = columns;
    const tr = document.createElement("tr");
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
}

function nodeCell(name) {
  const span = document.createElement("span");
  const sw = text("span", "", "swatch");
  sw.style.background = nodeColour(name);
  span.append(sw, name);
  return span;
}

const throughput = new Chart($("throughput"), {
  type: "line",
  data: { datasets: [{ label: "tasks finished per second", data: [], borderColor: "#0082c8",
                       backgroundColor: "#0082c833", fill: true, pointRadius: 0, tension: 0.2 }] },
  options: {
    animation: false, maintainAspectRatio: false,
    scales: { x: { type: "linear", title: { display: true, text: "time since start (s)" },
                   ticks: { precision: 0 } },
              y: { beginAtZero: true, title: { display: true, text: "tasks/s" } } },
    plugins: { legend: { display: false } },
  },
});

const timeline = new Chart($("timeline"), {
  type: "bar",
  data: { labels: [], datasets: [] },
  options: {
    indexAxis: "y", animation: false, maintainAspectRatio: false,
    scales: { x: { type: "linear", beginAtZero: false,
                   title: { display: true, text: "time since start (s)" } },
              y: { stacked: false } },
    datasets: { bar: { grouped: false, barPercentage: 0.8, categoryPercentage: 1.0 } },
    plugins: {
      legend: { display: true, position: "right" },
      tooltip: { callbacks: { label: (c) => {
        const r = c.raw;
        return `${c.dataset.label}: job ${r.job} ${r.kernel}, ${(r.x[1] - r.x[0]).toFixed(3)} s`;
      } } },
    },
  },
});

function drawNodes(s) {
  const rows = s.nodes.map((n) => row([
    nodeCell(n.node_id), n.link, n.board, n.native_arch || "-",
    n.heap_free.toLocaleString(), n.inflight, n.results, n.errors, n.bad_frames,
    `${n.last_heard_s.toFixed(1)} s ago`,
  ]));
  fill($("nodes").tBodies[0], rows, "no node has joined", 10);
}

function drawJobs(s) {
  const rows = s.jobs.slice().reverse().map((j) => {
    const bar = document.createElement("span");
    const p = document.createElement("progress");
    p.max = j.tasks || 1; p.value = j.done;
    bar.append(p, ` ${j.done}/${j.tasks}`);
    return row([j.job_id, j.kernel, bar, j.state]);
  });
  fill($("jobs").tBodies[0], rows, "no job yet", 4);
}

function drawCharts(s) {
  throughput.data.datasets[0].data = s.throughput.map(([t, n]) => ({ x: t, y: n }));
  throughput.update("none");
  const names = [...new Set(s.nodes.map((n) => n.node_id).concat(s.timeline.map((x) => x[0])))].sort();
  const byNode = Object.fromEntries(names.map((n) => [n, []]));
  for (const [node, start, end, job, kernel] of s.timeline) {
    byNode[node].push({ x: [start, Math.max(end, start + 0.002)], y: node, job, kernel });
  }
  timeline.data.labels = names;
  timeline.data.datasets = names.map((n) => ({
    label: n, data: byNode[n], backgroundColor: nodeColour(n), borderWidth: 0,
  }));
  timeline.update("none");
}

function drawEvents(s) {
  const items = s.events.slice().reverse().map(([t, kind, msg]) => {
    const li = document.createElement("li");
    li.append(text("span", `${t.toFixed(1)} s`, "t"), text("span", msg, `k-${kind}`));
    return li;
  });
  $("events").replaceChildren(...items);
}

function drawLogs(s) {
  const parts = [];
  for (const node of Object.keys(s.logs).sort()) {
    parts.push(text("h3", node));
    for (const [t, level, msg] of s.logs[node]) {
      const pre = document.createElement("pre");
      pre.append(text("span", `${t.toFixed(1)} s`, "t"), text("span", `${level}: ${msg}`, `lv-${level}`));
      parts.push(pre);
    }
  }
  if (!parts.length) parts.push(text("div", "no log lines from any board", "empty"));
  $("logs").replaceChildren(...parts);
}

function draw(s) {
  palette = s.palette || palette;
  $("cluster").textContent = s.cluster;
  const running = s.jobs.filter((j) => j.state === "running").length;
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  $("summary").textContent = `${plural(s.nodes.length, "node")} · ${plural(running, "job")} running · ` +
    `${s.tasks.pending} pending, ${s.tasks.running} running, ${s.tasks.completed} done tasks · ` +
    `up ${Math.round(s.now)} s`;
  drawNodes(s); drawJobs(s); drawCharts(s); drawEvents(s); drawLogs(s);
}

const stream = new EventSource("/api/stream");
stream.onmessage = (e) => {
  draw(JSON.parse(e.data));
  $("live").textContent = "live"; $("live").className = "";
};
stream.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "stale"; };
