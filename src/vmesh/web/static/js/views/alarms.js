// GB/T 28181 alarms (#/alarms): the alarms devices sent to this node, newest first, filtered by
// priority, method and camera; each row links to the recording its alarm plan made (the MP4 of
// the alarm's span) and to the incident it opened. The server decides which cameras the user
// may see (GET /api/gb28181/alarms).
import { request } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, t } from "../i18n.js";
import { field, notice, pager, problemBox, select } from "../ui.js";

const PAGE = 50;
const PRIORITIES = ["1", "2", "3", "4"];
const METHODS = ["1", "2", "3", "4", "5", "6", "7"];

export function create(ctx) {
  const f = {
    priority: select("priority", [["", t("common.all")], ...PRIORITIES.map((p) => [p, t(`alarms.priority.${p}`)])], "", "alarms-priority"),
    method: select("method", [["", t("common.all")], ...METHODS.map((m) => [m, t(`alarms.method.${m}`)])], "", "alarms-method"),
    channel: h("input", { name: "channel", inputmode: "numeric", maxlength: "20", testid: "alarms-channel" }),
  };
  const list = h("div", { class: "results", testid: "alarms-list" });

  async function load(offset = 0) {
    const params = { priority: f.priority.value, method: f.method.value, channel: f.channel.value.trim(), offset, limit: PAGE };
    clear(list, h("p", { class: "muted" }, t("common.loading")));
    try {
      const page = await request("GET", "/gb28181/alarms", { params });
      if (!page.items.length) {
        clear(list, notice(t("alarms.none"), "alarms-empty"));
        return;
      }
      clear(list, h("table", { class: "table" },
        h("thead", {}, h("tr", {}, ["received", "camera", "priority", "method", "type", "description", "recording", "incident"]
          .map((c) => h("th", {}, t(`alarms.col.${c}`))))),
        h("tbody", {}, page.items.map((a) => row(a, ctx)))),
        pager(page, load, "alarms-pager"));
    } catch (err) {
      clear(list, problemBox(err, { testid: "alarms-error" }));
    }
  }

  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); load(0); } },
    field("alarms.col.priority", f.priority), field("alarms.col.method", f.method),
    field("alarms.col.camera", f.channel), h("button", { type: "submit", testid: "alarms-apply" }, t("alarms.apply")));
  const el = h("section", { class: "panel", testid: "alarms" }, h("h2", {}, t("alarms.title")), form, list);
  load();
  return { el };
}

function row(a, ctx) {
  const rec = a.recording
    ? h("a", { href: a.recording.play, target: "_blank", rel: "noopener", testid: `alarm-recording-${a.id}` },
        t("alarms.play", { n: a.recording.segments.length }))
    : "—";
  const inc = a.incident
    ? h("a", { href: `#/command/${a.incident}`, testid: `alarm-incident-${a.id}`,
        onclick: (e) => { e.preventDefault(); ctx.navigate(`#/command/${a.incident}`); } }, t("alarms.room"))
    : "—";
  return h("tr", { testid: `alarm-${a.id}`, class: `alarm-p${a.priority}` },
    h("td", { class: "mono", title: a.alarm_time }, formatTime(new Date(a.received_at * 1000).toISOString())),
    h("td", { title: a.channel }, a.channel_name || a.channel),
    h("td", {}, t(`alarms.priority.${a.priority}`)),
    h("td", {}, t(`alarms.method.${a.method}`)),
    h("td", { class: "mono" }, a.type || "—"),
    h("td", {}, a.description || ""),
    h("td", {}, rec),
    h("td", {}, inc));
}
