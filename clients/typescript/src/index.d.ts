// Typings of warmpool's HTTP API and of this client, written by hand from
// docs/openapi.json (OpenAPI 3.1, the source of truth). test/typings.test.js
// checks that every schema of `components.schemas` is exported here and that
// every operation maps to a method tagged `@operationId`.

// ---------------------------------------------------------------------------
// Schemas (components.schemas), one exported type each, named as in the document.
// Optional properties are those the schema does not require; `| null` where its
// type allows null.

/** A location: `default` or one of the regions. */
export type Location = "default" | "wnam" | "enam" | "sam" | "weur" | "eeur" | "apac" | "oc" | "afr" | "me";

/** A container's state. */
export type ContainerState = "starting" | "ready" | "allocated" | "stopping" | "stopped" | "failed";

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Body of `POST /container` (all fields optional). */
export interface ClaimRequest {
  /** The pool to claim from (default: the default pool); `^[A-Za-z0-9_-]{1,63}$`. */
  pool?: string | null;
  location?: Location | null;
  /** At most the pool's maximum lifetime (its default). */
  maxLifetimeInSeconds?: number | null;
  /** Stop the container after this long without proxied traffic. */
  idleTimeoutInSeconds?: number | null;
  /** Text the container serves, set through its `/admin/update-text` before the answer. */
  text?: string | null;
  /** Environment for the app, name to value (names `[A-Za-z_][A-Za-z0-9_]*`, not `PORT` nor `WARMPOOL_*`). */
  env?: Record<string, string> | null;
  /** Like `env`, but never persisted: warmpool keeps only its names. */
  secretEnv?: Record<string, string> | null;
  /** Files to put in the container before the answer: relative path to UTF-8 content. */
  files?: Record<string, string> | null;
  /** Labels of the claimed container (Kubernetes label syntax). */
  labels?: Record<string, string> | null;
  /** Free JSON kept with the container (at most 16 KiB serialised). */
  metadata?: Json;
  /** Claim from any pool whose labels match this selector, instead of naming `pool`. */
  selector?: string | null;
  /** Selectors tried in order, each within `selector`, for a warm container. At most 16. */
  preferred?: string[] | null;
}

/** Answer of `POST /container`. */
export interface ClaimResponse {
  id: string;
  pool: string;
  location: string;
  /** RFC 3339. */
  expiresAt: string;
  /** Whether the container came from the warm pool (false: started on demand). */
  warm: boolean;
}

/** A column of a store table. */
export interface ColumnView {
  name: string;
  /** The declared type. */
  type: string;
  notNull: boolean;
  primaryKey: boolean;
}

export interface ContainerList {
  containers: ContainerView[];
}

/** One container, as the API shows it. Times are RFC 3339. */
export interface ContainerView {
  id: string;
  pool: string;
  location: string;
  state: ContainerState | string;
  runtime: string;
  onDemand: boolean;
  createdAt: string;
  address?: string | null;
  allocatedAt?: string | null;
  readyAt?: string | null;
  expiresAt?: string | null;
  stoppedAt?: string | null;
  stopReason?: string | null;
  exitCode?: number | null;
  /** Its claim's labels (empty: none). */
  labels?: Record<string, string>;
  /** Its claim's metadata, as the client sent it. */
  metadata?: Json;
  /** The revision of its pool's template it was started from. */
  revision?: number;
  /** The runtime's own name for it (`pid:<pid>:<start time>` for processes). */
  runtimeHandle?: string | null;
}

export interface EventList {
  events: EventView[];
  /** Pass as `after` to get the next page. */
  next: number;
}

/** A state change. */
export interface EventView {
  seq: number;
  at: string;
  containerId: string;
  from?: ContainerState | string | null;
  to: ContainerState | string;
  reason?: string | null;
}

/** Body of `POST /v1/containers/{id}/extend`. */
export interface ExtendRequest {
  /** Seconds added to the container's expiry (a whole number from 1). */
  seconds: number;
}

export interface Health {
  status: string;
}

/** `GET /v1/stats/history`: samples of the last hour, kept in memory. */
export interface History {
  intervalSeconds: number;
  /** Oldest first; the last one is now. */
  samples: HistorySample[];
}

/** The state at one moment, and the claims of the interval it ends. */
export interface HistorySample {
  /** RFC 3339. */
  at: string;
  pools: PoolSample[];
  claims: number;
  claimP50Ms?: number | null;
  claimP99Ms?: number | null;
}

/** Body of `POST /v1/containers/{id}/keepalive`: empty (or no body at all). */
export interface KeepaliveRequest {}

/** The studio's login form. */
export interface LoginForm {
  /** An admin token. */
  token: string;
}

