// Minimal page: multipart bulk upload with progress, and a gallery of thumbnails.
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = localStorage.getItem("imgress-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("imgress-key", keyInput.value); refresh(); });
const auth = () => ({ Authorization: `Bearer ${keyInput.value}` });

function upload(files) {
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/images");
  xhr.setRequestHeader("Authorization", auth().Authorization);
  const bar = $("progress");
  bar.hidden = false;
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  xhr.onload = () => {
    const body = JSON.parse(xhr.responseText || "{}");
    if (xhr.status !== 200) { $("status").textContent = body.error?.message || `HTTP ${xhr.status}`; return; }
    const counts = {};
    for (const item of body.items) counts[item.status] = (counts[item.status] || 0) + 1;
    const rejected = body.items.filter((i) => i.status === "rejected")
      .map((i) => `${i.filename}: ${i.error.message}`);
    $("status").textContent = JSON.stringify(counts) + (rejected.length ? " — " + rejected.join("; ") : "");
    follow(body.job_id);
  };
  xhr.send(form);
}

async function follow(jobId) {
  // EventSource cannot send headers; poll the job instead (debounced gallery refresh).
  for (;;) {
    const res = await fetch(`/v1/jobs/${jobId}`, { headers: auth() });
    if (!res.ok) return;
    const job = await res.json();
    refresh();
    if (job.status === "done" || job.status === "failed") return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function refresh() {
  const res = await fetch("/v1/images?limit=100", { headers: auth() });
  const list = $("gallery");
  if (!res.ok) { $("status").textContent = res.status === 401 ? "The API key is missing or wrong." : `HTTP ${res.status}`; return; }
  const { items } = await res.json();
  list.replaceChildren(...items.map((img) => {
    const li = document.createElement("li");
    if (img.variants.thumb) {
      const pic = document.createElement("img");
      pic.loading = "lazy"; pic.alt = img.filename; pic.src = img.variants.thumb.url;
      li.append(pic);
    }
    const badge = document.createElement("span");
    badge.className = `badge ${img.status}`; badge.textContent = img.status;
    li.append(badge, document.createTextNode(` ${img.filename}`));
    return li;
  }));
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files); });
drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("files").click(); });
$("files").addEventListener("change", (e) => upload(e.target.files));
if (keyInput.value) refresh();
