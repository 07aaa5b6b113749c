// Small DOM helpers and formatting shared by the page's parts.

/** el("li", {className: "x", dataset: {id}}, child, "text") */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria-") || key === "role" || key === "for") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function formatBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 1) return "< 1 s";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export const plural = (n, word, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;

/** Run fn at most once per animation frame, however often it is asked for. */
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

/** Debounce with a ceiling: runs `wait` ms after the last call, or `maxWait` after the first. */
export function debounce(fn, wait, maxWait = wait * 4) {
  let timer = null;
  let first = 0;
  return () => {
    const now = performance.now();
    if (!timer) first = now;
    clearTimeout(timer);
    const delay = Math.max(0, Math.min(wait, first + maxWait - now));
    timer = setTimeout(() => { timer = null; fn(); }, delay);
  };
}

/** A polite announcement for screen readers (the region is aria-live). */
export function announce(text) {
  const region = $("#announcer");
  if (region) region.textContent = text;
}

/** The page's alert line (role=alert): a message, optionally with an action button. */
export function showAlert(message, action = null) {
  const box = $("#alert");
  box.replaceChildren(el("span", {}, message));
  if (action) {
    box.append(el("button", { type: "button", className: "link", onclick: action.run }, action.label));
  }
  box.append(el("button", { type: "button", className: "close", "aria-label": "Dismiss",
    onclick: clearAlert }, "×"));
  box.hidden = false;
}

export function clearAlert() {
  const box = $("#alert");
  box.hidden = true;
  box.replaceChildren();
}
