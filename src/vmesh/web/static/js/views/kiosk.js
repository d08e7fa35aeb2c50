// Village kiosk (#/kiosk): a villager in the village's video room, touch screen, large type.
//
// Steps, each driven by the case's state on the node (vmesh.servicedesk):
//   choose an item → read the ID card (the pluggable reader: the node's simulated reader, or a
//   vendor agent on 127.0.0.1) + face photo → take a number (position and expected wait, live over
//   /api/servicedesk/ws) → video call with the agent (DeskCall) → document stills from the second
//   camera (高拍仪) or a file, uploaded at full resolution with retries; the agent may ask for a
//   recapture → sign on the screen → the result PDF to print or download → rate 1–5.
// A page that reloads keeps its case (remembered in sessionStorage) and resumes where it was.
import { ApiError, request } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { DeskCall, deskSocket, problems, useStyles } from "./sdcall.js";

const STORE = "vmesh.kiosk.case";
const UPLOAD_TRIES = 6;

export function create(ctx) {
  useStyles();
  let kiosk = null;
  let caseId = Number(sessionStorage.getItem(STORE) || 0) || null;
  let live = null;
  let call = null;
  let last = null;
  let card = null;

  const kioskSelect = h("select", { testid: "kiosk-endpoint", class: "sd-big", onchange: () => { kiosk = kioskSelect.value; } });
  const problem = h("div", { testid: "kiosk-problem" });
  const { fail, act } = problems(problem, "kiosk-error");
  const body = h("div", { class: "sd-kiosk-body" });
  // The call stays in the page while the steps around it are redrawn (a moved video pauses).
  const callSlot = h("div", { class: "sd-callslot" });
  const status = h("div", { class: "sd-status", testid: "kiosk-status", dataset: { state: "" } });
  const el = h(
    "section",
    { class: "sd-kiosk", testid: "kiosk" },
    h("header", { class: "sd-kiosk-head" }, h("h1", {}, t("kiosk.title")), h("label", {}, t("kiosk.room"), " ", kioskSelect)),
    status,
    problem,
    callSlot,
    body,
  );

  init();

  async function init() {
    try {
      const rooms = await request("GET", "/directory/search", { params: { kind: "service_room", sort: "name", limit: 200 } });
      clear(kioskSelect, rooms.items.map((e) => h("option", { value: e.code }, e.name)));
      kiosk = rooms.items[0]?.code || null;
      if (caseId) return follow(caseId);
      showCatalogue();
    } catch (err) {
      fail(err);
    }
  }


  async function showCatalogue() {
    const cat = await act("GET", "/servicedesk/catalogue");
    clear(
      body,
      h("h2", {}, t("kiosk.choose")),
      cat.departments.map((d) =>
        h(
          "div",
          { class: "sd-dept" },
          h("h3", {}, d.name),
          h("div", { class: "sd-items" }, d.items.map((i) =>
            h("button", { type: "button", class: "sd-item", testid: `kiosk-item-${i.code}`, onclick: () => choose(i) }, i.name),
          )),
        ),
      ),
    );
  }

  async function choose(item) {
    const c = await act("POST", "/servicedesk/cases", { body: { kiosk_code: kiosk, item_code: item.code } });
    caseId = c.id;
    sessionStorage.setItem(STORE, String(caseId));
    render(c);
    follow(caseId);
  }

  function follow(id) {
    if (live) live.close();
    live = deskSocket(`case=${id}`, (msg) => {
      if (msg.type === "kiosk") refresh();
    });
    refresh();
  }

  async function refresh() {
    if (!caseId) return;
    try {
      render(await request("GET", `/servicedesk/cases/${caseId}`));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) reset();
      else fail(err);
    }
  }

  function reset() {
    sessionStorage.removeItem(STORE);
    caseId = null;
    last = null;
    if (live) live.close();
    live = null;
    if (call) call.stop();
    call = null;
    clear(callSlot);
    status.dataset.state = "";
    clear(status);
    showCatalogue();
  }

  // --- rendering by state ---------------------------------------------------------------------

  function render(c) {
    const same = last && last.state === c.state && last.position === c.position && JSON.stringify(last.materials) === JSON.stringify(c.materials) && last.result_url === c.result_url;
    last = c;
    status.dataset.state = c.state;
    clear(
      status,
      h("span", { class: "sd-number", testid: "kiosk-number" }, t("kiosk.number", { n: c.number.slice(-4) })),
      h("span", {}, c.item.name),
      h("span", { class: "sd-state", testid: "kiosk-state" }, t(`sd.state.${c.state}`)),
    );
    if (same) return;
    const inCall = ["in_service", "materials_checked", "signed", "submitted"].includes(c.state);
    if (inCall && c.agent_seat) startCall(c);
    if (!inCall && call) {
      call.stop();
      call = null;
      clear(callSlot);
    }
    if (c.state === "created") return clear(body, identifyStep(c));
    if (c.state === "identified") return clear(body, takeNumberStep(c));
    if (c.state === "queued" || c.state === "transferred") return clear(body, waitingStep(c));
    if (inCall) return clear(body, callStep(c));
    if (c.state === "abandoned") return clear(body, h("p", { class: "sd-big" }, t("kiosk.abandoned")), h("button", { type: "button", class: "sd-item", onclick: reset }, t("kiosk.again")));
    return clear(body, h("p", { class: "sd-big", testid: "kiosk-thanks" }, t("kiosk.thanks")), h("button", { type: "button", class: "sd-item", testid: "kiosk-again", onclick: reset }, t("kiosk.again")));
  }

  function identifyStep(c) {
    const shown = h("div", { testid: "kiosk-card" }, card ? `${card.name} ${card.id_number.slice(0, 6)}********${card.id_number.slice(-4)}` : "");
    const preview = h("video", { autoplay: true, muted: true, playsinline: true, class: "sd-face" });
    return h(
      "div",
      { class: "sd-step" },
      h("h2", {}, t("kiosk.identify")),
      h("p", {}, t("kiosk.identifyHint")),
      h("button", { type: "button", class: "sd-item", testid: "kiosk-read-card", onclick: () => readCard(c, shown, preview) }, t("kiosk.readCard")),
      shown,
      preview,
    );
  }

  async function readCard(c, shown, preview) {
    try {
      card = await readIdCard();
    } catch (err) {
      return fail(err);
    }
    shown.textContent = `${card.name} ${card.id_number.slice(0, 6)}********${card.id_number.slice(-4)}`;
    // Face photo from the room camera, kept with the case (人证合一 is checked by the agent).
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: true });
      preview.srcObject = stream;
      await new Promise((r) => setTimeout(r, 800));
      const blob = await frameOf(stream.getVideoTracks()[0], preview);
      for (const tr of stream.getTracks()) tr.stop();
      await upload(c.id, blob, "face", t("kiosk.facePhoto"));
    } catch (err) {
      return fail(err);
    }
    await act("POST", `/servicedesk/cases/${c.id}/identify`, { body: { card } });
    refresh();
  }

  function takeNumberStep(c) {
    return h(
      "div",
      { class: "sd-step" },
      h("h2", {}, t("kiosk.ready", { name: c.applicant_name })),
      h("p", {}, t("kiosk.materialsNeeded"), " ", c.item.materials.join("、")),
      h("button", { type: "button", class: "sd-item sd-primary", testid: "kiosk-take-number", onclick: async () => { await act("POST", `/servicedesk/cases/${c.id}/enqueue`); refresh(); } }, t("kiosk.takeNumber")),
    );
  }

  function waitingStep(c) {
    return h(
      "div",
      { class: "sd-step" },
      h("p", { class: "sd-huge", testid: "kiosk-position", dataset: { position: String(c.position ?? "") } }, t("kiosk.position", { n: c.position ?? "-" })),
      h("p", { class: "sd-big", testid: "kiosk-wait" }, t("kiosk.wait", { n: c.expected_wait_minutes ?? "-" })),
      h("button", { type: "button", class: "sd-item", testid: "kiosk-leave", onclick: async () => { await act("POST", `/servicedesk/cases/${c.id}/abandon`); refresh(); } }, t("kiosk.leave")),
    );
  }

  function startCall(c) {
    if (!call) {
      call = new DeskCall();
      clear(callSlot, call.el);
    }
    call.start(c.kiosk_code, c.agent_seat).catch(fail);
  }

  function callStep(c) {
    const parts = [];
    const docs = c.materials.filter((m) => m.kind === "document");
    parts.push(
      h(
        "div",
        { class: "sd-docs" },
        h("h3", {}, t("kiosk.documents")),
        h("ul", { testid: "kiosk-materials" }, docs.map((m) =>
          h("li", { dataset: { status: m.status }, testid: `kiosk-material-${m.id}` }, m.name, " · ", t(`sd.material.${m.status}`), m.note ? ` (${m.note})` : ""),
        )),
      ),
    );
    if (c.state === "in_service") parts.push(captureBox(c, docs));
    if (c.state === "materials_checked") parts.push(signaturePad(c));
    if (c.state === "signed") parts.push(h("p", { class: "sd-big" }, t("kiosk.waitResult")));
    if (c.state === "submitted") parts.push(resultBox(c), ratingBox(c));
    return h("div", { class: "sd-incall" }, parts);
  }

  function captureBox(c, docs) {
    const recapture = docs.filter((m) => m.status === "recapture").map((m) => m.name);
    const next = c.item.materials.find((name) => !docs.some((m) => m.name === name && m.status !== "recapture"));
    const name = h("input", { type: "text", class: "sd-big", testid: "kiosk-doc-name", value: recapture[0] || next || "" });
    const file = h("input", { type: "file", accept: "image/jpeg,image/png", testid: "kiosk-doc-file", onchange: async () => {
      if (file.files[0]) await sendDoc(c, file.files[0], name.value);
    } });
    const progress = h("div", { testid: "kiosk-upload" });
    async function sendDoc(cs, blob, docName) {
      progress.textContent = t("kiosk.uploading");
      try {
        const m = await upload(cs.id, blob, "document", docName || t("kiosk.document"));
        progress.textContent = t("kiosk.uploaded", { w: m.width, h: m.height });
        progress.dataset.uploaded = String(Number(progress.dataset.uploaded || 0) + 1);
      } catch (err) {
        progress.textContent = "";
        fail(err);
      }
      refresh();
    }
    return h(
      "div",
      { class: "sd-capture" },
      recapture.length ? h("p", { class: "sd-warn", testid: "kiosk-recapture" }, t("kiosk.recapture", { names: recapture.join("、") })) : null,
      h("label", {}, t("kiosk.docName"), " ", name),
      h("button", { type: "button", class: "sd-item sd-primary", testid: "kiosk-capture", onclick: async () => {
        try {
          await sendDoc(c, await captureDocument(), name.value);
        } catch (err) {
          fail(err);
        }
      } }, t("kiosk.capture")),
      h("label", { class: "sd-file" }, t("kiosk.fromFile"), " ", file),
      progress,
    );
  }

  function signaturePad(c) {
    const canvas = h("canvas", { width: 600, height: 200, class: "sd-sign", testid: "kiosk-signature" });
    const g = canvas.getContext("2d");
    g.lineWidth = 3;
    g.lineCap = "round";
    let drawing = false;
    let strokes = 0;
    const pos = (ev) => {
      const r = canvas.getBoundingClientRect();
      return [((ev.clientX - r.left) * canvas.width) / r.width, ((ev.clientY - r.top) * canvas.height) / r.height];
    };
    canvas.addEventListener("pointerdown", (ev) => { drawing = true; strokes += 1; g.beginPath(); g.moveTo(...pos(ev)); });
    canvas.addEventListener("pointermove", (ev) => { if (drawing) { g.lineTo(...pos(ev)); g.stroke(); } });
    canvas.addEventListener("pointerup", () => { drawing = false; });
    const submit = async () => {
      if (!strokes) return;
      const blob = await new Promise((r) => canvas.toBlob(r, "image/png"));
      await act("POST", `/servicedesk/cases/${c.id}/signature`, { raw: blob, rawType: "image/png" }).catch(() => {});
      refresh();
    };
    return h(
      "div",
      { class: "sd-signbox" },
      h("h3", {}, t("kiosk.sign")),
      canvas,
      h("div", {},
        h("button", { type: "button", class: "sd-item", testid: "kiosk-sign-clear", onclick: () => { g.clearRect(0, 0, canvas.width, canvas.height); strokes = 0; } }, t("kiosk.signClear")),
        h("button", { type: "button", class: "sd-item sd-primary", testid: "kiosk-sign-submit", onclick: submit }, t("kiosk.signSubmit")),
      ),
    );
  }

  function resultBox(c) {
    if (!c.result_url) return null;
    return h(
      "div",
      { class: "sd-result" },
      h("h3", {}, t("kiosk.result")),
      h("p", {}, c.outcome),
      h("a", { href: c.result_url, download: `${c.number}.pdf`, class: "sd-item", testid: "kiosk-result-download" }, t("kiosk.download")),
      h("a", { href: c.result_url, target: "_blank", rel: "noopener", class: "sd-item", testid: "kiosk-result-print" }, t("kiosk.print")),
    );
  }

  function ratingBox(c) {
    return h(
      "div",
      { class: "sd-rating" },
      h("h3", {}, t("kiosk.rate")),
      [5, 4, 3, 2, 1].map((g) =>
        h("button", { type: "button", class: "sd-item", testid: `kiosk-rate-${g}`, onclick: async () => {
          await act("POST", `/servicedesk/cases/${c.id}/rating`, { body: { grade: g, comment: "" } });
          refresh();
        } }, t(`sd.grade.${g}`)),
      ),
    );
  }

  return {
    el,
    destroy() {
      if (live) live.close();
      if (call) call.stop();
    },
  };
}

