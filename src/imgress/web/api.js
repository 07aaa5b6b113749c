// The API client: the key, JSON requests with retries, server-sent events read with
// fetch (EventSource cannot send an Authorization header), and PUTs with progress.

const KEY_STORE = "imgress-key";
const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
// Headers a page may not set (the browser adds them itself).
const FORBIDDEN = new Set(["content-length", "host", "connection", "accept-encoding",
  "expect", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "origin"]);

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** Worth another try later: the network, the server's own fault, or a rate limit. */
  get transient() {
    return this.status === 0 || RETRY_STATUSES.has(this.status);
  }
}

/** Fires "unauthorized" (detail: the ApiError) whenever the API answers 401. */
export const authEvents = new EventTarget();

export const auth = {
  key: localStorage.getItem(KEY_STORE) || "",
  set(key) {
    this.key = key.trim();
    if (this.key) localStorage.setItem(KEY_STORE, this.key);
    else localStorage.removeItem(KEY_STORE);
  },
};

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Exponential backoff with jitter; Retry-After (seconds) wins when the server sends it. */
export function backoff(attempt, retryAfter = null, base = 500, max = 20000) {
  const seconds = Number(retryAfter);
  if (retryAfter !== null && retryAfter !== "" && Number.isFinite(seconds)) {
    return Math.min(seconds * 1000, max);
  }
  const ceiling = Math.min(max, base * 2 ** attempt);
  return ceiling / 2 + Math.random() * ceiling / 2;
}

function authHeaders(extra = {}) {
  return auth.key ? { ...extra, Authorization: `Bearer ${auth.key}` } : extra;
}

/** The standard error body `{"error": {"code", "message"}}` → ApiError. */
export function errorFrom(status, text, retryAfter = null) {
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: a proxy's page, an object store's XML
  }
  const error = body?.error;
  const code = error?.code || (status === 0 ? "network_error" : `http_${status}`);
  const message = error?.message
    || (status === 0 ? "the server could not be reached" : `the server answered ${status}`);
  if (status === 401) authEvents.dispatchEvent(new CustomEvent("unauthorized", {
    detail: new ApiError(status, code, message) }));
  return new ApiError(status, code, message, retryAfter);
}

/**
 * A JSON request with retries on network errors, 5xx and 429. `idempotent: false`
 * retries only what the server surely did not act on (429 and unreachable).
 */
export async function api(method, path, { json, retries = 5, idempotent = true, signal } = {}) {
  const init = { method, signal, headers: authHeaders(json ? { "Content-Type": "application/json" } : {}) };
  if (json !== undefined) init.body = JSON.stringify(json);
  for (let attempt = 0; ; attempt++) {
    let error;
    try {
      const res = await fetch(path, init);
      if (res.ok) return res.status === 204 ? null : res.json();
      error = errorFrom(res.status, await res.text(), res.headers.get("retry-after"));
      if (!idempotent && error.status !== 429) throw error;
    } catch (exc) {
      if (exc instanceof ApiError || signal?.aborted) throw exc;
      error = new ApiError(0, "network_error", "the server could not be reached");
    }
    if (!error.transient || attempt >= retries) throw error;
    await sleep(backoff(attempt, error.retryAfter));
  }
}

/** Split a text/event-stream into {event, data} messages (spec: lines, blank = dispatch). */
export class EventStreamParser {
  constructor() {
    this.buffer = "";
    this.event = "message";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    const out = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const message = this.line(line);
      if (message) out.push(message);
    }
    return out;
  }

  line(line) {
    if (line === "") {
      const message = this.data.length ? { event: this.event, data: this.data.join("\n") } : null;
      this.event = "message";
      this.data = [];
      return message;
    }
    if (line.startsWith(":")) return null; // a comment (keep-alive ping)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    return null;
  }
}

/**
 * Follow an SSE endpoint until its `end` event; calls onEvent(name, parsedData).
 * Reconnects with backoff when the stream drops (the server replays finished items,
 * which the callers treat idempotently). Resolves with the `end` event's data.
 */
export async function follow(path, onEvent, { signal, retries = 8 } = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(path, { headers: authHeaders({ Accept: "text/event-stream" }), signal });
      if (!res.ok) throw errorFrom(res.status, await res.text(), res.headers.get("retry-after"));
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new EventStreamParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const { event, data } of parser.push(value)) {
          const parsed = JSON.parse(data);
          onEvent(event, parsed);
          if (event === "end") {
            reader.cancel().catch(() => {});
            return parsed;
          }
        }
      }
    } catch (exc) {
      if (signal?.aborted) throw exc;
      if (exc instanceof ApiError && !exc.transient) throw exc;
      if (attempt >= retries) throw exc;
    }
    await sleep(backoff(attempt));
  }
}

/**
 * PUT one file to a reserved slot with upload progress. The slot's url may be on
 * another origin (a presigned object-store URL): the API key is never sent there.
 * Resolves with {status, text, retryAfter}; status 0 is a network error.
 */
export function put(slot, file, onProgress, signal) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open(slot.method || "PUT", slot.url);
    for (const [name, value] of Object.entries(slot.headers || {})) {
      if (!FORBIDDEN.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    const done = () => resolve({
      status: xhr.status, text: xhr.responseText, retryAfter: xhr.getResponseHeader("retry-after"),
    });
    xhr.onload = done;
    xhr.onerror = done;
    xhr.onabort = done;
    xhr.ontimeout = done;
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(file);
  });
}
