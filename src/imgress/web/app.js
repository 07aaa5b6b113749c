// The page: wires the key, the upload queue and panel, the gallery, the detail view
// and batch downloads together. Plain ES modules, no build step.

import { api, auth, authEvents } from "./api.js";
import { Downloads, parseUrls } from "./downloads.js";
import { Detail, Gallery } from "./gallery.js";
import { $, announce, clearAlert, plural, showAlert } from "./ui.js";
import { UploadPanel } from "./upload-panel.js";
import { UploadQueue, filesFromDrop } from "./uploads.js";

const queue = new UploadQueue({ concurrency: 5, commitBatch: 100, commitPause: 1000 });
const panel = new UploadPanel(queue);
const gallery = new Gallery($("#gallery"), $("#sentinel"));
const detail = new Detail($("#detail"), gallery);
const downloads = new Downloads($("#downloads"));
let authMode = "unknown"; // "key" | "open" | "refused" | "missing"

// -- the API key ------------------------------------------------------------------------

function setKeyState(mode, message = "") {
  authMode = mode;
  const status = $("#key-status");
  status.textContent = {
    key: "API key set",
    open: "No key needed (auth is off)",
    refused: "API key refused",
    missing: "API key needed",
    unknown: "Checking the API key…",
  }[mode];
  status.className = mode === "refused" || mode === "missing" ? "error-text" : "muted";
  if (mode === "refused" || mode === "missing") {
    const text = mode === "refused"
      ? `The API key was refused (${message}). Check it and enter it again.`
      : "This server needs an API key.";
    showAlert(text, { label: "Enter API key", run: () => openKeyDialog(text) });
  }
}

function openKeyDialog(why = "") {
  const dialog = $("#key-dialog");
  $("#key-why").textContent = why;
  $("#key-input").value = auth.key;
  $("#key-forget").hidden = !auth.key;
  if (!dialog.open) dialog.showModal();
  $("#key-input").focus();
}

/** Try a request first: it tells whether the key works, or whether none is needed. */
async function probe() {
  try {
    await api("GET", "/v1/images?limit=1", { retries: 2 });
    clearAlert();
    setKeyState(auth.key ? "key" : "open");
    await gallery.reset();
  } catch (exc) {
    if (exc.status === 401) return; // the unauthorized handler has said it
    showAlert(`The server could not be reached: ${exc.message}`, { label: "Try again", run: probe });
  }
}

authEvents.addEventListener("unauthorized", (e) => {
  if (authMode === "refused" || authMode === "missing") return;
  const error = e.detail;
  const mode = auth.key ? "refused" : "missing";
  setKeyState(mode, error.message);
  if (mode === "missing") openKeyDialog("This server needs an API key.");
});

$("#key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  auth.set($("#key-input").value);
  $("#key-dialog").close();
  setKeyState("unknown");
  probe();
});
$("#key-cancel").addEventListener("click", () => $("#key-dialog").close());
$("#key-forget").addEventListener("click", () => {
  auth.set("");
  $("#key-dialog").close();
  setKeyState("unknown");
  probe();
});
$("#key-change").addEventListener("click", () => openKeyDialog());

// -- uploads ----------------------------------------------------------------------------

function upload(files) {
  const list = [...files];
  if (!list.length) return;
  queue.add(list);
  announce(`Uploading ${plural(list.length, "file")}`);
}

const drop = $("#drop");
let dragDepth = 0;
drop.addEventListener("dragenter", (e) => { e.preventDefault(); dragDepth++; drop.classList.add("over"); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
drop.addEventListener("dragleave", () => { if (--dragDepth <= 0) drop.classList.remove("over"); });
drop.addEventListener("drop", async (e) => {
  e.preventDefault();
  dragDepth = 0;
  drop.classList.remove("over");
  upload(await filesFromDrop(e.dataTransfer));
});
// A drop anywhere else on the page should not navigate away to the file.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());
for (const input of [$("#files"), $("#folder")]) {
  input.addEventListener("change", () => {
    upload(input.files);
    input.value = "";
  });
}

queue.addEventListener("committed", (e) => {
  const { job_id: jobId, items } = e.detail;
  const records = items.map((i) => i.result.image).filter(Boolean).reverse();
  gallery.prepend(records);
  if (jobId) gallery.followJob(jobId).catch(() => gallery.markStale(records.map((r) => r.id)));
});

// -- gallery and selection ----------------------------------------------------------------

gallery.addEventListener("open", (e) => detail.open(e.detail));
gallery.addEventListener("change", () => {
  const n = gallery.selected.size;
  $("#gallery-count").textContent = `(${gallery.summary()}${n ? `, ${n} selected` : ""})`;
  $("#gallery-empty").hidden = !(gallery.complete && gallery.order.length === 0);
  $("#gallery-more").hidden = !gallery.loading;
  $("#select-none").disabled = n === 0;
  const button = $("#download-selected");
  button.disabled = n === 0;
  button.textContent = n ? `Download ${plural(n, "selected image")}` : "Download selected";
});
gallery.addEventListener("error", (e) => showAlert(`Could not refresh the gallery: ${e.detail.message}`));
$("#select-all").addEventListener("click", () => gallery.selectAll());
$("#select-none").addEventListener("click", () => gallery.clearSelection());

// -- downloads --------------------------------------------------------------------------

async function download(items, name, button) {
  button.disabled = true;
  try {
    await downloads.start(items, name);
    announce("The zip is ready");
  } catch (exc) {
    showAlert(`The download could not start: ${exc.message}`);
  } finally {
    button.disabled = false;
    gallery.changed();
  }
}

$("#download-selected").addEventListener("click", (e) => {
  const ids = gallery.order.filter((id) => gallery.selected.has(id));
  download(ids.map((id) => ({ image_id: id })), `imgress-${ids.length}-images`, e.currentTarget);
});

$("#url-toggle").addEventListener("click", (e) => {
  const form = $("#url-form");
  form.hidden = !form.hidden;
  e.currentTarget.setAttribute("aria-expanded", String(!form.hidden));
  if (!form.hidden) $("#urls").focus();
});

$("#url-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const { items, bad } = parseUrls($("#urls").value);
  const error = $("#url-error");
  if (bad.length) {
    error.textContent = `Not an http(s) address: ${bad.slice(0, 3).join(", ")}${bad.length > 3 ? "…" : ""}`;
    return;
  }
  if (!items.length) {
    error.textContent = "Paste at least one address.";
    return;
  }
  error.textContent = "";
  download(items, $("#zip-name").value.trim() || "photos", e.submitter || $("#url-form button"));
});

probe();
