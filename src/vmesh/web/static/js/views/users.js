// User administration (admins): list and search, add, disable/enable, unlock, reset password.
// The server limits the list to users inside the admin's scope; the console shows what it gets.
import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, t, tOr } from "../i18n.js";
import { field, notice, pager, problemBox, ROLES } from "../ui.js";

const PAGE = 50;

export function create(ctx) {
  const messages = h("div", { class: "messages", testid: "users-messages" });
  const list = h("div", { class: "results", testid: "users-list" });
  const q = h("input", { name: "q", type: "search", testid: "users-q", placeholder: t("users.q") });
  let offset = 0;

  function say(node) {
    clear(messages, node);
  }

  async function load(at = offset) {
    offset = at;
    try {
      const page = await api.users({ q: q.value.trim(), offset, limit: PAGE });
      clear(list, table(page), pager(page, load, "users-pager"));
    } catch (err) {
      clear(list, problemBox(err, { testid: "users-error" }));
    }
  }

  async function act(fn, okText) {
    clear(messages);
    try {
      await fn();
      say(notice(okText, "users-notice"));
      await load();
    } catch (err) {
      say(problemBox(err, { testid: "users-error" }));
    }
  }

  function resetForm(user, cell) {
    const pw = h("input", { type: "password", name: "password", autocomplete: "new-password", testid: "users-new-password" });
    const form = h(
      "form",
      { class: "inline-form", onsubmit: (ev) => {
        ev.preventDefault();
        act(() => api.patchUser(user.username, { password: pw.value }), t("users.passwordReset", { username: user.username }));
      } },
      field("users.newPassword", pw),
      h("button", { type: "submit", class: "primary", testid: "users-new-password-save" }, t("common.save")),
      h("button", { type: "button", onclick: () => form.remove() }, t("common.cancel")),
    );
    cell.append(form);
    pw.focus();
  }

  function table(page) {
    if (!page.items.length) return h("p", { class: "muted" }, t("common.empty"));
    return h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ["users.username", "users.displayName", "users.roles", "users.scope", "users.state", "common.actions"]
        .map((k) => h("th", {}, t(k))))),
      h("tbody", {}, page.items.map((u) => {
        const actions = h("td", { class: "actions" });
        clear(actions,
          h("button", { type: "button", testid: `user-toggle-${u.username}`,
            onclick: () => act(() => api.patchUser(u.username, { disabled: !u.disabled }), t("users.updated", { username: u.username })) },
          u.disabled ? t("users.enable") : t("users.disable")),
          u.locked ? h("button", { type: "button", testid: `user-unlock-${u.username}`,
            onclick: () => act(() => api.unlockUser(u.username), t("users.unlocked", { username: u.username })) }, t("users.unlock")) : null,
          h("button", { type: "button", testid: `user-reset-${u.username}`, onclick: () => resetForm(u, actions) }, t("users.resetPassword")),
        );
        const states = [];
        if (u.disabled) states.push(h("span", { class: "badge badge-off" }, t("users.disabled")));
        if (u.locked) {
          states.push(h("span", { class: "badge badge-warn", title: u.locked_until ? formatTime(u.locked_until) : "" },
            t("users.locked")));
        }
        if (!states.length) states.push(h("span", { class: "badge badge-ok" }, t("users.active")));
        return h(
          "tr",
          { testid: `user-row-${u.username}`, dataset: { username: u.username } },
          h("td", { class: "mono" }, u.username),
          h("td", {}, u.display_name),
          h("td", {}, (u.roles || []).map((r) => tOr(`role.${r}`, r)).join("、")),
          h("td", { title: u.scope_code }, u.scope_name || u.scope_code,
            u.department_code ? h("div", { class: "mono small muted" }, u.department_code) : null),
          h("td", { testid: `user-state-${u.username}` }, states),
          actions,
        );
      })),
    );
  }

  // Add-user form
  const nu = {
    username: h("input", { name: "username", testid: "new-user-username", autocomplete: "off" }),
    display_name: h("input", { name: "display_name", testid: "new-user-display-name" }),
    password: h("input", { name: "password", type: "password", autocomplete: "new-password", testid: "new-user-password" }),
    scope_code: h("input", { name: "scope_code", inputmode: "numeric", maxlength: "20", testid: "new-user-scope",
      value: ctx.me.scope_code }),
    department_code: h("input", { name: "department_code", inputmode: "numeric", maxlength: "20", testid: "new-user-department" }),
  };
  const roleBoxes = ROLES.map((r) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "roles", value: r, testid: `new-user-role-${r}`, checked: r === "viewer" }),
    tOr(`role.${r}`, r)));
  const addForm = h(
    "form",
    { class: "add-user", testid: "new-user-form", onsubmit: async (ev) => {
      ev.preventDefault();
      const body = {
        username: nu.username.value.trim(),
        display_name: nu.display_name.value.trim(),
        password: nu.password.value,
        roles: roleBoxes.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
        scope_code: nu.scope_code.value.trim(),
      };
      if (nu.department_code.value.trim()) body.department_code = nu.department_code.value.trim();
      try {
        await api.createUser(body);
        say(notice(t("users.created", { username: body.username }), "users-notice"));
        nu.username.value = "";
        nu.display_name.value = "";
        nu.password.value = "";
        await load(0);
      } catch (err) {
        say(problemBox(err, { testid: "users-error" }));
      }
    } },
    h("h3", {}, t("users.add")),
    h("div", { class: "form-grid" },
      field("users.username", nu.username),
      field("users.displayName", nu.display_name),
      field("users.password", nu.password),
      field("users.scopeCode", nu.scope_code),
      field("users.department", nu.department_code)),
    h("fieldset", { class: "roles" }, h("legend", {}, t("users.roles")), roleBoxes),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary", testid: "new-user-submit" }, t("users.add"))),
  );

  const el = h(
    "div",
    { class: "users-layout" },
    h("section", { class: "panel" },
      h("h2", {}, t("users.title")),
      h("form", { class: "search-form", onsubmit: (ev) => { ev.preventDefault(); load(0); } },
        field("users.q", q, "wide"),
        h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary", testid: "users-search" }, t("common.search")))),
      messages,
      list),
    h("section", { class: "panel" }, addForm),
  );
  load(0);
  return { el };
}
