// The client's requests and error handling, with a recording fetch (no server).
import { test } from "node:test";
import assert from "node:assert/strict";

import { WarmpoolClient, WarmpoolError, withContainer } from "../src/index.js";

/** A fetch that records each request and answers from `answer(req)`. */
function fakeFetch(answer) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const req = { url, method: init.method ?? "GET", headers: new Headers(init.headers), body: init.body };
    calls.push(req);
    return answer(req);
  };
  return { fetch, calls };
}

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

test("requests carry the token, JSON bodies and encoded queries; the base URL's slashes are trimmed", async () => {
  const { fetch, calls } = fakeFetch(() => json(200, { containers: [] }));
  const wp = new WarmpoolClient({ baseUrl: "http://wp.test:1/", token: "t0123456789abcdef", fetch });
  await wp.listContainers({ label: "team in (a,b),!gpu", state: "live", limit: undefined });
  await wp.claim({ pool: "py", labels: { team: "a" } });
  await wp.extendContainer("abc", 30);
  await wp.keepaliveContainer("abc");
  await wp.putPool("py", { target: 2 }, { dryRun: true });
  await wp.listEvents({ after: 5, wait: 0 });
  assert.equal(calls[0].url, "http://wp.test:1/v1/containers?state=live&label=team+in+%28a%2Cb%29%2C%21gpu");
  assert.equal(new URL(calls[0].url).searchParams.get("label"), "team in (a,b),!gpu");
  assert.equal(calls[0].headers.get("authorization"), "Bearer t0123456789abcdef");
  assert.equal(calls[1].method, "POST");
  assert.equal(calls[1].url, "http://wp.test:1/container");
  assert.equal(calls[1].headers.get("content-type"), "application/json");
  assert.deepEqual(JSON.parse(calls[1].body), { pool: "py", labels: { team: "a" } });
  assert.deepEqual(JSON.parse(calls[2].body), { seconds: 30 });
  assert.deepEqual(JSON.parse(calls[3].body), {});
  assert.equal(calls[4].method, "PUT");
  assert.equal(calls[4].url, "http://wp.test:1/v1/pools/py?dryRun=true");
  assert.equal(calls[5].url, "http://wp.test:1/v1/events?after=5&wait=0");
});

test("path segments are escaped, and an empty id is refused before any request", async () => {
  const { fetch, calls } = fakeFetch(() => json(200, {}));
  const wp = new WarmpoolClient({ baseUrl: "http://wp.test", fetch });
  await wp.getContainer("../v1/pools");
  assert.equal(calls[0].url, "http://wp.test/v1/containers/..%2Fv1%2Fpools");
  assert.equal(calls[0].headers.has("authorization"), false);
  assert.throws(() => wp.getContainer(""), TypeError);
  assert.equal(wp.proxyUrl("abc", "a/b?x=1"), "http://wp.test/container/abc/a/b?x=1");
  assert.equal(wp.proxyUrl("abc"), "http://wp.test/container/abc/");
});

test("a problem document becomes a WarmpoolError with its fields, Retry-After and request id", async () => {
  const problem = {
    type: "https://warmpool.dev/problems/at-capacity",
    title: "Service Unavailable",
    status: 503,
    detail: "at the global cap",
  };
  const { fetch } = fakeFetch(() =>
    json(503, problem, { "content-type": "application/problem+json", "retry-after": "2", "x-request-id": "r1" }),
  );
  const wp = new WarmpoolClient({ fetch });
  const e = await wp.claim().catch((e) => e);
  assert.ok(e instanceof WarmpoolError);
  assert.ok(e instanceof Error);
  assert.deepEqual(e.problem, problem);
  assert.equal(e.status, 503);
  assert.equal(e.kind, "at-capacity");
  assert.equal(e.field, null);
  assert.equal(e.retryAfter, 2);
  assert.equal(e.requestId, "r1");
  assert.match(e.message, /POST .*\/container: 503 Service Unavailable: at the global cap/);
});

test("an error answer that is not a problem document still becomes a WarmpoolError", async () => {
  const { fetch } = fakeFetch(() => new Response("bad gateway\n", { status: 502, statusText: "Bad Gateway" }));
  const e = await new WarmpoolClient({ fetch }).listPools().catch((e) => e);
  assert.ok(e instanceof WarmpoolError);
  assert.equal(e.status, 502);
  assert.equal(e.type, "about:blank");
  assert.equal(e.title, "Bad Gateway");
  assert.equal(e.detail, "bad gateway\n");
  assert.equal(e.retryAfter, null);
});

