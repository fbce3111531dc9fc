// Small DOM helpers the pages share, and the one place errors are shown.

import { ApiError } from "./api.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value != null) node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

export function showError(err) {
  const box = document.getElementById("error");
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
  if (err instanceof ApiError && err.status === 401) {
    document.dispatchEvent(new CustomEvent("unclip:need-key"));
  }
}

export function clearError() {
  const box = document.getElementById("error");
  box.hidden = true;
  box.textContent = "";
}

// Run an async action from a button; its error shown as the server's message.
export function guarded(action) {
  return async (event) => {
    event?.preventDefault?.();
    clearError();
    try {
      await action(event);
    } catch (err) {
      showError(err);
    }
  };
}

export function badge(status) {
  return el("span", { class: `badge badge-${status}` }, status);
}
