// Directory page: the lazy org tree (left), search with filters (middle), entry details (right).
//
// The tree loads one level at a time from /api/directory/entries/{code}/children, TREE_PAGE rows
// per request, with a "more…" row for big levels. #/dir/<code> opens an entry's details without
// rebuilding the tree or the search results. On a federated node the regions above the tree's
// root and beside it (passed down from the parent, /api/network/orgs/around) are shown over it.
import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, t, tOr } from "../i18n.js";
import { field, kindLabel, KINDS, pager, problemBox, select, STATUSES, statusDot, statusText, typeLabel } from "../ui.js";

const TREE_PAGE = 100;
const SEARCH_PAGE = 50;

export function create(ctx) {
  const treeBox = h("ul", { class: "tree", role: "tree", testid: "tree" });
  const aroundBox = h("div", { class: "tree-around", testid: "tree-around", hidden: true });
  const detailBox = h("section", { class: "detail panel", testid: "detail-panel" });
  const search = searchPanel(ctx);
  let selected = null;

  const el = h(
    "div",
    { class: "dir-layout" },
    h("section", { class: "tree-panel panel" }, h("h2", {}, t("tree.title")), aroundBox, treeBox),
    search.el,
    detailBox,
  );

  loadRoots(treeBox, ctx).then((roots) => loadAround(aroundBox, roots));

  function update(args) {
    selected = args[0] || null;
    for (const row of treeBox.querySelectorAll(".tree-row.selected")) row.classList.remove("selected");
    if (selected) {
      const row = treeBox.querySelector(`.tree-row[data-code="${CSS.escape(selected)}"]`);
      if (row) row.classList.add("selected");
    }
    search.setSelected(selected);
    showDetail(detailBox, selected, ctx);
  }
  update(ctx.args);
  return { el, update };
}

async function loadRoots(treeBox, ctx) {
  clear(treeBox, h("li", { class: "muted" }, t("common.loading")));
  try {
    const roots = await api.roots();
    clear(treeBox, roots.map((n) => treeNode(n, ctx)));
    if (!roots.length) treeBox.append(h("li", { class: "muted" }, t("common.empty")));
    return roots;
  } catch (err) {
    clear(treeBox, h("li", {}, problemBox(err, { testid: "tree-error" })));
    return [];
  }
}

// The regions above the first root and its siblings, as received from the parent node. Read-only:
// they live in other nodes' directories (their node is in the tooltip). Nothing is shown on a node
// without federation or at the top of the network.
async function loadAround(box, roots) {
  if (roots.length !== 1 || roots[0].kind !== "region") return;
  let around;
  try {
    around = await api.orgsAround(roots[0].code);
  } catch {
    return; // federation off (503) or the catalogue not there yet: the tree alone is right
  }
  if (!around.ancestors.length && !around.siblings.length) return;
  const unit = (u, testid) =>
    h("span", { class: "around-unit", testid, title: `${u.code} · ${t("tree.fromNode", { node: u.origin_node })}` }, u.name);
  const crumbs = [];
  for (const u of around.ancestors) crumbs.push(unit(u, `around-up-${u.code}`), h("span", { class: "muted" }, " › "));
  crumbs.push(h("strong", {}, roots[0].name));
  const parts = [h("div", { class: "around-path", testid: "around-path" }, t("tree.above"), " ", ...crumbs)];
  if (around.siblings.length) {
    parts.push(h("details", { class: "around-siblings", testid: "around-siblings" },
      h("summary", {}, t("tree.siblings", { n: around.siblings.length })),
      h("ul", {}, around.siblings.map((u) => h("li", {}, unit(u, `around-sibling-${u.code}`))))));
  }
  clear(box, parts);
  box.hidden = false;
}

function counts(node) {
  if (node.has_children || node.child_count > 0) {
    return h(
      "span",
      { class: "counts", testid: `tree-counts-${node.code}`, title: t("tree.counts", { online: node.online_count, total: node.child_count }) },
      h("span", { class: "online-count" }, String(node.online_count ?? 0)),
      "/",
      String(node.child_count ?? 0),
    );
  }
  return h("span", { class: "counts muted" }, node.kind === "region" ? "" : kindLabel(node.kind));
}

