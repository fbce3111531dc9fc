// Create: a prompt to generate from, or an image to vary or to edit inside a painted mask.

import { submitForm } from "../api.js";
import { el, guarded } from "../dom.js";
import { MaskPainter } from "../mask.js";
import { jobCard } from "./cards.js";

const SIZES = ["64x64", "128x128", "256x256", "512x512", "1024x1024"];

function field(id, label, control) {
  control.id = id;
  return el("div", { class: "field" }, el("label", { for: id }, label), control);
}

export function renderCreate(page) {
  const prompt = el("textarea", { rows: "2", placeholder: "a red circle on a white background" });
  const n = el("input", { type: "number", min: "1", max: "10", value: "1" });
  const size = el("select", {}, ...SIZES.map((s) => el("option", { value: s }, s)));
  size.value = "256x256";
  const steps = el("input", { type: "text", placeholder: "family defaults", size: "10" });
  const image = el("input", { type: "file", accept: "image/png,image/jpeg,image/webp" });
  const editor = el("div", { class: "editor", hidden: true });
  const results = el("section", { class: "results", "aria-label": "Results" });
  let painter = null;

  const form = (kind) => {
    const data = new FormData();
    data.append("kind", kind);
    if (kind !== "variation" || prompt.value.trim()) data.append("prompt", prompt.value);
    data.append("n", n.value);
    data.append("size", size.value);
    const parts = steps.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (parts.length === 3) {
      ["steps_prior", "steps_decoder", "steps_upsampler"].forEach((k, i) => data.append(k, parts[i]));
    }
    return data;
  };
  const send = async (data) => {
    const job = await submitForm(data);
    results.prepend(jobCard(job, { live: true }));
  };

  image.addEventListener("change", () => {
    const file = image.files[0];
    if (!file) return;
    const preview = el("img", { alt: "Chosen image", class: "preview" });
    const canvas = el("canvas", { "aria-label": "Mask", role: "img", class: "mask" });
    const stack = el("div", { class: "mask-stack" }, preview, canvas);
    const brush = el("input", { type: "radio", name: "tool", value: "brush", checked: true });
    const eraser = el("input", { type: "radio", name: "tool", value: "eraser" });
    const brushSize = el("input", { type: "range", min: "1", max: "64", value: "12" });
    const undo = el("button", { type: "button" }, "Undo");
    const tools = el("div", { class: "tools" },
      el("label", {}, brush, " Brush"), el("label", {}, eraser, " Eraser"),
      field("brush-size", "Brush size", brushSize), undo);
    editor.replaceChildren(stack, tools);
    editor.hidden = false;
    preview.addEventListener("load", () => {
      painter = new MaskPainter(canvas, preview);
      painter.size = Number(brushSize.value);
    }, { once: true });
    for (const radio of [brush, eraser]) {
      radio.addEventListener("change", () => { if (painter) painter.mode = radio.value; });
    }
    brushSize.addEventListener("input", () => { if (painter) painter.size = Number(brushSize.value); });
    undo.addEventListener("click", () => painter?.undo());
    preview.src = URL.createObjectURL(file);
  });

  const generate = el("button", { type: "submit" }, "Generate");
  const vary = el("button", { type: "button", onclick: guarded(async () => {
    if (!image.files[0]) throw new Error("choose an image to vary first");
    const data = form("variation");
    data.append("image", image.files[0]);
    await send(data);
  }) }, "Vary");
  const edit = el("button", { type: "button", onclick: guarded(async () => {
    if (!image.files[0] || !painter) throw new Error("choose an image and paint the area to edit");
    if (!painter.paintedPixels()) throw new Error("paint the area to repaint on the mask first");
    const data = form("edit");
    data.append("image", image.files[0]);
    data.append("mask", await painter.toBlob(), "mask.png");
    await send(data);
  }) }, "Edit");

  const formEl = el("form", { class: "create", onsubmit: guarded(() => send(form("generate"))) },
    field("prompt", "Prompt", prompt),
    el("div", { class: "row" }, field("n", "n", n), field("size", "Size", size),
      field("steps", "Steps (prior,decoder,upsampler)", steps)),
    el("div", { class: "row" }, generate),
    field("image", "Image", image),
    editor,
    el("div", { class: "row" }, vary, edit));
  page.append(el("h2", {}, "Create"), formEl, results);
}
