// Login page: username and password; 401/423 and other problems shown in the user's language.
import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { formatTime, t, toggleLang } from "../i18n.js";
import { problemBox } from "../ui.js";

export function create(ctx) {
  const username = h("input", { name: "username", autocomplete: "username", required: true, testid: "login-username" });
  const password = h("input", {
    name: "password", type: "password", autocomplete: "current-password", required: true, testid: "login-password",
  });
  const submit = h("button", { type: "submit", class: "primary", testid: "login-submit" }, t("login.submit"));
  const messages = h("div", { class: "messages" });

  async function onsubmit(ev) {
    ev.preventDefault();
    clear(messages);
    if (!username.value.trim() || !password.value) {
      messages.append(problemBox({ status: 422, errors: [] }, { testid: "login-error", messages: { 422: "login.required" } }));
      return;
    }
    submit.disabled = true;
    submit.textContent = t("login.busy");
    try {
      const res = await api.login(username.value.trim(), password.value);
      password.value = "";
      await ctx.onLogin(res.user);
    } catch (err) {
      const until = err.status === 423 && /locked until (\S+)/.exec(err.detail || "");
      if (until) {
        messages.append(problemBox({ status: 423, errors: [] }, {
          testid: "login-error", text: t("login.lockedUntil", { time: formatTime(until[1]) }),
        }));
        return;
      }
      messages.append(
        problemBox(err, {
          testid: "login-error",
          messages: { 401: "login.failed", 423: "login.locked", 403: "login.disabled" },
        }),
      );
      password.select();
    } finally {
      submit.disabled = false;
      submit.textContent = t("login.submit");
    }
  }

  const el = h(
    "div",
    { class: "login-wrap", testid: "page-login" },
    h(
      "form",
      { class: "login card", onsubmit, novalidate: true, testid: "login-form" },
      h("div", { class: "login-head" },
        h("h1", {}, t("app.title")),
        h("button", { type: "button", class: "lang link", testid: "lang-switch", onclick: toggleLang }, t("lang.switch"))),
      h("p", { class: "muted" }, t("login.subtitle")),
      h("label", { class: "field" }, h("span", { class: "field-label" }, t("login.username")), username),
      h("label", { class: "field" }, h("span", { class: "field-label" }, t("login.password")), password),
      messages,
      submit,
    ),
  );
  setTimeout(() => username.focus(), 0);
  return { el };
}
