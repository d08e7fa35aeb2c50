// Grants page (#/grants): apply for another unit's cameras, follow my applications, decide the
// applications sent to this node (approve / reject), revoke active grants, and the access report
// (who watched which camera, when, for what purpose, under which grant) with filters and CSV.
// An application may name where it is decided: the owner node (default) or the province (an
// ancestor of the owner). Operators here may also grant directly to another unit or department
// (POST /grants/direct) when this node owns the cameras or is above their node. The queue lists
// the applications waiting for this node's decision; every list shows which node decides.
// Decisions and revocations are refused by the server unless this node is the deciding node and
// the user's scope holds the cameras; the page shows the server's reason.
import { queryString, request } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, t, tOr } from "../i18n.js";
import { field, notice, pager, problemBox, select } from "../ui.js";

const PAGE = 50;
const enc = encodeURIComponent;

function toIso(local) {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function localValue(date) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}`;
}

function cameras(g) {
  if (g.codes && g.codes.length) return g.codes.join(" ");
  return g.sel_org + (g.tags && g.tags.length ? ` [${g.tags.join(" ")}]` : "");
}

export function create(ctx) {
  const operator = ctx.me.roles.some((r) => r === "admin" || r === "operator");
  const now = new Date();
  const f = {
    grantee: select("grantee", [["unit", t("grants.grantee.unit")], ["department", t("grants.grantee.department")]],
      ctx.me.department_code ? "department" : "unit", "grants-apply-grantee"),
    org: h("input", { name: "org", inputmode: "numeric", maxlength: "20", testid: "grants-apply-org" }),
    tags: h("input", { name: "tags", testid: "grants-apply-tags" }),
    codes: h("input", { name: "codes", testid: "grants-apply-codes" }),
    decider: select("decider", [["owner", t("grants.decider.owner")], ["province", t("grants.decider.province")]],
      "owner", "grants-apply-decider"),
    granteeCode: h("input", { name: "grantee_code", inputmode: "numeric", maxlength: "20", testid: "grants-direct-grantee" }),
    purpose: h("input", { name: "purpose", class: "wide", testid: "grants-apply-purpose" }),
    from: h("input", { type: "datetime-local", name: "from", value: localValue(now), testid: "grants-apply-from" }),
    until: h("input", { type: "datetime-local", name: "until",
      value: localValue(new Date(now.getTime() + 7 * 86400e3)), testid: "grants-apply-until" }),
  };
  const applyOut = h("div", { class: "messages", testid: "grants-apply-out" });
  const lists = {
    mine: h("div", { testid: "grants-mine" }),
    queue: h("div", { testid: "grants-queue" }),
    active: h("div", { testid: "grants-active" }),
  };

  async function apply(ev, direct = false) {
    ev.preventDefault();
    const body = {
      grantee: f.grantee.value,
      purpose: f.purpose.value,
      from: toIso(f.from.value),
      until: toIso(f.until.value),
    };
    const codes = f.codes.value.split(/[\s,]+/).filter(Boolean);
    if (codes.length) body.codes = codes;
    else {
      body.org = f.org.value.trim();
      const tags = f.tags.value.split(/[\s,]+/).filter(Boolean);
      if (tags.length) body.tags = tags;
    }
    if (direct) body.grantee_code = f.granteeCode.value.trim();
    else if (f.decider.value !== "owner") body.decider = f.decider.value;
    try {
      const g = await request("POST", direct ? "/grants/direct" : "/grants", { body });
      const msg = direct
        ? t("grants.granted", { id: g.id, node: g.applicant_node })
        : t("grants.applied", { id: g.id, node: g.decider_node || g.owner_node });
      clear(applyOut, notice(msg, direct ? "grants-direct-ok" : "grants-apply-ok"));
      loadAll();
    } catch (err) {
      clear(applyOut, problemBox(err, { testid: "grants-apply-error" }));
    }
  }

  async function act(g, what, out, reasonInput) {
    const body = { reason: reasonInput.value };
    if (what !== "revoke") body.decision = what;
    try {
      await request("POST", `/grants/${enc(g.id)}/${what === "revoke" ? "revoke" : "decision"}`, { body });
      loadAll();
    } catch (err) {
      clear(out, problemBox(err, { testid: "grant-action-error" }));
    }
  }

  function table(page, view) {
    if (!page.items.length) return h("p", { class: "muted", testid: `grants-${view}-empty` }, t("common.empty"));
    const cols = ["grants.id", "grants.state", "grants.grantee", "grants.cameras", "grants.purpose",
      "grants.period", "grants.owner", "grants.decider", "grants.reason", "common.actions"];
    return h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, cols.map((k) => h("th", {}, t(k))))),
      h("tbody", {}, page.items.map((g) => {
        const out = h("div", {});
        const reason = h("input", { name: "reason", placeholder: t("grants.reasonHint"), testid: "grant-reason" });
        const buttons = [];
        if (view === "queue" && g.status === "applied") {
          buttons.push(h("button", { type: "button", class: "primary", testid: "grant-approve", onclick: () => act(g, "approve", out, reason) }, t("grants.approve")));
          buttons.push(h("button", { type: "button", testid: "grant-reject", onclick: () => act(g, "reject", out, reason) }, t("grants.reject")));
        }
        if (view === "active" && g.status === "approved") {
          buttons.push(h("button", { type: "button", testid: "grant-revoke", onclick: () => act(g, "revoke", out, reason) }, t("grants.revoke")));
        }
        const from = g.valid_from || g.requested_from;
        const until = g.valid_until || g.requested_until;
        return h("tr", { testid: "grant-row", dataset: { id: g.id, state: g.state, status: g.status } },
          h("td", { class: "mono", testid: "grant-id" }, g.id),
          h("td", { testid: "grant-state" }, h("span", { class: `badge grant-${g.state}` }, tOr(`grants.state.${g.state}`, g.state))),
          h("td", { class: "mono" }, g.grantee_code),
          h("td", { class: "mono small" }, cameras(g)),
          h("td", {}, g.purpose),
          h("td", { class: "nowrap small" }, `${formatTime(from)} – ${formatTime(until)}`),
          h("td", { class: "mono small" }, g.owner_node),
          h("td", { class: "mono small", testid: "grant-decider" }, g.decider_node || g.owner_node),
          h("td", { class: "small", testid: "grant-reason-text" }, g.reason || g.decision_reason || ""),
          h("td", {}, buttons.length ? [reason, h("div", { class: "form-actions" }, buttons)] : null, out),
        );
      })));
  }

  async function load(view, offset = 0) {
    const box = lists[view];
    clear(box, h("p", { class: "muted" }, t("common.loading")));
    try {
      const page = await request("GET", "/grants", { params: { view, offset, limit: PAGE } });
      clear(box, table(page, view), pager(page, (o) => load(view, o), `grants-${view}-pager`));
    } catch (err) {
      clear(box, problemBox(err, { testid: `grants-${view}-error` }));
    }
  }

  function loadAll() {
    load("mine");
    if (operator) {
      load("queue");
      load("active");
    }
  }

  // --- access report ---
  const r = {
    since: h("input", { type: "datetime-local", name: "since", testid: "report-since" }),
    until: h("input", { type: "datetime-local", name: "until", testid: "report-until" }),
    username: h("input", { name: "username", testid: "report-username" }),
    camera: h("input", { name: "camera", inputmode: "numeric", maxlength: "20", testid: "report-camera" }),
    grant: h("input", { name: "grant", maxlength: "16", testid: "report-grant" }),
    department: h("input", { name: "department", inputmode: "numeric", maxlength: "20", testid: "report-department" }),
  };
  const reportList = h("div", { testid: "report-list" });
  const exportLink = h("a", { class: "button", testid: "report-export", href: "/api/grants/report/export", download: "" }, t("grants.export"));

  function reportFilters() {
    return {
      since: toIso(r.since.value), until: toIso(r.until.value), username: r.username.value.trim(),
      camera: r.camera.value.trim(), grant: r.grant.value.trim(), department: r.department.value.trim(),
    };
  }

  async function loadReport(offset = 0) {
    exportLink.href = `/api/grants/report/export${queryString(reportFilters())}`;
    clear(reportList, h("p", { class: "muted" }, t("common.loading")));
    try {
      const page = await request("GET", "/grants/report", { params: { ...reportFilters(), offset, limit: PAGE } });
      const cols = ["grants.at", "grants.user", "grants.action", "grants.camera", "grants.id", "grants.purpose",
        "grants.department", "audit.result", "grants.reason"];
      clear(reportList,
        page.items.length
          ? h("table", { class: "grid" },
            h("thead", {}, h("tr", {}, cols.map((k) => h("th", {}, t(k))))),
            h("tbody", {}, page.items.map((u) => h("tr", { testid: "report-row", dataset: { action: u.action, grant: u.grant, result: u.result } },
              h("td", { class: "nowrap" }, formatTime(u.at)),
              h("td", {}, u.user),
              h("td", {}, tOr(`action.${u.action}`, u.action)),
              h("td", { class: "mono" }, u.camera),
              h("td", { class: "mono" }, u.grant),
              h("td", {}, u.purpose),
              h("td", { class: "mono" }, u.department),
              h("td", {}, tOr(`result.${u.result}`, u.result)),
              h("td", { class: "small" }, u.reason)))))
          : h("p", { class: "muted", testid: "report-empty" }, t("common.empty")),
        pager(page, loadReport, "report-pager"));
    } catch (err) {
      clear(reportList, problemBox(err, { testid: "report-error" }));
    }
  }

  const el = h("div", { class: "grants-page" },
    h("section", { class: "panel" },
      h("h2", {}, t("grants.applyTitle")),
      h("form", { class: "search-form", testid: "grants-apply-form", onsubmit: apply },
        field("grants.grantee", f.grantee),
        field("grants.org", f.org),
        field("grants.tags", f.tags),
        field("grants.codes", f.codes),
        field("grants.purpose", f.purpose),
        field("grants.from", f.from),
        field("grants.until", f.until),
        field("grants.decider", f.decider),
        operator ? field("grants.directTo", f.granteeCode) : null,
        h("div", { class: "form-actions" },
          h("button", { type: "submit", class: "primary", testid: "grants-apply-submit" }, t("grants.apply")),
          operator
            ? h("button", { type: "button", testid: "grants-direct-submit", onclick: (ev) => apply(ev, true) }, t("grants.grantDirect"))
            : null)),
      applyOut),
    h("section", { class: "panel" }, h("h2", {}, t("grants.mine")), lists.mine),
    operator ? h("section", { class: "panel" }, h("h2", {}, t("grants.queue")), lists.queue) : null,
    operator ? h("section", { class: "panel" }, h("h2", {}, t("grants.active")), lists.active) : null,
    operator ? h("section", { class: "panel" },
      h("h2", {}, t("grants.report")),
      h("form", { class: "search-form", testid: "report-form", onsubmit: (ev) => { ev.preventDefault(); loadReport(0); } },
        field("audit.since", r.since),
        field("audit.until", r.until),
        field("grants.user", r.username),
        field("grants.camera", r.camera),
        field("grants.id", r.grant),
        field("grants.department", r.department),
        h("div", { class: "form-actions" },
          h("button", { type: "submit", class: "primary", testid: "report-submit" }, t("common.search")),
          exportLink)),
      reportList) : null,
  );
  loadAll();
  if (operator) loadReport(0);
  return { el, update: () => loadAll() };
}