/** `GET /v1/pools/{pool}`: a pool's settings, revision, rollout, numbers per location and recent events. */
export interface PoolDetail {
  name: string;
  /** Every resolved setting. */
  settings: PoolSettings;
  revision: number;
  rollout: RolloutStatus;
  locations: PoolView[];
  events: PoolEvent[];
  createdAt: string;
  updatedAt: string;
}

/** Something that happened to a pool (created, changed, a rollout step, deleted). */
export interface PoolEvent {
  seq: number;
  at: string;
  pool: string;
  kind: string;
  detail?: string | null;
  revision?: number | null;
}

export interface PoolList {
  pools: PoolView[];
  /** Live containers (every state but stopped) across pools. */
  live: number;
  maxInstances: number;
}

/** One pool key in a history sample. */
export interface PoolSample {
  pool: string;
  location: string;
  ready: number;
  allocated: number;
  /** A running count since warmpool started. */
  failures: number;
}

/**
 * A pool's settings, keyed as in a config file's `[pools.NAME]` table (so
 * snake_case, unlike the rest of the API). PUT takes any subset; GET answers
 * every resolved setting.
 */
export interface PoolSettings {
  app_env?: Record<string, string> | null;
  batch_size?: number | null;
  batch_spacing?: number | null;
  /** `optional` (default), `required` or `none`. */
  bind?: "optional" | "required" | "none" | string | null;
  command?: string[] | null;
  disk_mb?: number | null;
  files_dir?: string | null;
  health_path?: string | null;
  idle_timeout?: number | null;
  image?: string | null;
  labels?: Record<string, string> | null;
  /** Input only: locations that keep a warm pool of `target` containers. */
  locations?: string[] | null;
  max_lifetime?: number | null;
  max_surge?: string | null;
  memory_mib?: number | null;
  pids_limit?: number | null;
  progress_deadline?: number | null;
  /** `if-missing` (default), `always` or `never`. */
  pull?: "if-missing" | "always" | "never" | string | null;
  /** Docker: no privilege escalation (default true). */
  no_new_privileges?: boolean | null;
  /** Docker: every Linux capability dropped (default true). */
  drop_capabilities?: boolean | null;
  /** Docker: `true`, `false` or `auto` (default: the sample image only). */
  read_only_root?: "auto" | "true" | "false" | string | null;
  /** Docker: `uid[:gid]` or a name the image knows; empty: the image's own. */
  user?: string | null;
  /** Docker: writable tmpfs directories on a read-only root (default `["/tmp"]`). */
  tmpfs?: string[] | null;
  rollout_failure_limit?: number | null;
  /** `null` removes the policy (PATCH). */
  scaling?: ScalingSettings | null;
  start_timeout?: number | null;
  /** Input only: ready containers to keep in each of `locations`. */
  target?: number | null;
  targets?: Record<string, number> | null;
  vcpu?: number | null;
}

/** One pool key and its numbers. */
export interface PoolView {
  pool: string;
  location: string;
  target: number;
  ready: number;
  starting: number;
  allocated: number;
  stopping: number;
  failed: number;
  hits: number;
  misses: number;
  failedStarts: number;
  desired?: number;
  reason?: string;
  revision?: number;
  lastError?: string | null;
  lastErrorAt?: string | null;
  /** The last pull of the pool's image (Docker), while it runs and after. */
  pull?: PullView | null;
}

/** An image pull, as a pool's status shows it. */
export interface PullView {
  image: string;
  /** `pulling`, `pulled` or `failed`. */
  phase: "pulling" | "pulled" | "failed" | string;
  /** Progress while pulling, the time it took once pulled, the registry's message once failed. */
  detail: string;
  startedAt: string;
  endedAt?: string | null;
}

/** An RFC 9457 problem document (`application/problem+json`). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** The offending input field, for validation errors. */
  field?: string | null;
}

/** Answer of `PUT` and `PATCH /v1/pools/{pool}`. */
export interface PutPoolResponse {
  pool: PoolDetail;
  created: boolean;
  dryRun: boolean;
  changes: SettingChange[];
  newRevision: boolean;
}

/** Answer of `POST /v1/reload`. */
export interface ReloadResponse {
  applied: boolean;
  reason: string;
  pools: PutPoolResponse[];
}

/** Where a pool's rollout of its current revision stands. */
export interface RolloutStatus {
  revision: number;
  stableRevision: number;
  updatedReady: number;
  staleReady: number;
  outdatedAllocated: number;
  /** `progressing`, `complete` or `failed`. */
  phase: "progressing" | "complete" | "failed" | string;
  deadline?: string | null;
  error?: string | null;
  startedAt?: string | null;
}

/** A pool's scaling policy, as its `[pools.NAME.scaling]` table. */
export interface ScalingSettings {
  buffer?: string | null;
  locations?: "configured" | "auto" | string | null;
  max?: number | null;
  min?: number | null;
  safety?: number | null;
  scale_down_delay?: number | null;
}

