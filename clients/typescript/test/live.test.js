// The client against a real warmpool (WARMPOOL_BIN): one server for the file,
// process runtime, API and admin tokens, a warm pool of 3.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { randomBytes, randomUUID } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { WarmpoolClient, WarmpoolError, withContainer } from "../src/index.js";
import { startWarmpool, until, untilReady } from "./server.js";

const here = dirname(fileURLToPath(import.meta.url));
const rand = () => randomBytes(4).toString("hex");

/** Asserts that `promise` rejects with a WarmpoolError of `status`; answers it. */
async function problem(promise, status) {
  let err;
  await assert.rejects(promise, (e) => {
    err = e;
    return true;
  });
  assert.ok(err instanceof WarmpoolError, `expected a WarmpoolError, got ${err}`);
  assert.equal(err.status, status, `expected ${status}: ${err.message}`);
  assert.equal(err.problem.status, status);
  for (const k of ["type", "title", "detail"]) assert.equal(typeof err.problem[k], "string", k);
  return err;
}

/** Waits until container `id` is stopped (or failed). */
function untilStopped(client, id) {
  return until(`container ${id} stopped`, async () => {
    const c = await client.getContainer(id);
    return ["stopped", "failed"].includes(c.state) && c;
  });
}

describe("warmpool, live", () => {
  let wp;
  before(async () => {
    wp = await startWarmpool({ target: 3 });
  });
  after(async () => {
    await wp?.stop();
  });

  test("a claim from the warm pool is warm, allocated, and shown", async () => {
    await untilReady(wp.client, 1);
    const c = await wp.client.claim({ maxLifetimeInSeconds: 600 });
    assert.equal(c.warm, true);
    assert.equal(c.pool, "default");
    assert.equal(c.location, "default");
    assert.match(c.id, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(c.expiresAt)), c.expiresAt);
    const view = await wp.client.getContainer(c.id);
    assert.equal(view.state, "allocated");
    assert.equal(view.id, c.id);
    await wp.client.releaseContainer(c.id);
  });

  test("claim-time set-up reaches the app: env, secretEnv, text, labels, metadata", async () => {
    const text = `hello from the TypeScript client ${rand()}\n`;
    const c = await wp.client.claim({
      env: { GREETING: "hi" },
      secretEnv: { API_KEY: "s3cret" },
      text,
      labels: { team: "ts" },
      metadata: { user: "u1", n: [1, 2] },
    });
    try {
      const env = await (await wp.client.proxy(c.id, "/env")).json();
      assert.equal(env.GREETING, "hi");
      assert.equal(env.API_KEY, "s3cret");
      const root = await wp.client.proxy(c.id, "/");
      assert.equal(root.status, 200);
      assert.equal(await root.text(), text);
      const view = await wp.client.getContainer(c.id);
      assert.deepEqual(view.labels, { team: "ts" });
      assert.deepEqual(view.metadata, { user: "u1", n: [1, 2] });
    } finally {
      await wp.client.releaseContainer(c.id);
    }
  });

  test("the label filter selects by the claims' labels", async () => {
    const a = `a-${rand()}`;
    const b = `b-${rand()}`;
    const ca = await wp.client.claim({ labels: { team: a, tier: "free" } });
    const cb = await wp.client.claim({ labels: { team: b } });
    try {
      const ids = async (label, extra = {}) =>
        (await wp.client.listContainers({ label, ...extra })).containers.map((c) => c.id).sort();
      assert.deepEqual(await ids(`team=${a}`), [ca.id]);
      assert.deepEqual(await ids(`team=${b}`, { state: "allocated" }), [cb.id]);
      assert.deepEqual(await ids(`team in (${a},${b})`), [ca.id, cb.id].sort());
      assert.deepEqual(await ids(`team in (${a},${b}),!tier`), [cb.id]);
      assert.deepEqual(await ids(`team=${a}`, { state: "ready" }), []);
      const bad = await problem(wp.client.listContainers({ label: "team in (" }), 422);
    assert.equal(bad.kind, "invalid-value");
      assert.equal(bad.field, "label");
    } finally {
      await wp.client.releaseContainer(ca.id);
      await wp.client.releaseContainer(cb.id);
    }
  });

  test("release stops the container, again is fine, and the proxy then answers 410", async () => {
    const c = await wp.client.claim();
    const released = await wp.client.releaseContainer(c.id);
    assert.equal(released.id, c.id);
    assert.ok(["stopping", "stopped"].includes(released.state), released.state);
    const again = await wp.client.releaseContainer(c.id);
    assert.equal(again.id, c.id);
    const stopped = await untilStopped(wp.client, c.id);
    assert.ok(stopped.stopReason, "a stop reason");
    const gone = await wp.client.proxy(c.id, "/");
    assert.equal(gone.status, 410);
    await gone.body?.cancel();
    const missing = await problem(wp.client.releaseContainer(randomUUID()), 404);
    assert.equal(missing.title.length > 0, true);
  });

  test("an invalid env name is a 422 problem naming the field", async () => {
    const e = await problem(wp.client.claim({ env: { "1BAD": "x" } }), 422);
    assert.equal(e.field, "env");
    assert.equal(e.kind, "invalid-value");
    assert.match(e.detail, /1BAD/);
    assert.match(e.requestId ?? "", /^[0-9a-f]{32}$/);
    assert.equal(e.type, e.problem.type);
    assert.ok(e.message.includes("422"), e.message);
  });

  test("without the token, or with a wrong one, the API answers 401", async () => {
    const anonymous = new WarmpoolClient({ baseUrl: wp.url });
    await problem(anonymous.claim(), 401);
    await problem(anonymous.listContainers(), 401);
    const wrong = new WarmpoolClient({ baseUrl: wp.url, token: "not-the-token-0123456789" });
    await problem(wrong.listPools(), 401);
    // The probes stay open.
    assert.equal((await anonymous.healthz()).status, "ok");
    // The admin surfaces need the admin token.
    await problem(wp.client.sql("SELECT 1"), 401);
  });

  test("withContainer releases the container when fn throws, and answers fn's error", async () => {
    let id;
    const boom = new Error("boom");
    await assert.rejects(
      withContainer(wp.client, { labels: { via: "withContainer" } }, async (c) => {
        id = c.id;
        assert.equal((await wp.client.getContainer(c.id)).state, "allocated");
        throw boom;
      }),
      (e) => e === boom,
    );
    assert.ok(id);
    await untilStopped(wp.client, id);
  });

  test("withContainer answers fn's value and releases the container", async () => {
    let id;
    const answer = await withContainer(wp.client, null, async (c, client) => {
      id = c.id;
      assert.equal(client, wp.client);
      const res = await client.proxy(c.id, "/a/b?x=1", { method: "PUT", body: "hi" });
      return res.status;
    });
    assert.equal(answer, 200);
    await untilStopped(wp.client, id);
  });

  test("the events iterator yields the claim's event within a deadline", async () => {
    const stop = new AbortController();
    const deadline = setTimeout(() => stop.abort(), 20_000);
    try {
      const from = await wp.client.latestEventSeq();
      const c = await wp.client.claim();
      let seen = null;
      for await (const e of wp.client.watchEvents({ after: from, wait: 5, signal: stop.signal })) {
        assert.ok(e.seq > from);
        if (e.containerId === c.id && e.to === "allocated") {
          seen = e;
          break;
        }
      }
      assert.ok(seen, "no claim event within 20 s");
      assert.equal(seen.from, "ready");
      assert.equal(seen.reason, "claimed");
      await wp.client.releaseContainer(c.id);
      // Filtered by container: its claim, then its stop.
      const own = await until("its stop event", async () => {
        const page = await wp.client.listEvents({ container: c.id, limit: 1000 });
        return page.events.some((e) => e.to === "stopped") && page;
      });
      assert.ok(own.events.every((e) => e.containerId === c.id));
      assert.equal(own.next, own.events.at(-1).seq);
    } finally {
      clearTimeout(deadline);
    }
  });

  test("aborting the events iterator during a long poll ends it without an error", async () => {
    const stop = new AbortController();
    const from = await wp.client.latestEventSeq();
    const started = Date.now();
    const seen = [];
    const iterate = (async () => {
      for await (const e of wp.client.watchEvents({ after: from, wait: 30, container: randomUUID(), signal: stop.signal })) {
        seen.push(e);
      }
    })();
    setTimeout(() => stop.abort(), 300);
    await iterate;
    assert.deepEqual(seen, []);
    assert.ok(Date.now() - started < 10_000, "the abort ended the long poll");
  });

  test("an events query out of range is a 422 naming the parameter", async () => {
    const e = await problem(wp.client.listEvents({ wait: 61 }), 422);
    assert.equal(e.field, "wait");
  });

  test("extend and keepalive", async () => {
    const c = await wp.client.claim({ maxLifetimeInSeconds: 600 });
    try {
      const extended = await wp.client.extendContainer(c.id, 60);
      assert.equal(Date.parse(extended.expiresAt) - Date.parse(c.expiresAt), 60_000);
      const tooLong = await problem(wp.client.extendContainer(c.id, 10_000_000), 422);
      assert.equal(tooLong.field, "seconds");
      const kept = await wp.client.keepaliveContainer(c.id);
      assert.equal(kept.state, "allocated");
      await problem(wp.client.keepaliveContainer(randomUUID()), 404);
    } finally {
      await wp.client.releaseContainer(c.id);
    }
    await untilStopped(wp.client, c.id);
    const gone = await problem(wp.client.extendContainer(c.id, 1), 410);
    assert.equal(typeof gone.detail, "string");
  });

  test("pools: list, get, put (dry and real), patch, delete, with the admin token", async () => {
    const list = await wp.client.listPools();
    const def = list.pools.find((p) => p.pool === "default" && p.location === "default");
    assert.ok(def, JSON.stringify(list));
    assert.equal(def.target, 3);
    assert.equal(typeof list.maxInstances, "number");
    const detail = await wp.client.getPool("default");
    assert.equal(detail.name, "default");
    assert.equal(typeof detail.rollout.phase, "string");
    const unknown = await problem(wp.client.getPool(`nope${rand()}`), 404);
    assert.equal(unknown.kind, "unknown-pool");
    assert.equal(unknown.type, "https://warmpool.dev/problems/unknown-pool");

    const name = `ts${rand()}`;
    const dry = await wp.admin.putPool(name, { target: 0, labels: { lang: "ts" } }, { dryRun: true });
    assert.equal(dry.dryRun, true);
    assert.equal(dry.created, true);
    await problem(wp.client.getPool(name), 404);
    // The API token does not open the admin surfaces.
    await problem(wp.client.putPool(name, { target: 0 }), 401);

    const put = await wp.admin.putPool(name, { target: 0, labels: { lang: "ts" } });
    assert.equal(put.created, true);
    assert.equal(put.dryRun, false);
    const patched = await wp.admin.patchPool(name, { max_lifetime: 120 });
    assert.ok(patched.changes.some((ch) => ch.key === "max_lifetime"), JSON.stringify(patched.changes));
    assert.equal((await wp.client.getPool(name)).settings.max_lifetime, 120);
    const bad = await problem(wp.admin.patchPool(name, { batch_size: -1 }), 422);
    assert.ok(bad.field, "names the setting");
    const norb = await problem(wp.admin.rollbackPool(name), 409);
    assert.equal(norb.kind, "no-previous-revision");
    const deleted = await wp.admin.deletePool(name);
    assert.equal(deleted.name, name);
    await problem(wp.client.getPool(name), 404);
  });

  test("status, history, health, metrics and the served OpenAPI document", async () => {
    const status = await wp.client.status();
    assert.ok(status.tasks.some((t) => t.name === "reconcile"), JSON.stringify(status));
    const history = await wp.client.history();
    assert.equal(typeof history.intervalSeconds, "number");
    assert.ok(Array.isArray(history.samples));
    assert.equal((await wp.client.readyz()).status, "ready");
    const metrics = await wp.client.metrics();
    assert.match(metrics, /warmpool_claims_total/);
    const served = await wp.client.openapi();
    const file = JSON.parse(
      readFileSync(process.env.WARMPOOL_OPENAPI ?? resolve(here, "../../../docs/openapi.json"), "utf8"),
    );
    // The typings are checked against the file: it must be what this server serves.
    assert.deepEqual(served, file, "the served OpenAPI document differs from docs/openapi.json");
  });

  test("the store, read-only, with the admin token", async () => {
    const r = await wp.admin.sql("SELECT 1 AS one, 'x' AS s, NULL AS n");
    assert.deepEqual(r.columns, ["one", "s", "n"]);
    assert.deepEqual(r.rows, [[1, "x", null]]);
    assert.equal(r.truncated, false);
    const ro = await problem(wp.admin.sql("DELETE FROM containers"), 403);
    assert.equal(typeof ro.detail, "string");
    assert.equal(ro.kind, "read-only");
    assert.equal((await problem(wp.admin.sql("SELEC nonsense"), 422)).kind, "invalid-sql");
    const { tables } = await wp.admin.listTables();
    assert.ok(tables.some((t) => t.name === "containers"), JSON.stringify(tables.map((t) => t.name)));
    const page = await wp.admin.tableRows("containers", { limit: 2 });
    assert.ok(page.rows.length <= 2);
    assert.ok(page.columns.includes("id"), JSON.stringify(page.columns));
    await problem(wp.admin.tableRows(`nope${rand()}`), 404);
  });

  test("the admin pass-through reaches the app's /admin, which the proxy refuses", async () => {
    const c = await wp.client.claim();
    try {
      const res = await wp.admin.adminPassthrough(c.id, "update-text", "set by the admin\n");
      assert.ok(res.ok, `update-text answered ${res.status}`);
      await res.body?.cancel();
      const root = await wp.client.proxy(c.id, "/");
      assert.equal(await root.text(), "set by the admin\n");
      const refused = await wp.client.proxy(c.id, "/admin/update-text", { method: "POST", body: "no" });
      assert.equal(refused.status, 403);
      await refused.body?.cancel();
      // The app's own 404 is passed through as an answer, not thrown.
      const own = await wp.admin.adminPassthrough(c.id, "no-such-hook", "");
      assert.equal(own.status, 404);
      await own.body?.cancel();
      await problem(wp.admin.adminPassthrough(randomUUID(), "update-text", "x"), 404);
    } finally {
      await wp.client.releaseContainer(c.id);
    }
  });
});

describe("warmpool at its global cap, live", () => {
  let wp;
  before(async () => {
    wp = await startWarmpool({ target: 1, env: { WARMPOOL_MAX_INSTANCES: "1", POOL_BATCH_SPACING_IN_SECONDS: "0" } });
  });
  after(async () => {
    await wp?.stop();
  });

  test("a claim past the cap is a 503 with Retry-After; withContainer then claims nothing", async () => {
    await untilReady(wp.client, 1);
    const c = await wp.client.claim();
    const full = await problem(wp.client.claim(), 503);
    assert.ok(Number.isInteger(full.retryAfter) && full.retryAfter >= 1, `Retry-After: ${full.retryAfter}`);
    let called = false;
    await assert.rejects(
      withContainer(wp.client, {}, () => {
        called = true;
      }),
      (e) => e instanceof WarmpoolError && e.status === 503,
    );
    assert.equal(called, false);
    await wp.client.releaseContainer(c.id);
    // Room again once it is stopped: the refill makes a ready one.
    await untilStopped(wp.client, c.id);
    await untilReady(wp.client, 1);
    const again = await withContainer(wp.client, {}, (claimed) => claimed.warm);
    assert.equal(again, true);
  });
});
