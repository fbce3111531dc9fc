// Live progress of one job: queue position and ETA, then a bar per stage, from SSE or polling.

import { getJob, streamEvents } from "./api.js";

const STAGES = ["prior", "decoder", "upsampler"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "rejected", "held", "expired"]);
const POLL_MS = 500;

export const isTerminal = (status) => TERMINAL.has(status);

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

export class JobProgress {
  constructor(container, job) {
    this.root = el("section", { class: "progress", "data-job": job.id, "aria-label": "Progress" });
    this.status = el("p", { class: "status" });
    this.root.append(this.status);
    this.bars = {};
    for (const stage of STAGES) {
      const row = el("div", { class: "bar-row" });
      const label = el("span", { class: "bar-label" }, stage);
      const bar = el("div", {
        role: "progressbar", "aria-label": stage, "aria-valuemin": "0",
        "aria-valuemax": String(job.steps?.[stage] ?? 1), "aria-valuenow": "0",
      });
      bar.append(el("div", { class: "fill" }));
      const count = el("span", { class: "count" }, `0/${job.steps?.[stage] ?? "?"}`);
      row.append(label, bar, count);
      this.root.append(row);
      this.bars[stage] = { bar, count };
    }
    container.append(this.root);
    this.show(job);
  }

  setBar(stage, step, steps) {
    const { bar, count } = this.bars[stage];
    const total = steps || Number(bar.getAttribute("aria-valuemax")) || 1;
    const now = Math.min(step ?? 0, total);
    bar.setAttribute("aria-valuemax", String(total));
    bar.setAttribute("aria-valuenow", String(now));
    bar.querySelector(".fill").style.width = `${(100 * now) / total}%`;
    count.textContent = `${now}/${total}`;
  }

  // A job object (polling) or an event's payload (SSE), both as {status, stage, step, steps}.
  show(state) {
    const status = state.status;
    if (status === "queued") {
      const parts = ["queued"];
      if (state.queue_position != null) parts.push(`position ${state.queue_position}`);
      if (state.eta_s != null) parts.push(`ETA ${Math.round(state.eta_s)} s`);
      this.status.textContent = parts.join(", ");
    } else {
      this.status.textContent = status;
    }
    const stage = state.stage;
    if (STAGES.includes(stage)) {
      for (const done of STAGES.slice(0, STAGES.indexOf(stage))) this.setBar(done, Infinity);
      this.setBar(stage, state.progress_step ?? state.step ?? 0, state.progress_total ?? state.steps);
    }
    if (status === "succeeded") for (const s of STAGES) this.setBar(s, Infinity);
    this.root.dataset.status = status;
  }

  // Follow the job to its end; resolves with its final object.
  async follow(jobId) {
    try {
      let last = "";
      await streamEvents(jobId, (name, data) => {
        last = name;
        this.show({ ...data, status: TERMINAL.has(name) ? name : data.stage ?? "queued" });
      });
      if (TERMINAL.has(last)) return getJob(jobId);
    } catch (_) {
      // no event stream on this server, or it broke: poll
    }
    for (;;) {
      const job = await getJob(jobId);
      this.show(job);
      if (TERMINAL.has(job.status)) return job;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}
