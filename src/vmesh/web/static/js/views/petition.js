// Remote petition (#/petition, vmesh.petition): the list with overdue cases flagged, booking at
// the petitioner's room (#/petition/new: ID card from the service desk's reader, subject,
// evidence files), one petition (#/petition/<id>: triage, session, the clerk's record, signing,
// the case) and an official's session page at their own node (#/petition/session/<origin>/<id>).
//
// The session is a conference (vmesh.conference): the petitioner's and the officials' pages
// embed the console's venue view for their venue (its tiles, its camera), with the conference's
// host node when it is another node; the evidence is shown beside it on every page.
import { ApiError, request } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, lang } from "../i18n.js";
import { problemBox } from "../ui.js";
import * as venueView from "./venue.js";
import DICT from "../../i18n/petition.js";

const POLL_MS = 2000;
const STAFF = ["petition", "admin"];

function tp(key) {
  return DICT[lang()]?.[key] ?? DICT["zh-CN"][key] ?? key;
}

export function create(ctx) {
  const el = h("section", { class: "panel petition", testid: "petition-panel" });
  const problem = h("div", { testid: "petition-problem" });
  let timer = null;
  let venue = null; // {key, view} of the embedded venue page
  const staff = ctx.me.roles.some((r) => STAFF.includes(r));

  function fail(err) {
    clear(problem, problemBox(err, { testid: "petition-error" }));
  }

  async function act(method, path, opts) {
    clear(problem);
    try {
      return await request(method, path, opts);
    } catch (err) {
      fail(err);
      throw err;
    }
  }

  function stop() {
    if (timer) clearInterval(timer);
    timer = null;
    dropVenue();
  }

  function dropVenue() {
    if (venue?.view?.destroy) venue.view.destroy();
    venue = null;
  }

  /** The console's venue view for ``code`` of conference ``conf`` (hosted at ``host``). */
  function embedVenue(box, conf, code, host, here) {
    const key = `${conf}/${code}/${host}`;
    if (venue?.key !== key) {
      dropVenue();
      const args = host && host !== here ? [String(conf), code, host] : [String(conf), code];
      venue = { key, view: venueView.create({ ...ctx, args }) };
    }
    if (venue.view.el.parentNode !== box) clear(box, venue.view.el);
  }

  function route(args) {
    stop();
    clear(el, h("h2", {}, tp("title")), problem);
    if (args[0] === "new") return booking();
    if (args[0] === "session" && args[1] && args[2]) return officialSession(args[1], Number(args[2]));
    if (args[0]) return petition(Number(args[0]));
    return list();
  }

  // --- the list ---------------------------------------------------------------------------

  async function list() {
    const table = h("table", { class: "table", testid: "petition-list" });
    el.append(h("div", {}, h("a", { href: "#/petition/new", testid: "petition-new" }, tp("book"))), table);
    try {
      const page = await request("GET", "/petition/petitions", { params: { limit: 200 } });
      const rows = page.items.map((p) =>
        h(
          "tr",
          { testid: "petition-row", dataset: { id: String(p.id), state: p.state, overdue: String(p.overdue) } },
          h("td", {}, h("a", { href: `#/petition/${p.id}` }, p.number)),
          h("td", {}, p.petitioner_name),
          h("td", {}, p.subject.slice(0, 40)),
          h("td", {}, p.state),
          h("td", {}, p.due_at ? formatTime(p.due_at) : ""),
          h("td", {}, p.overdue ? h("strong", { class: "problem", testid: "petition-overdue" }, tp("overdue")) : ""),
        ),
      );
      clear(
        table,
        h("tr", {}, ["number", "petitioner", "subject", "state", "due", "overdue"].map((k) => h("th", {}, tp(k)))),
        rows.length ? rows : h("tr", {}, h("td", { colspan: 6 }, tp("none"))),
      );
    } catch (err) {
      fail(err);
    }
  }

  // --- booking ----------------------------------------------------------------------------

  function booking() {
    let card = null;
    const room = h("input", { testid: "petition-room", size: 24 });
    const category = h(
      "select",
      { testid: "petition-category" },
      ["request", "suggestion", "complaint", "appeal", "consultation", "other"].map((c) => h("option", { value: c }, c)),
    );
    const subject = h("textarea", { testid: "petition-subject", rows: 4, cols: 60 });
    const files = h("input", { type: "file", multiple: true, accept: "image/jpeg,image/png,application/pdf", testid: "petition-evidence" });
    const cardLabel = h("span", { testid: "petition-card", dataset: { read: "false" } }, "");
    async function readCard() {
      try {
        // The service desk's ID card reader (the node's simulated reader in the demo and tests).
        card = await request("GET", "/servicedesk/reader/simulated");
        cardLabel.textContent = `${card.name} ${card.id_number.slice(0, 6)}********${card.id_number.slice(-4)}`;
        cardLabel.dataset.read = "true";
      } catch (err) {
        fail(err);
      }
    }
    async function submit(ev) {
      ev.preventDefault();
      clear(problem);
      const form = new FormData();
      form.set("room_code", room.value.trim());
      form.set("category", category.value);
      form.set("subject", subject.value);
      form.set("card", JSON.stringify(card || {}));
      for (const f of files.files) form.append("evidence", f, f.name);
      const resp = await fetch("/api/petition/petitions", { method: "POST", body: form, credentials: "same-origin" });
      const data = await resp.json().catch(() => null);
      if (!resp.ok) return fail(new ApiError(resp.status, data));
      ctx.navigate(`#/petition/${data.id}`);
    }
    el.append(
      h(
        "form",
        { class: "petition-form", testid: "petition-book-form", onsubmit: submit },
        h("label", {}, tp("room"), " ", room),
        h("div", {}, h("button", { type: "button", testid: "petition-read-card", onclick: readCard }, tp("readCard")), " ", cardLabel),
        h("label", {}, tp("category"), " ", category),
        h("label", { class: "block" }, tp("subject"), h("br"), subject),
        h("label", { class: "block" }, tp("evidence"), h("br"), files),
        h("button", { type: "submit", testid: "petition-submit" }, tp("submit")),
      ),
    );
  }

  // --- one petition -----------------------------------------------------------------------

  async function petition(id) {
    const head = h("div", { testid: "petition-head" });
    const sessionBox = h("div", { class: "petition-session", testid: "petition-session" });
    const evidenceBox = h("div", { class: "petition-evidence", testid: "petition-evidence-panel" });
    const recordBox = h("div", { testid: "petition-record" });
    const actions = h("div", { class: "petition-actions", testid: "petition-actions" });
    const eventsBox = h("ol", { testid: "petition-events" });
    el.append(head, actions, h("div", { class: "petition-main" }, sessionBox, evidenceBox), recordBox, h("h3", {}, tp("events")), eventsBox);
    let shown = "";
    let evidenceShown = false;

    async function load() {
      let p;
      try {
        p = await request("GET", `/petition/petitions/${id}`);
      } catch (err) {
        return fail(err);
      }
      const stamp = `${p.state}|${p.record.length}|${p.events.length}`;
      renderHead(head, p);
      if (!evidenceShown) {
        showEvidence(evidenceBox, p.evidence);
        evidenceShown = true;
      }
      const conf = p.state === "in_session" ? p.conference_id : p.state === "follow_up" ? p.followup_conference_id : null;
      // The petitioner's side publishes the room; staff (the clerk) follow on the page.
      if (conf && !staff) embedVenue(sessionBox, conf, p.room_code, p.host_node, p.node);
      else if (!conf) {
        dropVenue();
        clear(sessionBox);
      }
      renderRecord(recordBox, p.record);
      if (stamp === shown) return;
      shown = stamp;
      clear(eventsBox, p.events.map((e) => h("li", { dataset: { event: e.event } }, `${formatTime(e.at)} ${e.event} → ${e.to} (${e.actor})`)));
      clear(actions, actionsFor(p, load));
    }
    await load();
    timer = setInterval(load, POLL_MS);
  }

  function renderHead(box, p) {
    clear(
      box,
      h("div", {}, h("strong", { testid: "petition-number" }, p.number), " ", h("span", { testid: "petition-state", dataset: { state: p.state } }, p.state)),
      h("div", {}, `${tp("petitioner")}: ${p.petitioner_name} ${p.petitioner_id} · ${p.room}`),
      h("div", {}, `${tp("category")}: ${p.category} · ${tp("subject")}: ${p.subject}`),
      p.department
        ? h(
            "div",
            { testid: "petition-case", dataset: { due: p.due_at || "", overdue: String(p.overdue), extensions: String(p.extensions) } },
            `${tp("department")}: ${p.department} · ${tp("due")}: ${formatTime(p.due_at)}`,
            p.overdue ? h("strong", { class: "problem" }, ` ${tp("overdue")}`) : null,
          )
        : null,
      p.record_url ? h("a", { href: `/api${p.record_url.replace(/^\/api/, "")}`, target: "_blank", testid: "petition-record-pdf" }, tp("recordPdf")) : null,
    );
  }

  function showEvidence(box, evidence) {
    clear(
      box,
      evidence.map((e) =>
        e.media_type.startsWith("image/")
          ? h("figure", {}, h("img", { src: e.url, alt: e.name, testid: "petition-evidence-image", class: "petition-evidence-img" }), h("figcaption", {}, e.name))
          : h("div", {}, h("a", { href: e.url, target: "_blank", testid: "petition-evidence-file" }, e.name)),
      ),
    );
  }

  function renderRecord(box, record) {
    clear(
      box,
      h("h3", {}, tp("record")),
      h(
        "ol",
        { testid: "petition-record-list", dataset: { count: String(record.length) } },
        record.map((r) => h("li", { dataset: { offset: String(r.offset_seconds) } }, `[${clock(r.offset_seconds)}] ${r.text}`)),
      ),
    );
  }

  function actionsFor(p, reload) {
    const run = (method, path, opts) => async () => {
      try {
        await act(method, `/petition/petitions/${p.id}/${path}`, opts);
      } catch {
        return;
      }
      await reload();
    };
    const input = (testid, attrs = {}) => h("input", { testid, size: 40, ...attrs });
    const button = (label, testid, fn) => h("button", { type: "button", testid, onclick: fn }, label);
    const out = [];
    const can = new Set(p.allowed);
    if (staff && can.has("approve")) out.push(triageForm(p, reload));
    if (staff && can.has("reject")) {
      const why = input("petition-reject-reason");
      out.push(h("div", {}, why, button(tp("reject"), "petition-reject", () => run("POST", "reject", { body: { reason: why.value } })())));
    }
    if (staff && can.has("start")) out.push(button(tp("start"), "petition-start", run("POST", "start")));
    if (staff && p.state === "in_session") {
      const text = h("textarea", { testid: "petition-paragraph", rows: 3, cols: 60 });
      out.push(
        h(
          "div",
          {},
          text,
          button(tp("addParagraph"), "petition-add-paragraph", async () => {
            await run("POST", "record", { body: { text: text.value } })();
            text.value = "";
          }),
        ),
      );
    }
    if (staff && can.has("end")) out.push(button(tp("end"), "petition-end", run("POST", "end")));
    if (can.has("sign")) out.push(signaturePad(p, reload));
    if (staff && can.has("assign")) {
      const dep = input("petition-department");
      out.push(h("div", {}, dep, button(tp("assign"), "petition-assign", () => run("POST", "assign", { body: { department: dep.value } })())));
    }
    if (staff && can.has("extend") && p.extensions === 0) {
      const why = input("petition-extend-reason");
      out.push(h("div", {}, why, button(tp("extend"), "petition-extend", () => run("POST", "extend", { body: { reason: why.value } })())));
    }
    if (staff && can.has("follow_up")) out.push(button(tp("followUp"), "petition-follow-up", run("POST", "follow_up")));
    if (staff && can.has("answer")) {
      const outcome = input("petition-outcome");
      out.push(h("div", {}, outcome, button(tp("answer"), "petition-answer", () => run("POST", "answer", { body: { outcome: outcome.value } })())));
    }
    if (can.has("rate")) {
      out.push(h("div", { testid: "petition-rating" }, tp("grades").map((g, i) => button(g, `petition-rate-${i + 1}`, run("POST", "rating", { body: { grade: i + 1 } })))).reverse());
    }
    if (can.has("withdraw")) out.push(button(tp("withdraw"), "petition-withdraw", run("POST", "withdraw")));
    return out;
  }

  function triageForm(p, reload) {
    const rows = h("div", { testid: "petition-officials" });
    const addRow = () =>
      rows.append(
        h(
          "div",
          { class: "petition-official" },
          h("input", { placeholder: "username", "data-k": "username", size: 12 }),
          h("input", { placeholder: "node", "data-k": "node", size: 22 }),
          h("input", { placeholder: "venue", "data-k": "venue", size: 22 }),
        ),
      );
    addRow();
    const when = h("input", { type: "datetime-local", testid: "petition-when" });
    const why = h("input", { testid: "petition-approve-reason", size: 40 });
    async function approve() {
      const officials = [...rows.children].map((r) => Object.fromEntries([...r.querySelectorAll("input")].map((i) => [i.dataset.k, i.value.trim()])));
      const at = when.value ? new Date(when.value) : new Date();
      try {
        await act("POST", `/petition/petitions/${p.id}/approve`, { body: { reason: why.value, scheduled_at: at.toISOString(), officials } });
      } catch {
        return;
      }
      await reload();
    }
    return h(
      "fieldset",
      { testid: "petition-triage" },
      h("legend", {}, tp("officials")),
      rows,
      h("button", { type: "button", testid: "petition-add-official", onclick: addRow }, tp("addOfficial")),
      h("div", {}, tp("scheduledAt"), " ", when, " ", tp("reason"), " ", why),
      h("button", { type: "button", testid: "petition-approve", onclick: approve }, tp("approve")),
    );
  }

  function signaturePad(p, reload) {
    const canvas = h("canvas", { width: 600, height: 200, class: "petition-sign", testid: "petition-signature", style: "border:1px solid #888;touch-action:none" });
    const g = canvas.getContext("2d");
    g.lineWidth = 3;
    g.lineCap = "round";
    let drawing = false;
    const pos = (ev) => {
      const r = canvas.getBoundingClientRect();
      return [((ev.clientX - r.left) * canvas.width) / r.width, ((ev.clientY - r.top) * canvas.height) / r.height];
    };
    canvas.addEventListener("pointerdown", (ev) => { drawing = true; g.beginPath(); g.moveTo(...pos(ev)); });
    canvas.addEventListener("pointermove", (ev) => { if (drawing) { g.lineTo(...pos(ev)); g.stroke(); } });
    canvas.addEventListener("pointerup", () => { drawing = false; });
    async function sign() {
      const blob = await new Promise((r) => canvas.toBlob(r, "image/png"));
      try {
        await act("POST", `/petition/petitions/${p.id}/signature`, { raw: blob, rawType: "image/png" });
      } catch {
        return;
      }
      await reload();
    }
    return h(
      "div",
      {},
      canvas,
      h("div", {}, h("button", { type: "button", testid: "petition-sign-clear", onclick: () => g.clearRect(0, 0, canvas.width, canvas.height) }, tp("signClear")), " ", h("button", { type: "button", testid: "petition-sign", onclick: sign }, tp("sign"))),
    );
  }

  // --- an official's page at their own node -----------------------------------------------

  async function officialSession(origin, id) {
    const head = h("div", { testid: "petition-head" });
    const sessionBox = h("div", { class: "petition-session", testid: "petition-session" });
    const evidenceBox = h("div", { class: "petition-evidence", testid: "petition-evidence-panel" });
    const recordBox = h("div", { testid: "petition-record" });
    el.append(head, h("div", { class: "petition-main" }, sessionBox, evidenceBox), recordBox);
    let evidenceShown = false;
    async function load() {
      let p;
      try {
        p = await request("GET", `/petition/remote/${origin}/${id}`);
      } catch (err) {
        return fail(err);
      }
      clear(problem);
      renderHead(head, p);
      if (!evidenceShown) {
        showEvidence(evidenceBox, p.evidence);
        evidenceShown = true;
      }
      if (p.session_conference && ["in_session", "follow_up"].includes(p.state)) embedVenue(sessionBox, p.session_conference, p.venue, p.host_node, p.here);
      else {
        dropVenue();
        clear(sessionBox);
      }
      renderRecord(recordBox, p.record);
    }
    await load();
    timer = setInterval(load, POLL_MS);
  }

  route(ctx.args);
  return {
    el,
    update(args) {
      route(args);
    },
    destroy: stop,
  };
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return `${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
}