function treeNode(node, ctx) {
  const children = h("ul", { class: "tree-children", role: "group", hidden: true });
  const expandable = node.has_children || node.child_count > 0;
  let loaded = false;

  const toggle = expandable
    ? h("button", {
        type: "button", class: "toggle", testid: `tree-toggle-${node.code}`,
        "aria-expanded": "false", title: t("tree.expand"), onclick: () => flip(),
      }, "▸")
    : h("span", { class: "toggle-spacer" });

  async function flip() {
    const open = toggle.getAttribute("aria-expanded") === "true";
    if (open) {
      toggle.setAttribute("aria-expanded", "false");
      toggle.textContent = "▸";
      toggle.title = t("tree.expand");
      children.hidden = true;
      return;
    }
    toggle.setAttribute("aria-expanded", "true");
    toggle.textContent = "▾";
    toggle.title = t("tree.collapse");
    children.hidden = false;
    if (!loaded) {
      loaded = true;
      await loadChildren(node.code, children, 0, ctx);
    }
  }

  const row = h(
    "div",
    { class: "tree-row", dataset: { code: node.code, kind: node.kind }, role: "treeitem" },
    toggle,
    statusDot(node.status),
    h("a", {
      href: `#/dir/${encodeURIComponent(node.code)}`, class: "tree-label",
      testid: `tree-label-${node.code}`, title: `${node.name} · ${node.code}`,
    }, node.name),
    counts(node),
  );
  return h("li", { class: "tree-node", testid: `tree-node-${node.code}`, dataset: { code: node.code } }, row, children);
}

async function loadChildren(code, list, offset, ctx) {
  const loading = h("li", { class: "muted", testid: `tree-loading-${code}` }, t("common.loading"));
  list.append(loading);
  try {
    const page = await api.children(code, offset, TREE_PAGE);
    loading.remove();
    for (const n of page.items) list.append(treeNode(n, ctx));
    if (!page.items.length && offset === 0) list.append(h("li", { class: "muted" }, t("tree.empty")));
    const shown = page.offset + page.items.length;
    if (page.total_capped || shown < page.total) {
      const more = h("li", { class: "tree-more" }, h("button", {
        type: "button", class: "link", testid: `tree-more-${code}`,
        onclick: async () => {
          more.remove();
          await loadChildren(code, list, shown, ctx);
        },
      }, t("common.more", { n: page.total_capped ? `${page.total - shown}+` : page.total - shown })));
      list.append(more);
    }
  } catch (err) {
    loading.remove();
    list.append(h("li", {}, problemBox(err, { testid: "tree-error" })));
  }
}

function searchPanel(ctx) {
  const q = h("input", { name: "q", type: "search", testid: "search-q", placeholder: t("search.q") });
  const codePrefix = h("input", { name: "code_prefix", inputmode: "numeric", maxlength: "20", testid: "search-code-prefix" });
  const kind = select("kind", [["", t("common.all")], ...KINDS.map((k) => [k, kindLabel(k)])], "", "search-kind");
  const status = select("status", [["", t("common.all")], ...STATUSES.map((s) => [s, t(`status.${s}`)])], "", "search-status");
  const tag = h("input", { name: "tag", testid: "search-tag" });
  const sort = select("sort", ["name", "code", "-updated"].map((s) => [s, t(`search.sort.${s}`)]), "name", "search-sort");
  const results = h("div", { class: "results", testid: "search-results" }, h("p", { class: "muted" }, t("search.hint")));
  // Narrow the search to the subtree of the entry open in the detail panel.
  const under = h("input", { type: "checkbox", name: "under", testid: "search-under", disabled: true });
  const underLabel = h("label", { class: "check" }, under, t("search.under"));
  let selected = null;

  function setSelected(code) {
    selected = code;
    under.disabled = !code;
    if (!code) under.checked = false;
  }

  async function run(offset = 0) {
    const params = {
      q: q.value.trim(), code_prefix: codePrefix.value.trim(), kind: kind.value, status: status.value,
      tag: tag.value.trim(), sort: sort.value, under: under.checked && selected ? selected : "",
      offset, limit: SEARCH_PAGE,
    };
    clear(results, h("p", { class: "muted" }, t("common.loading")));
    try {
      const page = await api.search(params);
      // Too many name matches to sort: the server pages them in creation order and says so.
      const note = page.sorted_by && page.sorted_by !== params.sort
        ? h("p", { class: "muted", testid: "search-refine" }, t("search.refine", { n: page.total }))
        : null;
      clear(results, note, resultTable(page), pager(page, run, "search-pager"));
    } catch (err) {
      clear(results, problemBox(err, { testid: "search-error" }));
    }
  }

  function resultTable(page) {
    if (!page.items.length) return h("p", { class: "muted", testid: "search-empty" }, t("search.noResults"));
    return h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ["col.name", "col.code", "col.kind", "col.status"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, page.items.map((item) =>
        h(
          "tr",
          { testid: `search-result-${item.code}`, class: "clickable", dataset: { code: item.code },
            onclick: () => ctx.navigate(`#/dir/${encodeURIComponent(item.code)}`) },
          h("td", {}, h("a", { href: `#/dir/${encodeURIComponent(item.code)}`, testid: "search-result-name" }, item.name)),
          h("td", { class: "mono" }, item.code),
          h("td", {}, kindLabel(item.kind), item.tier ? ` · ${tOr(`tier.${item.tier}`, item.tier)}` : ""),
          h("td", {}, statusText(item.status)),
        ),
      )),
    );
  }

  const form = h(
    "form",
    { class: "search-form", testid: "search-form", onsubmit: (ev) => { ev.preventDefault(); run(0); } },
    field("search.q", q, "wide"),
    field("search.codePrefix", codePrefix),
    field("search.kind", kind),
    field("search.status", status),
    field("search.tag", tag),
    field("search.sort", sort),
    underLabel,
    h("div", { class: "form-actions" },
      h("button", { type: "submit", class: "primary", testid: "search-submit" }, t("common.search"))),
  );
  const el = h("section", { class: "search-panel panel" }, h("h2", {}, t("search.title")), form, results);
  return { el, setSelected };
}

