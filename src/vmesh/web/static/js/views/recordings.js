// Recordings page (#/recordings, #/recordings/<camera code>): pick a camera (search, or a code of
// another node's camera), a day, and see its timeline: the day's 24 hours with the recorded spans
// and the gaps, and a zoomed strip (1 h / 10 min / 1 min) around the chosen time for precise
// seeking. Clicking either strip seeks: the <video> plays play.mp4 of the recorded span around
// that time (at most 6 h, served with range requests), positioned with
// currentTime = t − X-Vmesh-Start; 1×/2×/4× set playbackRate. A clip (from/to on that day)
// downloads as clip.mp4. The camera's recording plan is shown, and editable by admins and
// operators (mode, retention days, weekly windows "days HH:MM HH:MM", Monday = 0).
// A camera recorded at another node plays the same way: the node relays it (server side).
import { api, queryString, request } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { field, problemBox, select } from "../ui.js";
import { clock, dateValue, dayStart, drawStrip as drawTimelineStrip, moveStripCursor, pad, spanFrom, timeAt } from "./timeline_strip.js";

const DAY = 86400;
const MAX_PLAY = 6 * 3600;
const ZOOMS = [3600, 600, 60];
const RATES = [1, 2, 4];
const MODES = ["always", "schedule", "alarm", "off"];
const enc = encodeURIComponent;

/** "0,1,2,3,4 08:00 18:00" per line ⇄ [{days, start, end}] (the server names wrong fields). */
function windowsText(schedule) {
  return (schedule || []).map((w) => `${w.days.join(",")} ${w.start} ${w.end}`).join("\n");
}
function parseWindows(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const [days, start, end] = line.split(/\s+/);
    return { days: (days || "").split(",").filter(Boolean).map(Number), start: start || "", end: end || "" };
  });
}

