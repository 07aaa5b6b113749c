// The upload panel: the batch's bar (bytes, rate, time left), a bar per file being
// sent, and the files that did not make it (the server's reason, a retry button).
// Rows exist only for running and failed files, so two thousand files stay light.

import { $, announce, el, formatBytes, formatDuration, perFrame, plural } from "./ui.js";

const ACTIVE = new Set(["uploading", "retrying"]);
const PROBLEM = new Set(["rejected", "failed"]);

export class UploadPanel {
  constructor(queue) {
    this.queue = queue;
    this.rows = new Map(); // item id → row
    this.samples = []; // [time, bytes] for the rate over the last seconds
    this.lastAnnounce = 0;
    this.render = perFrame(() => this.draw());
    this.dirty = new Set();
    queue.addEventListener("change", (e) => { this.dirty.add(e.detail); this.render(); });
    queue.addEventListener("idle", () => this.done());
    $("#retry-all").addEventListener("click", () => queue.retryAll());
    $("#problems").addEventListener("click", (e) => {
      const id = Number(e.target.closest("[data-item]")?.dataset.item);
      const item = queue.items.find((i) => i.id === id);
      if (item && e.target.classList.contains("retry")) queue.retry(item);
    });
    setInterval(() => { if (this.queue.busy) this.render(); }, 500);
  }

  draw() {
    $("#upload-panel").hidden = false;
    for (const item of this.dirty) this.drawItem(item);
    this.dirty.clear();
    this.drawTotals();
  }

  drawItem(item) {
    let row = this.rows.get(item.id);
    const where = ACTIVE.has(item.status) ? "active" : PROBLEM.has(item.status) ? "problem" : null;
    if (row && row.where !== where) {
      row.li.remove();
      this.rows.delete(item.id);
      row = null;
    }
    if (!where) return;
    if (!row) {
      row = where === "active" ? this.activeRow(item) : this.problemRow(item);
      row.where = where;
      this.rows.set(item.id, row);
      $(where === "active" ? "#active" : "#problems").append(row.li);
    }
    if (where === "active") {
      row.bar.value = item.sent;
      row.state.textContent = item.status === "retrying" ? "retrying…"
        : `${Math.floor((100 * item.sent) / Math.max(1, item.size))} %`;
    }
  }

  activeRow(item) {
    const bar = el("progress", { max: item.size, value: 0, "aria-label": `${item.name} upload progress` });
    const state = el("span", { className: "state muted" });
    const li = el("li", { className: "file" }, el("span", { className: "name" }, item.name), bar, state);
    return { li, bar, state };
  }

  problemRow(item) {
    const reason = item.error?.message || item.status;
    const li = el("li", { className: `file ${item.status}`, dataset: { item: item.id } },
      el("span", { className: "name" }, item.name),
      el("span", { className: "reason" }, `${item.status === "rejected" ? "Rejected" : "Failed"}: ${reason}`),
      item.status === "failed"
        ? el("button", { type: "button", className: "retry secondary", "aria-label": `Retry ${item.name}` }, "Retry")
        : null);
    return { li };
  }

  drawTotals() {
    const q = this.queue;
    const sent = q.sentBytes;
    const now = performance.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const rate = now - t0 > 300 ? ((sent - b0) * 1000) / (now - t0) : 0;
    const bar = $("#total-progress");
    bar.max = Math.max(1, q.totalBytes);
    bar.value = Math.min(sent, q.totalBytes);
    $("#problems-box").hidden = !(q.counts.rejected || q.counts.failed);
    $("#retry-all").hidden = !q.counts.failed;
    const finished = q.counts.created + q.counts.duplicate + q.counts.rejected + q.counts.failed;
    const parts = [`${finished} of ${plural(q.batchSize, "file")} done`,
      `${formatBytes(sent)} of ${formatBytes(q.totalBytes)}`];
    const waiting = q.items.filter((i) => i.status === "uploaded" || i.status === "committing").length;
    if (waiting) parts.push(`${waiting} to commit`);
    if (q.busy) {
      parts.push(`${formatBytes(rate)}/s`,
        rate > 0 ? `${formatDuration((q.totalBytes - sent) / rate)} left` : "");
    }
    const counts = Object.entries(q.counts).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`);
    const text = parts.filter(Boolean).join(" · ") + (counts.length ? ` — ${counts.join(", ")}` : "");
    $("#total-text").textContent = text;
    if (now - this.lastAnnounce > 3000) {
      this.lastAnnounce = now;
      announce(`Uploading: ${finished} of ${q.batchSize} files done`);
    }
  }

  done() {
    this.render();
    this.lastAnnounce = performance.now();
    const c = this.queue.counts;
    announce(`Upload finished: ${c.created} new, ${c.duplicate} duplicate, ${c.rejected} rejected, ${c.failed} failed`);
    this.samples = [];
  }
}
