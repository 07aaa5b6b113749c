// The gallery: newest first, infinite scroll, lazy thumbnails, live status badges from
// the job events, a debounced refresh, selection (click, shift-click, keyboard) and the
// detail view.

import { api, follow } from "./api.js";
import { $, debounce, el, formatBytes, plural } from "./ui.js";

const PAGE = 100;
const REFRESH_PAGE = 200;

export class Gallery extends EventTarget {
  constructor(list, sentinel) {
    super();
    this.list = list;
    this.sentinel = sentinel;
    this.cards = new Map(); // id → {record, li}
    this.order = []; // ids as shown
    this.selected = new Set();
    this.anchor = null; // the id a shift-click range starts from
    this.cursor = undefined; // undefined: not loaded yet; null: the end
    this.loading = null;
    this.stale = new Set(); // ids whose record changed since it was fetched
    this.following = 0; // job event streams open
    this.followers = []; // jobs waiting for a stream
    this.refreshSoon = debounce(() => this.refresh(), 700, 3000);
    this.observer = new IntersectionObserver((entries) => {
      if (this.started && entries.some((e) => e.isIntersecting)) this.loadMore();
    }, { rootMargin: "800px" });
    this.observer.observe(sentinel);
    this.started = false; // until the key is known to work
    list.addEventListener("click", (e) => this.onClick(e));
    list.addEventListener("keydown", (e) => this.onKey(e));
  }

  // -- loading ----------------------------------------------------------------------

  async reset() {
    this.cards.clear();
    this.order = [];
    this.selected.clear();
    this.list.replaceChildren();
    this.cursor = undefined;
    this.loading = null;
    this.started = true;
    this.changed();
    await this.loadMore();
  }

  get complete() {
    return this.cursor === null;
  }

  loadMore() {
    if (this.loading || this.complete) return this.loading;
    this.loading = (async () => {
      try {
        const query = `limit=${PAGE}${this.cursor ? `&cursor=${encodeURIComponent(this.cursor)}` : ""}`;
        const page = await api("GET", `/v1/images?${query}`);
        this.cursor = page.next_cursor;
        this.append(page.items);
      } catch (exc) {
        if (exc.status !== 401) this.dispatchEvent(new CustomEvent("error", { detail: exc }));
        return;
      } finally {
        this.loading = null;
        this.changed();
      }
      // Keep going while the sentinel is still on screen (a tall window, a short page).
      if (!this.complete && this.sentinelVisible()) setTimeout(() => this.loadMore(), 0);
    })();
    return this.loading;
  }

  sentinelVisible() {
    const box = this.sentinel.getBoundingClientRect();
    return box.top < window.innerHeight + 800;
  }

  async loadAll() {
    while (!this.complete) {
      const before = this.cursor;
      await (this.loadMore() || Promise.resolve());
      if (this.cursor === before) return; // it failed (and said so): do not spin
    }
  }

  append(records) {
    const fresh = records.filter((r) => !this.cards.has(r.id));
    for (const record of records) if (this.cards.has(record.id)) this.update(record);
    const frag = document.createDocumentFragment();
    for (const record of fresh) {
      frag.append(this.add(record));
      this.order.push(record.id);
    }
    this.list.append(frag);
  }

  /** Records that are newer than everything shown (just committed): on top. */
  prepend(records) {
    const fresh = [];
    for (const record of records) {
      if (this.cards.has(record.id)) this.update(record);
      else fresh.push(record);
    }
    if (!fresh.length) return;
    const frag = document.createDocumentFragment();
    for (const record of fresh) frag.append(this.add(record));
    this.list.prepend(frag);
    this.order.unshift(...fresh.map((r) => r.id));
    this.changed();
  }

  add(record) {
    const li = this.card(record);
    this.cards.set(record.id, { record, li });
    return li;
  }

  // -- cards ------------------------------------------------------------------------

  card(record) {
    const label = record.filename || record.id;
    const li = el("li", { className: "card", dataset: { id: record.id } },
      el("button", { type: "button", className: "thumb", "aria-label": `Open ${label}`,
        title: label }),
      el("span", { className: "badge" }),
      el("div", { className: "meta" },
        el("input", { type: "checkbox", className: "pick", "aria-label": `Select ${label}` }),
        el("span", { className: "name", title: label }, label)));
    this.paint(li, record);
    return li;
  }

