// warmpool's HTTP API, as an ES module with no dependencies: it needs only the
// platform's `fetch` (Node 18 and later, Deno, Bun, browsers). The typings are in
// index.d.ts, written by hand and checked against docs/openapi.json by
// test/typings.test.js.

/** Longest `wait` the events endpoint accepts, in seconds. */
const MAX_EVENTS_WAIT = 60;

/**
 * A warmpool error answer: every one is an RFC 9457 problem document
 * (`application/problem+json`). An answer that is not one (a proxy in between, a
 * container's own answer) gets a problem made from its status and body.
 */
export class WarmpoolError extends Error {
  constructor(problem, init = {}) {
    super(`${init.method ?? ""} ${init.url ?? ""}: ${problem.status} ${problem.title}: ${problem.detail}`.trim());
    this.name = "WarmpoolError";
    this.problem = problem;
    this.status = problem.status;
    this.type = problem.type;
    // warmpool's types are URIs, https://warmpool.dev/problems/KIND: the KIND.
    this.kind = String(problem.type).replace(/^.*\//, "");
    this.title = problem.title;
    this.detail = problem.detail;
    this.field = problem.field ?? null;
    this.retryAfter = init.retryAfter ?? null;
    this.requestId = init.requestId ?? null;
    this.method = init.method ?? null;
    this.url = init.url ?? null;
  }
}

function isProblem(v) {
  return (
    v !== null &&
    typeof v === "object" &&
    typeof v.status === "number" &&
    typeof v.title === "string" &&
    typeof v.type === "string"
  );
}

/** Reads an error answer into a WarmpoolError. */
async function errorFrom(res, method, url) {
  const text = await res.text().catch(() => "");
  let problem = null;
  const ctype = res.headers.get("content-type") ?? "";
  if (ctype.includes("json")) {
    try {
      const parsed = JSON.parse(text);
      if (isProblem(parsed)) problem = parsed;
    } catch {
      // not JSON after all: made up below
    }
  }
  problem ??= {
    type: "about:blank",
    title: res.statusText || `HTTP ${res.status}`,
    status: res.status,
    detail: text.slice(0, 2000),
  };
  const ra = res.headers.get("retry-after");
  const retryAfter = ra !== null && /^\d+$/.test(ra.trim()) ? Number(ra.trim()) : null;
  return new WarmpoolError(problem, {
    retryAfter,
    requestId: res.headers.get("x-request-id"),
    method,
    url,
  });
}

/** `{a: 1, b: undefined}` to `?a=1` (undefined and null left out). */
function queryString(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v === undefined || v === null) continue;
    q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** A path segment, escaped (ids, pool and table names). */
function seg(s) {
  if (typeof s !== "string" || s === "") {
    throw new TypeError(`expected a non-empty string, got ${JSON.stringify(s)}`);
  }
  return encodeURIComponent(s);
}

/**
 * A client of one warmpool server.
 *
 *   const wp = new WarmpoolClient({ baseUrl: "http://127.0.0.1:8787", token });
 *   const c = await wp.claim({ pool: "default", labels: { team: "a" } });
 */
export class WarmpoolClient {
  constructor(options = {}) {
    const baseUrl = options.baseUrl ?? "http://127.0.0.1:8787";
    this.baseUrl = String(baseUrl).replace(/\/+$/, "");
    this.token = options.token ?? null;
    this.headers = { ...(options.headers ?? {}) };
    this.timeoutMs = options.timeoutMs ?? 60_000;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== "function") {
      throw new TypeError("no fetch: pass options.fetch, or use a platform that has one (Node 18+)");
    }
    this._fetch = f;
  }

  /** A URL of this server for a path that starts with `/`. */
  url(path) {
    return this.baseUrl + path;
  }

  _headers(extra) {
    const h = new Headers(this.headers);
    if (this.token) h.set("authorization", `Bearer ${this.token}`);
    for (const [k, v] of new Headers(extra ?? {})) h.set(k, v);
    return h;
  }

  /**
   * One request to warmpool's API: JSON in, JSON (or text) out; an error answer
   * throws a WarmpoolError. `opts.timeoutMs` bounds the whole request (0: none).
   */
  async request(method, path, opts = {}) {
    const url = this.url(path);
    const headers = this._headers(opts.headers);
    let body;
    if (opts.json !== undefined) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(opts.json);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const signals = [];
    if (opts.signal) signals.push(opts.signal);
    if (timeoutMs > 0) signals.push(AbortSignal.timeout(timeoutMs));
    const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : anySignal(signals);
    const res = await this._fetch(url, { method, headers, body, signal });
    if (!res.ok) throw await errorFrom(res, method, url);
    if (opts.as === "text") return res.text();
    const text = await res.text();
    return text === "" ? null : JSON.parse(text);
  }

