// Calls to the node's HTTP API (same origin, session cookie). Errors come back as
// application/problem+json and are thrown as ApiError carrying status, detail and field errors.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem?.title || "";
    this.detail = problem?.detail || "";
    this.errors = Array.isArray(problem?.errors) ? problem.errors : [];
  }
}

let onUnauthorized = () => {};

// Pauses before a failed read is asked again (see request()).
const GET_RETRIES_MS = [200, 800];

/** Called when a request (other than login) answers 401: the session is gone. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function queryString(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function request(method, path, { params, body, raw, rawType, quiet401 = false, timeoutMs } = {}) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  // A bounded request gives up after timeoutMs: the caller hears "no answer" instead of waiting.
  if (timeoutMs) init.signal = AbortSignal.timeout(timeoutMs);
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  } else if (raw !== undefined) {
    // A file or image sent as it is (the service desk's images), with its own type.
    init.headers["Content-Type"] = rawType;
    init.body = raw;
  }
  const url = `/api${path}${queryString(params)}`;
  let resp;
  for (let attempt = 0; ; attempt++) {
    try {
      resp = await fetch(url, init);
      break;
    } catch (e) {
      // A read that failed before any answer (the browser dropped it when the machine's network
      // changed, a connection reset) is asked again after a short pause; it changes nothing.
      // A write is not: it may have been done. Nor is a request that ran out of time.
      const retry = method === "GET" && e?.name === "TypeError" && attempt < GET_RETRIES_MS.length;
      if (retry) {
        await new Promise((resolve) => setTimeout(resolve, GET_RETRIES_MS[attempt]));
        continue;
      }
      const detail = e?.name === "TimeoutError" ? `the node did not answer within ${timeoutMs / 1000} s` : String(e);
      throw new ApiError(0, { detail });
    }
  }
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json().catch(() => null) : null;
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401 && !quiet401) onUnauthorized(err);
    throw err;
  }
  return data;
}

const enc = encodeURIComponent;

export const api = {
  login: (username, password) =>
    request("POST", "/auth/login", { body: { username, password }, quiet401: true }),
  logout: () => request("POST", "/auth/logout", { quiet401: true }),
  // The console's first call: bounded, so that a node that does not answer leads to the login
  // page (whose own request then shows the problem) rather than to a blank page.
  me: () => request("GET", "/auth/me", { quiet401: true, timeoutMs: 8000 }),

  roots: () => request("GET", "/directory/roots"),
  children: (code, offset, limit) =>
    request("GET", `/directory/entries/${enc(code)}/children`, { params: { offset, limit } }),
  entry: (code) => request("GET", `/directory/entries/${enc(code)}`),
  search: (params) => request("GET", "/directory/search", { params }),
  orgsAround: (code) => request("GET", `/network/orgs/around/${enc(code)}`),

  users: (params) => request("GET", "/users", { params }),
  createUser: (body) => request("POST", "/users", { body }),
  patchUser: (username, body) => request("PATCH", `/users/${enc(username)}`, { body }),
  unlockUser: (username) => request("POST", `/users/${enc(username)}/unlock`),

  audit: (params) => request("GET", "/audit", { params }),
  auditVerify: () => request("GET", "/audit/verify"),
};
