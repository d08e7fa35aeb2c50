// Agent desk (#/desk): the queues of the agent's groups, the call, the materials, the case form.
//
// Left: every queue the agent serves (highest priority first) with its waiting villagers (item,
// village, waiting time); "next" takes the head of the highest-priority queue, or pick one.
// Middle: the video call (the agent publishes as their seat, watches the kiosk) and the materials
// panel (zoom, rotate, mark verified against the original, or ask for a recapture). Right: the
// item's case form and outcome, transfer to another item, hold, escalate, issue the result (the
// node renders the PDF), and the case history. Live updates come over /api/servicedesk/ws?desk=1.
import { request } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, t } from "../i18n.js";
import { DeskCall, deskSocket, problems, useStyles } from "./sdcall.js";

const LIVE = ["in_service", "materials_checked", "signed", "submitted"];

export function create() {
  useStyles();
  let current = null;
  let call = null;
  let catalogue = [];

  const problem = h("div", { testid: "desk-problem" });
  const { fail, act } = problems(problem, "desk-error");
  const queuesBox = h("div", { class: "sd-queues", testid: "desk-queues" });
  // The call stays in the page while the panels around it are redrawn (a moved video pauses).
  const callSlot = h("div", { class: "sd-callslot" });
  const head = h("header", { class: "sd-case-head" });
  const materialsBox = h("div");
  const formBox = h("div");
  const historyBox = h("div");
  const caseBox = h(
    "div",
    { class: "sd-case", testid: "desk-case" },
    head,
    h("div", { class: "sd-desk-grid" }, h("div", {}, callSlot, materialsBox), h("div", {}, formBox, historyBox)),
  );
  let formKey = "";
  const el = h(
    "section",
    { class: "sd-desk", testid: "desk" },
    h("aside", { class: "sd-left" },
      h("h2", {}, t("desk.queues")),
      h("button", { type: "button", class: "primary", testid: "desk-next", onclick: () => accept(null) }, t("desk.next")),
      queuesBox,
      h("a", { href: "#/sdstats", testid: "desk-stats-link" }, t("desk.stats"))),
    h("div", { class: "sd-main" }, problem, caseBox),
  );

  const live = deskSocket("desk=1", () => refresh());
  request("GET", "/servicedesk/catalogue").then((c) => {
    catalogue = c.departments.flatMap((d) => d.items.map((i) => ({ ...i, department: d.name })));
  }).catch(fail);
  refresh();


  async function refresh() {
    let q;
    try {
      q = await request("GET", "/servicedesk/desk/queues");
    } catch (err) {
      return fail(err);
    }
    clear(
      queuesBox,
      q.queues.length ? null : h("p", { class: "muted", testid: "desk-empty" }, t("desk.empty")),
      q.queues.map((queue) =>
        h("div", { class: "sd-queue", testid: `desk-queue-${queue.item}` },
          h("h3", {}, queue.name, " ", h("span", { class: "muted" }, t("desk.priority", { n: queue.priority }))),
          h("ul", {}, queue.cases.map((c) =>
            h("li", { testid: `desk-waiting-${c.id}`, dataset: { position: String(c.position) } },
              h("span", {}, `${c.position}. ${c.village} · ${c.applicant_name}`),
              h("span", { class: "muted" }, t("desk.waited", { n: Math.round(c.waiting_seconds / 60) })),
              h("button", { type: "button", testid: `desk-pick-${c.id}`, onclick: () => accept(c.id) }, t("desk.pick")),
            ),
          )),
        ),
      ),
    );
    const id = current?.id || q.current[0];
    if (id) await load(id);
  }

  async function accept(id) {
    const c = await act("POST", "/servicedesk/desk/accept", { body: id ? { case_id: id } : {} }).catch(() => null);
    if (c) render(c);
  }

  async function load(id) {
    try {
      render(await request("GET", `/servicedesk/cases/${id}`));
    } catch (err) {
      fail(err);
    }
  }

  function render(c) {
    current = c;
    const seat = c.agent_seat;
    if (LIVE.includes(c.state) && seat) {
      if (!call) {
        call = new DeskCall();
        clear(callSlot, call.el);
      }
      call.start(seat, c.kiosk_code).catch(fail);
    } else if (call) {
      call.stop();
      call = null;
      clear(callSlot);
    }
    caseBox.dataset.state = c.state;
    clear(
      head,
      h("strong", { testid: "desk-case-number" }, c.number), " ",
      h("span", {}, c.item.name), " ",
      h("span", { class: "sd-state", testid: "desk-case-state" }, t(`sd.state.${c.state}`)), " ",
      h("span", {}, `${c.village} · ${c.applicant_name} · ${c.applicant_id}`),
    );
    clear(materialsBox, materialsPanel(c));
    // The form keeps what the agent typed until the case or its state changes.
    const key = `${c.id}:${c.state}:${c.item.code}`;
    if (key !== formKey) {
      formKey = key;
      clear(formBox, formPanel(c));
    }
    clear(historyBox, historyPanel(c));
  }

  function materialsPanel(c) {
    return h(
      "div",
      { class: "sd-materials", testid: "desk-materials" },
      h("h3", {}, t("desk.materials")),
      c.materials.map((m) => {
        let zoom = 1;
        let turn = 0;
        const img = h("img", { src: m.url, alt: m.name, class: "sd-thumb", testid: `desk-image-${m.id}` });
        const apply = () => { img.style.transform = `rotate(${turn}deg) scale(${zoom})`; };
        return h("figure", { class: "sd-material", dataset: { status: m.status }, testid: `desk-material-${m.id}` },
          h("div", { class: "sd-imgwrap" }, img),
          h("figcaption", {},
            `${m.name} · ${m.width}×${m.height} · `, h("span", { testid: `desk-material-status-${m.id}` }, t(`sd.material.${m.status}`)),
            h("div", {},
              h("button", { type: "button", onclick: () => { zoom = Math.min(zoom * 1.5, 6); apply(); } }, t("desk.zoomIn")),
              h("button", { type: "button", onclick: () => { zoom = Math.max(zoom / 1.5, 1); apply(); } }, t("desk.zoomOut")),
              h("button", { type: "button", testid: `desk-rotate-${m.id}`, onclick: () => { turn = (turn + 90) % 360; apply(); } }, t("desk.rotate")),
              m.kind === "document" && LIVE.includes(c.state) ? [
                h("button", { type: "button", class: "primary", testid: `desk-verify-${m.id}`, onclick: () => verify(m, "verified") }, t("desk.verify")),
                h("button", { type: "button", testid: `desk-recapture-${m.id}`, onclick: () => verify(m, "recapture") }, t("desk.recapture")),
              ] : null,
            )),
        );
      }),
    );
  }

  async function verify(m, status) {
    await act("POST", `/servicedesk/materials/${m.id}/verify`, { body: { status, note: "" } }).catch(() => {});
    load(current.id);
  }

  function formPanel(c) {
    const inputs = {};
    const fields = c.item.form.map((f) => {
      inputs[f.name] = h("input", { type: "text", testid: `desk-form-${f.name}`, value: c.form[f.name] || "" });
      return h("label", { class: "sd-field" }, f.label, f.required ? " *" : "", inputs[f.name]);
    });
    const outcome = h("textarea", { testid: "desk-outcome", rows: 3 }, c.outcome || "");
    const transferTo = h("select", { testid: "desk-transfer-item" },
      catalogue.map((i) => h("option", { value: i.code }, `${i.department} · ${i.name}`)));
    const note = h("input", { type: "text", testid: "desk-note", placeholder: t("desk.note") });
    const post = (path, body) => act("POST", `/servicedesk/cases/${c.id}/${path}`, { body }).then(render).catch(() => {});
    const live = LIVE.includes(c.state);
    return h(
      "div",
      { class: "sd-form" },
      h("h3", {}, t("desk.form")),
      fields,
      h("label", { class: "sd-field" }, t("desk.outcome"), outcome),
      h("div", { class: "sd-actions" },
        h("button", { type: "button", testid: "desk-check", disabled: c.state !== "in_service", onclick: () => post("check") }, t("desk.check")),
        h("button", { type: "button", class: "primary", testid: "desk-submit", disabled: c.state !== "signed", onclick: () => {
          const form = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.value]));
          post("submit", { outcome: outcome.value, form });
        } }, t("desk.submit")),
        h("button", { type: "button", testid: "desk-hold", disabled: !live, onclick: () => post("hold") }, t("desk.hold")),
        h("button", { type: "button", testid: "desk-escalate", disabled: !live, onclick: () => post("escalate", { note: note.value }) }, t("desk.escalate")),
        h("button", { type: "button", testid: "desk-close", disabled: !["submitted", "escalated"].includes(c.state), onclick: () => post("close") }, t("desk.close"))),
      h("div", { class: "sd-actions" }, transferTo, note,
        h("button", { type: "button", testid: "desk-transfer", disabled: !live, onclick: () => post("transfer", { item_code: transferTo.value, note: note.value }) }, t("desk.transfer"))),
    );
  }

  function historyPanel(c) {
    return h(
      "div",
      { class: "sd-history" },
      h("h3", {}, t("desk.history")),
      h("ol", { testid: "desk-history" }, c.events.map((e) =>
        h("li", { dataset: { event: e.event, to: e.to } }, `${formatTime(e.at)} · ${t(`sd.state.${e.to}`)} · ${e.actor}`),
      )),
      c.result_url ? h("a", { href: c.result_url, testid: "desk-result", target: "_blank", rel: "noopener" }, t("desk.result")) : null,
      // The call's recording (both sides, recorded from the switch at this node), once closed.
      (c.recordings || []).length ? h("div", { class: "sd-recordings", testid: "desk-recordings" },
        h("h3", {}, t("desk.recordings")),
        c.recordings.map((r) => h("div", { testid: `desk-recording-${r.name}` },
          h("video", { src: r.url, controls: true, preload: "metadata", class: "sd-recording" }),
          h("a", { href: r.url, download: r.name, testid: "desk-recording-download" }, `${r.name} · ${Math.ceil(r.size / 1024)} KB`)))) : null,
    );
  }

  return {
    el,
    destroy() {
      live.close();
      if (call) call.stop();
    },
  };
}
