// Field terminal page (#/field/<incident id>), for a phone: pick the terminal (the publish
// panel's endpoint), join the incident, publish camera and microphone (the publish page embedded:
// the same WebRTC path through the node's VideoRoom), and send the phone's GPS position
// (navigator.geolocation.watchPosition) to the incident, where the room's map moves its marker.
import { request } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { problemBox } from "../ui.js";
import * as publishView from "./publish.js";

export function create(ctx) {
  const id = ctx.args[0] || "";
  const pub = publishView.create(ctx);
  const problem = h("div", { testid: "field-problem" });
  const incidents = h("select", { testid: "field-incident" });
  const stateLabel = h("span", { testid: "field-state", dataset: { state: "idle", sent: "0" } }, t("field.idle"));
  const joinButton = h("button", { type: "button", class: "primary", testid: "field-join", onclick: join }, t("field.join"));
  const el = h("div", { class: "field-page" },
    h("section", { class: "panel" }, h("h2", {}, t("field.title")),
      h("label", {}, t("field.incident"), " ", incidents), " ", joinButton, " ", stateLabel, problem),
    pub.el);
  let watch = null;
  let sent = 0;

  const endpoint = () => pub.el.querySelector('[data-testid="publish-endpoint"]').value;

  async function join() {
    clear(problem);
    const incident = incidents.value;
    const code = endpoint();
    try {
      await request("POST", `/command/incidents/${incident}/join`, { body: { code } });
      stateLabel.dataset.state = "joined";
      stateLabel.textContent = t("field.joined");
      pub.el.querySelector('[data-testid="publish-start"]').click();
      if (!navigator.geolocation) throw new Error(t("field.noGps"));
      watch = navigator.geolocation.watchPosition(
        (pos) => send(incident, code, pos.coords),
        (err) => clear(problem, h("div", { class: "problem" }, t("field.gpsError", { reason: err.message }))),
        { enableHighAccuracy: true, maximumAge: 0 },
      );
    } catch (err) {
      clear(problem, problemBox(err, { testid: "field-join-error" }));
    }
  }

  async function send(incident, code, c) {
    try {
      await request("POST", `/command/incidents/${incident}/position`, { body: { code, lat: c.latitude, lon: c.longitude } });
      sent += 1;
      stateLabel.dataset.sent = String(sent);
      stateLabel.textContent = t("field.sent", { n: sent, lat: c.latitude.toFixed(5), lon: c.longitude.toFixed(5) });
    } catch (err) {
      clear(problem, problemBox(err, { testid: "field-position-error" }));
    }
  }

  (async () => {
    try {
      const page = await request("GET", "/command/incidents", { params: { status: "open", limit: 100 } });
      clear(incidents, page.items.map((x) => h("option", { value: x.id, selected: x.id === id }, x.title)));
    } catch (err) {
      clear(problem, problemBox(err, { testid: "field-load-error" }));
    }
  })();

  return {
    el,
    destroy() {
      if (watch !== null) navigator.geolocation.clearWatch(watch);
      if (pub.destroy) pub.destroy();
    },
  };
}
