// Starts a real warmpool (the binary named by WARMPOOL_BIN) for the live tests:
// `serve` on a loopback port the OS picks, a temp data dir, the process runtime
// (the bundled sample app), API and admin tokens. No sleeps: every wait polls
// with a deadline.
import { spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

import { WarmpoolClient } from "../src/index.js";

/** The binary to test, or a clear failure. */
export function warmpoolBin() {
  const bin = process.env.WARMPOOL_BIN;
  if (!bin) {
    throw new Error(
      "WARMPOOL_BIN is not set: the live tests need a warmpool binary " +
        "(run-tests.sh BIN, or WARMPOOL_BIN=target/release/warmpool node --test)",
    );
  }
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(`WARMPOOL_BIN=${bin} is not an executable file`);
  }
  return bin;
}

/**
 * Polls `probe` (an async function answering a truthy value when done) until it
 * answers, for at most `timeoutMs`; throws naming `what` and the last answer.
 */
export async function until(what, probe, { timeoutMs = 20_000, intervalMs = 25 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const token = (prefix) => `${prefix}-${randomBytes(12).toString("hex")}`;

/**
 * A running warmpool: `url`, `apiToken`, `adminToken`, `client` (API token),
 * `admin` (admin token), `stop()`.
 */
export async function startWarmpool({ target = 3, env = {}, startTimeoutMs = 30_000 } = {}) {
  const bin = warmpoolBin();
  const dataDir = mkdtempSync(join(tmpdir(), "warmpool-ts-"));
  const apiToken = token("ts-api");
  const adminToken = token("ts-admin");
  // Nothing of the caller's warmpool settings leaks in.
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("WARMPOOL_") && !k.startsWith("POOL_")),
  );
  const child = spawn(bin, ["serve"], {
    env: {
      ...base,
      WARMPOOL_LISTEN: "127.0.0.1:0",
      WARMPOOL_DATA_DIR: join(dataDir, "data"),
      WARMPOOL_RUNTIME: "process",
      WARMPOOL_API_TOKEN: apiToken,
      WARMPOOL_ADMIN_TOKEN: adminToken,
      POOL_TARGET_INSTANCES: String(target),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr = (stderr + d).slice(-20_000)));
  let exited = null;
  const exit = new Promise((resolve) => child.on("exit", (code, signal) => resolve((exited = { code, signal }))));
  const killOnExit = () => child.kill("SIGKILL");
  process.on("exit", killOnExit);

  const stop = async () => {
    process.off("exit", killOnExit);
    if (exited === null) {
      // SIGTERM: warmpool stops its containers before it exits.
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    const url = await until(
      "warmpool to say where it listens",
      () => {
        if (exited) throw new Error(`warmpool exited (${JSON.stringify(exited)}): ${stderr.slice(-2000)}`);
        return /^warmpool listening on (http:\/\/\S+)$/m.exec(stdout)?.[1];
      },
      { timeoutMs: startTimeoutMs },
    );
    const client = new WarmpoolClient({ baseUrl: url, token: apiToken });
    const admin = new WarmpoolClient({ baseUrl: url, token: adminToken });
    await client.waitReady({ timeoutMs: startTimeoutMs });
    return { url, apiToken, adminToken, client, admin, stop, logs: () => stderr };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Waits until the default pool has at least `n` ready containers. */
export function untilReady(client, n = 1, timeoutMs = 30_000) {
  return until(
    `${n} ready container(s) in the default pool`,
    async () => {
      const { pools } = await client.listPools();
      return pools.some((p) => p.pool === "default" && p.location === "default" && p.ready >= n);
    },
    { timeoutMs },
  );
}