  paint(li, record) {
    const thumb = record.variants?.thumb;
    const button = $(".thumb", li);
    const img = $("img", button);
    if (thumb && img?.dataset.src !== thumb.url) {
      const pic = el("img", { alt: "", loading: "lazy", decoding: "async",
        width: thumb.width, height: thumb.height, src: thumb.url });
      pic.dataset.src = thumb.url;
      button.replaceChildren(pic);
    } else if (!thumb && !button.firstChild) {
      button.append(el("span", { className: "placeholder", "aria-hidden": "true" }));
    }
    const badge = $(".badge", li);
    badge.className = `badge ${record.status}`;
    badge.textContent = record.status;
    badge.title = record.error?.message || "";
    li.classList.toggle("selected", this.selected.has(record.id));
    $(".pick", li).checked = this.selected.has(record.id);
  }

  update(record) {
    const card = this.cards.get(record.id);
    if (!card) return;
    card.record = record;
    this.paint(card.li, record);
  }

  setStatus(id, status, error = null) {
    const card = this.cards.get(id);
    if (!card || card.record.status === status) return;
    this.update({ ...card.record, status, error: error || card.record.error });
  }

  record(id) {
    return this.cards.get(id)?.record;
  }

  // -- live progress ------------------------------------------------------------------

  /**
   * Follow an upload job's events: badges now, records (thumbnails) in a debounced
   * refresh. At most two streams at once: a browser has six connections per origin,
   * and the puts need them (a big batch commits a job per hundred files).
   */
  async followJob(jobId) {
    while (this.following >= 2) await new Promise((resolve) => this.followers.push(resolve));
    this.following++;
    try {
      await follow(`/v1/jobs/${jobId}/events`, (event, data) => {
        if (event !== "item" || !data.image_id) return;
        this.setStatus(data.image_id, data.status, data.error);
        this.stale.add(data.image_id);
        this.refreshSoon();
      });
    } finally {
      this.following--;
      this.followers.shift()?.();
      this.refreshSoon();
    }
  }

  markStale(ids) {
    for (const id of ids) this.stale.add(id);
    this.refreshSoon();
  }

