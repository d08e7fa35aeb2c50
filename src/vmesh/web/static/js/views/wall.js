// Video wall page (#/wall, #/wall/<camera code>): cameras on the left, 1/4/9/16 tiles on the right.
//
// Assign a camera to a tile by dragging it from the list onto the tile, or by clicking the camera
// and then the tile. Each tile shows the camera's name, its state from the node (connecting / no
// signal / error with the reason) and an overlay of resolution, fps, bitrate and latency. Polling
// (轮巡): tick cameras in the list, set the interval, press a tile's polling button; the tile
// cycles through them with "switch" (same RTCPeerConnection, no renegotiation).
// #/wall/<code> (the "watch" button of a camera's details) opens one tile playing that camera.
// A GB/T 28181 channel that can move (attrs.source gb28181, PTZType not 2/3 = fixed) gets a PTZ
// pad on its tile: holding an arrow or zoom button moves the camera, releasing it stops it
// (POST /api/gb28181/ptz).
import { api, request } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { problemBox, statusDot } from "../ui.js";
import { LiveClient } from "./live.js";

const LAYOUTS = [1, 4, 9, 16];
const PTZ_BUTTONS = [
  ["up_left", "↖"], ["up", "↑"], ["up_right", "↗"], ["zoom_in", "+"],
  ["left", "←"], ["stop", "■"], ["right", "→"], ["zoom_out", "−"],
  ["down_left", "↙"], ["down", "↓"], ["down_right", "↘"],
];
const LIST_PAGE = 100;
const DRAG_TYPE = "text/x-vmesh-camera";

