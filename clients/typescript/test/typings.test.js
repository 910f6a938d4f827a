// The hand-written typings (src/index.d.ts) against the OpenAPI document: every
// schema is an exported type with the schema's properties, and every operation a
// client method tagged `@operationId`, except the routes listed in NOT_CLIENT_OPS.
// The document is WARMPOOL_OPENAPI, default ../../docs/openapi.json from here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import * as client from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const openapiPath = process.env.WARMPOOL_OPENAPI
  ? resolve(process.env.WARMPOOL_OPENAPI)
  : resolve(here, "../../../docs/openapi.json");
const doc = JSON.parse(readFileSync(openapiPath, "utf8"));
const dts = readFileSync(join(here, "../src/index.d.ts"), "utf8");

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const PROXY_REASON = "the reverse proxy to a container's own app: any method, any body, any answer; " +
  "the client offers proxy()/proxyUrl() (a plain fetch), not a typed operation";
const STUDIO_REASON = "the studio, a browser console (HTML, CSS, JS, cookie login), not an API";

/** Operations that are not client operations, each with the reason. */
const NOT_CLIENT_OPS = {
  proxy_root_get: PROXY_REASON,
  proxy_root_put: PROXY_REASON,
  proxy_root_post: PROXY_REASON,
  proxy_root_delete: PROXY_REASON,
  proxy_root_options: PROXY_REASON,
  proxy_root_head: PROXY_REASON,
  proxy_root_patch: PROXY_REASON,
  proxy_root_slash_get: PROXY_REASON,
  proxy_root_slash_put: PROXY_REASON,
  proxy_root_slash_post: PROXY_REASON,
  proxy_root_slash_delete: PROXY_REASON,
  proxy_root_slash_options: PROXY_REASON,
  proxy_root_slash_head: PROXY_REASON,
  proxy_root_slash_patch: PROXY_REASON,
  proxy_path_get: PROXY_REASON,
  proxy_path_put: PROXY_REASON,
  proxy_path_post: PROXY_REASON,
  proxy_path_delete: PROXY_REASON,
  proxy_path_options: PROXY_REASON,
  proxy_path_head: PROXY_REASON,
  proxy_path_patch: PROXY_REASON,
  studio: STUDIO_REASON,
  studio_login: STUDIO_REASON,
  studio_logout: STUDIO_REASON,
  studio_css: STUDIO_REASON,
  studio_js: STUDIO_REASON,
  docs: "an HTML page for people (the API reference), not an API",
  openapi_alias: "the same document as openapi_json, which openapi() reads",
};

function operations() {
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) {
      if (item[m]?.operationId) ops.push({ id: item[m].operationId, method: m.toUpperCase(), path });
    }
  }
  return ops;
}

/** Names exported by the .d.ts. */
function exportedNames() {
  const names = new Set();
  for (const m of dts.matchAll(/^export\s+(?:declare\s+)?(?:interface|type|class|function|const)\s+([A-Za-z_$][\w$]*)/gm)) {
    names.add(m[1]);
  }
  return names;
}

/** operationId -> the method declared right after the JSDoc block that tags it. */
function taggedMethods() {
  const tagged = new Map();
  for (const m of dts.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*([A-Za-z_$][\w$]*)\s*[<(]/g)) {
    for (const t of m[1].matchAll(/@operationId\s+([\w-]+)/g)) {
      assert.ok(!tagged.has(t[1]), `@operationId ${t[1]} is tagged twice`);
      tagged.set(t[1], m[2]);
    }
  }
  return tagged;
}

/** The properties of `export interface NAME { ... }`: name -> optional. */
function interfaceProps(name) {
  const start = dts.search(new RegExp(`^export\\s+interface\\s+${name}\\b[^{]*\\{`, "m"));
  if (start < 0) return null;
  // The body's text at depth 1 only (members of nested object types left out).
  let body = "";
  let depth = 1;
  for (let i = dts.indexOf("{", start) + 1; i < dts.length; i++) {
    const ch = dts[i];
    if (ch === "{") depth++;
    else if (ch === "}" && --depth === 0) break;
    else if (depth === 1) body += ch;
  }
  const props = new Map();
  // Comments removed; then top-level members, one per line.
  const clean = body.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  for (const m of clean.matchAll(/^\s*([A-Za-z_$][\w$]*)(\??)\s*:/gm)) props.set(m[1], m[2] === "?");
  return props;
}

test("the OpenAPI document is there and has operations and schemas", () => {
  assert.ok(operations().length > 20, `${openapiPath}: too few operations`);
  assert.ok(Object.keys(doc.components.schemas).length > 10, `${openapiPath}: too few schemas`);
});

