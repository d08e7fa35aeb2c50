// Venue page (#/venue/<conference>/<venue code>[/<host node>]): a conference room's screen, or one
// person's desk. With a host node other than the one serving the console, the conference is hosted
// there: this node relays (?host= on the socket; vmesh.conference.relay), media stay local, and the
// page shows "host unreachable" ({type: "host", reachable: false}) while the host cannot be reached.
//
// On opening, the page joins the conference's WebSocket as its venue ({type: "venue"}), publishes
// the camera and microphone as the venue (tile "pub", the browser-camera path of /api/live/ws)
// and shows what the chair pushes ({type: "layout"}): one video tile per tile of the layout
// (v0, v1 …), the audio of the main venue and of the current speakers in separate audio slots
// (a0 … a3: the page plays them all, which is the mix; the node never routes a venue its own
// audio), and the content (双流) when a venue shares its screen (tile "c"). A roll call or a
// broadcast re-routes the same connections on the node: nothing is renegotiated here.
//
// "Share screen" publishes getDisplayMedia() as the venue's content (tile "content"). "Raise hand"
// asks to speak (申请发言). The microphone level is measured locally and sent once a second.
// If the connection drops, the page says so and joins again by itself every few seconds; it
// stops for good when the chair removes the venue or ends the conference. If only the camera's
// WebRTC connection fails (the node says so with ``retry: true``: ICE failed …), the page
// publishes again on the same socket; the tiles it watches reopen by themselves (live.js).
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { LiveClient } from "./live.js";

const RECONNECT_MS = 2000;
const AUDIO_SLOTS = ["a0", "a1", "a2", "a3"];

/** One outgoing stream (camera+mic as "pub", a screen as "content") over the page's socket. */
class Publisher {
  constructor(client, tile, code, stream) {
    this.client = client;
    this.tile = tile;
    this.stream = stream;
    this.pending = [];
    this.pc = new RTCPeerConnection({ iceServers: [] });
    for (const track of stream.getTracks()) this.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    this.pc.addEventListener("icecandidate", (ev) => {
      const c = ev.candidate;
      client.send({ type: "candidate", tile, candidate: c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null });
    });
    this.ready = this.offer(code);
  }

  async offer(code) {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.client.send({ type: "publish", tile: this.tile, code, jsep: { type: "offer", sdp: this.pc.localDescription.sdp } });
  }

  async onMessage(msg) {
    if (!this.pc) return;
    if (msg.type === "answer") {
      await this.pc.setRemoteDescription(msg.jsep);
      for (const c of this.pending.splice(0)) await this.pc.addIceCandidate(c || null).catch(() => {});
    } else if (msg.type === "candidate") {
      if (!this.pc.remoteDescription) this.pending.push(msg.candidate);
      else await this.pc.addIceCandidate(msg.candidate || null).catch(() => {});
    }
  }

  close(stopTracks = true) {
    if (this.pc) this.pc.close();
    this.pc = null;
    if (stopTracks) for (const tr of this.stream.getTracks()) tr.stop();
  }
}

