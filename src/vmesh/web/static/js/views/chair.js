// Chair page: #/chair lists the user's conferences and creates one; #/chair/<id> steers one.
//
// The steering page joins the conference's WebSocket as a chair ({type: "chair"}) and is pushed
// the floor and every venue's status (joined / dropped / absent / removed, muted, hand raised,
// microphone level, audio bitrate at the switch) once a second. Actions are HTTP calls
// (POST /api/conferences/<id>/actions), audited by the node: broadcast, roll call, discussion,
// polling, mute and unmute (one or all), approve a raised hand, remove a venue, layout push, lock.
// A thumbnail of a venue is watched on demand (a small tile, video only). Closing this page does
// not end the conference; another chair can open it and carry on.
import { request } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { problemBox } from "../ui.js";
import { LiveClient } from "./live.js";

const enc = encodeURIComponent;

export function create(ctx) {
  const [confId] = ctx.args;
  return confId ? steer(ctx, confId) : list(ctx);
}

function list(ctx) {
  const problem = h("div", { testid: "chair-problem" });
  const rows = h("tbody", {});
  const titleIn = h("input", { testid: "chair-new-title", placeholder: t("conf.new.title") });
  const mainIn = h("input", { testid: "chair-new-main", placeholder: t("conf.new.main") });
  const venuesIn = h("textarea", { testid: "chair-new-venues", rows: 3, placeholder: t("conf.new.venues") });
  const el = h(
    "section",
    { class: "panel", testid: "chair-list" },
    h("h2", {}, t("conf.list.title")),
    h("table", { class: "table" }, h("thead", {}, h("tr", {}, h("th", {}, t("conf.list.name")), h("th", {}, t("conf.list.status")), h("th", {}, ""))), rows),
    h("h3", {}, t("conf.new.heading")),
    h("div", { class: "conf-new" }, titleIn, mainIn, venuesIn, h("button", { type: "button", class: "primary", testid: "chair-new-create", onclick: createConf }, t("conf.new.create"))),
    problem,
  );
  load();

  async function load() {
    try {
      const page = await request("GET", "/conferences", { params: { limit: 100 } });
      clear(
        rows,
        page.items.map((c) =>
          h(
            "tr",
            { testid: `chair-conf-${c.id}` },
            h("td", {}, c.title),
            h("td", {}, t(`conf.status.${c.status}`)),
            h("td", {}, h("a", { href: `#/chair/${c.id}` }, t("conf.list.open")), " ", h("a", { href: `#/venue/${c.id}/${c.main}` }, t("conf.list.mainVenue"))),
          ),
        ),
      );
    } catch (err) {
      clear(problem, problemBox(err));
    }
  }

  async function createConf() {
    clear(problem);
    const venues = venuesIn.value.split(/[\s,，]+/).filter(Boolean);
    try {
      const c = await request("POST", "/conferences", { body: { title: titleIn.value, main: mainIn.value.trim(), venues } });
      ctx.navigate(`#/chair/${c.id}`);
    } catch (err) {
      clear(problem, problemBox(err, { testid: "chair-new-error" }));
    }
  }

  return { el };
}

