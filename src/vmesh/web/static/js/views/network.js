// Network map: this node's subtree of nodes and the state of each link, live (GET /api/network,
// polled every few seconds). Two views: a tree (parent above children, link state, round-trip
// time, last seen, catalogue sync progress) and a geographic one: plain SVG with each node at its
// lat/lon (no map tiles: the network has no internet) and links coloured by state.
import { request } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, t, tOr } from "../i18n.js";
import { problemBox } from "../ui.js";

const POLL_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = { up: "#2e9d4f", down: "#d2382b", unknown: "#9a9a9a", none: "#9a9a9a" };

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) el.setAttribute(k === "testid" ? "data-testid" : k, String(v));
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function linkText(link) {
  const state = tOr(`network.state.${link.state}`, link.state);
  const rtt = link.rtt_ms == null ? "" : ` · ${link.rtt_ms.toFixed(1)} ms`;
  return `${state}${rtt}`;
}

function syncText(sync) {
  const parts = [t("network.applied", { n: sync.applied })];
  if (sync.pending != null) parts.push(t("network.pending", { n: sync.pending }));
  if (sync.ignored) parts.push(t("network.ignored", { n: sync.ignored }));
  return parts.join(" · ");
}

function treeView(nodes) {
  const byParent = new Map();
  const codes = new Set(nodes.map((n) => n.code));
  for (const n of nodes) {
    const key = n.parent_code && codes.has(n.parent_code) ? n.parent_code : "";
    if (!byParent.has(key)) byParent.set(key, []);
    byParent.get(key).push(n);
  }
  const item = (n) =>
    h(
      "li",
      { testid: `network-node-${n.code}`, "data-link": n.link.state },
      h(
        "div",
        { class: "network-node" },
        h("span", { class: "dot", style: `background:${COLOURS[n.link.state] || COLOURS.unknown}` }),
        h("strong", {}, n.name),
        h("span", { class: "code" }, ` ${n.code} · ${tOr(`tier.${n.tier}`, n.tier)}`),
        n.self ? h("span", { class: "badge" }, t("network.self")) : "",
        n.parent_code
          ? h(
              "span",
              { class: "link", testid: `network-link-${n.code}` },
              ` ↑ ${linkText(n.link)}`,
              n.link.last_seen ? ` · ${t("network.last_seen")} ${formatTime(n.link.last_seen)}` : "",
            )
          : "",
        h("div", { class: "sync muted", testid: `network-sync-${n.code}` }, syncText(n.sync)),
      ),
      byParent.has(n.code) ? h("ul", {}, byParent.get(n.code).map(item)) : "",
    );
  return h("ul", { class: "network-tree", testid: "network-tree" }, (byParent.get("") || []).map(item));
}

function geoView(nodes) {
  const placed = nodes.filter((n) => n.lat != null && n.lon != null);
  const W = 720;
  const H = 480;
  const pad = 40;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "network-geo", testid: "network-geo", role: "img" });
  svg.append(s("rect", { x: 0, y: 0, width: W, height: H, fill: "#f4f6f8", stroke: "#c9d1d9" }));
  if (!placed.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, t("network.no_positions")));
    return svg;
  }
  const lats = placed.map((n) => n.lat);
  const lons = placed.map((n) => n.lon);
  // Equirectangular, with longitude shrunk by cos(latitude) so the shape looks right locally.
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((midLat * Math.PI) / 180);
  const x0 = Math.min(...lons) * k;
  const x1 = Math.max(...lons) * k;
  const y0 = Math.min(...lats);
  const y1 = Math.max(...lats);
  const span = Math.max(x1 - x0, y1 - y0, 0.01);
  const scale = Math.min((W - 2 * pad) / span, (H - 2 * pad) / span);
  const pos = new Map(
    placed.map((n) => [
      n.code,
      [pad + (n.lon * k - x0) * scale + ((W - 2 * pad) - (x1 - x0) * scale) / 2,
        H - pad - (n.lat - y0) * scale - ((H - 2 * pad) - (y1 - y0) * scale) / 2],
    ]),
  );
  for (const n of placed) {
    const a = pos.get(n.code);
    const b = n.parent_code && pos.get(n.parent_code);
    if (!b) continue;
    const line = s("line", {
      x1: a[0], y1: a[1], x2: b[0], y2: b[1],
      stroke: COLOURS[n.link.state] || COLOURS.unknown,
      "stroke-width": 3,
      "stroke-dasharray": n.link.state === "down" ? "6 4" : null,
      testid: `network-geo-link-${n.code}`,
      "data-state": n.link.state,
    });
    line.append(s("title", {}, `${n.name} ↔ ${n.parent_code}: ${linkText(n.link)}`));
    svg.append(line);
  }
  for (const n of placed) {
    const [x, y] = pos.get(n.code);
    const g = s("g", { testid: `network-geo-node-${n.code}` });
    g.append(
      s("circle", { cx: x, cy: y, r: n.self ? 9 : 7, fill: "#1f5fa8", stroke: "#fff", "stroke-width": 2 }),
      s("text", { x: x + 11, y: y + 4, "font-size": 13 }, n.name),
      s("title", {}, `${n.name} ${n.code}\n${syncText(n.sync)}`),
    );
    svg.append(g);
  }
  return svg;
}

export function create() {
  let mode = "tree";
  let timer = null;
  let last = null;
  const body = h("div", { class: "network-body", testid: "network-body" });
  const status = h("div", { class: "messages", testid: "network-status" });
  const uplink = h("div", { class: "muted", testid: "network-uplink" });
  const gbUppers = h("div", { class: "muted", testid: "network-gb-uppers" });
  const tabs = h(
    "div",
    { class: "tabs" },
    h("button", { type: "button", testid: "network-show-tree", onclick: () => setMode("tree") }, t("network.tree")),
    h("button", { type: "button", testid: "network-show-geo", onclick: () => setMode("geo") }, t("network.geo")),
  );
  const el = h("section", { class: "network" }, h("h2", {}, t("network.title")), uplink, gbUppers, tabs, status, body);

  function render() {
    if (!last) return;
    const nodes = last.nodes.items;
    const up = last.node.uplink;
    uplink.textContent = up
      ? t("network.uplink", { parent: up.parent_code || "?", state: linkText(up) })
      : t("network.top");
    clear(body, mode === "tree" ? treeView(nodes) : geoView(nodes));
  }

  function setMode(m) {
    mode = m;
    render();
  }

  // GB/T 28181 upper platforms this node registers to (cascade up); nothing when GB is off.
  async function pollGb() {
    try {
      const { uppers } = await request("GET", "/gb28181/uppers");
      clear(
        gbUppers,
        uppers.map((u) =>
          h(
            "div",
            { testid: `network-gb-upper-${u.id}`, "data-state": u.state },
            t("network.gb_upper", { id: u.id, address: u.address, state: t(`network.gb_state.${u.state}`) }) +
              (u.last_error ? ` (${u.last_error})` : ""),
          ),
        ),
      );
    } catch {
      clear(gbUppers);
    }
  }

  async function poll() {
    pollGb();
    try {
      last = await request("GET", "/api/network", { params: { limit: 500 } });
      clear(status);
      render();
    } catch (err) {
      clear(status, problemBox(err, { testid: "network-error" }));
    }
  }

  poll();
  timer = setInterval(poll, POLL_MS);
  return {
    el,
    destroy() {
      clearInterval(timer);
    },
  };
}