export function create(ctx) {
  const [confId, venueCode, hostNode] = ctx.args;
  let client = null;
  let camera = null;
  let content = null;
  let camStream = null;
  let levelTimer = null;
  let reconnectTimer = null;
  let republishTimer = null;
  let finished = false;
  let layout = null;
  let analyser = null;

  const title = h("h2", { testid: "venue-title" }, t("conf.venue.title"));
  const stateLabel = h("span", { class: "tile-state", testid: "venue-state", dataset: { state: "connecting" } }, t("conf.venue.state.connecting"));
  const modeLabel = h("span", { class: "muted", testid: "venue-mode", dataset: { mode: "" } }, "");
  const pubState = h("span", { class: "muted", testid: "venue-publish-state", dataset: { state: "idle" } }, "");
  const micLabel = h("span", { testid: "venue-muted", dataset: { muted: "false" } }, "");
  const handButton = h("button", { type: "button", testid: "venue-hand", onclick: toggleHand }, t("conf.venue.raiseHand"));
  const shareButton = h("button", { type: "button", testid: "venue-share", onclick: toggleShare }, t("conf.venue.share"));
  const problem = h("div", { testid: "venue-problem" });
  const hostLabel = h("span", { class: "problem", testid: "venue-host", dataset: { reachable: "true" } }, "");
  const grid = h("div", { class: "venue-grid", testid: "venue-grid", dataset: { layout: "" } });
  const contentBox = h("div", { class: "venue-content", testid: "venue-content", hidden: true });
  const audioBox = h("div", { class: "venue-audio", testid: "venue-audio" });
  const preview = h("video", { autoplay: true, muted: true, playsinline: true, class: "venue-preview", testid: "venue-preview" });
  const tiles = new Map(); // tile id -> {el, video, label}

  const el = h(
    "section",
    { class: "panel venue-panel", testid: "venue-panel" },
    title,
    h("div", { class: "venue-bar" }, stateLabel, " ", hostLabel, " ", modeLabel, " ", micLabel, " ", pubState, " ", handButton, " ", shareButton),
    problem,
    h("div", { class: "venue-main" }, grid, contentBox),
    h("div", { class: "venue-side" }, preview, audioBox),
  );

  if (!confId || !venueCode) {
    clear(problem, h("div", { class: "problem" }, t("conf.venue.missing")));
    return { el };
  }
  for (const id of AUDIO_SLOTS) audioBox.append(makeTile(id, "audio").el);
  join();

  function setState(state, reason = "") {
    stateLabel.dataset.state = state;
    stateLabel.textContent = t(`conf.venue.state.${state}`) + (reason ? `: ${reason}` : "");
  }

  function makeTile(id, kind) {
    const media = h(kind === "audio" ? "audio" : "video", { autoplay: true, playsinline: true, testid: `venue-media-${id}` });
    const label = h("span", { class: "tile-label", testid: `venue-label-${id}` }, "");
    const tileEl = h("div", { class: `venue-tile venue-tile-${kind}`, testid: `venue-tile-${id}`, dataset: { tile: id, code: "", state: "idle", framesDecoded: "0" } }, media, label);
    const tile = { el: tileEl, video: media, label };
    tiles.set(id, tile);
    return tile;
  }

  function watch(id) {
    const tile = tiles.get(id);
    if (!client.players.has(id)) client.watch(id, "", tile.video);
  }

  function drop(id) {
    const tile = tiles.get(id);
    if (!tile) return;
    if (client && client.players.has(id)) client.stop(id);
    tiles.delete(id);
    tile.el.remove();
  }

  function applyLayout(msg) {
    layout = msg;
    title.textContent = `${msg.title} · ${venueName(msg)}`;
    modeLabel.dataset.mode = msg.mode;
    modeLabel.textContent = t(`conf.mode.${msg.mode}`);
    micLabel.dataset.muted = String(msg.muted);
    micLabel.textContent = msg.muted ? t("conf.venue.mutedByChair") : "";
    handButton.dataset.raised = String(msg.hand);
    handButton.textContent = msg.hand ? t("conf.venue.lowerHand") : t("conf.venue.raiseHand");
    if (msg.removed) {
      finish("removed");
      return;
    }
    grid.dataset.layout = msg.layout;
    const wanted = new Set(msg.video.map((v) => v.tile));
    for (const id of [...tiles.keys()]) if (id.startsWith("v") && !wanted.has(id)) drop(id);
    msg.video.forEach((v, i) => {
      let tile = tiles.get(v.tile);
      if (!tile) {
        tile = makeTile(v.tile, "video");
        tile.el.classList.toggle("venue-tile-big", i === 0);
        grid.append(tile.el);
      }
      label(tile, v);
      watch(v.tile);
    });
    for (const a of msg.audio) {
      label(tiles.get(a.tile), a);
      watch(a.tile);
    }
    if (msg.content) {
      let tile = tiles.get("c");
      if (!tile) {
        tile = makeTile("c", "video");
        contentBox.append(tile.el);
      }
      contentBox.hidden = false;
      label(tile, msg.content);
      watch("c");
    } else {
      drop("c");
      contentBox.hidden = true;
    }
  }

  function venueName(msg) {
    return msg.venue_name || venueCode;
  }

  function label(tile, entry) {
    if (!tile) return;
    tile.el.dataset.code = entry.code || "";
    tile.label.textContent = entry.name || "";
  }

  function onStatus(id, msg) {
    const tile = tiles.get(id);
    if (!tile) return;
    tile.el.dataset.state = msg.state;
    // Why a tile is not playing, for the room's staff (hover) and for diagnostics.
    tile.el.dataset.reason = msg.reason || "";
    tile.el.title = msg.reason || "";
  }

  function onStats(id, s) {
    const tile = tiles.get(id);
    if (!tile) return;
    tile.el.dataset.framesDecoded = String(s.framesDecoded);
    tile.el.dataset.pcId = String(s.pcId);
    // The receiver's jitter-buffer delay over the last second (diagnostics; live.js sample()).
    tile.el.dataset.delayMs = s.latencyMs === null ? "" : String(Math.round(s.latencyMs));
  }

  async function onMessage(msg) {
    if (msg.type === "layout") applyLayout(msg);
    else if (msg.tile === "pub" && camera) {
      if (msg.type === "status") {
        pubState.dataset.state = msg.state;
        pubState.textContent = t(`publish.state.${msg.state}`) + (msg.reason ? `: ${msg.reason}` : "");
        if (msg.state === "publishing" && hostLabel.dataset.reachable !== "false") setState("joined");
        if (msg.state === "error" && msg.retry) republishLater();
      } else await camera.onMessage(msg);
    } else if (msg.tile === "content" && content) {
      if (msg.type === "status") shareButton.dataset.state = msg.state;
      else await content.onMessage(msg);
    } else if (msg.type === "host") {
      hostLabel.dataset.reachable = String(msg.reachable);
      hostLabel.textContent = msg.reachable ? "" : t("conf.venue.state.unreachable") + (msg.reason ? `: ${msg.reason}` : "");
      if (!msg.reachable) setState("unreachable");
      else if (pubState.dataset.state === "publishing") setState("joined");
    } else if (msg.type === "replaced" || msg.type === "ended") {
      finish(msg.type, msg.reason);
    }
  }

  async function join() {
    setState("connecting");
    client = new LiveClient({
      path: `/api/conferences/${encodeURIComponent(confId)}/ws` + (hostNode ? `?host=${encodeURIComponent(hostNode)}` : ""),
      onStatus,
      onStats,
      onMessage,
      onError: (msg) => problem.append(h("div", { class: "problem", testid: "venue-error" }, `${msg.field}: ${msg.reason}`)),
      onClose: (code, reason) => dropped(reason || String(code)),
    });
    client.send({ type: "venue", code: venueCode });
    try {
      if (!camStream) {
        camStream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 15 }, audio: true });
        preview.srcObject = camStream;
        measureMic(camStream);
      }
      camera = new Publisher(client, "pub", venueCode, camStream);
      await camera.ready;
    } catch (err) {
      setState("error", String(err.message || err));
    }
  }

  function republishLater() {
    if (republishTimer) return;
    republishTimer = setTimeout(() => {
      republishTimer = null;
      if (finished || !client || !camera || !camStream) return;
      camera.close(false);
      camera = new Publisher(client, "pub", venueCode, camStream);
      camera.ready.catch((err) => setState("error", String(err.message || err)));
    }, RECONNECT_MS);
  }

  function measureMic(stream) {
    try {
      const ac = new AudioContext();
      analyser = ac.createAnalyser();
      analyser.fftSize = 1024;
      ac.createMediaStreamSource(stream).connect(analyser);
    } catch {
      analyser = null;
    }
    levelTimer = setInterval(() => {
      if (!analyser || !client) return;
      const buf = new Float32Array(analyser.fftSize);
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const x of buf) sum += x * x;
      const level = Math.min(1, Math.sqrt(sum / buf.length));
      el.dataset.micLevel = level.toFixed(3);
      client.send({ type: "level", value: Number(level.toFixed(3)) });
    }, 1000);
  }

  function teardown() {
    clearTimeout(republishTimer);
    republishTimer = null;
    if (camera) camera.close(false);
    camera = null;
    if (content) content.close();
    content = null;
    if (client) {
      const c = client;
      client = null;
      c.close();
    }
  }

  function dropped(reason) {
    if (finished) return;
    teardown();
    setState("dropped", reason);
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(() => {
      if (!finished) join();
    }, RECONNECT_MS);
  }

  function finish(state, reason = "") {
    finished = true;
    teardown();
    setState(state, reason);
  }

  function toggleHand() {
    if (!client) return;
    client.send({ type: "hand", raised: !(layout && layout.hand) });
  }

  async function toggleShare() {
    if (!client) return;
    if (content) {
      client.send({ type: "unpublish", tile: "content" });
      content.close();
      content = null;
      shareButton.textContent = t("conf.venue.share");
      return;
    }
    try {
      const screen = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      content = new Publisher(client, "content", venueCode, screen);
      shareButton.textContent = t("conf.venue.stopShare");
    } catch (err) {
      clear(problem, h("div", { class: "problem" }, String(err.message || err)));
    }
  }

  function destroy() {
    finished = true;
    clearTimeout(reconnectTimer);
    if (levelTimer) clearInterval(levelTimer);
    teardown();
    if (camStream) for (const tr of camStream.getTracks()) tr.stop();
    camStream = null;
  }

  return { el, destroy };
}
