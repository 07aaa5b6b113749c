// Batch downloads: a job per request (selected images or pasted URLs), its progress
// live from the job's events, then the zip saved through its signed archive_url (the
// browser streams it to disk; nothing is held in memory here).

import { api, follow } from "./api.js";
import { el, formatBytes, plural } from "./ui.js";

export class Downloads extends EventTarget {
  constructor(list) {
    super();
    this.list = list;
  }

  /** items: [{image_id}] or [{url, name?}]; resolves when the job has ended. */
  async start(items, name) {
    const job = await api("POST", "/v1/downloads", { json: { items, name }, idempotent: false });
    const row = this.row(job, name);
    this.list.prepend(row.li);
    this.list.closest("section").hidden = false;
    try {
      const end = await follow(`/v1/downloads/${job.id}/events`, (event, data) => {
        if (event === "item") this.progress(row, data);
      });
      this.finish(row, { ...job, ...end });
    } catch (exc) {
      row.status.textContent = `Could not follow the download: ${exc.message}`;
      row.li.classList.add("failed");
    }
  }

  row(job, name) {
    const bar = el("progress", { max: job.total, value: 0 });
    const status = el("p", { className: "status" }, `Queued: ${plural(job.total, "item")}`);
    const problems = el("ul", { className: "problems" });
    const action = el("div", { className: "actions" });
    const li = el("li", { className: "download", dataset: { id: job.id } },
      el("h3", {}, name || job.id), bar, status, action, problems);
    return { li, bar, status, problems, action, job, bytes: 0 };
  }

  progress(row, item) {
    row.bar.value = item.done + item.failed;
    row.bytes += item.bytes || 0;
    row.status.textContent = `${item.done + item.failed} of ${item.total} fetched`
      + ` (${formatBytes(row.bytes)})${item.failed ? `, ${item.failed} failed` : ""}`;
    if (item.status === "failed") {
      const why = item.error?.message || "failed";
      row.problems.append(el("li", {}, el("strong", {}, item.name || item.source || `#${item.index}`), `: ${why}`));
    }
  }

  finish(row, job) {
    row.bar.value = row.bar.max;
    const ok = job.status === "done";
    row.li.classList.add(ok ? "done" : "failed");
    row.status.textContent = ok
      ? `Ready: ${plural(job.done, "file")} (${formatBytes(job.bytes ?? row.bytes)})`
        + `${job.failed ? `, ${job.failed} could not be fetched` : ""}`
      : `The download failed${job.failed ? `: ${plural(job.failed, "item")} could not be fetched` : ""}`;
    if (!ok || !job.archive_url) return;
    const link = el("a", { href: job.archive_url, className: "button", download: "" }, "Save zip again");
    row.action.replaceChildren(link);
    // Start saving it now: a plain navigation to an attachment, streamed by the browser.
    const auto = el("a", { href: job.archive_url, download: "", hidden: true });
    document.body.append(auto);
    auto.click();
    auto.remove();
    this.dispatchEvent(new CustomEvent("done", { detail: job }));
  }
}

/** The lines of the URL form → items, and the lines that are not http(s) URLs. */
export function parseUrls(text) {
  const items = [];
  const bad = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    try {
      const url = new URL(line);
      if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("scheme");
      items.push({ url: url.href });
    } catch {
      bad.push(line);
    }
  }
  return { items, bad };
}
