// A timeline strip (shared by the recordings page and the GB/T 28181 device recordings page):
// the recorded spans (green), the gaps (hatched) and alarm marks of a timeline body
// ({spans, gaps, alarms?}, Unix seconds) drawn into ``bar`` between ``from`` and ``to``, with a
// hidden red cursor (``bar.cursor``) the player moves; and the day/time helpers both pages use.
import { clear, h } from "../dom.js";

export const pad = (n) => String(n).padStart(2, "0");

/** A local date as the value of an <input type="date">, and that day's first second. */
export const dateValue = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;

export function dayStart(value) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d).getTime() / 1000;
}

export const clock = (sec) => {
  const d = new Date(sec * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
};

export function drawStrip(bar, from, to, tl) {
  bar.dataset.start = String(from);
  bar.dataset.end = String(to);
  const pct = (x) => `${(100 * (x - from)) / (to - from)}%`;
  const part = (cls, s, testid) => {
    const a = Math.max(s.start, from), b = Math.min(s.end, to);
    if (b <= a) return null;
    const div = h("div", { class: cls, testid, title: `${clock(a)} – ${clock(b)}`,
      dataset: { start: String(a), end: String(b) } });
    div.style.left = pct(a); // CSSOM, not a style attribute: allowed by the CSP
    div.style.width = pct(from + b - a);
    return div;
  };
  const cursor = h("div", { class: "rec-cursor", testid: `${bar.dataset.testid}-cursor`, hidden: true });
  clear(bar,
    tl ? tl.gaps.map((g) => part("rec-gap", g, "rec-gap")) : null,
    tl ? tl.spans.map((s) => part("rec-span", s, "rec-span")) : null,
    tl ? (tl.alarms || []).map((a) => part("rec-alarm", { start: a.at, end: a.at + (to - from) / 400 }, "rec-alarm")) : null,
    cursor);
  bar.cursor = cursor;
}

/** Move ``bar``'s cursor to wall time ``at`` (hidden outside the strip). */
export function moveStripCursor(bar, at) {
  const from = Number(bar.dataset.start), to = Number(bar.dataset.end);
  if (!bar.cursor) return;
  bar.cursor.hidden = !(from <= at && at <= to);
  bar.cursor.style.left = `${(100 * (at - from)) / (to - from)}%`;
}

/** The wall time under a click on ``bar``. */
export function timeAt(ev, bar) {
  const box = bar.getBoundingClientRect();
  const from = Number(bar.dataset.start), to = Number(bar.dataset.end);
  return from + ((ev.clientX - box.left) / box.width) * (to - from);
}

/** The recorded span holding wall time ``at``, else the next one (and ``at`` moved to its start);
 *  null when nothing is recorded at or after ``at``. */
export function spanFrom(spans, at) {
  const span = spans.find((s) => s.start <= at && at < s.end);
  if (span) return { span, at };
  const next = spans.find((s) => s.start > at);
  return next ? { span: next, at: next.start } : null;
}
