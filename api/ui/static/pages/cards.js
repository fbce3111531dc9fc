// A job as a card: prompt, status badge, images (prompt as alt text), cancel, more like this,
// download and a link to its detail page. Used by Create (live) and the Gallery.

import { cancelJob, request, submitForm } from "../api.js";
import { badge, el, guarded } from "../dom.js";
import { JobProgress, isTerminal } from "../progress.js";

function describe(job) {
  return job.prompt || (job.kind === "variation" ? "variation" : job.kind);
}

// A variation of one output: by its embedding id when the server gives one, else the PNG itself.
async function moreLikeThis(job, image) {
  const form = new FormData();
  form.append("kind", "variation");
  form.append("n", "1");
  // A job sent without a size records none (null): the variation then takes the default, as
  // its original did, rather than the string "null".
  if (job.size) form.append("size", job.size);
  if (image.embedding_id) {
    form.append("embedding_id", image.embedding_id);
  } else {
    const blob = await request("GET", image.url);
    form.append("image", blob, "image.png");
  }
  const created = await submitForm(form);
  location.hash = `#/jobs/${created.id}`;
}

export function imageList(job) {
  const list = el("div", { class: "images" });
  for (const image of job.images || []) {
    const figure = el("figure", {},
      el("img", { src: image.url, alt: describe(job), width: image.width, height: image.height }),
      el("figcaption", {},
        el("a", { href: image.url, download: `${job.id}_${image.index}.png` }, "Download"),
        el("button", { type: "button", onclick: guarded(() => moreLikeThis(job, image)) },
          "More like this")));
    list.append(figure);
  }
  return list;
}

// Why moderation stopped the job: its category and stage (the API shows no more to a client).
function moderationText(job) {
  const { decision, category, stage } = job.moderation;
  const what = decision === "hold" ? "Held for review" : "Refused by the content policy";
  const appeal = job.appeal ? ` (appeal ${job.appeal.status})` : "";
  return `${what}: ${category}, at the ${stage.replace("_", " ")} check${appeal}`;
}

export function jobCard(job, { live = false } = {}) {
  const card = el("article", { class: "job", "data-job": job.id, "data-status": job.status });
  const head = el("header", {},
    el("a", { href: `#/jobs/${job.id}` }, describe(job)), " ", badge(job.status));
  card.append(head);
  const body = el("div", { class: "job-body" });
  card.append(body);

  const render = (current) => {
    card.dataset.status = current.status;
    head.querySelector(".badge").replaceWith(badge(current.status));
    body.replaceChildren();
    if (current.error?.message) body.append(el("p", { class: "job-error" }, current.error.message));
    if (current.moderation) body.append(el("p", { class: "job-moderation" }, moderationText(current)));
    body.append(imageList(current));
    // A held job waits for a reviewer: its owner may still cancel it, as the API allows.
    if (!isTerminal(current.status) || current.status === "held") {
      body.append(el("button", {
        type: "button", class: "cancel",
        onclick: guarded(async () => render(await cancelJob(current.id))),
      }, "Cancel"));
    }
  };
  render(job);
  if (live && !isTerminal(job.status)) {
    const progress = new JobProgress(card, job);
    card.append(el("button", {
      type: "button", class: "cancel",
      onclick: guarded(async () => progress.show(await cancelJob(job.id))),
    }, "Cancel"));
    progress.follow(job.id).then((done) => {
      card.querySelectorAll(":scope > button.cancel").forEach((b) => b.remove());
      render(done);
    });
  }
  return card;
}