let detailSeq = 0;

async function showDetail(box, code, ctx) {
  const mine = ++detailSeq;
  if (!code) {
    clear(box, h("h2", {}, t("detail.title")), h("p", { class: "muted", testid: "detail-placeholder" }, t("detail.placeholder")));
    return;
  }
  clear(box, h("h2", {}, t("detail.title")), h("p", { class: "muted" }, t("common.loading")));
  let entry;
  try {
    entry = await api.entry(code);
  } catch (err) {
    if (mine === detailSeq) clear(box, h("h2", {}, t("detail.title")), problemBox(err, { testid: "detail-error" }));
    return;
  }
  if (mine !== detailSeq) return;
  clear(box, h("h2", {}, t("detail.title")), detailBody(entry, ctx));
}

function detailBody(e, ctx) {
  const crumbs = (e.path || []).map((p, i, all) =>
    i === all.length - 1
      ? h("span", { class: "crumb current" }, p.name)
      : h("a", { class: "crumb", href: `#/dir/${encodeURIComponent(p.code)}`, title: p.code }, p.name),
  );
  const rows = [
    ["detail.code", h("span", { class: "mono", testid: "detail-code" }, e.code)],
    ["detail.kind", h("span", { testid: "detail-kind" }, kindLabel(e.kind), e.tier ? ` · ${tOr(`tier.${e.tier}`, e.tier)}` : "")],
    ["detail.type", h("span", { testid: "detail-type" }, `${typeLabel(e)} (${e.type_code})`)],
    ["detail.status", h("span", { testid: "detail-status" }, statusText(e.status))],
    ["detail.lastSeen", h("span", { testid: "detail-last-seen" }, e.last_seen ? formatTime(e.last_seen) : t("common.none"))],
    ["detail.location", h("span", { testid: "detail-location", class: "mono" },
      e.lat !== null && e.lat !== undefined ? `${e.lat}, ${e.lon}` : t("common.none"))],
    ["detail.tags", h("span", { testid: "detail-tags" },
      (e.tags || []).length ? e.tags.map((tg) => h("span", { class: "tag" }, tg)) : t("common.none"))],
  ];
  if (e.child_count) {
    rows.push(["detail.children", h("span", { testid: "detail-children" }, t("detail.childCounts", { online: e.online_count, total: e.child_count }))]);
  }
  rows.push(["detail.updated", h("span", {}, formatTime(e.updated_at), e.version ? ` · v${e.version}` : "")]);
  const attrs = Object.entries(e.attrs || {});
  return h(
    "div",
    { class: "detail-body", testid: "detail", dataset: { code: e.code } },
    h("nav", { class: "breadcrumb", testid: "detail-path", "aria-label": t("detail.path") }, crumbs),
    h("h3", { class: "detail-name", testid: "detail-name" }, statusDot(e.status), " ", e.name),
    e.kind === "camera"
      ? h("button", { type: "button", class: "primary", testid: "detail-watch",
          onclick: () => ctx.navigate(`#/wall/${encodeURIComponent(e.code)}`) }, t("live.watch"))
      : null,
    e.kind === "camera" && e.attrs?.source === "gb28181"
      ? h("button", { type: "button", testid: "detail-gb-records",
          onclick: () => ctx.navigate(`#/gbrecords/${encodeURIComponent(e.code)}`) }, t("gbrec.open"))
      : null,
    h("dl", { class: "props" }, rows.map(([k, v]) => [h("dt", {}, t(k)), h("dd", {}, v)])),
    h("h4", {}, t("detail.attrs")),
    attrs.length
      ? h("table", { class: "grid attrs", testid: "detail-attrs" }, h("tbody", {}, attrs.map(([k, v]) =>
          h("tr", {}, h("th", { class: "mono" }, k), h("td", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v))))))
      : h("p", { class: "muted", testid: "detail-attrs" }, t("detail.noAttrs")),
  );
}
