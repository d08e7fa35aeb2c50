// A 1:1 video call of the service desk (kiosk ↔ agent) over the node's live WebSocket.
//
// Each side publishes its camera and microphone as its own endpoint (the kiosk's service room,
// the agent's seat: vmesh.media.publish, tile "pub") and watches the other side's endpoint like a
// camera (vmesh.media.viewer, tile "peer"): both go through the node's switch, so the call can be
// recorded there and crosses tiers like any stream. The browser never talks to Janus's API.
//
// Stats are sampled every second and kept in data-* attributes of ``el`` for tests and support:
// data-peer-frames (video frames decoded), data-peer-audio-energy (totalAudioEnergy of the
// received audio), data-sent-frames (frames encoded), data-peer-state / data-pub-state.
import { request } from "../api.js";
import { clear, h } from "../dom.js";
import { problemBox } from "../ui.js";

const PUB = "pub";
const PEER = "peer";

export class DeskCall {
  constructor({ onState } = {}) {
    this.onState = onState || (() => {});
    this.ws = null;
    this.pubPc = null;
    this.peerPc = null;
    this.stream = null;
    this.pending = { [PUB]: [], [PEER]: [] };
    this.timer = null;
    this.self = h("video", { autoplay: true, muted: true, playsinline: true, class: "sd-self", testid: "call-self" });
    this.peer = h("video", { autoplay: true, playsinline: true, class: "sd-peer", testid: "call-peer" });
    this.el = h(
      "div",
      { class: "sd-call", testid: "call", dataset: { peerFrames: "0", peerAudioEnergy: "0", sentFrames: "0", peerState: "idle", pubState: "idle" } },
      this.peer,
      this.self,
    );
  }

  /** Publish as ``ownCode`` and watch ``peerCode`` (either may be null to skip that half). */
  async start(ownCode, peerCode) {
    await this.open();
    if (ownCode && !this.publishing) {
      this.publishing = this.publish(ownCode);
      await this.publishing;
    }
    if (peerCode) this.watch(peerCode);
    if (!this.timer) this.timer = setInterval(() => this.sample(), 1000);
  }

