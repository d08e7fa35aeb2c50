// Service desk statistics (#/sdstats): per item, department or serving centre — sessions,
// waiting p50/p90, handling p50/p90, abandonment, ratings, trips saved — as a table with bars,
// and the same rows as CSV (/api/servicedesk/stats?format=csv).
import { request } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { problemBox } from "../ui.js";
import { useStyles } from "./sdcall.js";

const BYS = ["item", "department", "centre"];
const COLS = ["sessions", "waiting_p50_s", "waiting_p90_s", "handling_p50_s", "handling_p90_s", "abandonment_rate", "rating_mean", "trips_saved"];

export function create() {
  useStyles();
  let by = "department";
  const table = h("div", { testid: "sdstats-table" });
  const csv = h("a", { testid: "sdstats-csv" }, t("sdstats.csv"));
  const select = h("select", { testid: "sdstats-by", onchange: () => { by = select.value; load(); } },
    BYS.map((b) => h("option", { value: b, selected: b === by }, t(`sdstats.by.${b}`))));
  const el = h("section", { class: "panel sd-stats" }, h("h2", {}, t("sdstats.title")), h("div", {}, select, " ", csv), table);

  async function load() {
    csv.href = `/api/servicedesk/stats?by=${by}&format=csv`;
    try {
      const data = await request("GET", "/servicedesk/stats", { params: { by } });
      const max = Math.max(1, ...data.rows.map((r) => r.sessions));
      clear(table, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, t("sdstats.name")), COLS.map((c) => h("th", {}, t(`sdstats.col.${c}`))))),
        h("tbody", {}, data.rows.map((r) => h("tr", { testid: `sdstats-row-${r.key}` },
          h("td", {}, r.name, bar((100 * r.sessions) / max)),
          COLS.map((c) => h("td", { class: "mono" }, r[c] ?? "-")),
        ))),
      ));
    } catch (err) {
      clear(table, problemBox(err, { testid: "sdstats-error" }));
    }
  }
  load();
  return { el };
}

function bar(percent) {
  const el = h("div", { class: "sd-bar" });
  el.style.width = `${Math.round(percent)}%`; // CSSOM: allowed by the console's style-src policy
  return el;
}