  // Claims and containers.

  /** POST /container. */
  claim(request = {}, opts = {}) {
    return this.request("POST", "/container", { ...opts, json: request ?? {} });
  }

  /** GET /v1/containers. */
  listContainers(filter = {}, opts = {}) {
    const { state, location, pool, label, limit } = filter;
    return this.request("GET", `/v1/containers${queryString({ state, location, pool, label, limit })}`, opts);
  }

  /** GET /v1/containers/{id}. */
  getContainer(id, opts = {}) {
    return this.request("GET", `/v1/containers/${seg(id)}`, opts);
  }

  /** DELETE /v1/containers/{id}: idempotent. */
  releaseContainer(id, opts = {}) {
    return this.request("DELETE", `/v1/containers/${seg(id)}`, opts);
  }

  /** POST /v1/containers/{id}/extend. */
  extendContainer(id, seconds, opts = {}) {
    return this.request("POST", `/v1/containers/${seg(id)}/extend`, { ...opts, json: { seconds } });
  }

  /** POST /v1/containers/{id}/keepalive. */
  keepaliveContainer(id, opts = {}) {
    return this.request("POST", `/v1/containers/${seg(id)}/keepalive`, { ...opts, json: {} });
  }

  /**
   * POST /v1/containers/{id}/admin/{path}: the container's own answer, whatever
   * its status, as a Response; warmpool's own refusals (401, 404 for an unknown
   * container, 409, 502) throw.
   */
  async adminPassthrough(id, path, body, opts = {}) {
    const url = this.url(`/v1/containers/${seg(id)}/admin/${String(path).replace(/^\/+/, "")}`);
    const headers = this._headers(opts.headers);
    if (!headers.has("content-type")) headers.set("content-type", "text/plain; charset=utf-8");
    const res = await this._fetch(url, {
      method: "POST",
      headers,
      body: body ?? "",
      signal: opts.signal ?? (this.timeoutMs > 0 ? AbortSignal.timeout(this.timeoutMs) : undefined),
    });
    // warmpool's own refusals are problem documents; the app's answers are passed as they are.
    if (!res.ok && (res.headers.get("content-type") ?? "").startsWith("application/problem+json")) {
      throw await errorFrom(res, "POST", url);
    }
    return res;
  }

  /** The URL of a container's app through warmpool's proxy. */
  proxyUrl(id, path = "/") {
    const p = String(path);
    return this.url(`/container/${seg(id)}${p.startsWith("/") ? p : `/${p}`}`);
  }

  /**
   * A request to a container's app through warmpool's proxy (`ANY
   * /container/{id}/{path}`), answered as a plain Response (any status). The
   * token is sent too (for WARMPOOL_PROXY_REQUIRE_TOKEN); warmpool strips its
   * own tokens before forwarding.
   */
  proxy(id, path = "/", init = {}) {
    const headers = this._headers(init.headers);
    return this._fetch(this.proxyUrl(id, path), { ...init, headers });
  }

  // Events.

  /** GET /v1/events: one page. */
  listEvents(query = {}, opts = {}) {
    const { after, limit, container, wait } = query;
    // A long poll is held `wait` seconds: the bound of the request comes on top.
    const timeoutMs = wait && this.timeoutMs > 0 ? this.timeoutMs + wait * 1000 : undefined;
    return this.request("GET", `/v1/events${queryString({ after, limit, container, wait })}`, {
      timeoutMs,
      ...opts,
    });
  }

  /** The sequence number of the latest event (0: none yet). */
  async latestEventSeq(opts = {}) {
    let after = 0;
    for (;;) {
      const page = await this.listEvents({ after, limit: 1000 }, opts);
      if (page.events.length === 0) return after;
      after = page.next;
    }
  }

  /**
   * Every event after `after` (a sequence number, or "now"), oldest first, as
   * they happen: long-polls GET /v1/events with `wait`. Ends when `signal` is
   * aborted (without an error) or when the loop breaks.
   */
  async *watchEvents(options = {}) {
    const { container, signal } = options;
    const limit = options.limit ?? 100;
    const wait = Math.min(Math.max(options.wait ?? 25, 0), MAX_EVENTS_WAIT);
    let after = options.after ?? 0;
    try {
      if (after === "now") after = await this.latestEventSeq({ signal });
      while (!signal?.aborted) {
        const page = await this.listEvents({ after, limit, container, wait }, { signal });
        for (const e of page.events) yield e;
        after = page.next;
      }
    } catch (e) {
      // Aborted by the caller: the stream ends, it does not fail.
      if (signal?.aborted) return;
      throw e;
    }
  }

