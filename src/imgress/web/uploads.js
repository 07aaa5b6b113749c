// The upload queue: direct uploads (reserve slots in batches, PUT with bounded
// concurrency, commit), the same commit queue as the Python client: a finished put
// waits in the queue, which is committed when it is full, when no put is running, or
// after a pause with nothing new. No DOM here: the panel listens to its events.

import { ApiError, api, backoff, errorFrom, put, sleep } from "./api.js";

const MAX_TRIES = 6;
const TYPES = {
  jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", gif: "image/gif",
  webp: "image/webp", avif: "image/avif", heic: "image/heic", heif: "image/heif",
  tif: "image/tiff", tiff: "image/tiff", bmp: "image/bmp",
};

function contentType(file) {
  if (/^[\w.+-]+\/[\w.+-]+$/.test(file.type)) return file.type.toLowerCase();
  const ext = file.name.split(".").pop().toLowerCase();
  return TYPES[ext] || "application/octet-stream";
}

let nextId = 1;

/**
 * Events (all on the queue): "change" (detail: the item; its status, sent bytes or
 * error changed), "committed" (detail: {job_id, items: [{item, result}]}), "idle".
 * Item statuses: queued, uploading, retrying, uploaded, committing, then created,
 * duplicate, rejected (the server refused the file) or failed (worth a retry).
 */
export class UploadQueue extends EventTarget {
  constructor({ concurrency = 5, commitBatch = 100, commitPause = 1000 } = {}) {
    super();
    Object.assign(this, { concurrency, commitBatch, commitPause });
    this.items = [];
    this.waiting = [];
    this.toCommit = [];
    this.running = 0;
    this.committing = false;
    this.lastAdded = 0;
    this.timer = null;
    this.reserving = null;
    this.resetTotals();
  }

  resetTotals() {
    this.totalBytes = 0;
    this.doneBytes = 0; // bytes of puts that finished, whatever became of them after
    this.counts = { created: 0, duplicate: 0, rejected: 0, failed: 0 };
    this.batchSize = 0;
    this.startedAt = performance.now();
  }

  get busy() {
    return this.running > 0 || this.waiting.length > 0 || this.toCommit.length > 0 || this.committing;
  }

  get sentBytes() {
    let inFlight = 0;
    for (const item of this.items) if (item.status === "uploading") inFlight += item.sent;
    return this.doneBytes + inFlight;
  }

  add(files) {
    if (!this.busy) this.resetTotals();
    const added = [];
    for (const file of files) {
      const item = { id: nextId++, file, name: file.relativePath || file.name, size: file.size,
        status: "queued", sent: 0, slot: null, error: null, result: null, uploadId: null };
      this.items.push(item);
      this.batchSize++;
      if (file.size === 0) {
        this.settle(item, "rejected", { code: "empty_file", message: "the file is empty" });
        continue;
      }
      this.totalBytes += file.size;
      this.waiting.push(item);
      added.push(item);
    }
    this.pump();
    return added;
  }

  /** Try a failed file again: its put, or only its commit when the bytes are there. */
  retry(item) {
    if (item.status !== "failed") return;
    this.counts.failed--;
    item.error = null;
    if (item.uploadId) {
      this.setStatus(item, "uploaded");
      this.toCommit.push(item);
      this.lastAdded = performance.now();
      this.kick();
      return;
    }
    this.totalBytes += item.size;
    item.sent = 0;
    this.setStatus(item, "queued");
    this.waiting.push(item);
    this.pump();
  }

  retryAll() {
    for (const item of this.items.filter((i) => i.status === "failed")) this.retry(item);
  }

