// Job detail: its parameters, its reproducibility manifest, and a Replay button.

import { ApiError, getJob, request } from "../api.js";
import { el, guarded } from "../dom.js";
import { jobCard } from "./cards.js";

const PARAMS = ["id", "kind", "status", "prompt", "n", "size", "seed", "sampler", "steps",
  "prior_guidance", "decoder_guidance", "created_at", "finished_at", "status_reason"];

function table(rows) {
  return el("table", { class: "params" }, el("tbody", {}, ...rows.map(([k, v]) =>
    el("tr", {}, el("th", { scope: "row" }, k),
      el("td", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v ?? ""))))));
}

export async function renderJob(page, jobId) {
  const job = await getJob(jobId);
  page.append(el("h2", {}, "Job"), jobCard(job, { live: true }));
  page.append(el("h3", {}, "Parameters"), table(PARAMS.filter((k) => k in job).map((k) => [k, job[k]])));

  page.append(el("button", { type: "button", onclick: guarded(async () => {
    const replayed = await request("POST", `/v1/jobs/${encodeURIComponent(jobId)}/replay`);
    location.hash = `#/jobs/${replayed.id}`;
  }) }, "Replay"));
  const manifest = el("section", { "aria-label": "Manifest" }, el("h3", {}, "Manifest"));
  page.append(manifest);
  try {
    const body = await request("GET", `/v1/jobs/${encodeURIComponent(jobId)}/manifest`);
    manifest.append(el("pre", {}, JSON.stringify(body, null, 2)));
  } catch (err) {
    // A job that has not run yet (or was never recorded) has no manifest: say why.
    manifest.append(el("p", {}, `No manifest: ${err instanceof ApiError ? err.message : err}`));
  }
}
