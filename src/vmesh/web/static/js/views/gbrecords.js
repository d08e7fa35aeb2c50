// GB/T 28181 device recordings (#/gbrecords/<channel code>): the recordings a camera's NVR (or the
// IPC's card) holds, asked of the device by RecordInfo (GET /api/gb28181/records/<code>), drawn as
// the recordings page's strips (the day's 24 hours with spans and gaps, timeline_strip.js), and
// played back from the device: clicking the strip starts a playback from that time to the end of
// its recorded span (the live WebSocket's gb_playback: INVITE s=Playback into a channel, WebRTC
// like a live tile); clicking again inside it seeks (INFO PLAY npt=), pause/resume and 1×/2×/4×
// go to the device as INFO (PAUSE, PLAY, Scale) — a device that refuses says so. The device's end
// of recording (MediaStatus 121) ends the tile.
import { api, request } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { field, problemBox } from "../ui.js";
import { LiveClient } from "./live.js";
import { clock, dateValue, dayStart, drawStrip, moveStripCursor, pad, spanFrom, timeAt } from "./timeline_strip.js";

const DAY = 86400;
const TILE = "gbpb";
const SCALES = [1, 2, 4];
const enc = encodeURIComponent;

export function create(ctx) {
  const state = { code: null, day: dateValue(new Date()), tl: null, play: null, since: 0 };
  const title = h("h2", { testid: "gbrec-title" }, t("gbrec.title"));
  const dayInput = h("input", { type: "date", value: state.day, testid: "gbrec-day",
    onchange: () => { state.day = dayInput.value; load(); } });
  const hoursRow = h("div", { class: "rec-hours" }, Array.from({ length: 24 }, (_, i) => h("span", {}, pad(i))));
  const dayBar = h("div", { class: "rec-bar rec-day-bar", testid: "gbrec-day-bar", onclick: (ev) => clicked(timeAt(ev, dayBar)) });
  const summary = h("div", { class: "muted", testid: "gbrec-summary" });
  const messages = h("div", { class: "messages", testid: "gbrec-messages" });
  const video = h("video", { muted: true, autoplay: true, playsinline: true, testid: "gbrec-video", class: "rec-video" });
  video.muted = true;
  const tileBox = h("div", { class: "rec-player", testid: "gbrec-tile", dataset: { state: "idle" } }, video);
  const stateText = h("span", { class: "muted", testid: "gbrec-state" }, "");
  const position = h("span", { class: "mono", testid: "gbrec-position" }, "");
  const pauseBtn = h("button", { type: "button", testid: "gbrec-pause", onclick: () => control({ action: state.play?.paused ? "resume" : "pause" }) }, t("gbrec.pause"));
  const scaleButtons = SCALES.map((s) => h("button", { type: "button", testid: `gbrec-scale-${s}`, class: s === 1 ? "active" : "",
    onclick: () => control({ action: "speed", scale: s }) }, `${s}×`));
  const stopBtn = h("button", { type: "button", testid: "gbrec-stop", onclick: () => stop() }, t("gbrec.stop"));

  const client = new LiveClient({
    onStatus: (tile, msg) => {
      tileBox.dataset.state = msg.state;
      stateText.textContent = msg.reason ? `${msg.state}: ${msg.reason}` : msg.state;
    },
    onStats: (tile, s) => { tileBox.dataset.framesDecoded = String(s.framesDecoded); },
    onError: (msg) => clear(messages, problemBox({ status: 422, detail: msg.reason, errors: msg.field ? [msg] : [] }, { testid: "gbrec-error" })),
    onMessage: (msg) => {
      if (msg.type === "gb_control" && state.play) {
        if (msg.action === "pause") state.play.paused = true;
        if (msg.action === "resume") state.play.paused = false;
        pauseBtn.textContent = t(state.play.paused ? "gbrec.resume" : "gbrec.pause");
        tileBox.dataset.paused = String(Boolean(state.play.paused));
      } else if (msg.type === "gb_playback_ended") {
        tileBox.dataset.state = "ended";
        stateText.textContent = t("gbrec.ended");
        client.stop(TILE);
        state.play = null;
      }
    },
  });

  const el = h("div", { class: "wall-layout" },
    h("section", { class: "panel rec-panel" },
      h("div", { class: "wall-toolbar" }, title, field("rec.day", dayInput), summary),
      messages, hoursRow, dayBar, tileBox,
      h("div", { class: "wall-toolbar" }, pauseBtn, h("span", { class: "layouts" }, scaleButtons), stopBtn, position, stateText)));

  async function load() {
    clear(messages);
    if (!state.code) return;
    const t0 = dayStart(state.day);
    summary.textContent = t("common.loading");
    try {
      state.tl = await request("GET", `/gb28181/records/${enc(state.code)}`, { params: { start: t0, end: t0 + DAY } });
    } catch (err) {
      state.tl = null;
      clear(messages, problemBox(err, { testid: "gbrec-error" }));
    }
    draw();
  }

  function draw() {
    const t0 = dayStart(state.day);
    drawStrip(dayBar, t0, t0 + DAY, state.tl);
    const tl = state.tl;
    summary.textContent = tl ? t("rec.summary", { spans: tl.spans.length, gaps: tl.gaps.length,
      minutes: Math.round(tl.recorded_seconds / 60) }) : "";
    if (tl && !tl.complete) messages.append(h("div", { class: "notice", testid: "gbrec-partial" }, tl.error || ""));
    for (const [i, hour] of (tl?.hours || []).entries()) {
      const label = hoursRow.children[i];
      if (label) label.classList.toggle("recorded", hour.seconds > 0);
    }
  }

  /** A click at wall time ``at``: seek in the running playback, or play the span holding it. */
  function clicked(at) {
    clear(messages);
    const p = state.play;
    if (p && p.start <= at && at < p.end) {
      control({ action: "seek", at: Math.floor(at - p.start) });
      p.offset = Math.floor(at - p.start);
      p.since = Date.now();
      return;
    }
    const found = spanFrom(state.tl?.spans || [], at);
    if (!found) {
      clear(messages, h("div", { class: "notice", testid: "gbrec-nothing" }, t("rec.nothingAt", { time: clock(at) })));
      return;
    }
    const start = Math.floor(found.at), end = Math.ceil(Math.min(found.span.end, start + DAY));
    state.play = { start, end, offset: 0, since: Date.now(), paused: false };
    tileBox.dataset.start = String(start);
    tileBox.dataset.framesDecoded = "0";
    client.openWith(TILE, { type: "gb_playback", code: state.code, start, end }, video);
  }

  function control(msg) {
    if (!state.play) return;
    client.send({ type: "gb_control", tile: TILE, ...msg });
    if (msg.action === "speed") {
      for (const b of scaleButtons) b.classList.toggle("active", b.dataset.testid === `gbrec-scale-${msg.scale}`);
    }
  }

  function stop() {
    client.stop(TILE);
    state.play = null;
    tileBox.dataset.state = "stopped";
  }

  const timer = setInterval(() => {
    const p = state.play;
    if (!p) return;
    const at = p.start + p.offset + (p.paused ? 0 : (Date.now() - p.since) / 1000);
    position.textContent = clock(at);
    moveStripCursor(dayBar, at);
  }, 500);

  function update(args) {
    const code = args[0] || null;
    if (code === state.code) return;
    if (state.play) stop();
    state.code = code;
    state.tl = null;
    title.textContent = code ? `${t("gbrec.title")} · ${code}` : t("gbrec.title");
    if (code) api.entry(code).then((e) => { if (state.code === code) title.textContent = `${t("gbrec.title")} · ${e.name}`; }).catch(() => {});
    draw();
    load();
  }

  update(ctx.args);
  return {
    el,
    update,
    destroy() {
      clearInterval(timer);
      client.close();
    },
  };
}