export function create(ctx) {
  const state = {
    layout: ctx.args[0] ? 1 : 4,
    picked: null, // camera chosen by click, waiting for a tile click
    polled: new Map(), // code -> name, ticked for polling
    cameras: new Map(), // code -> name
    tiles: [],
  };
  const client = new LiveClient({
    onStatus: (tile, msg) => tileByKey(tile)?.setStatus(msg),
    onStats: (tile, stats) => tileByKey(tile)?.setStats(stats),
    onError: (msg) => showBanner(t("live.messageError", { field: msg.field, reason: msg.reason })),
    onClose: (code, reason) => showBanner(t("live.disconnected", { reason: reason || code })),
  });

  const banner = h("div", { class: "problem", testid: "live-banner", hidden: true });
  const grid = h("div", { class: "wall-grid", testid: "wall-grid" });
  const interval = h("input", {
    type: "number", min: "2", max: "3600", value: "10", testid: "poll-interval", class: "narrow",
  });
  const layoutButtons = LAYOUTS.map((n) =>
    h("button", { type: "button", testid: `layout-${n}`, onclick: () => setLayout(n) }, t("wall.layout", { n })),
  );
  const pickedLabel = h("span", { class: "muted", testid: "picked-camera" }, t("wall.pickHint"));
  const q = h("input", { type: "search", testid: "camera-q", placeholder: t("wall.searchCameras") });
  const list = h("ul", { class: "camera-list", testid: "camera-list" });

  const el = h(
    "div",
    { class: "wall-layout" },
    h(
      "section",
      { class: "panel camera-panel" },
      h("h2", {}, t("wall.cameras")),
      h("form", { onsubmit: (ev) => { ev.preventDefault(); loadCameras(); } }, q),
      list,
    ),
    h(
      "section",
      { class: "panel wall-panel" },
      h(
        "div",
        { class: "wall-toolbar" },
        h("h2", {}, t("wall.title")),
        h("span", { class: "layouts" }, layoutButtons),
        h("label", { class: "check" }, t("wall.pollInterval"), " ", interval),
        pickedLabel,
      ),
      banner,
      grid,
    ),
  );

  function showBanner(text) {
    banner.hidden = false;
    banner.textContent = text;
  }

  function tileByKey(key) {
    return state.tiles.find((x) => x.key === key);
  }

  function setLayout(n) {
    state.layout = n;
    for (const b of layoutButtons) b.classList.toggle("active", b.dataset.testid === `layout-${n}`);
    while (state.tiles.length > n) state.tiles.pop().remove();
    while (state.tiles.length < n) state.tiles.push(makeTile(state.tiles.length));
    grid.className = `wall-grid grid-${Math.sqrt(n)}`;
    clear(grid, state.tiles.map((x) => x.el));
  }

  function makeTile(index) {
    const key = String(index);
    const video = h("video", { autoplay: true, muted: true, playsinline: true, testid: `tile-${key}-video` });
    video.muted = true;
    const name = h("span", { class: "tile-name", testid: `tile-${key}-name` }, t("wall.empty"));
    const stateLabel = h("span", { class: "tile-state", testid: `tile-${key}-state` }, "");
    const stats = h("span", { class: "tile-stats mono", testid: `tile-${key}-stats` }, "");
    const pollLabel = h("span", { class: "tile-poll", testid: `tile-${key}-poll` }, "");
    const pollButton = h("button", { type: "button", testid: `tile-${key}-poll-start`, onclick: () => togglePoll() }, t("wall.pollStart"));
    const stopButton = h("button", { type: "button", testid: `tile-${key}-stop`, onclick: () => stop() }, t("wall.stop"));
    const ptzPad = h("div", { class: "tile-ptz", testid: `tile-${key}-ptz`, hidden: true },
      PTZ_BUTTONS.map(([command, label]) => ptzButton(command, label)));
    const el = h(
      "div",
      { class: "tile", testid: `tile-${key}`, dataset: { state: "idle", tile: key } },
      video,
      h("div", { class: "tile-top" }, name, stateLabel),
      ptzPad,
      h("div", { class: "tile-bottom" }, stats, pollLabel, h("span", { class: "tile-actions" }, pollButton, stopButton)),
    );
    let poll = null;
    let code = null;
    // PTZ commands go one after another: a release's "stop" must not overtake its move.
    let ptzQueue = Promise.resolve();

    function ptzButton(command, label) {
      let moving = false;
      const send = (cmd) => {
        const body = { code, command: cmd };
        ptzQueue = ptzQueue
          .then(() => request("POST", "/gb28181/ptz", { body }))
          .catch((err) => showBanner(t("wall.ptzFailed", { reason: err.message })));
      };
      const b = h("button", { type: "button", testid: `tile-${key}-ptz-${command}`, title: t(`wall.ptz.${command}`) }, label);
      b.addEventListener("pointerdown", () => {
        if (!code) return;
        moving = command !== "stop";
        send(command);
      });
      const release = () => {
        if (moving) send("stop");
        moving = false;
      };
      b.addEventListener("pointerup", release);
      b.addEventListener("pointerleave", release);
      return b;
    }

    async function showPtz(c) {
      ptzPad.hidden = true;
      try {
        const e = await api.entry(c);
        const attrs = e.attrs || {};
        if (c === code && attrs.source === "gb28181" && ![2, 3].includes(Number(attrs.ptz_type))) ptzPad.hidden = false;
      } catch {
        // no details, no pad
      }
    }

    el.addEventListener("dragover", (ev) => {
      if (ev.dataTransfer.types.includes(DRAG_TYPE)) {
        ev.preventDefault();
        el.classList.add("drop");
      }
    });
    el.addEventListener("dragleave", () => el.classList.remove("drop"));
    el.addEventListener("drop", (ev) => {
      ev.preventDefault();
      el.classList.remove("drop");
      const dropped = ev.dataTransfer.getData(DRAG_TYPE);
      if (dropped) play(dropped);
    });
    el.addEventListener("click", (ev) => {
      if (ev.target.closest("button")) return;
      if (state.picked) {
        play(state.picked);
        state.picked = null;
        pickedLabel.textContent = t("wall.pickHint");
        for (const li of list.querySelectorAll(".picked")) li.classList.remove("picked");
      }
    });

    function setState(s, reason) {
      el.dataset.state = s;
      stateLabel.textContent = reason ? `${t(`live.state.${s}`)}: ${reason}` : t(`live.state.${s}`);
      stateLabel.className = `tile-state state-${s}`;
    }

    function play(c) {
      stopPoll();
      code = c;
      el.dataset.code = c;
      name.textContent = state.cameras.get(c) || c;
      setState("connecting", "");
      client.watch(key, c, video);
      showPtz(c);
    }

    function stop() {
      stopPoll();
      client.stop(key);
      code = null;
      ptzPad.hidden = true;
      delete el.dataset.code;
      name.textContent = t("wall.empty");
      stats.textContent = "";
      setState("idle", "");
    }

    function stopPoll() {
      if (poll) clearInterval(poll.timer);
      poll = null;
      pollLabel.textContent = "";
      pollButton.textContent = t("wall.pollStart");
    }

    function togglePoll() {
      if (poll) {
        stopPoll();
        return;
      }
      const codes = [...state.polled.keys()];
      if (codes.length < 2) {
        showBanner(t("wall.pollNeedsTwo"));
        return;
      }
      const seconds = Math.max(2, Number(interval.value) || 10);
      if (!code || !codes.includes(code)) play(codes[0]);
      const p = { codes, i: Math.max(0, codes.indexOf(code)), timer: null };
      p.timer = setInterval(() => {
        p.i = (p.i + 1) % p.codes.length;
        const next = p.codes[p.i];
        if (client.switchTo(key, next)) {
          code = next;
          el.dataset.code = next;
          name.textContent = state.cameras.get(next) || next;
          pollLabel.textContent = t("wall.polling", { i: p.i + 1, n: p.codes.length, s: seconds });
        }
      }, seconds * 1000);
      poll = p;
      pollLabel.textContent = t("wall.polling", { i: p.i + 1, n: codes.length, s: seconds });
      pollButton.textContent = t("wall.pollStop");
    }

    return {
      key,
      el,
      play,
      setStatus(msg) {
        if (msg.state === "stopped") return;
        if (msg.name) name.textContent = msg.name;
        if (msg.code) el.dataset.code = msg.code;
        setState(msg.state, msg.reason || "");
      },
      setStats(s) {
        el.dataset.pc = String(s.pcId);
        el.dataset.framesDecoded = String(s.framesDecoded);
        el.dataset.width = String(s.width);
        el.dataset.height = String(s.height);
        const parts = [
          s.width ? `${s.width}×${s.height}` : "",
          t("live.fps", { n: Math.round(s.fps) }),
          s.bitrate !== null ? t("live.kbps", { n: Math.round(s.bitrate / 1000) }) : "",
          s.latencyMs !== null ? t("live.latency", { n: Math.round(s.latencyMs) }) : "",
        ];
        stats.textContent = parts.filter(Boolean).join(" · ");
      },
      remove() {
        stop();
      },
    };
  }

  async function loadCameras() {
    clear(list, h("li", { class: "muted" }, t("common.loading")));
    try {
      const page = await api.search({ kind: "camera", q: q.value.trim(), sort: "code", limit: LIST_PAGE });
      clear(list, page.items.map(cameraRow));
      if (!page.items.length) list.append(h("li", { class: "muted" }, t("search.noResults")));
    } catch (err) {
      clear(list, h("li", {}, problemBox(err, { testid: "camera-list-error" })));
    }
  }

  function cameraRow(cam) {
    state.cameras.set(cam.code, cam.name);
    const tick = h("input", {
      type: "checkbox", testid: `camera-poll-${cam.code}`, title: t("wall.pollPick"),
      checked: state.polled.has(cam.code),
      onchange: (ev) => (ev.target.checked ? state.polled.set(cam.code, cam.name) : state.polled.delete(cam.code)),
    });
    const li = h(
      "li",
      { class: "camera", draggable: "true", testid: `camera-${cam.code}`, title: cam.code, dataset: { code: cam.code } },
      tick,
      statusDot(cam.status),
      h("span", { class: "camera-name" }, cam.name),
    );
    li.addEventListener("dragstart", (ev) => {
      ev.dataTransfer.setData(DRAG_TYPE, cam.code);
      ev.dataTransfer.effectAllowed = "copy";
    });
    li.addEventListener("click", (ev) => {
      if (ev.target === tick) return;
      for (const x of list.querySelectorAll(".picked")) x.classList.remove("picked");
      li.classList.add("picked");
      state.picked = cam.code;
      pickedLabel.textContent = t("wall.picked", { name: cam.name });
    });
    return li;
  }

  setLayout(state.layout);
  loadCameras();
  if (ctx.args[0]) {
    const code = ctx.args[0];
    api.entry(code).then((e) => state.cameras.set(e.code, e.name)).catch(() => {}).finally(() => state.tiles[0].play(code));
  }

  return {
    el,
    // Another page (the command room) puts a camera on the first empty tile, growing the layout
    // when every tile is busy; the tile's key, or null when 16 tiles are busy.
    pull(code, name) {
      if (name) state.cameras.set(code, name);
      let tile = state.tiles.find((x) => !x.el.dataset.code);
      if (!tile) {
        const bigger = LAYOUTS.find((n) => n > state.layout);
        if (!bigger) return null;
        setLayout(bigger);
        tile = state.tiles.find((x) => !x.el.dataset.code);
      }
      tile.play(code);
      return tile.key;
    },
    update(args) {
      if (args[0]) {
        if (state.layout !== 1) setLayout(1);
        state.tiles[0].play(args[0]);
      }
    },
    destroy() {
      client.close();
    },
  };
}
