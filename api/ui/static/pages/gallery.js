// Gallery: the key's jobs, newest first, each with its images, status and actions.

import { listJobs } from "../api.js";
import { el } from "../dom.js";
import { jobCard } from "./cards.js";

export async function renderGallery(page) {
  page.append(el("h2", {}, "Gallery"));
  const jobs = await listJobs(50);
  const grid = el("section", { class: "gallery", "aria-label": "Jobs" });
  for (const job of jobs.data) grid.append(jobCard(job, { live: true }));
  if (!jobs.data.length) grid.append(el("p", {}, "No jobs yet: make one on the Create page."));
  page.append(grid);
}
