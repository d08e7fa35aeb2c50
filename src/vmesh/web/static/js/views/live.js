// Live video client: one signalling WebSocket per page (/api/live/ws) and one RTCPeerConnection
// per tile. The node answers "watch" with Janus's offer (relayed), candidates trickle both ways,
// and "switch" re-routes the same channel to another camera: the RTCPeerConnection stays, only
// the picture changes (polling). States come from the node: connecting / playing / no_signal /
// error (with the reason) / stopped. An error with ``retry: true`` is the connection's (Janus hung
// it up: ICE failed, e.g. when a network interface went away, or DTLS timed out): the tile is
// opened again by itself, after 1 s, then 2, 4 … up to 15 s while it keeps failing.
//
// Per tile, getStats() is sampled every second: resolution, fps, bitrate, frames decoded and the
// receive latency (jitterBufferDelay / jitterBufferEmittedCount).

const STATS_INTERVAL_MS = 1000;
const REOPEN_MIN_MS = 1000;
const REOPEN_MAX_MS = 15000;
let pcSerial = 0;

export class LiveClient {
  // ``path``: another signalling WebSocket speaking the same tile messages (a conference's);
  // ``onMessage`` gets every message no tile player handled (that socket's own messages).
  constructor({ onStatus, onStats, onError, onClose, onMessage, path = "/api/live/ws" } = {}) {
    this.path = path;
    this.onMessage = onMessage || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onStats = onStats || (() => {});
    this.onError = onError || (() => {});
    this.onClose = onClose || (() => {});
    this.players = new Map();
    this.queue = [];
    this.closed = false;
    this.ws = null;
    this.open = new Promise((resolve) => { this._opened = resolve; });
    this.connect();
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}${this.path}`);
    this.ws = ws;
    ws.addEventListener("open", () => {
      for (const m of this.queue.splice(0)) ws.send(JSON.stringify(m));
      this._opened();
    });
    ws.addEventListener("message", (ev) => this.receive(JSON.parse(ev.data)));
    ws.addEventListener("close", (ev) => {
      if (!this.closed) this.onClose(ev.code, ev.reason);
    });
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
    else this.queue.push(msg);
  }

  /** Play camera ``code`` on ``tile`` into ``video`` (a new RTCPeerConnection). */
  watch(tile, code, video) {
    this.openWith(tile, { type: "watch", code }, video);
  }

  /** Like watch, opened by another message of the same socket (a GB/T 28181 device recording:
   *  {type: "gb_playback", code, start, end}); the node answers with the tile's offer. */
  openWith(tile, msg, video) {
    this.dropPlayer(tile);
    const p = new TilePlayer(this, tile, video, { ...msg, tile });
    this.players.set(tile, p);
    this.send(p.opening);
    return p;
  }

  /** Same tile, same connection, another camera. */
  switchTo(tile, code) {
    const p = this.players.get(tile);
    if (!p) return false;
    if (p.opening.type === "watch") p.opening = { ...p.opening, code };
    this.send({ type: "switch", tile, code });
    return true;
  }

  /** The tile's connection failed: open it again (same message) after a growing wait. */
  reopenLater(p) {
    if (p.reopenTimer || this.closed) return;
    const wait = p.backoff || REOPEN_MIN_MS;
    p.backoff = Math.min(wait * 2, REOPEN_MAX_MS);
    p.reopenTimer = setTimeout(() => {
      p.reopenTimer = null;
      if (this.closed || this.players.get(p.tile) !== p) return;
      this.openWith(p.tile, p.opening, p.video).backoff = p.backoff; // still failing: wait longer
    }, wait);
  }

  stop(tile) {
    // "stop" first: the node releases the tile before Janus reports the closed connection.
    this.send({ type: "stop", tile });
    this.dropPlayer(tile);
  }

  dropPlayer(tile) {
    const p = this.players.get(tile);
    if (p) p.close();
    this.players.delete(tile);
  }

  close() {
    this.closed = true;
    for (const tile of [...this.players.keys()]) this.dropPlayer(tile);
    if (this.ws) this.ws.close();
  }

  async receive(msg) {
    const p = msg.tile !== undefined ? this.players.get(String(msg.tile)) : null;
    if (msg.type === "status" && p) {
      // A tile this page stopped may still get the hang-up of its closed connection: not news.
      if (msg.state === "error" && msg.retry) this.reopenLater(p);
      else if (msg.state === "playing") p.backoff = 0;
      this.onStatus(String(msg.tile), msg);
    } else if (msg.type === "offer" && p) {
      await p.onOffer(msg.jsep);
    } else if (msg.type === "candidate" && p) {
      await p.onCandidate(msg.candidate);
    } else if (msg.type === "error") {
      this.onError(msg);
    } else {
      this.onMessage(msg);
    }
  }
}

class TilePlayer {
  constructor(client, tile, video, opening) {
    this.client = client;
    this.tile = tile;
    this.video = video;
    this.opening = opening; // the message that opened the tile ({type: "watch", code} …)
    this.backoff = 0;
    this.reopenTimer = null;
    this.pc = null;
    this.pending = [];
    this.timer = null;
    this.last = null;
  }

  async onOffer(jsep) {
    if (this.pc) this.pc.close();
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.vmeshId = ++pcSerial;
    this.pc = pc;
    pc.addEventListener("track", (ev) => {
      const stream = ev.streams[0] || new MediaStream([ev.track]);
      if (this.video.srcObject !== stream) this.video.srcObject = stream;
      this.video.play().catch(() => {});
    });
    pc.addEventListener("icecandidate", (ev) => {
      const c = ev.candidate;
      this.client.send({
        type: "candidate",
        tile: this.tile,
        candidate: c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null,
      });
    });
    await pc.setRemoteDescription(jsep);
    for (const c of this.pending.splice(0)) await this.addCandidate(c);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.client.send({ type: "answer", tile: this.tile, jsep: { type: "answer", sdp: pc.localDescription.sdp } });
    this.timer = setInterval(() => this.sample(), STATS_INTERVAL_MS);
  }

  async onCandidate(c) {
    if (!this.pc || !this.pc.remoteDescription) {
      this.pending.push(c);
      return;
    }
    await this.addCandidate(c);
  }

  async addCandidate(c) {
    try {
      await this.pc.addIceCandidate(c || null);
    } catch {
      // a candidate the browser cannot use (e.g. another address family) is not an error
    }
  }

  async sample() {
    const pc = this.pc; // closed (null) while getStats() runs when the tile goes away
    if (!pc) return;
    let inbound = null;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound = s;
    });
    if (!inbound) return;
    const now = inbound.timestamp;
    let bitrate = null;
    if (this.last && now > this.last.timestamp) {
      bitrate = ((inbound.bytesReceived - this.last.bytesReceived) * 8) / ((now - this.last.timestamp) / 1000);
    }
    // The jitter buffer's delay over the last second (frames emitted since the last sample),
    // not the average since the connection began: a delay that grew shows as it is now.
    const emitted = inbound.jitterBufferEmittedCount || 0;
    const delay = inbound.jitterBufferDelay || 0;
    const prev = this.last && this.last.emitted !== undefined ? this.last : { emitted: 0, delay: 0 };
    const latencyMs = emitted > prev.emitted ? (1000 * (delay - prev.delay)) / (emitted - prev.emitted) : null;
    this.last = { timestamp: now, bytesReceived: inbound.bytesReceived, emitted, delay };
    this.client.onStats(this.tile, {
      pcId: pc.vmeshId,
      width: inbound.frameWidth || 0,
      height: inbound.frameHeight || 0,
      fps: inbound.framesPerSecond || 0,
      framesDecoded: inbound.framesDecoded || 0,
      bitrate,
      latencyMs,
    });
  }

  close() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    this.video.srcObject = null;
  }
}