test("every components.schemas name is an exported type of index.d.ts", () => {
  const exported = exportedNames();
  const missing = Object.keys(doc.components.schemas).filter((n) => !exported.has(n));
  assert.deepEqual(missing, [], `schemas without an exported type in src/index.d.ts: ${missing.join(", ")}`);
});

test("every property of ClaimRequest is in its interface", () => {
  const props = interfaceProps("ClaimRequest");
  assert.ok(props, "no `export interface ClaimRequest` in src/index.d.ts");
  const schema = doc.components.schemas.ClaimRequest;
  const missing = Object.keys(schema.properties).filter((p) => !props.has(p));
  assert.deepEqual(missing, [], `ClaimRequest properties missing from the typings: ${missing.join(", ")}`);
});

test("every object schema's interface has exactly its properties, the required ones not optional", () => {
  const problems = [];
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    if (schema.type !== "object") continue;
    const props = interfaceProps(name);
    if (!props) {
      problems.push(`${name}: not an interface`);
      continue;
    }
    const want = Object.keys(schema.properties ?? {});
    const required = new Set(schema.required ?? []);
    for (const p of want) {
      if (!props.has(p)) problems.push(`${name}.${p}: missing`);
      else if (required.has(p) && props.get(p)) problems.push(`${name}.${p}: required, typed optional`);
      else if (!required.has(p) && !props.get(p)) problems.push(`${name}.${p}: optional, typed required`);
    }
    for (const p of props.keys()) {
      if (!want.includes(p)) problems.push(`${name}.${p}: not in the schema`);
    }
  }
  assert.deepEqual(problems, []);
});

test("every operation is a client method tagged @operationId, or listed as not a client operation", () => {
  const tagged = taggedMethods();
  const untagged = operations()
    .filter((op) => !tagged.has(op.id) && !(op.id in NOT_CLIENT_OPS))
    .map((op) => `${op.id} (${op.method} ${op.path})`);
  assert.deepEqual(untagged, [], `operations with no client method: ${untagged.join(", ")}`);
});

test("the tagged methods exist at run time, and tag only operations of the document", () => {
  const ids = new Set(operations().map((op) => op.id));
  for (const [id, method] of taggedMethods()) {
    assert.ok(ids.has(id), `@operationId ${id} (on ${method}) names no operation of the document`);
    assert.ok(!(id in NOT_CLIENT_OPS), `${id} is both tagged and listed as not a client operation`);
    assert.equal(typeof client.WarmpoolClient.prototype[method], "function", `${method} (${id}) is not a method of WarmpoolClient`);
  }
});

test("the operations listed as not client operations are in the document", () => {
  const ids = new Set(operations().map((op) => op.id));
  const stale = Object.keys(NOT_CLIENT_OPS).filter((id) => !ids.has(id));
  assert.deepEqual(stale, [], `listed but not in the document: ${stale.join(", ")}`);
});

test("the module's exports and the typings' declared values agree", () => {
  const exported = exportedNames();
  for (const name of Object.keys(client)) {
    assert.ok(exported.has(name), `${name} is exported by index.js but not declared in index.d.ts`);
  }
  for (const m of dts.matchAll(/^export\s+declare\s+(?:class|function|const)\s+([\w$]+)/gm)) {
    assert.ok(m[1] in client, `${m[1]} is declared in index.d.ts but not exported by index.js`);
  }
  // Every method declared on the class exists.
  const cls = dts.slice(dts.indexOf("export declare class WarmpoolClient"));
  const body = cls.slice(0, cls.indexOf("\n}\n"));
  for (const m of body.matchAll(/^ {2}([a-zA-Z_$][\w$]*)\s*[<(]/gm)) {
    assert.equal(typeof client.WarmpoolClient.prototype[m[1]], "function", `${m[1]} is declared but not implemented`);
  }
});

test("the typings compile with tsc --strict, and refuse what test/usage.ts marks", (t) => {
  const which = spawnSync("sh", ["-c", "command -v tsc"], { encoding: "utf8" });
  if (which.status !== 0) {
    if (process.env.WARMPOOL_REQUIRE_TSC === "1") assert.fail("tsc is not installed (apt-get install node-typescript)");
    t.skip("tsc is not installed (apt-get install node-typescript; WARMPOOL_REQUIRE_TSC=1 makes this fail)");
    return;
  }
  const args = ["--noEmit", "--strict", "--target", "es2022", "--module", "es2022", "--moduleResolution", "node",
    "--lib", "es2022,dom"];
  try {
    execFileSync("tsc", [...args, join(here, "usage.ts")], { encoding: "utf8", stdio: "pipe" });
  } catch (e) {
    assert.fail(`tsc refused the typings:\n${e.stdout}${e.stderr}`);
  }
});
