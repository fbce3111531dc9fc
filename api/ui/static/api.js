// The browser's client of the jobs API: the key kept in localStorage, errors as the server's text.

const KEY_STORAGE = "unclip.apiKey";

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || null;
    }
  } catch (_) {
    // not JSON: keep the status line
  }
  return new ApiError(message, response.status, code);
}

export async function request(method, path, { json, form } = {}) {
  const init = { method, headers: headers() };
  if (json !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`cannot reach the server: ${err.message}`, 0, null);
  }
  if (!response.ok) throw await errorFrom(response);
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

export const getJob = (id) => request("GET", `/v1/jobs/${encodeURIComponent(id)}`);
export const listJobs = (limit = 50) => request("GET", `/v1/jobs?limit=${limit}`);
export const cancelJob = (id) => request("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`);
export const submitForm = (form) => request("POST", "/v1/jobs", { form });
export const submitJson = (json) => request("POST", "/v1/jobs", { json });

// Server-sent events over fetch (EventSource cannot send an Authorization header).
// Calls onEvent(name, data) per event; resolves when the stream ends, rejects if there is none.
export async function streamEvents(id, onEvent, signal) {
  const response = await fetch(`/v1/jobs/${encodeURIComponent(id)}/events`, {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
  });
  if (!response.ok || !(response.headers.get("content-type") || "").includes("event-stream")) {
    throw new ApiError("no event stream", response.status, null);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      let parsed = {};
      try {
        parsed = data.length ? JSON.parse(data.join("\n")) : {};
      } catch (_) {
        parsed = { text: data.join("\n") };
      }
      onEvent(name, parsed);
    }
  }
}