// --- devices --------------------------------------------------------------------------------

/** The pluggable ID card reader: the node says which (``[servicedesk] id_reader``). */
async function readIdCard() {
  try {
    return await request("GET", "/servicedesk/reader/simulated");
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
  }
  return readFromAgent();
}

/** A vendor reader agent on the kiosk's own machine (DONSEE-style JSON over WebSocket). */
function readFromAgent() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket("ws://127.0.0.1:30089");
    ws.addEventListener("open", () => ws.send(JSON.stringify({ action: "readIDCard" })));
    ws.addEventListener("message", (ev) => {
      const d = JSON.parse(ev.data);
      ws.close();
      resolve({ name: d.name || d.Name, id_number: d.idNumber || d.IDCode || d.id_number, sex: d.sex || "", nation: d.nation || "", birth: d.birth || "", address: d.address || "" });
    });
    ws.addEventListener("error", () => reject(new Error(t("kiosk.readerMissing"))));
  });
}

/** One frame of ``track`` (shown in ``video``) as a JPEG at the track's own resolution. */
async function frameOf(track, video) {
  let bitmap = null;
  if (typeof ImageCapture !== "undefined") {
    try {
      bitmap = await new ImageCapture(track).grabFrame();
    } catch {
      bitmap = null;
    }
  }
  const src = bitmap || video;
  const w = bitmap ? bitmap.width : video.videoWidth;
  const hgt = bitmap ? bitmap.height : video.videoHeight;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = hgt;
  canvas.getContext("2d").drawImage(src, 0, 0, w, hgt);
  return new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.92));
}

