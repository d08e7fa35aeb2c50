// The console's language: zh-CN by default, English on request, remembered in localStorage.
// Every UI string comes from i18n/<lang>.js through t(); a missing key shows the key itself.
import zh from "../i18n/zh-CN.js";
import en from "../i18n/en.js";

const DICTS = { "zh-CN": zh, en };
const STORE_KEY = "vmesh.lang";
const listeners = new Set();

function initial() {
  try {
    const saved = localStorage.getItem(STORE_KEY);
    if (saved && saved in DICTS) return saved;
  } catch {
    // storage blocked: fall back to the default
  }
  return "zh-CN";
}

let current = initial();
document.documentElement.lang = current;

export function lang() {
  return current;
}

export function setLang(next) {
  if (!(next in DICTS) || next === current) return;
  current = next;
  document.documentElement.lang = next;
  try {
    localStorage.setItem(STORE_KEY, next);
  } catch {
    // not remembered, still switched
  }
  for (const fn of listeners) fn(next);
}

export function toggleLang() {
  setLang(current === "zh-CN" ? "en" : "zh-CN");
}

export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Translate ``key``, filling ``{name}`` placeholders from ``params``. */
export function t(key, params = {}) {
  const text = DICTS[current][key] ?? DICTS["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/** Translate if the key exists, otherwise return ``fallback`` (e.g. a server-side value). */
export function tOr(key, fallback) {
  const text = DICTS[current][key];
  return text === undefined ? fallback : text;
}

/** A date-time in the user's language, local time zone; empty input gives "". */
export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(current === "zh-CN" ? "zh-CN" : "en-GB", { hour12: false });
}