  /**
   * Fetch the newest records again, one list query for many changes: pages from the top
   * until every stale id has been seen (they are recent) or the loaded part is covered;
   * the few left (an old duplicate) are fetched one by one.
   */
  async refresh() {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    try {
      const wanted = new Set(this.stale);
      this.stale.clear();
      let cursor = null;
      let pages = 0;
      let reachedShown = false;
      const fresh = [];
      do {
        const query = `limit=${REFRESH_PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
        const page = await api("GET", `/v1/images?${query}`);
        for (const record of page.items) {
          wanted.delete(record.id);
          if (this.cards.has(record.id)) {
            reachedShown = true;
            this.update(record);
          } else if (!reachedShown) {
            fresh.push(record); // newer than the shown list: someone else's upload
          }
        }
        cursor = page.next_cursor;
        pages++;
      } while (cursor && wanted.size && pages * REFRESH_PAGE < this.order.length);
      if (fresh.length) this.prepend(fresh);
      for (const id of [...wanted].slice(0, 50)) {
        if (this.cards.has(id)) this.update(await api("GET", `/v1/images/${id}`));
      }
    } catch (exc) {
      this.dispatchEvent(new CustomEvent("error", { detail: exc }));
    } finally {
      this.refreshing = false;
      if (this.refreshAgain) {
        this.refreshAgain = false;
        this.refreshSoon();
      }
    }
  }

  // -- selection --------------------------------------------------------------------

  onClick(e) {
    const li = e.target.closest(".card");
    if (!li) return;
    const id = li.dataset.id;
    if (e.target.classList.contains("pick")) {
      e.preventDefault(); // the card's state is ours to set
      this.pick(id, e.shiftKey, !this.selected.has(id));
      setTimeout(() => { $(".pick", li).checked = this.selected.has(id); }, 0);
    } else if (e.target.closest(".thumb")) {
      if (e.shiftKey || e.ctrlKey || e.metaKey) this.pick(id, e.shiftKey, !this.selected.has(id));
      else this.dispatchEvent(new CustomEvent("open", { detail: id }));
    }
  }

  /** Select (or unselect) one card, or the range from the anchor when `range`. */
  pick(id, range, on) {
    const ids = range && this.anchor && this.cards.has(this.anchor)
      ? this.between(this.anchor, id) : [id];
    for (const each of ids) this.choose(each, on);
    if (!range) this.anchor = id;
    this.changed();
  }

  between(a, b) {
    const i = this.order.indexOf(a);
    const j = this.order.indexOf(b);
    return this.order.slice(Math.min(i, j), Math.max(i, j) + 1);
  }

  choose(id, on) {
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    const li = this.cards.get(id)?.li;
    if (li) {
      li.classList.toggle("selected", on);
      $(".pick", li).checked = on;
    }
  }

  async selectAll() {
    await this.loadAll();
    for (const id of this.order) this.choose(id, true);
    this.changed();
  }

  clearSelection() {
    for (const id of [...this.selected]) this.choose(id, false);
    this.changed();
  }

  changed() {
    this.dispatchEvent(new CustomEvent("change"));
  }

  /** Arrows move between cards; space selects; shift extends; Ctrl/⌘+A all; Esc none. */
  onKey(e) {
    const li = e.target.closest(".card");
    if (!li) return;
    const id = li.dataset.id;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "a") {
      e.preventDefault();
      this.selectAll();
    } else if (e.key === "Escape" && this.selected.size) {
      e.preventDefault();
      this.clearSelection();
    } else if (e.key === " " && e.target.classList.contains("thumb")) {
      e.preventDefault();
      this.pick(id, e.shiftKey, !this.selected.has(id));
    } else if (e.key.startsWith("Arrow")) {
      const next = this.neighbour(li, e.key);
      if (!next) return;
      e.preventDefault();
      $(".thumb", next).focus();
      if (e.shiftKey) this.pick(next.dataset.id, true, true);
    }
  }

  neighbour(li, key) {
    if (key === "ArrowRight") return li.nextElementSibling;
    if (key === "ArrowLeft") return li.previousElementSibling;
    const columns = Math.max(1, Math.round(this.list.clientWidth / li.offsetWidth));
    const index = this.order.indexOf(li.dataset.id) + (key === "ArrowDown" ? columns : -columns);
    return this.cards.get(this.order[index])?.li;
  }

  summary() {
    return `${plural(this.order.length, "image")}${this.complete ? "" : "+"}`;
  }
}

// -- the detail view ------------------------------------------------------------------

export class Detail {
  constructor(dialog, gallery) {
    this.dialog = dialog;
    this.gallery = gallery;
    this.id = null;
    $(".prev", dialog).addEventListener("click", () => this.step(-1));
    $(".next", dialog).addEventListener("click", () => this.step(1));
    $(".close", dialog).addEventListener("click", () => dialog.close());
    dialog.addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft") this.step(-1);
      if (e.key === "ArrowRight") this.step(1);
    });
    dialog.addEventListener("close", () => {
      $(".thumb", this.gallery.cards.get(this.id)?.li || document.body)?.focus();
    });
  }

  async open(id) {
    this.id = id;
    this.render(this.gallery.record(id));
    if (!this.dialog.open) this.dialog.showModal();
    try {
      const record = await api("GET", `/v1/images/${id}`);
      if (this.id === id) {
        this.gallery.update(record);
        this.render(record);
      }
    } catch {
      // keep showing what the list had
    }
  }

  step(delta) {
    const order = this.gallery.order;
    const next = order[order.indexOf(this.id) + delta];
    if (next) this.open(next);
  }

  render(record) {
    if (!record) return;
    const web = record.variants?.web || record.variants?.thumb;
    const figure = $(".picture", this.dialog);
    const src = web ? web.url : `/i/${record.sha256}/original`;
    const img = $("img", figure);
    if (!img || img.getAttribute("src") !== src) {
      figure.replaceChildren(el("img", { src, alt: record.filename || "" }));
    }
    $("h2", this.dialog).textContent = record.filename || record.id;
    const o = record.orientation || {};
    const yes = (v) => (v === null || v === undefined ? "–" : v ? "yes" : "no");
    const rows = [
      ["Status", record.status + (record.error ? ` (${record.error.message})` : "")],
      ["Size", formatBytes(record.size)],
      ["Dimensions", record.width ? `${record.width} × ${record.height} px` : "–"],
      ["Type", record.content_type],
      ["EXIF orientation", o.exif ?? "–"],
      ["Detected angle", o.detected_angle === null || o.detected_angle === undefined
        ? "–" : `${o.detected_angle}° clockwise`],
      ["Confidence", o.confidence === null || o.confidence === undefined
        ? "–" : `${Math.round(o.confidence * 100)} %`],
      ["Rotation applied", yes(o.applied)],
      ["Added", record.created_at ? new Date(record.created_at).toLocaleString() : "–"],
      ["SHA-256", record.sha256],
    ];
    $("dl", this.dialog).replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
    const links = $(".links", this.dialog);
    links.replaceChildren(...Object.entries({ ...record.variants, original: { url: `/i/${record.sha256}/original` } })
      .map(([name, v]) => el("a", { href: v.url, target: "_blank", rel: "noopener" },
        name + (v.width ? ` ${v.width}×${v.height}` : ""))));
    const order = this.gallery.order;
    const index = order.indexOf(record.id);
    $(".prev", this.dialog).disabled = index <= 0;
    $(".next", this.dialog).disabled = index < 0 || index >= order.length - 1;
  }
}