  // Pools.

  /** GET /v1/pools: every pool key's numbers. */
  listPools(opts = {}) {
    return this.request("GET", "/v1/pools", opts);
  }

  /** GET /v1/pools/{pool}. */
  getPool(pool, opts = {}) {
    return this.request("GET", `/v1/pools/${seg(pool)}`, opts);
  }

  /** PUT /v1/pools/{pool} (admin). */
  putPool(pool, settings, opts = {}) {
    return this.request("PUT", `/v1/pools/${seg(pool)}${queryString({ dryRun: opts.dryRun })}`, {
      ...opts,
      json: settings ?? {},
    });
  }

  /** PATCH /v1/pools/{pool} (admin). */
  patchPool(pool, settings, opts = {}) {
    return this.request("PATCH", `/v1/pools/${seg(pool)}${queryString({ dryRun: opts.dryRun })}`, {
      ...opts,
      json: settings ?? {},
    });
  }

  /** DELETE /v1/pools/{pool} (admin). */
  deletePool(pool, opts = {}) {
    return this.request("DELETE", `/v1/pools/${seg(pool)}`, opts);
  }

  /** POST /v1/pools/{pool}/rollback (admin). */
  rollbackPool(pool, opts = {}) {
    return this.request("POST", `/v1/pools/${seg(pool)}/rollback`, opts);
  }

  /** POST /v1/reload (admin). */
  reload(opts = {}) {
    return this.request("POST", "/v1/reload", opts);
  }

  // Operating.

  /** GET /v1/stats/history. */
  history(opts = {}) {
    return this.request("GET", "/v1/stats/history", opts);
  }

  /** GET /v1/status. */
  status(opts = {}) {
    return this.request("GET", "/v1/status", opts);
  }

  /** GET /healthz. */
  healthz(opts = {}) {
    return this.request("GET", "/healthz", opts);
  }

  /** GET /readyz: throws a WarmpoolError (503) while not ready. */
  readyz(opts = {}) {
    return this.request("GET", "/readyz", opts);
  }

  /** GET /metrics: OpenMetrics text. */
  metrics(opts = {}) {
    return this.request("GET", "/metrics", { ...opts, as: "text" });
  }

  /** GET /openapi.json: the OpenAPI document the server serves. */
  openapi(opts = {}) {
    return this.request("GET", "/openapi.json", opts);
  }

  /**
   * Polls GET /readyz until it answers 200, for at most `timeoutMs`; a refused
   * connection counts as not ready yet.
   */
  async waitReady({ timeoutMs = 30_000, intervalMs = 50 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
      try {
        return await this.readyz({ timeoutMs: Math.max(1, Math.min(5000, deadline - Date.now())) });
      } catch (e) {
        last = e;
      }
      if (Date.now() >= deadline) {
        throw new Error(`warmpool at ${this.baseUrl} not ready within ${timeoutMs} ms: ${last?.message ?? last}`);
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  // The store (admin).

  /** POST /v1/sql: one read-only statement. */
  sql(statement, opts = {}) {
    return this.request("POST", "/v1/sql", { ...opts, json: { sql: statement } });
  }

  /** GET /v1/tables. */
  listTables(opts = {}) {
    return this.request("GET", "/v1/tables", opts);
  }

  /** GET /v1/tables/{name}/rows. */
  tableRows(name, query = {}, opts = {}) {
    const { offset, limit } = query;
    return this.request("GET", `/v1/tables/${seg(name)}/rows${queryString({ offset, limit })}`, opts);
  }
}

/** An AbortSignal aborted when any of `signals` is (AbortSignal.any is Node 20.3+). */
function anySignal(signals) {
  if (typeof AbortSignal.any === "function") return AbortSignal.any(signals);
  const c = new AbortController();
  for (const s of signals) {
    if (s.aborted) {
      c.abort(s.reason);
      break;
    }
    s.addEventListener("abort", () => c.abort(s.reason), { once: true });
  }
  return c.signal;
}

/**
 * Claims a container, runs `fn(claimed, client)` and releases the container
 * afterwards, whether `fn` returned or threw. Answers what `fn` answered. A
 * failed release after a failed `fn` is attached to fn's error as
 * `releaseError`; after a successful `fn` it is thrown.
 */
export async function withContainer(client, request, fn) {
  const claimed = await client.claim(request ?? {});
  let result;
  try {
    result = await fn(claimed, client);
  } catch (e) {
    try {
      await client.releaseContainer(claimed.id);
    } catch (releaseError) {
      if (e !== null && typeof e === "object") e.releaseError = releaseError;
    }
    throw e;
  }
  await client.releaseContainer(claimed.id);
  return result;
}