/** One setting that differs between a pool's settings and new ones. */
export interface SettingChange {
  key: string;
  old?: Json;
  new?: Json;
}

/** Body of `POST /v1/sql`: one read-only statement. */
export interface SqlRequest {
  sql: string;
}

/** Rows answered by `POST /v1/sql` or `GET /v1/tables/{name}/rows`. */
export interface SqlResult {
  columns: string[];
  rows: Array<Array<null | number | string>>;
  truncated: boolean;
  elapsedMs: number;
}

/** `GET /v1/status`: warmpool's background tasks and how their last runs went. */
export interface Status {
  tasks: TaskView[];
}

export interface TableList {
  tables: TableView[];
}

/** A table of the store. */
export interface TableView {
  name: string;
  columns: ColumnView[];
  rows: number;
}

/** The last finished run of a background task. */
export interface TaskRunView {
  startedAt: string;
  durationMs: number;
  /** `ok` or `error`. */
  outcome: "ok" | "error" | string;
  detail: string;
}

/** One background task. */
export interface TaskView {
  name: string;
  periodSeconds: number;
  runs: number;
  errors: number;
  last?: TaskRunView | null;
  runningSince?: string | null;
}

// ---------------------------------------------------------------------------
// The client.

export interface ClientOptions {
  /** Default `http://127.0.0.1:8787`. */
  baseUrl?: string;
  /** An API or admin token, sent as `Authorization: Bearer`. */
  token?: string | null;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
  /** Bound of each request, in ms (default 60000, past the server's 30 s claim wait; 0: none). Long polls get their wait on top. */
  timeoutMs?: number;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this request. */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

export interface PoolWriteOptions extends RequestOptions {
  /** Say what would change, change nothing. */
  dryRun?: boolean;
}

/** Query of `GET /v1/containers`. */
export interface ContainerFilter {
  /** A state, or `live` (every state but stopped). */
  state?: ContainerState | "live";
  location?: Location;
  pool?: string;
  /** A Kubernetes label selector: `team=a,tier!=free`, `tier in (free,pro)`, `!gpu`. */
  label?: string;
  /** 1 to 10000 (default 1000). */
  limit?: number;
}

/** Query of `GET /v1/events`. */
export interface EventQuery {
  /** Events after this sequence number (default 0). */
  after?: number;
  /** 1 to 1000 (default 100). */
  limit?: number;
  /** Only this container's events (a UUID). */
  container?: string;
  /** Hold an empty answer up to this many seconds (0 to 60). */
  wait?: number;
}

export interface WatchEventsOptions {
  /** A sequence number (default 0: every event kept), or `"now"`: only events from now on. */
  after?: number | "now";
  container?: string;
  /** Events per request, 1 to 1000 (default 100). */
  limit?: number;
  /** Seconds each long poll is held (default 25, at most 60). */
  wait?: number;
  /** Aborting it ends the iteration (without an error). */
  signal?: AbortSignal;
}

/** Query of `GET /v1/tables/{name}/rows`. */
export interface TableRowsQuery {
  offset?: number;
  /** 1 to 500 (default 100). */
  limit?: number;
}

/** A warmpool error answer, carrying its problem document. */
export declare class WarmpoolError extends Error {
  constructor(
    problem: Problem,
    init?: { retryAfter?: number | null; requestId?: string | null; method?: string; url?: string },
  );
  readonly name: "WarmpoolError";
  /** The problem document as answered (or made from a non-problem answer). */
  readonly problem: Problem;
  readonly status: number;
  /** The problem's `type`, a URI: `https://warmpool.dev/problems/invalid-value`. */
  readonly type: string;
  /** The last segment of `type`: `invalid-value`, `unauthorized`, `unknown-pool`, `setup-failed`... */
  readonly kind: string;
  readonly title: string;
  readonly detail: string;
  readonly field: string | null;
  /** The `Retry-After` header, in seconds (503s). */
  readonly retryAfter: number | null;
  readonly requestId: string | null;
  readonly method: string | null;
  readonly url: string | null;
  /** Set by withContainer: the release that failed after this error. */
  releaseError?: unknown;
}

export declare class WarmpoolClient {
  constructor(options?: ClientOptions);
  readonly baseUrl: string;
  token: string | null;

  /** A URL of this server for a path that starts with `/`. */
  url(path: string): string;
  /** One JSON request to warmpool's API; an error answer throws a WarmpoolError. */
  request<T = unknown>(
    method: string,
    path: string,
    opts?: RequestOptions & { json?: unknown; as?: "json" | "text" },
  ): Promise<T>;

  /**
   * Claims a container: a ready one at once, or one started on demand.
   * @operationId claim
   */
  claim(request?: ClaimRequest | null, opts?: RequestOptions): Promise<ClaimResponse>;

