// The A/B page's behaviour: no framework, no build. Sides are randomised by the server; the page only says
// "left", "right", "tie" or "skip" and the server maps that to A or B.
"use strict";

async function abPost(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
  return data;
}

function abStatus(text, isError) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function abVotePage() {
  const state = { rater: null, token: null, busy: false };
  const nameInput = document.getElementById("rater");
  nameInput.value = localStorage.getItem("ab-rater") || "";

  function showProgress(p) {
    document.getElementById("progress-fill").style.width = (100 * p.answered / Math.max(1, p.total)) + "%";
    document.getElementById("progress-text").textContent = p.answered + " of " + p.total + " pairs answered";
  }

  async function next() {
    const data = await abPost("/api/next", { rater: state.rater });
    showProgress(data.progress);
    if (data.done) {
      state.token = null;
      document.getElementById("prompt").textContent = "All pairs answered — thank you!";
      document.getElementById("left").removeAttribute("src");
      document.getElementById("right").removeAttribute("src");
      document.body.dataset.state = "done";
      return;
    }
    state.token = data.token;
    document.getElementById("prompt").textContent = data.prompt;
    document.getElementById("left").src = data.left;
    document.getElementById("right").src = data.right;
    document.body.dataset.token = data.token;
    document.body.dataset.state = "ready";
  }

  async function vote(choice) {
    if (!state.token || state.busy) return;
    state.busy = true;
    document.body.dataset.state = "sending";
    try {
      const data = await abPost("/api/vote", { rater: state.rater, token: state.token, choice: choice });
      abStatus("recorded: " + choice + (data.revisions ? " (changed an earlier vote)" : ""), false);
      await next();
    } catch (err) {
      abStatus(err.message, true);
      document.body.dataset.state = "error";
    } finally {
      state.busy = false;
    }
  }

  document.getElementById("who").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.rater = nameInput.value.trim();
    localStorage.setItem("ab-rater", state.rater);
    try {
      await next();
      document.getElementById("who").classList.add("hidden");
      document.getElementById("voting").classList.remove("hidden");
      abStatus("", false);
    } catch (err) {
      abStatus(err.message, true);
    }
  });
  document.querySelectorAll("[data-choice]").forEach((el) => {
    el.addEventListener("click", () => vote(el.dataset.choice));
  });
  document.addEventListener("keydown", (event) => {
    if (event.target === nameInput) return;
    const choice = { "1": "left", "2": "right", "0": "tie", s: "skip", S: "skip" }[event.key];
    if (choice) {
      event.preventDefault();
      vote(choice);
    }
  });
}

function abPercent(x) {
  return Number.isFinite(x) ? (100 * x).toFixed(1) + "%" : "n/a";
}

function abInterval(m) {
  return abPercent(m.mean) + " [" + abPercent(m.ci95[0]) + ", " + abPercent(m.ci95[1]) + "]";
}

function abChart(svg, rows) {
  // One bar per outcome with its 95% interval as a whisker; x axis 0..100%.
  const ns = "http://www.w3.org/2000/svg";
  const left = 130, width = 460, rowHeight = 44;
  svg.innerHTML = "";
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  rows.forEach(([label, m, colour], i) => {
    const y = 10 + i * rowHeight;
    const x = (v) => left + width * Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0));
    add("text", { x: 0, y: y + 20, "font-size": 13 }, label);
    add("rect", { x: left, y: y + 6, width: x(m.mean) - left, height: 20, fill: colour });
    add("line", { x1: x(m.ci95[0]), x2: x(m.ci95[1]), y1: y + 16, y2: y + 16, stroke: "#111", "stroke-width": 2 });
    add("text", { x: left + width + 8, y: y + 20, "font-size": 12 }, abPercent(m.mean));
  });
  add("line", { x1: left + width / 2, x2: left + width / 2, y1: 4, y2: 10 + rows.length * rowHeight, stroke: "#999", "stroke-dasharray": "3 3" });
}

async function abResultsPage() {
  try {
    const response = await fetch("/api/results");
    const r = await response.json();
    document.getElementById("name").textContent = r.name;
    document.getElementById("sides").textContent = "A = " + r.a + "; B = " + r.b + " (sides were shown in random order)";
    document.getElementById("summary").textContent =
      r.votes + " votes (" + r.skips + " skips) on " + r.pairs + " pairs. B preferred " + abInterval(r.rates.b_preferred) +
      ", tie " + abInterval(r.rates.tie) + ", A preferred " + abInterval(r.rates.a_preferred) +
      "; B's win rate among decided votes " + abInterval(r.rates.b_win_rate_decided) + " (95% bootstrap intervals).";
    abChart(document.getElementById("chart"), [
      ["B preferred", r.rates.b_preferred, "#3a7d44"],
      ["tie", r.rates.tie, "#9a9a9a"],
      ["A preferred", r.rates.a_preferred, "#b0543a"],
    ]);
    document.getElementById("agreement").textContent =
      "The reward model ranks the pair as the voter did on " + abInterval(r.reward_agreement) + " of " +
      r.reward_agreement.n + " decided votes.";
    const raters = document.querySelector("#raters tbody");
    for (const [name, c] of Object.entries(r.raters)) {
      const tr = raters.insertRow();
      [name, c.b, c.tie, c.a, c.skip].forEach((v) => { tr.insertCell().textContent = v; });
    }
    const votes = document.querySelector("#votes tbody");
    for (const v of r.recent) {
      const tr = votes.insertRow();
      tr.dataset.rater = v.rater;
      tr.dataset.pair = v.pair_id;
      tr.dataset.choice = v.choice;
      [v.rater, v.pair_id, v.prompt, v.choice, v.revisions].forEach((x) => { tr.insertCell().textContent = x; });
    }
    document.body.dataset.state = "ready";
  } catch (err) {
    abStatus(err.message, true);
  }
}
