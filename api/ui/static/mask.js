// The mask painter: brush and eraser strokes on a canvas over the image, brush size and undo.
// The canvas holds the painted area; the mask sent to the server is opaque everywhere except
// where it is painted, which is transparent (OpenAI's convention: alpha 0 = repaint here).

const UNDO_DEPTH = 30;

export class MaskPainter {
  constructor(canvas, image) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.mode = "brush";
    this.size = 12;
    this.undoStack = [];
    this.drawing = false;
    this.last = null;
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    canvas.addEventListener("pointerdown", (e) => this.start(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const name of ["pointerup", "pointerleave", "pointercancel"]) {
      canvas.addEventListener(name, () => this.stop());
    }
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * this.canvas.width) / box.width,
      y: ((event.clientY - box.top) * this.canvas.height) / box.height,
    };
  }

  start(event) {
    event.preventDefault();
    this.canvas.setPointerCapture?.(event.pointerId);
    this.undoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    if (this.undoStack.length > UNDO_DEPTH) this.undoStack.shift();
    this.drawing = true;
    this.last = this.point(event);
    this.stroke(this.last, this.last);
  }

  move(event) {
    if (!this.drawing) return;
    const next = this.point(event);
    this.stroke(this.last, next);
    this.last = next;
  }

  stop() {
    this.drawing = false;
  }

  stroke(from, to) {
    const ctx = this.ctx;
    ctx.globalCompositeOperation = this.mode === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = "rgba(0, 190, 255, 1)";
    ctx.lineWidth = this.size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x + 0.01, to.y);
    ctx.stroke();
    this.canvas.dispatchEvent(new Event("maskchange"));
  }

  undo() {
    const previous = this.undoStack.pop();
    if (previous) this.ctx.putImageData(previous, 0, 0);
    this.canvas.dispatchEvent(new Event("maskchange"));
  }

  paintedPixels() {
    const { data } = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
    let count = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) count += 1;
    return count;
  }

  // The mask PNG: black and opaque, transparent where painted.
  toBlob() {
    const { width, height } = this.canvas;
    const painted = this.ctx.getImageData(0, 0, width, height).data;
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const octx = out.getContext("2d");
    const mask = octx.createImageData(width, height);
    for (let i = 0; i < painted.length; i += 4) {
      mask.data[i + 3] = painted[i + 3] > 0 ? 0 : 255;
    }
    octx.putImageData(mask, 0, 0);
    return new Promise((resolve) => out.toBlob(resolve, "image/png"));
  }
}