export function create(ctx) {
  const operator = ctx.me.roles.some((r) => r === "admin" || r === "operator");
  const state = { code: null, day: dateValue(new Date()), tl: null, zoom: ZOOMS[1], focus: null,
    rate: 1, play: null };

  const q = h("input", { type: "search", testid: "rec-camera-q", placeholder: t("rec.searchCameras") });
  const codeInput = h("input", { name: "code", inputmode: "numeric", maxlength: "20", testid: "rec-code",
    placeholder: t("rec.code") });
  const list = h("ul", { class: "camera-list", testid: "rec-camera-list" });
  const title = h("h2", { testid: "rec-title" }, t("rec.title"));
  const dayInput = h("input", { type: "date", value: state.day, testid: "rec-day",
    onchange: () => { state.day = dayInput.value; state.focus = null; loadTimeline(); } });
  const zoomSelect = select("zoom", ZOOMS.map((z) => [String(z), t(`rec.zoom.${z}`)]), String(state.zoom), "rec-zoom");
  zoomSelect.addEventListener("change", () => { state.zoom = Number(zoomSelect.value); drawDetail(); });
  const dayBar = h("div", { class: "rec-bar rec-day-bar", testid: "rec-day-bar", onclick: (ev) => barClick(ev, dayBar) });
  const detailBar = h("div", { class: "rec-bar rec-detail-bar", testid: "rec-detail-bar", onclick: (ev) => barClick(ev, detailBar) });
  const hoursRow = h("div", { class: "rec-hours" },
    Array.from({ length: 24 }, (_, i) => h("span", {}, pad(i))));
  const detailLabels = h("div", { class: "rec-detail-labels", testid: "rec-detail-labels" });
  const summary = h("div", { class: "muted", testid: "rec-summary" });
  const messages = h("div", { class: "messages", testid: "rec-messages" });
  const video = h("video", { controls: true, muted: true, playsinline: true, testid: "rec-video", class: "rec-video" });
  video.muted = true;
  const position = h("span", { class: "mono", testid: "rec-position" }, "");
  const rateButtons = RATES.map((r) =>
    h("button", { type: "button", testid: `rec-rate-${r}`, class: r === 1 ? "active" : "", onclick: () => setRate(r) }, `${r}×`));
  const clipFrom = h("input", { type: "time", step: "1", testid: "rec-clip-from", oninput: () => clipLink() });
  const clipTo = h("input", { type: "time", step: "1", testid: "rec-clip-to", oninput: () => clipLink() });
  const clipA = h("a", { class: "button", testid: "rec-clip-download", download: "" }, t("rec.clipDownload"));
  const planBox = h("div", { testid: "rec-plan" });

  const el = h(
    "div",
    { class: "wall-layout" },
    h("section", { class: "panel camera-panel" },
      h("h2", {}, t("rec.cameras")),
      h("form", { onsubmit: (ev) => { ev.preventDefault(); loadCameras(); } }, q),
      h("form", { onsubmit: (ev) => { ev.preventDefault(); if (codeInput.value.trim()) ctx.navigate(`#/recordings/${enc(codeInput.value.trim())}`); } },
        codeInput, h("button", { type: "submit", testid: "rec-code-open" }, t("rec.open"))),
      list),
    h("section", { class: "panel rec-panel" },
      h("div", { class: "wall-toolbar" }, title, field("rec.day", dayInput), field("rec.zoom", zoomSelect), summary),
      messages,
      hoursRow, dayBar, detailLabels, detailBar,
      h("div", { class: "rec-player" }, video),
      h("div", { class: "wall-toolbar" }, h("span", { class: "layouts" }, rateButtons), position),
      h("div", { class: "wall-toolbar" }, h("strong", {}, t("rec.clip")), field("rec.clipFrom", clipFrom),
        field("rec.clipTo", clipTo), clipA),
      h("h3", {}, t("rec.plan")), planBox),
  );

  function showError(err) {
    clear(messages, problemBox(err, { testid: "rec-error" }));
  }

  async function loadCameras() {
    clear(list, h("li", { class: "muted" }, t("common.loading")));
    try {
      const page = await api.search({ kind: "camera", q: q.value.trim(), sort: "code", limit: 100 });
      clear(list, page.items.map((c) => h("li", {
        class: `camera${c.code === state.code ? " picked" : ""}`, testid: `rec-camera-${c.code}`,
        onclick: () => ctx.navigate(`#/recordings/${enc(c.code)}`),
      }, c.name, h("span", { class: "muted mono" }, ` ${c.code}`))));
      if (!page.items.length) list.append(h("li", { class: "muted" }, t("common.empty")));
    } catch (err) {
      clear(list, h("li", {}, problemBox(err, { testid: "rec-camera-error" })));
    }
  }

  async function loadTimeline() {
    clear(messages);
    if (!state.code) return;
    const t0 = dayStart(state.day);
    try {
      state.tl = await request("GET", `/recordings/${enc(state.code)}/timeline`, { params: { start: t0, end: t0 + DAY } });
    } catch (err) {
      state.tl = null;
      showError(err);
    }
    drawDay();
    drawDetail();
    clipLink();
  }

  function drawStrip(bar, from, to) {
    drawTimelineStrip(bar, from, to, state.tl);
  }

  function drawDay() {
    const t0 = dayStart(state.day);
    drawStrip(dayBar, t0, t0 + DAY);
    const tl = state.tl;
    summary.textContent = tl ? t("rec.summary", { spans: tl.spans.length, gaps: tl.gaps.length,
      minutes: Math.round(tl.recorded_seconds / 60) }) : "";
    for (const [i, hour] of (tl?.hours || []).entries()) {
      const label = hoursRow.children[i];
      if (label) label.title = t("rec.hourSeconds", { seconds: Math.round(hour.seconds) });
      if (label) label.classList.toggle("recorded", hour.seconds > 0);
    }
  }

  function drawDetail() {
    const t0 = dayStart(state.day);
    // Until the user picks a time: the end of the day's last recorded span.
    const last = state.tl?.spans[state.tl.spans.length - 1];
    const centre = state.focus ?? (last ? last.end - state.zoom / 2 : t0 + DAY / 2);
    const from = Math.max(t0, Math.min(centre - state.zoom / 2, t0 + DAY - state.zoom));
    drawStrip(detailBar, from, from + state.zoom);
    clear(detailLabels, h("span", {}, clock(from)), h("span", {}, clock(from + state.zoom / 2)),
      h("span", {}, clock(from + state.zoom)));
    moveCursor();
  }

  function barClick(ev, bar) {
    const at = timeAt(ev, bar);
    state.focus = at;
    if (bar === dayBar) drawDetail();
    seek(at);
  }

  /** Play from wall time ``at``: the recorded span holding it (or the next one). */
  async function seek(at) {
    clear(messages);
    const found = spanFrom(state.tl?.spans || [], at);
    if (!found) {
      clear(messages, h("div", { class: "notice", testid: "rec-nothing" }, t("rec.nothingAt", { time: clock(at) })));
      return;
    }
    const span = found.span;
    at = found.at;
    const p = state.play;
    if (p && p.start <= at && at < p.end - 0.5) {
      position.textContent = clock(at);
      video.currentTime = at - p.start;
      return;
    }
    const from = Math.max(span.start, at - MAX_PLAY / 2);
    const to = Math.min(span.end, from + MAX_PLAY);
    const url = `/api/recordings/${enc(state.code)}/play.mp4${queryString({ start: from, end: to })}`;
    let start;
    try {
      const r = await fetch(url, { headers: { Range: "bytes=0-0" }, credentials: "same-origin" });
      if (!r.ok) {
        const problem = await r.json().catch(() => null);
        showError({ status: r.status, detail: problem?.detail, errors: problem?.errors || [] });
        return;
      }
      start = Number(r.headers.get("X-Vmesh-Start"));
      state.play = { url, start, end: Number(r.headers.get("X-Vmesh-End")) };
    } catch (err) {
      showError({ status: 0, detail: String(err) });
      return;
    }
    video.dataset.start = String(start);
    video.addEventListener("loadedmetadata", () => {
      video.currentTime = Math.max(0, at - start);
      video.playbackRate = state.rate;
      video.play().catch(() => {});
    }, { once: true });
    video.src = url;
  }

  video.addEventListener("seeked", () => { video.dataset.seekedTo = String(Number(video.dataset.start) + video.currentTime); });
  video.addEventListener("timeupdate", () => {
    if (!state.play) return;
    position.textContent = clock(state.play.start + video.currentTime);
    position.dataset.t = String(state.play.start + video.currentTime);
    moveCursor();
  });
  video.addEventListener("ratechange", () => { video.dataset.rate = String(video.playbackRate); });

  function moveCursor() {
    if (!state.play) return;
    const at = state.play.start + video.currentTime;
    for (const bar of [dayBar, detailBar]) moveStripCursor(bar, at);
  }

  function setRate(r) {
    state.rate = r;
    video.defaultPlaybackRate = r;
    video.playbackRate = r;
    for (const b of rateButtons) b.classList.toggle("active", b.dataset.testid === `rec-rate-${r}`);
  }

  function clipLink() {
    const t0 = dayStart(state.day);
    const secs = (v) => {
      const [hh, mm, ss] = (v || "").split(":").map(Number);
      return Number.isFinite(hh) ? t0 + hh * 3600 + (mm || 0) * 60 + (ss || 0) : null;
    };
    const from = secs(clipFrom.value), to = secs(clipTo.value);
    const ok = state.code && from !== null && to !== null;
    clipA.classList.toggle("disabled", !ok);
    if (ok) clipA.href = `/api/recordings/${enc(state.code)}/clip.mp4${queryString({ start: from, end: to })}`;
    else clipA.removeAttribute("href");
  }

  async function loadPlan() {
    clear(planBox, h("p", { class: "muted" }, t("common.loading")));
    let plan;
    try {
      plan = await request("GET", `/recordings/${enc(state.code)}/plan`);
    } catch (err) {
      clear(planBox, problemBox(err, { testid: "rec-plan-error" }));
      return;
    }
    const mode = select("mode", MODES.map((m) => [m, t(`rec.mode.${m}`)]), plan.mode, "rec-plan-mode");
    const days = h("input", { type: "number", min: "1", max: "3650", value: String(plan.retention_days), testid: "rec-plan-days", class: "narrow" });
    const windows = h("textarea", { rows: "3", testid: "rec-plan-schedule", placeholder: "0,1,2,3,4 08:00 18:00" });
    windows.value = windowsText(plan.schedule);
    const out = h("div", { class: "messages", testid: "rec-plan-out" });
    const controls = [mode, days, windows];
    for (const c of controls) c.disabled = !operator;
    async function save(ev) {
      ev.preventDefault();
      clear(out);
      try {
        const saved = await request("PUT", `/recordings/${enc(state.code)}/plan`, {
          body: { mode: mode.value, retention_days: Number(days.value), schedule: parseWindows(windows.value) } });
        clear(out, h("div", { class: "notice", testid: "rec-plan-saved" }, t("rec.planSaved", { mode: t(`rec.mode.${saved.mode}`) })));
      } catch (err) {
        clear(out, problemBox(err, { testid: "rec-plan-error" }));
      }
    }
    clear(planBox, h("form", { class: "form-grid", novalidate: true, onsubmit: save },
      field("rec.mode", mode), field("rec.retentionDays", days), field("rec.schedule", windows),
      h("span", { class: "muted", testid: "rec-plan-state" }, t("rec.state", { state: plan.state })),
      operator ? h("button", { type: "submit", class: "primary", testid: "rec-plan-save" }, t("rec.planSave")) : null,
      out));
  }

  function update(args) {
    const code = args[0] || null;
    if (code === state.code) return;
    state.code = code;
    state.tl = null;
    state.play = null;
    state.focus = null;
    video.removeAttribute("src");
    for (const li of list.querySelectorAll(".camera")) li.classList.toggle("picked", li.dataset.testid === `rec-camera-${code}`);
    if (!code) {
      title.textContent = t("rec.title");
      clear(planBox, h("p", { class: "muted" }, t("rec.pick")));
      drawDay();
      drawDetail();
      return;
    }
    title.textContent = `${t("rec.title")} · ${code}`;
    api.entry(code).then((e) => { if (state.code === code) title.textContent = `${t("rec.title")} · ${e.name}`; }).catch(() => {});
    loadTimeline();
    loadPlan();
  }

  loadCameras();
  update(ctx.args);
  return { el, update };
}