  open() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return this.opened;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/api/live/ws`);
    this.ws = ws;
    this.opened = new Promise((resolve, reject) => {
      ws.addEventListener("open", () => resolve());
      ws.addEventListener("error", () => reject(new Error("live WebSocket failed")));
    });
    ws.addEventListener("message", (ev) => this.receive(JSON.parse(ev.data)));
    return this.opened;
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  candidateSender(tile) {
    return (ev) => {
      const c = ev.candidate;
      this.send({ type: "candidate", tile, candidate: c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null });
    };
  }

  async publish(code) {
    this.pubCode = code;
    if (!this.stream) {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
      this.self.srcObject = this.stream;
    }
    if (this.pubPc) this.pubPc.close();
    this.pending[PUB] = [];
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pubPc = pc;
    for (const track of this.stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [this.stream] });
    pc.addEventListener("icecandidate", this.candidateSender(PUB));
    await pc.setLocalDescription(await pc.createOffer());
    this.send({ type: "publish", tile: PUB, code, jsep: { type: "offer", sdp: pc.localDescription.sdp } });
  }

  watch(code) {
    if (this.peerCode === code) return;
    this.peerCode = code;
    this.send({ type: "watch", tile: PEER, code });
  }

  async receive(msg) {
    const tile = msg.tile;
    if (msg.type === "status") {
      this.el.dataset[tile === PUB ? "pubState" : "peerState"] = msg.state;
      this.el.dataset[tile === PUB ? "pubReason" : "peerReason"] = msg.reason || "";
      // The other side may not publish yet (its page learns of the call a moment later): retry.
      if (tile === PEER && msg.state === "error" && this.peerCode) {
        const code = this.peerCode;
        clearTimeout(this.rewatch);
        this.rewatch = setTimeout(() => {
          if (this.peerCode !== code) return;
          this.peerCode = null;
          this.watch(code);
        }, 1500);
      }
      // Our own connection failed (ICE failed …, retry: true): publish again on the same socket.
      if (tile === PUB && msg.state === "error" && msg.retry && this.pubCode) {
        const code = this.pubCode;
        clearTimeout(this.republish);
        this.republish = setTimeout(() => {
          if (this.pubCode === code && this.stream) this.publish(code).catch(() => {});
        }, 1500);
      }
      this.onState(tile, msg);
    } else if (msg.type === "answer" && tile === PUB && this.pubPc) {
      await this.pubPc.setRemoteDescription(msg.jsep);
      await this.flush(PUB, this.pubPc);
    } else if (msg.type === "offer" && tile === PEER) {
      if (this.peerPc) this.peerPc.close();
      const pc = new RTCPeerConnection({ iceServers: [] });
      this.peerPc = pc;
      pc.addEventListener("track", (ev) => {
        const stream = ev.streams[0] || new MediaStream([ev.track]);
        if (this.peer.srcObject !== stream) this.peer.srcObject = stream;
        this.peer.play().catch(() => {});
      });
      pc.addEventListener("icecandidate", this.candidateSender(PEER));
      await pc.setRemoteDescription(msg.jsep);
      await this.flush(PEER, pc);
      await pc.setLocalDescription(await pc.createAnswer());
      this.send({ type: "answer", tile: PEER, jsep: { type: "answer", sdp: pc.localDescription.sdp } });
    } else if (msg.type === "candidate") {
      const pc = tile === PUB ? this.pubPc : this.peerPc;
      if (!pc || !pc.remoteDescription) this.pending[tile]?.push(msg.candidate);
      else await this.addCandidate(pc, msg.candidate);
    } else if (msg.type === "error") {
      this.onState("error", msg);
    }
  }

  async flush(tile, pc) {
    for (const c of this.pending[tile].splice(0)) await this.addCandidate(pc, c);
  }

  async addCandidate(pc, c) {
    try {
      await pc.addIceCandidate(c || null);
    } catch {
      // a candidate of another address family is not an error
    }
  }

  async sample() {
    if (this.peerPc) {
      (await this.peerPc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") this.el.dataset.peerFrames = String(s.framesDecoded || 0);
        if (s.type === "inbound-rtp" && s.kind === "audio") this.el.dataset.peerAudioEnergy = String(s.totalAudioEnergy || 0);
      });
    }
    if (this.pubPc) {
      (await this.pubPc.getStats()).forEach((s) => {
        if (s.type === "outbound-rtp" && s.kind === "video") this.el.dataset.sentFrames = String(s.framesEncoded || 0);
      });
    }
  }

  stop() {
    clearTimeout(this.rewatch);
    clearTimeout(this.republish);
    this.pubCode = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.send({ type: "stop", tile: PEER });
    this.send({ type: "unpublish", tile: PUB });
    for (const pc of [this.pubPc, this.peerPc]) if (pc) pc.close();
    this.pubPc = this.peerPc = null;
    this.peerCode = null;
    this.publishing = null;
    if (this.stream) for (const tr of this.stream.getTracks()) tr.stop();
    this.stream = null;
    this.self.srcObject = null;
    this.peer.srcObject = null;
    if (this.ws) this.ws.close();
    this.ws = null;
  }
}

/** The service desk's own stylesheet, added once (large type for the kiosk, the desk's panels). */
export function useStyles() {
  if (document.getElementById("sd-css")) return;
  document.head.append(h("link", { id: "sd-css", rel: "stylesheet", href: "/css/servicedesk.css" }));
}

/** Live updates of the service desk: ``/api/servicedesk/ws?case=ID`` or ``?desk=1``. */
export function deskSocket(query, onMessage) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let ws = null;
  let closed = false;
  let retry = 500;
  function connect() {
    ws = new WebSocket(`${proto}//${location.host}/api/servicedesk/ws?${query}`);
    ws.addEventListener("open", () => { retry = 500; });
    ws.addEventListener("message", (ev) => onMessage(JSON.parse(ev.data)));
    ws.addEventListener("close", () => {
      if (closed) return;
      // Reconnect: the node keeps the case (and its number) for kiosk_resume_seconds.
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 8000);
    });
  }
  connect();
  return { close() { closed = true; if (ws) ws.close(); } };
}

/** A page's way to show problems in ``box`` and to call the API with them shown (and rethrown). */
export function problems(box, testid) {
  const fail = (err) => clear(box, problemBox(err, { testid }));
  const act = async (method, path, opts) => {
    clear(box);
    try {
      return await request(method, path, opts);
    } catch (err) {
      fail(err);
      throw err;
    }
  };
  return { fail, act };
}
