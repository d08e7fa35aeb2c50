// Widgets every page shares: problem display, pager, status dot, labelled fields, notices.
import { h } from "./dom.js";
import { lang, t, tOr } from "./i18n.js";

/** A problem+json error as a block of text in the user's language, with each field named. */
export function problemBox(err, { testid = "error", messages = {}, text = "" } = {}) {
  const status = err?.status ?? 0;
  let headline;
  if (text) headline = text;
  else if (messages[status]) headline = t(messages[status]);
  else if (status === 0) headline = t("error.network");
  else headline = tOr(`error.${status}`, t("error.other", { status }));
  const fields = (err?.errors || []).map((fe) =>
    h(
      "li",
      { testid: `${testid}-field`, dataset: { field: fe.field } },
      (fe.row ? `#${fe.row} ` : "") + t("error.field", { field: fe.field, reason: fe.reason }),
      fe.value !== undefined ? ` (${fe.value})` : null,
    ),
  );
  // The server's own detail (English) is kept as a second line for operators and support.
  // Under a message of our own it is shown only in English, the language it is written in.
  const showDetail = err?.detail && !fields.length && (!messages[status] || lang() === "en");
  const detail = showDetail ? h("div", { class: "problem-detail", testid: `${testid}-detail` }, err.detail) : null;
  return h(
    "div",
    { class: "problem", role: "alert", testid, dataset: { status: String(status) } },
    h("strong", {}, headline),
    detail,
    fields.length ? h("ul", {}, fields) : null,
  );
}

export function notice(text, testid = "notice") {
  return h("div", { class: "notice", role: "status", testid }, text);
}

export function statusDot(status) {
  const s = status || "unknown";
  return h("span", { class: `dot dot-${s}`, title: t(`status.${s}`), dataset: { status: s } });
}

export function statusText(status) {
  const s = status || "unknown";
  return h("span", { class: `status status-${s}` }, statusDot(s), " ", t(`status.${s}`));
}

/** A <label> around a control, so clicking the text focuses it. */
export function field(labelKey, control, extraClass = "") {
  return h("label", { class: `field ${extraClass}` }, h("span", { class: "field-label" }, t(labelKey)), control);
}

export function select(name, options, value, testid) {
  return h(
    "select",
    { name, testid },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)),
  );
}

/** "1–50 of 123" with previous/next buttons; ``go(offset)`` loads another page. */
export function pager(page, go, testid = "pager") {
  if (!page) return null;
  const from = page.total === 0 ? 0 : page.offset + 1;
  const to = page.offset + page.items.length;
  const key = page.total_capped ? "common.pageCapped" : "common.page";
  const hasNext = page.total_capped || to < page.total;
  return h(
    "div",
    { class: "pager", testid },
    h(
      "button",
      { type: "button", disabled: page.offset <= 0, testid: `${testid}-prev`,
        onclick: () => go(Math.max(0, page.offset - page.limit)) },
      t("common.prev"),
    ),
    h("span", { class: "pager-text", testid: `${testid}-text` }, t(key, { from, to, total: page.total })),
    h(
      "button",
      { type: "button", disabled: !hasNext, testid: `${testid}-next`,
        onclick: () => go(page.offset + page.limit) },
      t("common.next"),
    ),
  );
}

export function typeLabel(item) {
  return tOr(`type.${item.type_code}`, item.type_name || item.type_code || "");
}

export function kindLabel(kind) {
  return tOr(`kind.${kind}`, kind || "");
}

export const KINDS = [
  "region", "department", "virtual_org", "platform", "camera", "nvr",
  "conference_terminal", "service_room", "field_terminal",
];
export const STATUSES = ["online", "offline", "unknown"];
export const ROLES = ["admin", "operator", "viewer", "chair", "agent", "commander", "petition"];
