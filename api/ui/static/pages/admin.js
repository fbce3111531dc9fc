// Admin review: held and rejected jobs with their verdicts; release or confirm with a reason.

import { request } from "../api.js";
import { badge, el, guarded } from "../dom.js";
import { imageList } from "./cards.js";

function verdictRows(verdicts) {
  return el("table", { class: "verdicts" },
    el("thead", {}, el("tr", {}, ...["stage", "checker", "decision", "scores", "thresholds",
      "matched terms"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...verdicts.map((v) => el("tr", {},
      el("td", {}, v.stage), el("td", {}, v.checker), el("td", {}, v.decision),
      el("td", {}, JSON.stringify(v.scores)), el("td", {}, JSON.stringify(v.thresholds)),
      el("td", {}, (v.matched_terms || [])
        .map((t) => (typeof t === "string" ? t : JSON.stringify(t))).join(", "))))));
}

function reviewCard(item, refresh) {
  const { job } = item;
  const reason = el("input", { type: "text", id: `reason-${job.id}`, required: true });
  const act = (action) => guarded(async () => {
    if (!reason.value.trim()) throw new Error("give a reason for the decision");
    await request("POST", `/v1/admin/moderation/jobs/${job.id}/${action}`,
      { json: { reason: reason.value } });
    await refresh();
  });
  return el("article", { class: "job", "data-job": job.id, "data-status": job.status },
    el("header", {}, el("a", { href: `#/jobs/${job.id}` }, job.prompt || job.kind), " ",
      badge(job.status)),
    verdictRows(item.verdicts),
    imageList(job),
    el("div", { class: "field" }, el("label", { for: reason.id }, "Reason"), reason),
    el("div", { class: "row" },
      job.status === "held"
        ? el("button", { type: "button", onclick: act("release") }, "Release") : null,
      el("button", { type: "button", onclick: act("confirm") }, "Confirm")));
}

export async function renderAdmin(page) {
  page.append(el("h2", {}, "Admin review"));
  const list = el("section", { "aria-label": "Moderated jobs" });
  page.append(list);
  const refresh = async () => {
    const body = await request("GET", "/v1/admin/moderation/jobs");
    list.replaceChildren(...body.data.map((item) => reviewCard(item, refresh)));
    if (!body.data.length) list.append(el("p", {}, "Nothing held or rejected."));
  };
  await refresh();
}