function steer(ctx, confId) {
  let state = null;
  const thumbs = new Map(); // venue code -> tile element
  const selected = new Set();
  const problem = h("div", { testid: "chair-problem" });
  const title = h("h2", { testid: "chair-title" }, "");
  const modeLabel = h("span", { testid: "chair-mode", dataset: { mode: "" } }, "");
  const layoutSel = h("select", { testid: "chair-layout", onchange: () => act({ action: "layout", layout: layoutSel.value }) });
  const pollSeconds = h("input", { type: "number", min: 2, value: 10, testid: "chair-poll-seconds", class: "narrow" });
  const rows = h("tbody", { testid: "chair-venues" });
  const thumbBox = h("div", { class: "chair-thumbs", testid: "chair-thumbs" });
  const lockBox = h("input", { type: "checkbox", testid: "chair-lock", onchange: () => act({ action: "lock", locked: lockBox.checked }) });
  const conn = h("span", { testid: "chair-connection", dataset: { state: "connecting" } }, "");
  const recList = h("div", { class: "chair-recordings", testid: "chair-recordings" });

  const button = (key, testid, onclick) => h("button", { type: "button", testid, onclick }, t(key));
  const el = h(
    "section",
    { class: "panel chair-panel", testid: "chair-panel" },
    title,
    h(
      "div",
      { class: "chair-bar" },
      modeLabel,
      " ",
      conn,
      " ",
      h("label", {}, t("conf.chair.layout"), " ", layoutSel),
      button("conf.chair.muteAll", "chair-mute-all", () => act({ action: "mute", venue: null })),
      button("conf.chair.unmuteAll", "chair-unmute-all", () => act({ action: "unmute", venue: null })),
      button("conf.chair.stop", "chair-stop", () => act({ action: "roll_call", venue: null })),
      button("conf.chair.discuss", "chair-discuss", () => act({ action: "discussion", venues: [...selected] })),
      button("conf.chair.poll", "chair-poll", () => act({ action: "polling", venues: [...selected], seconds: Number(pollSeconds.value) })),
      pollSeconds,
      h("label", {}, lockBox, " ", t("conf.chair.lock")),
      button("conf.chair.end", "chair-end", end),
    ),
    problem,
    h(
      "table",
      { class: "table chair-table" },
      h(
        "thead",
        {},
        h("tr", {}, ["", "conf.chair.venue", "conf.chair.status", "conf.chair.audio", "conf.chair.hand", ""].map((k) => h("th", {}, k ? t(k) : ""))),
      ),
      rows,
    ),
    thumbBox,
    h("h3", {}, t("conf.chair.recordings"), " ", button("conf.chair.refreshRecordings", "chair-recordings-refresh", loadRecordings)),
    recList,
  );

  async function loadRecordings() {
    try {
      const items = (await request("GET", `/conferences/${enc(confId)}/recordings`)).filter((r) => r.complete);
      if (!items.length) {
        clear(recList, h("p", { class: "muted" }, t("conf.chair.noRecordings")));
        return;
      }
      clear(
        recList,
        items.map((r) =>
          h("div", { class: "chair-recording", testid: `chair-recording-${r.name}` }, h("div", {}, r.name), h("video", { controls: true, preload: "metadata", src: `/api/conferences/${enc(confId)}/recordings/${enc(r.name)}` })),
        ),
      );
    } catch (err) {
      clear(recList, problemBox(err));
    }
  }

  const client = new LiveClient({
    path: `/api/conferences/${enc(confId)}/ws`,
    onMessage,
    onStatus: (tile, msg) => {
      const box = [...thumbs.values()].find((b) => b.dataset.tile === tile);
      if (box) box.dataset.state = msg.state;
    },
    onStats: (tile, s) => {
      const box = [...thumbs.values()].find((b) => b.dataset.tile === tile);
      if (box) box.dataset.framesDecoded = String(s.framesDecoded);
    },
    onError: (msg) => clear(problem, h("div", { class: "problem", testid: "chair-error" }, `${msg.field}: ${msg.reason}`)),
    onClose: (code, reason) => {
      conn.dataset.state = "closed";
      conn.textContent = t("conf.chair.closed", { reason: reason || code });
    },
  });
  client.send({ type: "chair" });

  function onMessage(msg) {
    if (msg.type === "state") render(msg);
    else if (msg.type === "ended") {
      conn.dataset.state = "ended";
      conn.textContent = t("conf.status.ended");
    }
  }

  async function act(body) {
    clear(problem);
    try {
      render(await request("POST", `/conferences/${enc(confId)}/actions`, { body }));
    } catch (err) {
      clear(problem, problemBox(err, { testid: "chair-action-error" }));
    }
  }

  async function end() {
    try {
      await request("POST", `/conferences/${enc(confId)}/end`);
    } catch (err) {
      clear(problem, problemBox(err));
    }
  }

  function render(s) {
    state = s;
    conn.dataset.state = "open";
    conn.textContent = "";
    title.textContent = s.title;
    modeLabel.dataset.mode = s.floor.mode;
    modeLabel.textContent = t(`conf.mode.${s.floor.mode}`);
    if (layoutSel.options.length !== s.layouts.length) clear(layoutSel, s.layouts.map((l) => h("option", { value: l }, l)));
    layoutSel.value = s.floor.layout;
    lockBox.checked = s.floor.locked;
    clear(rows, s.venues.map(row));
  }

  function row(v) {
    const pick = h("input", {
      type: "checkbox",
      checked: selected.has(v.code),
      testid: `chair-pick-${v.code}`,
      onchange: (ev) => (ev.target.checked ? selected.add(v.code) : selected.delete(v.code)),
    });
    const level = v.level === null || v.level === undefined ? "—" : `${Math.round(v.level * 100)}%`;
    const sub = v.role === "sub";
    return h(
      "tr",
      {
        testid: `chair-venue-${v.code}`,
        class: v.featured ? "featured" : "",
        dataset: { status: v.status, muted: String(v.muted), hand: String(v.hand), featured: String(v.featured), speaking: String(v.speaking) },
      },
      h("td", {}, pick),
      h("td", {}, v.name, v.role === "main" ? ` (${t("conf.chair.main")})` : ""),
      h("td", { testid: `chair-status-${v.code}` }, t(`conf.venueStatus.${v.status}`)),
      h("td", { testid: `chair-level-${v.code}`, dataset: { kbps: String(v.audio_kbps) } }, `${level} · ${v.audio_kbps} kbit/s`, v.muted ? ` · ${t("conf.chair.muted")}` : ""),
      h("td", {}, v.hand ? h("button", { type: "button", testid: `chair-approve-${v.code}`, onclick: () => act({ action: "approve", venue: v.code }) }, t("conf.chair.approve")) : ""),
      h(
        "td",
        { class: "chair-actions" },
        sub ? h("button", { type: "button", testid: `chair-rollcall-${v.code}`, onclick: () => act({ action: "roll_call", venue: v.code }) }, t("conf.chair.rollCall")) : null,
        h("button", { type: "button", testid: `chair-broadcast-${v.code}`, onclick: () => act({ action: "broadcast", venue: v.code }) }, t("conf.chair.broadcast")),
        h("button", { type: "button", testid: `chair-mute-${v.code}`, onclick: () => act({ action: v.muted ? "unmute" : "mute", venue: v.code }) }, t(v.muted ? "conf.chair.unmute" : "conf.chair.mute")),
        h("button", { type: "button", testid: `chair-thumb-${v.code}`, onclick: () => thumb(v) }, t("conf.chair.thumb")),
        sub ? h("button", { type: "button", testid: `chair-remove-${v.code}`, onclick: () => act({ action: "remove", venue: v.code }) }, t("conf.chair.remove")) : null,
      ),
    );
  }

  function thumb(v) {
    const old = thumbs.get(v.code);
    if (old) {
      client.stop(old.dataset.tile);
      old.remove();
      thumbs.delete(v.code);
      return;
    }
    const tile = `thumb-${thumbs.size}-${Date.now() % 100000}`;
    const video = h("video", { autoplay: true, muted: true, playsinline: true });
    const box = h("div", { class: "chair-thumb", testid: `chair-thumbnail-${v.code}`, dataset: { tile, framesDecoded: "0" } }, video, h("span", {}, v.name));
    thumbs.set(v.code, box);
    thumbBox.append(box);
    client.watch(tile, v.code, video);
  }

  return {
    el,
    destroy: () => client.close(),
    get state() {
      return state;
    },
  };
}
