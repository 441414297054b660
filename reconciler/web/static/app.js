// The dashboard's live parts: the jobs and events tables poll the JSON API every two seconds
// and are rebuilt from its answer. Every value goes in as text (textContent), never as HTML.
"use strict";

const POLL_MS = 2000;

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function jobRow(job) {
  const tr = document.createElement("tr");
  tr.dataset.job = job.job_code;
  for (const key of ["job_code", "rule", "asset", "platform", "job_type"]) cell(tr, job[key]);
  cell(tr, job.status).className = "j-" + job.status;
  const progress = document.createElement("progress");
  progress.max = 100;
  progress.value = job.progress_percent || 0;
  cell(tr, "").appendChild(progress);
  for (const key of ["created_at", "completed_at", "error_message"]) cell(tr, job[key]);
  return tr;
}

function eventRow(event) {
  const tr = document.createElement("tr");
  for (const key of ["event_time", "event_type", "event_status", "job", "asset", "platform", "message"]) {
    cell(tr, event[key]);
  }
  return tr;
}

function empty(columns, text) {
  const tr = document.createElement("tr");
  tr.className = "empty";
  const td = cell(tr, text);
  td.colSpan = columns;
  td.className = "muted";
  return tr;
}

async function refresh(table, url, key, makeRow, columns) {
  if (document.hidden) return;
  try {
    const answer = await fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" });
    if (!answer.ok) return;
    const found = await answer.json();
    const body = table.tBodies[0];
    const rows = (found[key] || []).map(makeRow);
    body.replaceChildren(...(rows.length ? rows : [empty(columns, "no " + key)]));
    table.dataset.updated = new Date().toISOString();
  } catch (error) {
    // the server restarting, or the network: try again at the next tick
  }
}

function live(table, url, key, makeRow, columns) {
  const tick = () => refresh(table, url, key, makeRow, columns);
  setInterval(tick, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const jobs = document.querySelector("table#jobs[data-live]");
  if (jobs) live(jobs, jobs.dataset.live, "jobs", jobRow, 10);
  const holder = document.querySelector("[data-live-events]");
  if (holder) live(holder.querySelector("table"), holder.dataset.liveEvents, "events", eventRow, 7);
});
