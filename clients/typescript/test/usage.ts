// Compiled (never run) by test/typings.test.js with `tsc --noEmit --strict`:
// the typings must accept this ordinary use of the client and refuse the
// mistakes marked @ts-expect-error.
import {
  WarmpoolClient,
  WarmpoolError,
  withContainer,
  type ClaimRequest,
  type ClaimResponse,
  type ContainerView,
  type EventView,
  type PoolSettings,
  type Problem,
} from "../src/index.js";

async function usage(): Promise<void> {
  const wp = new WarmpoolClient({ baseUrl: "http://127.0.0.1:8787", token: "a-token-of-16-chars" });
  const req: ClaimRequest = {
    pool: "default",
    location: "weur",
    maxLifetimeInSeconds: 600,
    env: { GREETING: "hi" },
    labels: { team: "a" },
    metadata: { user: "u1", n: [1, 2, null] },
  };
  const c: ClaimResponse = await wp.claim(req);
  const warm: boolean = c.warm;
  const list = await wp.listContainers({ state: "live", label: "team=a" });
  const views: ContainerView[] = list.containers;
  const extended: ContainerView = await wp.extendContainer(c.id, 60);
  const exp: string | null | undefined = extended.expiresAt;
  await wp.keepaliveContainer(c.id);
  const res: Response = await wp.proxy(c.id, "/a/b?x=1", { method: "PUT", body: "hi" });
  await res.text();
  await wp.releaseContainer(c.id);

  const page = await wp.listEvents({ after: 0, limit: 10, wait: 1 });
  const next: number = page.next;
  const stop = new AbortController();
  for await (const e of wp.watchEvents({ after: "now", signal: stop.signal })) {
    const ev: EventView = e;
    if (ev.to === "allocated") break;
  }

  const settings: PoolSettings = { targets: { default: 2 }, scaling: { min: 1, buffer: "20%" } };
  const put = await wp.putPool("py", settings, { dryRun: true });
  const changed: string[] = put.changes.map((ch) => ch.key);
  const rows = await wp.sql("SELECT 1");
  const cell: null | number | string = rows.rows[0][0];
  const text: string = await wp.metrics();

  const n: number = await withContainer(wp, { pool: "default" }, async (claimed, client) => {
    await client.getContainer(claimed.id);
    return 1;
  });

  try {
    await wp.claim({ env: { "1BAD": "x" } });
  } catch (e) {
    if (e instanceof WarmpoolError) {
      const p: Problem = e.problem;
      const status: number = e.status;
      const field: string | null = e.field;
      const kind: string = e.kind;
      const retry: number | null = e.retryAfter;
      void [p, status, field, kind, retry];
    }
  }

  // @ts-expect-error: an unknown claim field
  await wp.claim({ pools: "default" });
  // @ts-expect-error: seconds is a number
  await wp.extendContainer(c.id, "60");
  // @ts-expect-error: not a location
  await wp.listContainers({ location: "mars" });
  // @ts-expect-error: not a state
  await wp.listContainers({ state: "running" });

  void [warm, views, exp, next, changed, cell, text, n];
}

void usage;