test("metrics are text; the admin pass-through answers the app's own errors, throws warmpool's", async () => {
  let appStatus = 404;
  const { fetch, calls } = fakeFetch((req) => {
    if (req.url.endsWith("/metrics")) return new Response("# TYPE x counter\n", { status: 200 });
    if (appStatus === 409) {
      return json(409, { type: "t/not-running", title: "Conflict", status: 409, detail: "no" }, {
        "content-type": "application/problem+json",
      });
    }
    return new Response("the app's own 404", { status: appStatus, headers: { "content-type": "text/plain" } });
  });
  const wp = new WarmpoolClient({ fetch, token: "admin-token-0123456789" });
  assert.equal(await wp.metrics(), "# TYPE x counter\n");
  const res = await wp.adminPassthrough("abc", "/update-text", "hi");
  assert.equal(res.status, 404);
  assert.equal(await res.text(), "the app's own 404");
  assert.equal(calls[1].url, "http://127.0.0.1:8787/v1/containers/abc/admin/update-text");
  assert.equal(calls[1].body, "hi");
  appStatus = 409;
  await assert.rejects(wp.adminPassthrough("abc", "update-text", "hi"), (e) => e instanceof WarmpoolError && e.status === 409);
});

test("withContainer releases after fn returns or throws, and keeps fn's error when the release fails too", async () => {
  const released = [];
  let releaseFails = false;
  const { fetch } = fakeFetch((req) => {
    if (req.method === "POST") return json(200, { id: `c${released.length}`, pool: "default", location: "default", expiresAt: "x", warm: true });
    if (req.method === "DELETE") {
      released.push(req.url.split("/").pop());
      if (releaseFails) return json(500, { type: "t/internal", title: "Internal", status: 500, detail: "store down" });
      return json(200, {});
    }
    throw new Error(`unexpected ${req.method} ${req.url}`);
  });
  const wp = new WarmpoolClient({ fetch });
  assert.equal(await withContainer(wp, {}, (c) => `used ${c.id}`), "used c0");
  const boom = new Error("boom");
  await assert.rejects(withContainer(wp, {}, () => Promise.reject(boom)), (e) => e === boom);
  assert.deepEqual(released, ["c0", "c1"]);
  releaseFails = true;
  const boom2 = new Error("boom2");
  await assert.rejects(withContainer(wp, {}, () => { throw boom2; }), (e) => e === boom2 && e.releaseError?.status === 500);
  await assert.rejects(withContainer(wp, {}, () => 1), (e) => e instanceof WarmpoolError && e.status === 500);
  assert.equal(released.length, 4);
});

test("watchEvents pages with next as after, and stops quietly when aborted", async () => {
  const pages = [
    { events: [{ seq: 1, at: "t", containerId: "c", to: "ready" }, { seq: 2, at: "t", containerId: "c", to: "allocated" }], next: 2 },
    { events: [{ seq: 3, at: "t", containerId: "c", to: "stopping" }], next: 3 },
  ];
  const stop = new AbortController();
  const { fetch, calls } = fakeFetch(async (req) => {
    const page = pages.shift();
    if (page) return json(200, page);
    // The long poll: held until aborted.
    return new Promise((_, reject) => {
      const s = stop.signal;
      s.addEventListener("abort", () => reject(s.reason), { once: true });
    });
  });
  const wp = new WarmpoolClient({ fetch });
  const seen = [];
  for await (const e of wp.watchEvents({ after: 0, wait: 7, container: "c", signal: stop.signal })) {
    seen.push(e.seq);
    if (e.seq === 3) setTimeout(() => stop.abort(), 10);
  }
  assert.deepEqual(seen, [1, 2, 3]);
  const afters = calls.map((c) => new URL(c.url).searchParams.get("after"));
  assert.deepEqual(afters, ["0", "2", "3"]);
  assert.equal(new URL(calls[0].url).searchParams.get("wait"), "7");
  assert.equal(new URL(calls[0].url).searchParams.get("container"), "c");
});
