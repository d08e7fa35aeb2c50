// Audit view (admins and operators): filter by time, user, target, action and result; paged,
// newest first. The server decides which rows a non-admin may see (own scope or own actions).
import { api, queryString } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, t, tOr } from "../i18n.js";
import { field, notice, pager, problemBox, select } from "../ui.js";

const PAGE = 50;
const RESULTS = ["ok", "failed", "denied", "error"];
// Offered as suggestions in the action filter; any other action name can be typed.
const KNOWN_ACTIONS = [
  "directory.view", "directory.create", "directory.update", "directory.delete", "directory.import",
  "directory.export", "auth.login", "auth.logout", "auth.token", "user.create", "user.update", "user.unlock",
];

/** datetime-local value (local time) -> ISO 8601 with offset, as the API expects. */
function toIso(local) {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

export function create(ctx) {
  const f = {
    since: h("input", { type: "datetime-local", name: "since", step: "1", testid: "audit-since" }),
    until: h("input", { type: "datetime-local", name: "until", step: "1", testid: "audit-until" }),
    username: h("input", { name: "username", testid: "audit-username" }),
    target: h("input", { name: "target", inputmode: "numeric", maxlength: "20", testid: "audit-target" }),
    action: h("input", { name: "action", testid: "audit-action", list: "audit-actions", autocomplete: "off" }),
    result: select("result", [["", t("common.all")], ...RESULTS.map((r) => [r, tOr(`result.${r}`, r)])], "", "audit-result"),
  };
  const list = h("div", { class: "results", testid: "audit-list" });
  const verifyOut = h("div", { class: "messages", testid: "audit-verify-result" });
  const exportLink = h("a", { class: "button", testid: "audit-export", href: "/api/audit/export", download: "" }, t("audit.export"));

  function filters() {
    return {
      since: toIso(f.since.value), until: toIso(f.until.value), username: f.username.value.trim(),
      target: f.target.value.trim(), action: f.action.value.trim(), result: f.result.value,
    };
  }

  async function verify() {
    clear(verifyOut, h("p", { class: "muted" }, t("common.loading")));
    try {
      const r = await api.auditVerify();
      clear(verifyOut, r.ok
        ? notice(t("audit.chainOk", { n: r.checked }), "audit-verify-ok")
        : problemBox({ status: 409, errors: [] }, { testid: "audit-verify-broken",
            text: t("audit.chainBroken", { n: r.checked, seq: r.seq ?? "—", problem: r.problem }) }));
    } catch (err) {
      clear(verifyOut, problemBox(err, { testid: "audit-verify-error" }));
    }
  }

  async function load(offset = 0) {
    const params = { ...filters(), offset, limit: PAGE };
    exportLink.href = `/api/audit/export${queryString(filters())}`;
    clear(list, h("p", { class: "muted" }, t("common.loading")));
    try {
      const page = await api.audit(params);
      clear(list, table(page), pager(page, load, "audit-pager"));
    } catch (err) {
      clear(list, problemBox(err, { testid: "audit-error", messages: { 403: "audit.forbidden" } }));
    }
  }

  function table(page) {
    if (!page.items.length) return h("p", { class: "muted", testid: "audit-empty" }, t("audit.noRows"));
    const cols = ["audit.seq", "audit.at", "audit.username", "audit.roles", "audit.action", "audit.target",
      "audit.result", "audit.client", "audit.detail"];
    return h(
      "table",
      { class: "grid audit" },
      h("thead", {}, h("tr", {}, cols.map((k) => h("th", {}, t(k))))),
      h("tbody", {}, page.items.map((r) =>
        h(
          "tr",
          { testid: "audit-row", dataset: { seq: r.seq === null ? "" : String(r.seq), action: r.action, target: r.target_code || "", result: r.result } },
          h("td", { class: "mono num" }, r.seq === null ? "—" : String(r.seq)),
          h("td", { class: "nowrap" }, formatTime(r.at)),
          h("td", { testid: "audit-row-username" }, r.username || "—"),
          h("td", {}, (Array.isArray(r.roles) ? r.roles : String(r.roles || "").split(" ").filter(Boolean))
            .map((role) => tOr(`role.${role}`, role)).join("、")),
          h("td", { testid: "audit-row-action", title: r.action },
            tOr(`action.${r.action}`, r.action), h("div", { class: "mono small muted" }, r.action)),
          h("td", { class: "mono", testid: "audit-row-target" },
            r.target_code ? h("a", { href: `#/dir/${encodeURIComponent(r.target_code)}` }, r.target_code) : ""),
          h("td", { testid: "audit-row-result" }, h("span", { class: `badge result-${r.result}` }, tOr(`result.${r.result}`, r.result))),
          h("td", { class: "mono" }, r.client_addr || ""),
          h("td", { class: "mono small" }, detailText(r.detail)),
        ),
      )),
    );
  }

  const el = h(
    "section",
    { class: "panel audit-panel" },
    h("h2", {}, t("audit.title")),
    h("form", { class: "search-form", testid: "audit-form", onsubmit: (ev) => { ev.preventDefault(); load(0); } },
      field("audit.since", f.since),
      field("audit.until", f.until),
      field("audit.username", f.username),
      field("audit.target", f.target),
      field("audit.action", f.action),
      h("datalist", { id: "audit-actions" },
        KNOWN_ACTIONS.map((a) => h("option", { value: a, label: tOr(`action.${a}`, a) }))),
      field("audit.result", f.result),
      h("div", { class: "form-actions" },
        h("button", { type: "submit", class: "primary", testid: "audit-submit" }, t("common.search")),
        h("button", { type: "button", testid: "audit-reset", onclick: () => {
          for (const input of Object.values(f)) input.value = "";
          load(0);
        } }, t("common.reset")),
        exportLink,
        ctx.me.roles.includes("admin")
          ? h("button", { type: "button", testid: "audit-verify", onclick: verify }, t("audit.verify"))
          : null)),
    verifyOut,
    list,
  );
  load(0);
  return { el };
}

function detailText(detail) {
  if (!detail || (typeof detail === "object" && !Object.keys(detail).length)) return "";
  if (typeof detail !== "object") return String(detail);
  return Object.entries(detail).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
}