  /**
   * Lists containers, oldest first.
   * @operationId list_containers
   */
  listContainers(filter?: ContainerFilter, opts?: RequestOptions): Promise<ContainerList>;

  /** @operationId get_container */
  getContainer(id: string, opts?: RequestOptions): Promise<ContainerView>;

  /**
   * Stops and releases a container early (idempotent): its final view.
   * @operationId release_container
   */
  releaseContainer(id: string, opts?: RequestOptions): Promise<ContainerView>;

  /**
   * Moves a claimed container's expiry `seconds` later.
   * @operationId extend_container
   */
  extendContainer(id: string, seconds: number, opts?: RequestOptions): Promise<ContainerView>;

  /**
   * Resets a claimed container's idle timer.
   * @operationId keepalive_container
   */
  keepaliveContainer(id: string, opts?: RequestOptions): Promise<ContainerView>;

  /**
   * Forwards to the container's own `/admin/{path}` (admin token); answers the
   * container's Response whatever its status.
   * @operationId admin_passthrough
   */
  adminPassthrough(id: string, path: string, body?: BodyInit | null, opts?: RequestOptions): Promise<Response>;

  /** The URL of a container's app through warmpool's proxy. */
  proxyUrl(id: string, path?: string): string;
  /** A request to a container's app through the proxy, as a plain Response. */
  proxy(id: string, path?: string, init?: RequestInit): Promise<Response>;

  /**
   * One page of lifecycle events; pass `next` as `after` for the next one.
   * @operationId events
   */
  listEvents(query?: EventQuery, opts?: RequestOptions): Promise<EventList>;
  /** The sequence number of the latest event (0: none yet). */
  latestEventSeq(opts?: RequestOptions): Promise<number>;
  /** Every event after `after`, as they happen (long-polls `GET /v1/events?wait=`). */
  watchEvents(options?: WatchEventsOptions): AsyncGenerator<EventView, void, undefined>;

  /** @operationId pools */
  listPools(opts?: RequestOptions): Promise<PoolList>;
  /** @operationId get_pool */
  getPool(pool: string, opts?: RequestOptions): Promise<PoolDetail>;
  /**
   * Creates a pool or replaces its settings (admin).
   * @operationId put_pool
   */
  putPool(pool: string, settings: PoolSettings, opts?: PoolWriteOptions): Promise<PutPoolResponse>;
  /**
   * Changes the settings it names (admin).
   * @operationId patch_pool
   */
  patchPool(pool: string, settings: PoolSettings, opts?: PoolWriteOptions): Promise<PutPoolResponse>;
  /**
   * Deletes a pool: it drains (admin).
   * @operationId delete_pool
   */
  deletePool(pool: string, opts?: RequestOptions): Promise<PoolDetail>;
  /**
   * Back to the pool's previous revision (admin).
   * @operationId rollback
   */
  rollbackPool(pool: string, opts?: RequestOptions): Promise<PoolDetail>;
  /**
   * Reads the config file again and applies what changed (admin).
   * @operationId reload
   */
  reload(opts?: RequestOptions): Promise<ReloadResponse>;

  /** @operationId history */
  history(opts?: RequestOptions): Promise<History>;
  /** @operationId status */
  status(opts?: RequestOptions): Promise<Status>;
  /** @operationId healthz */
  healthz(opts?: RequestOptions): Promise<Health>;
  /**
   * Throws a WarmpoolError (503) while not ready.
   * @operationId readyz
   */
  readyz(opts?: RequestOptions): Promise<Health>;
  /**
   * Prometheus metrics, OpenMetrics text.
   * @operationId metrics
   */
  metrics(opts?: RequestOptions): Promise<string>;
  /**
   * The OpenAPI document the server serves.
   * @operationId openapi_json
   */
  openapi(opts?: RequestOptions): Promise<Record<string, unknown>>;
  /** Polls `GET /readyz` until it answers 200, for at most `timeoutMs` (default 30000). */
  waitReady(options?: { timeoutMs?: number; intervalMs?: number }): Promise<Health>;

  /**
   * One read-only SQL statement over the store (admin).
   * @operationId sql
   */
  sql(statement: string, opts?: RequestOptions): Promise<SqlResult>;
  /** @operationId tables */
  listTables(opts?: RequestOptions): Promise<TableList>;
  /** @operationId table_rows */
  tableRows(name: string, query?: TableRowsQuery, opts?: RequestOptions): Promise<SqlResult>;
}

/**
 * Claims a container, runs `fn` with it and releases it afterwards, whether
 * `fn` returned or threw. Answers what `fn` answered.
 */
export declare function withContainer<T>(
  client: WarmpoolClient,
  request: ClaimRequest | null | undefined,
  fn: (container: ClaimResponse, client: WarmpoolClient) => T | Promise<T>,
): Promise<T>;