/** A still from the document camera: the second video device when there is one, full resolution. */
async function captureDocument() {
  const cams = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  const cam = cams[1] || cams[0];
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { deviceId: cam?.deviceId ? { exact: cam.deviceId } : undefined, width: { ideal: 4096 }, height: { ideal: 3072 } },
  });
  const track = stream.getVideoTracks()[0];
  try {
    if (typeof ImageCapture !== "undefined") {
      try {
        const photo = await new ImageCapture(track).takePhoto();
        if (photo && photo.size) return photo;
      } catch {
        // takePhoto is not offered by every camera: a frame at the track's resolution instead
      }
    }
    const video = document.createElement("video");
    video.muted = true;
    video.srcObject = stream;
    await video.play();
    return await frameOf(track, video);
  } finally {
    for (const tr of stream.getTracks()) tr.stop();
  }
}

/** Upload an image to the case, retried with back-off (same upload id: stored once). */
async function upload(caseId, blob, kind, name) {
  const uploadId = crypto.randomUUID();
  const type = blob.type === "image/png" ? "image/png" : "image/jpeg";
  let wait = 500;
  for (let attempt = 1; ; attempt++) {
    try {
      return await request("POST", `/servicedesk/cases/${caseId}/materials`, { params: { upload_id: uploadId, kind, name }, raw: blob, rawType: type });
    } catch (err) {
      const retriable = !(err instanceof ApiError) || err.status === 0 || err.status >= 500;
      if (!retriable || attempt >= UPLOAD_TRIES) throw err;
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 8000);
    }
  }
}
