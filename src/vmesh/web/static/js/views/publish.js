// Publish page (#/publish): the user's camera and microphone become a source others can watch.
//
// The user picks a field or conference terminal of their scope (the directory endpoint the stream
// is published as), presses Publish; the page makes an RTCPeerConnection with the camera and
// microphone, sends its offer over the node's live WebSocket ({type: "publish"}), and applies the
// node's answer (the node drives Janus's VideoRoom; the browser never talks to Janus's API).
// While it publishes, the endpoint is online and anyone allowed can watch it on the wall
// (#/wall/<code>). Unpublish (or leaving the page) stops it.
//
// Outbound getStats() is sampled every second: resolution, fps, bitrate, keyframe requests (PLI)
// the encoder received; they are shown and kept in data-* attributes for tests.
import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { problemBox } from "../ui.js";

const TILE = "pub";
const KINDS = ["field_terminal", "conference_terminal"];

export function create(ctx) {
  let ws = null;
  let pc = null;
  let stream = null;
  let timer = null;
  let last = null;
  const pending = [];

  const select = h("select", { testid: "publish-endpoint" });
  const preview = h("video", { autoplay: true, muted: true, playsinline: true, testid: "publish-preview", class: "publish-preview" });
  const stateLabel = h("span", { class: "tile-state", testid: "publish-state", dataset: { state: "idle" } }, t("publish.state.idle"));
  const stats = h("span", { class: "mono", testid: "publish-stats" }, "");
  const watchLink = h("a", { testid: "publish-watch-link", hidden: true }, t("publish.watchLink"));
  const problem = h("div", { testid: "publish-problem" });
  const startButton = h("button", { type: "button", class: "primary", testid: "publish-start", onclick: start }, t("publish.start"));
  const stopButton = h("button", { type: "button", testid: "publish-stop", disabled: true, onclick: stop }, t("publish.stop"));

  const el = h(
    "section",
    { class: "panel publish-panel", dataset: { framesSent: "0", pliCount: "0" }, testid: "publish-panel" },
    h("h2", {}, t("publish.title")),
    h("p", { class: "muted" }, t("publish.hint")),
    h("label", {}, t("publish.endpoint"), " ", select),
    h("div", { class: "publish-actions" }, startButton, stopButton, stateLabel, watchLink),
    problem,
    preview,
    stats,
  );

  loadEndpoints();

  async function loadEndpoints() {
    clear(select, h("option", { value: "" }, t("common.loading")));
    try {
      const pages = await Promise.all(KINDS.map((kind) => api.search({ kind, sort: "name", limit: 200 })));
      const items = pages.flatMap((p) => p.items);
      clear(select, items.map((e) => h("option", { value: e.code }, `${e.name} (${e.code})`)));
      if (!items.length) clear(select, h("option", { value: "" }, t("publish.noEndpoints")));
    } catch (err) {
      clear(problem, problemBox(err, { testid: "publish-endpoints-error" }));
    }
  }

  function setState(state, reason) {
    stateLabel.dataset.state = state;
    stateLabel.textContent = t(`publish.state.${state}`) + (reason ? `: ${reason}` : "");
  }

  function openSocket() {
    return new Promise((resolve, reject) => {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const sock = new WebSocket(`${proto}//${location.host}/api/live/ws`);
      sock.addEventListener("open", () => resolve(sock));
      sock.addEventListener("error", () => reject(new Error(t("publish.socketFailed"))));
      sock.addEventListener("message", (ev) => receive(JSON.parse(ev.data)));
      sock.addEventListener("close", () => {
        if (ws === sock) setState("stopped", "");
      });
    });
  }

  async function start() {
    const code = select.value;
    clear(problem);
    if (!code) return;
    startButton.disabled = true;
    setState("connecting", "");
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
      preview.srcObject = stream;
      ws = await openSocket();
      pc = new RTCPeerConnection({ iceServers: [] });
      for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      pc.addEventListener("icecandidate", (ev) => {
        const c = ev.candidate;
        send({ type: "candidate", tile: TILE, candidate: c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null });
      });
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      send({ type: "publish", tile: TILE, code, jsep: { type: "offer", sdp: pc.localDescription.sdp } });
      stopButton.disabled = false;
      watchLink.href = `#/wall/${code}`;
      timer = setInterval(sample, 1000);
    } catch (err) {
      setState("error", String(err.message || err));
      cleanup();
    }
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  async function receive(msg) {
    if (msg.tile !== TILE) {
      if (msg.type === "error") setState("error", `${msg.field}: ${msg.reason}`);
      return;
    }
    if (msg.type === "answer" && pc) {
      await pc.setRemoteDescription(msg.jsep);
      for (const c of pending.splice(0)) await addCandidate(c);
    } else if (msg.type === "candidate" && pc) {
      if (!pc.remoteDescription) pending.push(msg.candidate);
      else await addCandidate(msg.candidate);
    } else if (msg.type === "status") {
      setState(msg.state, msg.reason);
      watchLink.hidden = msg.state !== "publishing";
      if (msg.state === "error" || msg.state === "stopped") cleanup();
    }
  }

  async function addCandidate(c) {
    try {
      await pc.addIceCandidate(c || null);
    } catch {
      // a candidate of another address family is not an error
    }
  }

  async function sample() {
    if (!pc) return;
    let out = null;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video") out = s;
    });
    if (!out) return;
    let kbps = null;
    if (last && out.timestamp > last.timestamp) kbps = Math.round(((out.bytesSent - last.bytesSent) * 8) / (out.timestamp - last.timestamp));
    last = { timestamp: out.timestamp, bytesSent: out.bytesSent };
    el.dataset.framesSent = String(out.framesEncoded || 0);
    el.dataset.pliCount = String(out.pliCount || 0);
    const parts = [`${out.frameWidth || 0}×${out.frameHeight || 0}`];
    if (out.framesPerSecond) parts.push(t("live.fps", { n: Math.round(out.framesPerSecond) }));
    if (kbps !== null) parts.push(t("live.kbps", { n: kbps }));
    parts.push(t("publish.plis", { n: out.pliCount || 0 }));
    stats.textContent = parts.join(" · ");
  }

  function stop() {
    send({ type: "unpublish", tile: TILE });
    setState("stopped", "");
    cleanup();
  }

  function cleanup() {
    if (timer) clearInterval(timer);
    timer = null;
    if (pc) pc.close();
    pc = null;
    if (stream) for (const tr of stream.getTracks()) tr.stop();
    stream = null;
    preview.srcObject = null;
    if (ws) {
      const sock = ws;
      ws = null;
      sock.close();
    }
    startButton.disabled = false;
    stopButton.disabled = true;
    watchLink.hidden = true;
  }

  return { el, destroy: cleanup };
}