  setStatus(item, status) {
    item.status = status;
    this.emit("change", item);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  settle(item, status, error = null, result = null) {
    item.error = error;
    item.result = result;
    this.counts[status]++;
    this.setStatus(item, status);
  }

  pump() {
    while (this.running < this.concurrency && this.waiting.length) {
      this.upload(this.waiting.shift());
    }
    this.kick();
  }

  failWaiting(error) {
    for (const item of this.waiting.splice(0)) {
      this.totalBytes -= item.size;
      this.settle(item, "failed", error);
    }
  }

  // -- slots ------------------------------------------------------------------------

  async slotFor(item) {
    while (!item.slot) {
      if (!this.reserving) {
        this.reserving = this.reserveAhead(item).finally(() => { this.reserving = null; });
      }
      await this.reserving;
      if (item.reserveError) {
        const error = item.reserveError;
        item.reserveError = null;
        throw error;
      }
    }
    const slot = item.slot;
    item.slot = null; // a slot's token works once
    return slot;
  }

  /** One request reserves slots for this file and the next ones waiting. */
  async reserveAhead(first) {
    const ahead = this.waiting.filter((i) => !i.slot).slice(0, this.commitBatch - 1);
    const batch = [first, ...ahead];
    try {
      await this.reserve(batch);
    } catch (exc) {
      if (!(exc instanceof ApiError) || exc.transient || exc.status === 401 || batch.length === 1) {
        first.reserveError = exc;
        return;
      }
      // One file the server will not take (too large, say) must not sink the others.
      try {
        await this.reserve([first]);
      } catch (single) {
        first.reserveError = single;
      }
    }
  }

  async reserve(batch) {
    const files = batch.map((i) => ({ filename: i.file.name, size: i.size, content_type: contentType(i.file) }));
    const { uploads } = await api("POST", "/v1/uploads", { json: { files } });
    uploads.forEach((slot, n) => { batch[n].slot = slot; });
  }

  // -- puts -------------------------------------------------------------------------

  async upload(item) {
    this.running++;
    this.setStatus(item, "uploading");
    try {
      item.uploadId = await this.putWithRetries(item);
      this.doneBytes += item.size;
      item.sent = item.size;
      this.setStatus(item, "uploaded");
      this.toCommit.push(item);
      this.lastAdded = performance.now();
    } catch (exc) {
      item.sent = 0;
      this.totalBytes -= item.size;
      const error = { code: exc.code || "error", message: exc.message };
      const rejected = exc instanceof ApiError && !exc.transient && exc.status >= 400;
      this.settle(item, rejected && exc.status !== 401 ? "rejected" : "failed", error);
      if (exc.status === 401) this.failWaiting(error); // nothing will pass until the key is fixed
    } finally {
      this.running--;
      this.pump();
      if (!this.busy) this.emit("idle");
    }
  }

  async putWithRetries(item) {
    for (let attempt = 0; ; attempt++) {
      let error;
      try {
        const slot = await this.slotFor(item);
        const res = await put(slot, item.file, (loaded) => {
          item.sent = Math.min(loaded, item.size);
          this.emit("change", item);
        });
        if (res.status >= 200 && res.status < 300) return slot.upload_id;
        error = res.status === 0 ? new ApiError(0, "network_error", "the upload was cut off")
          : errorFrom(res.status, res.text, res.retryAfter);
        // 409: the slot's token was already taken (a put that died); use a new slot.
        if (error.status === 409) error = new ApiError(503, error.code, error.message);
      } catch (exc) {
        if (!(exc instanceof ApiError)) throw exc;
        error = exc;
      }
      item.sent = 0;
      if (!error.transient || attempt + 1 >= MAX_TRIES) throw error;
      this.setStatus(item, "retrying");
      await sleep(backoff(attempt, error.retryAfter));
      this.setStatus(item, "uploading");
    }
  }

  // -- the commit queue -------------------------------------------------------------

  kick() {
    clearTimeout(this.timer);
    if (this.committing || !this.toCommit.length) return;
    const quiet = performance.now() - this.lastAdded;
    const ready = this.toCommit.length >= this.commitBatch || this.running === 0
      || quiet >= this.commitPause;
    if (!ready) {
      this.timer = setTimeout(() => this.kick(), this.commitPause - quiet);
      return;
    }
    const batch = this.toCommit.splice(0, this.commitBatch);
    this.committing = true;
    this.commit(batch).finally(() => {
      this.committing = false;
      this.kick();
      if (!this.busy) this.emit("idle");
    });
  }

  async commit(batch) {
    for (const item of batch) this.setStatus(item, "committing");
    try {
      const body = await api("POST", "/v1/uploads/commit",
        { json: { upload_ids: batch.map((i) => i.uploadId) } });
      const results = body.items.map((result, n) => ({ item: batch[n], result }));
      for (const { item, result } of results) {
        this.settle(item, result.status, result.error, result);
      }
      this.emit("committed", { job_id: body.job_id, items: results });
    } catch (exc) {
      // Committing again is safe (the same upload gives the same image): keep the bytes.
      for (const item of batch) {
        this.settle(item, "failed", { code: exc.code || "error", message: exc.message });
      }
    }
  }
}

// -- picking files from a drop ----------------------------------------------------------

/** Every file in a drop, folders walked (webkitGetAsEntry), with their relative paths. */
export async function filesFromDrop(dataTransfer) {
  const entries = [...dataTransfer.items]
    .filter((i) => i.kind === "file")
    .map((i) => i.webkitGetAsEntry?.())
    .filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const files = [];
  for (const entry of entries) await walk(entry, files);
  return files;
}

async function walk(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    if (!entry.name.startsWith(".")) {
      const path = entry.fullPath.replace(/^\//, "");
      if (path !== file.name) Object.defineProperty(file, "relativePath", { value: path });
      out.push(file);
    }
    return;
  }
  if (!entry.isDirectory) return;
  const reader = entry.createReader();
  for (;;) { // readEntries answers in chunks (100 at a time in Chrome) until empty
    const chunk = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!chunk.length) return;
    for (const child of chunk) await walk(child, out);
  }
}
