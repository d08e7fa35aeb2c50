// The console's shell: session check, hash routes, top bar (navigation, language, logout).
//
// Routes: #/login, #/dir (org tree + search), #/dir/<code> (same, with that entry's details),
// #/users (admins), #/audit (admins and operators), #/wall (video wall; #/wall/<code> plays one
// camera; #/network the network map; #/publish publishes the user's camera as a terminal). Each page is a module under views/ exporting
// create(ctx) -> {el, update?(params)}; a route change within the same page calls update().
import { api, setUnauthorizedHandler } from "./api.js";
import { clear, h } from "./dom.js";
import { onLangChange, t, toggleLang } from "./i18n.js";
import * as loginView from "./views/login.js";
import * as directoryView from "./views/directory.js";
import * as usersView from "./views/users.js";
import * as auditView from "./views/audit.js";
import * as networkView from "./views/network.js";
import * as wallView from "./views/wall.js";
import * as publishView from "./views/publish.js";
import * as chairView from "./views/chair.js";
import * as venueView from "./views/venue.js";
import * as kioskView from "./views/kiosk.js";
import * as deskView from "./views/desk.js";
import * as sdStatsView from "./views/sdstats.js";
import * as grantsView from "./views/grants.js";
import * as recordingsView from "./views/recordings.js";
import * as gbRecordsView from "./views/gbrecords.js";
import * as commandView from "./views/command.js";
import * as fieldView from "./views/field.js";
import * as petitionView from "./views/petition.js";
import * as alarmsView from "./views/alarms.js";

const root = document.getElementById("app");
const state = { me: null, page: null, view: null };

const PAGES = {
  login: { module: loginView, public: true },
  dir: { module: directoryView, nav: "nav.directory" },
  wall: { module: wallView, nav: "nav.wall" },
  publish: { module: publishView, nav: "nav.publish", roles: ["admin", "operator", "commander"] },
  chair: { module: chairView, nav: "nav.chair", roles: ["admin", "chair"] },
  venue: { module: venueView, roles: ["admin", "operator", "commander", "chair"] },
  users: { module: usersView, nav: "nav.users", roles: ["admin"] },
  audit: { module: auditView, nav: "nav.audit", roles: ["admin", "operator"] },
  grants: { module: grantsView, nav: "nav.grants", roles: ["admin", "operator", "viewer"] },
  recordings: { module: recordingsView, nav: "nav.recordings", roles: ["admin", "operator", "viewer"] },
  gbrecords: { module: gbRecordsView, roles: ["admin", "operator", "viewer"] },
  network: { module: networkView, nav: "nav.network" },
  command: { module: commandView, nav: "nav.command" },
  alarms: { module: alarmsView, nav: "nav.alarms" },
  field: { module: fieldView, nav: "nav.field", roles: ["admin", "operator", "commander"] },
  kiosk: { module: kioskView, nav: "nav.kiosk", roles: ["admin", "operator"] },
  desk: { module: deskView, nav: "nav.desk", roles: ["admin", "agent"] },
  sdstats: { module: sdStatsView, roles: ["admin", "agent", "operator"] },
  petition: { module: petitionView, nav: "nav.petition", roles: ["admin", "operator", "petition", "chair"] },
};

function parseHash() {
  const parts = (location.hash || "").replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = parts[0] in PAGES ? parts[0] : "dir";
  return { name, args: parts.slice(1).filter(Boolean) };
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function allowed(page) {
  if (!page.roles) return true;
  return state.me && state.me.roles.some((r) => page.roles.includes(r));
}

function topbar() {
  const me = state.me;
  const current = parseHash().name;
  const links = Object.entries(PAGES)
    .filter(([, p]) => p.nav && allowed(p))
    .map(([name, p]) =>
      h("a", { href: `#/${name}`, class: name === current ? "active" : "", testid: `nav-${name}` }, t(p.nav)),
    );
  return h(
    "header",
    { class: "topbar" },
    h("div", { class: "brand" }, t("app.title")),
    h("nav", { class: "nav" }, links),
    h(
      "div",
      { class: "who" },
      h("span", { testid: "current-user" }, me.display_name || me.username, ` (${me.username})`),
      h("span", { class: "scope", testid: "current-scope", title: me.scope_code }, t("nav.scope", { name: me.scope_name || me.scope_code })),
    ),
    h("button", { type: "button", class: "lang", testid: "lang-switch", onclick: toggleLang }, t("lang.switch")),
    h("button", { type: "button", testid: "logout", onclick: logout }, t("nav.logout")),
  );
}

async function logout() {
  try {
    await api.logout();
  } catch {
    // the cookie is gone either way from the console's point of view
  }
  state.me = null;
  navigate("#/login");
}

function show(name, args, force = false) {
  const page = PAGES[name];
  if (!force && state.page === name && state.view?.update) {
    state.view.update(args);
    return;
  }
  const ctx = { me: state.me, args, navigate, onLogin };
  // A page that holds live resources (the wall's WebSocket and video connections) lets them go.
  if (state.view?.destroy) state.view.destroy();
  state.page = name;
  state.view = page.module.create(ctx);
  if (page.public) {
    clear(root, state.view.el);
  } else {
    clear(root, topbar(), h("main", { class: "page", testid: `page-${name}` }, state.view.el));
  }
}

async function onLogin(me) {
  state.me = me;
  navigate("#/dir");
}

async function route(force = false) {
  const { name, args } = parseHash();
  const page = PAGES[name];
  if (!page.public && !state.me) {
    try {
      state.me = await api.me();
    } catch {
      state.page = null;
      if (location.hash !== "#/login") location.hash = "#/login";
      else show("login", [], true);
      return;
    }
  }
  if (name === "login" && state.me && !force) {
    navigate("#/dir");
    return;
  }
  if (!allowed(page)) {
    navigate("#/dir");
    return;
  }
  show(name, args, force);
}

setUnauthorizedHandler(() => {
  state.me = null;
  state.page = null;
  if (location.hash !== "#/login") location.hash = "#/login";
});

onLangChange(() => {
  document.title = t("app.title");
  route(true);
});

document.title = t("app.title");
window.addEventListener("hashchange", () => route());
route();
