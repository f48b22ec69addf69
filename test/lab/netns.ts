// Low-level helpers for the network-namespace lab used by the end-to-end tests.
//
// Everything here only ever touches network namespaces that the lab itself created
// (names `tv<4 hex>-...`), and processes that it started (by pid, or by the process
// group it created for them). Nothing here touches the host's own interfaces or routes.

import { spawn, execFileSync, type StdioOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

// ---------------------------------------------------------------------------
// run / nsExec
// ---------------------------------------------------------------------------

export interface RunOptions {
  /** Kill the command (SIGKILL) after this many ms. Default 15 000. */
  timeoutMs?: number;
  /** Written to the command's stdin (stdin is closed otherwise). */
  input?: string;
  /** Do not throw on a non-zero exit; the result carries the code. Default true (throws). */
  check?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit code; null if killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export class RunError extends Error {
  constructor(
    readonly cmd: readonly string[],
    readonly result: RunResult,
  ) {
    const why = result.timedOut
      ? 'timed out'
      : result.signal
        ? `killed by ${result.signal}`
        : `exited with code ${result.code}`;
    const err = result.stderr.trim() || result.stdout.trim();
    super(`command ${why}: ${cmd.join(' ')}${err ? `\n${err}` : ''}`);
    this.name = 'RunError';
  }
}

/** Runs a command (no shell), collecting stdout/stderr; throws RunError on failure unless check=false. */
export function run(cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const { timeoutMs = 15_000, input, check = true } = opts;
  if (cmd.length === 0) return Promise.reject(new Error('run: empty command'));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd.join(' ')}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result: RunResult = { stdout, stderr, code, signal, timedOut };
      if (check && (code !== 0 || timedOut)) reject(new RunError(cmd, result));
      else resolve(result);
    });
    if (input !== undefined) {
      child.stdin!.on('error', () => {
        /* EPIPE if the command exits early: reported through its exit code */
      });
      child.stdin!.end(input);
    }
  });
}

/** Runs a command inside network namespace `ns` (`ip netns exec NS ...`). */
export function nsExec(ns: string, cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(['ip', 'netns', 'exec', ns, ...cmd], opts);
}

/** Synchronous variant, for exit handlers. Never throws; returns stdout ('' on failure). */
export function runSync(cmd: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  try {
    return execFileSync(cmd[0]!, cmd.slice(1), {
      input: opts.input,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 10_000,
      encoding: 'utf8',
    });
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------
// nsSpawn: long-running processes inside a namespace
// ---------------------------------------------------------------------------

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** stdout and stderr are appended to this file. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface SpawnHandle {
  readonly pid: number;
  readonly ns: string;
  readonly cmd: readonly string[];
  readonly logFile: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  readonly running: boolean;
  /** Sends `signal` (default SIGTERM) to the process (and its process group), SIGKILL after graceMs (default 2000). */
  kill(signal?: NodeJS.Signals, graceMs?: number): Promise<ExitInfo>;
  /** SIGKILL now, synchronously (exit handlers). */
  killSync(): void;
  /** Current content of the log file. */
  log(): string;
  /** Waits until the log matches `re`; throws (with the log) after timeoutMs (default 10 000) or if the process exits first. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  // The child is started detached, so it leads its own process group (pgid == pid):
  // signalling -pid reaches it and whatever it forked, and nothing else.
  try {
    process.kill(-pid, signal);
    return;
  } catch {
    /* group gone: fall through to the pid itself */
  }
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

/**
 * Starts `cmd` inside namespace `ns` via `ip netns exec` (which execs in place, so the
 * returned pid is the command's own), with stdout+stderr appended to opts.logFile.
 */
export function nsSpawn(ns: string, cmd: readonly string[], opts: SpawnOptions): SpawnHandle {
  if (cmd.length === 0) throw new Error('nsSpawn: empty command');
  fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
  const fd = fs.openSync(opts.logFile, 'a');
  let child;
  try {
    const stdio: StdioOptions = ['ignore', fd, fd];
    child = spawn('ip', ['netns', 'exec', ns, ...cmd], {
      stdio,
      detached: true,
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
  } finally {
    fs.closeSync(fd);
  }
  let running = true;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.on('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
    child.on('error', (e) => {
      running = false;
      try {
        fs.appendFileSync(opts.logFile, `\n[lab] spawn error: ${e.message}\n`);
      } catch {
        /* ignore */
      }
      resolve({ code: -1, signal: null });
    });
  });
  const pid = child.pid;
  if (pid === undefined) {
    // spawn failed synchronously (e.g. ENOENT is reported via 'error'); keep a usable handle
    running = false;
  }
  const handle: SpawnHandle = {
    pid: pid ?? -1,
    ns,
    cmd: [...cmd],
    logFile: opts.logFile,
    exited,
    get running() {
      return running;
    },
    async kill(signal: NodeJS.Signals = 'SIGTERM', graceMs = 2000): Promise<ExitInfo> {
      if (!running || pid === undefined) return exited;
      signalGroup(pid, signal);
      let timer: NodeJS.Timeout | undefined;
      const forced = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
      const first = await Promise.race([exited, forced]);
      clearTimeout(timer);
      if (first === 'timeout') {
        signalGroup(pid, 'SIGKILL');
        return exited;
      }
      // the leader is gone; make sure nothing it forked into its group survives
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* no such group */
      }
      return first;
    },
    killSync() {
      if (running && pid !== undefined) signalGroup(pid, 'SIGKILL');
    },
    log() {
      try {
        return fs.readFileSync(opts.logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async waitForLog(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = handle.log().match(re);
        if (m) return m;
        if (!running) throw new Error(`process ${cmd.join(' ')} exited before its log matched ${re}:\n${handle.log()}`);
        if (Date.now() > deadline) throw new Error(`timeout waiting for ${re} in ${opts.logFile}:\n${handle.log()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
  return handle;
}

// ---------------------------------------------------------------------------
// Cleanup registry
// ---------------------------------------------------------------------------

export interface UndoAction {
  name: string;
  run: () => Promise<void> | void;
  /** Used from process 'exit' (where nothing async can run). */
  runSync?: () => void;
}

const activeRegistries = new Set<Cleanup>();
let handlersInstalled = false;
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function runAllSync(): void {
  for (const r of [...activeRegistries]) r.runSync();
}

function onSignal(sig: NodeJS.Signals): void {
  // Synchronous on purpose: whoever sent the signal (a test runner, a CI timeout, a
  // terminal) may follow up with SIGKILL within a fraction of a second, so the
  // namespaces go now, before any other callback gets a chance to run.
  if (activeRegistries.size > 0) {
    process.stderr.write(`[lab] ${sig}: removing lab network namespaces\n`);
    runAllSync();
  }
  const others = process.listeners(sig).filter((l) => l !== onSignal).length;
  if (others === 0) {
    // nobody else handles it: re-raise with the default disposition, so our parent
    // sees the real cause of death
    handlersInstalled = false;
    for (const s of SIGNALS) process.removeListener(s, onSignal);
    process.removeListener('exit', runAllSync);
    process.removeListener('uncaughtExceptionMonitor', onUncaughtMonitor);
    process.kill(process.pid, sig);
    setTimeout(() => process.exit(128 + signalNumber(sig)), 1000).unref();
  } else {
    removeHandlersIfIdle();
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as Record<string, number>)[sig] ?? 0;
}

function onUncaughtMonitor(): void {
  // Only when nobody handles the exception (the process is about to die). A test runner
  // with its own handler keeps running, and the lab's owner cleans up normally.
  if (process.listenerCount('uncaughtException') === 0) runAllSync();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on('exit', runAllSync);
  process.on('uncaughtExceptionMonitor', onUncaughtMonitor);
}

function removeHandlersIfIdle(): void {
  if (!handlersInstalled || activeRegistries.size > 0) return;
  handlersInstalled = false;
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  process.removeListener('exit', runAllSync);
  process.removeListener('uncaughtExceptionMonitor', onUncaughtMonitor);
}

/**
 * A LIFO list of undo actions. Runs on `run()` (normal end), and automatically (the
 * synchronous variants) on SIGINT/SIGTERM/SIGHUP (then the signal is re-raised if
 * nobody else listens for it), on an uncaught exception nobody handles, and on 'exit'.
 * Process handlers are installed only while some registry holds actions.
 */
export class Cleanup {
  private actions: UndoAction[] = [];
  private running: Promise<Error[]> | null = null;

  constructor(readonly label = 'lab') {}

  /** Registers an undo action; returns a function that unregisters it (without running it). */
  add(action: UndoAction): () => void {
    this.actions.push(action);
    activeRegistries.add(this);
    installHandlers();
    return () => {
      const i = this.actions.indexOf(action);
      if (i >= 0) this.actions.splice(i, 1);
      this.settle();
    };
  }

  /** Shorthand for add({name, run, runSync}). */
  defer(name: string, fn: () => Promise<void> | void, syncFn?: () => void): () => void {
    return this.add({ name, run: fn, runSync: syncFn });
  }

  get size(): number {
    return this.actions.length;
  }

  /** Runs all actions, last added first; errors are collected, never stop the rest. Idempotent. */
  run(): Promise<Error[]> {
    if (this.running) return this.running;
    this.running = (async () => {
      const errors: Error[] = [];
      // An action leaves the list only once it has finished, so a signal or 'exit'
      // arriving meanwhile still runs its synchronous variant.
      for (let a = this.actions.at(-1); a; a = this.actions.at(-1)) {
        try {
          await a.run();
        } catch (e) {
          errors.push(new Error(`${this.label}: undo '${a.name}' failed: ${(e as Error).message ?? e}`));
        }
        const i = this.actions.lastIndexOf(a);
        if (i >= 0) this.actions.splice(i, 1);
      }
      return errors;
    })().finally(() => {
      this.running = null;
      this.settle();
    });
    return this.running;
  }

  /** Synchronous best effort (process 'exit'): runs the remaining actions' runSync. */
  runSync(): void {
    for (let a = this.actions.pop(); a; a = this.actions.pop()) {
      try {
        a.runSync?.();
      } catch {
        /* best effort */
      }
    }
    this.settle();
  }

  private settle(): void {
    if (this.actions.length === 0 && !this.running) {
      activeRegistries.delete(this);
      removeHandlersIfIdle();
    }
  }
}

// ---------------------------------------------------------------------------
// Lab state files, stale-lab reaping
// ---------------------------------------------------------------------------

export const LAB_STATE_DIR = '/tmp/tinyvine-lab';
/** Every lab namespace is named `<prefix>-...` with a prefix matching this. */
export const LAB_PREFIX_RE = /^tv[0-9a-f]{4}$/;
const LAB_NS_RE = /^(tv[0-9a-f]{4})-[a-z0-9-]+$/;

export interface LabState {
  prefix: string;
  ownerPid: number;
  /** Start time of the owner (field 22 of /proc/PID/stat), to detect pid reuse. */
  ownerStart: string | null;
  createdAt: string;
  namespaces: string[];
  pids: number[];
  logsDir: string;
}

export function labStateFile(prefix: string): string {
  return path.join(LAB_STATE_DIR, `${prefix}.json`);
}

export function procStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null; // field 22 overall; rest[0] is field 3
  } catch {
    return null;
  }
}

export function isOwnerAlive(pid: number, start: string | null): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (start === null) return true;
  const now = procStartTime(pid);
  return now === null || now === start;
}

/** Creates the state file exclusively; false if a lab with this prefix already exists. */
export function claimLabState(state: LabState): boolean {
  fs.mkdirSync(LAB_STATE_DIR, { recursive: true });
  try {
    fs.writeFileSync(labStateFile(state.prefix), JSON.stringify(state, null, 2), { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

export function writeLabState(state: LabState): void {
  const file = labStateFile(state.prefix);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 2));
  fs.renameSync(tmp, file);
}

export function readLabStates(): LabState[] {
  let names: string[];
  try {
    names = fs.readdirSync(LAB_STATE_DIR);
  } catch {
    return [];
  }
  const out: LabState[] = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    const prefix = n.slice(0, -5);
    if (!LAB_PREFIX_RE.test(prefix)) continue;
    try {
      const s = JSON.parse(fs.readFileSync(path.join(LAB_STATE_DIR, n), 'utf8')) as LabState;
      out.push({ ...s, prefix });
    } catch {
      // unreadable/half-written: treat as owned by nobody
      out.push({ prefix, ownerPid: 0, ownerStart: null, createdAt: '', namespaces: [], pids: [], logsDir: '' });
    }
  }
  return out;
}

/** All network namespace names on the machine (`ip netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list'], { check: false, timeoutMs: 5000 });
  return parseNetnsList(r.stdout);
}

export function listNamespacesSync(): string[] {
  return parseNetnsList(runSync(['ip', 'netns', 'list'], { timeoutMs: 5000 }));
}

function parseNetnsList(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

/** Namespaces that belong to lab `prefix` (exact `<prefix>-` match, lab naming only). */
export function namespacesOf(prefix: string, all: readonly string[]): string[] {
  return all.filter((n) => {
    const m = LAB_NS_RE.exec(n);
    return m !== null && m[1] === prefix;
  });
}

/**
 * Kills every process inside the given lab namespaces (they can only have been started
 * by the lab) and deletes the namespaces. Idempotent; async.
 */
export async function destroyNamespaces(namespaces: readonly string[]): Promise<void> {
  if (namespaces.length === 0) return;
  const existing = new Set(await listNamespaces());
  const targets = namespaces.filter((n) => existing.has(n));
  if (targets.length === 0) return;
  const pidLists = await Promise.all(
    targets.map((n) => run(['ip', 'netns', 'pids', n], { check: false, timeoutMs: 5000 })),
  );
  const pids = pidLists.flatMap((r) => r.stdout.split(/\s+/).filter(Boolean).map(Number));
  for (const pid of pids) {
    if (pid > 1 && pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  await run(['ip', '-force', '-batch', '-'], {
    input: targets.map((n) => `netns del ${n}\n`).join(''),
    check: false,
    timeoutMs: 15_000,
  });
  const still = (await listNamespaces()).filter((n) => targets.includes(n));
  if (still.length > 0) throw new Error(`could not delete namespaces: ${still.join(', ')}`);
}

/** Synchronous variant of destroyNamespaces (for process 'exit'). */
export function destroyNamespacesSync(namespaces: readonly string[]): void {
  if (namespaces.length === 0) return;
  const existing = new Set(listNamespacesSync());
  const targets = namespaces.filter((n) => existing.has(n));
  if (targets.length === 0) return;
  for (const n of targets) {
    const pids = runSync(['ip', 'netns', 'pids', n], { timeoutMs: 5000 }).split(/\s+/).filter(Boolean).map(Number);
    for (const pid of pids) {
      if (pid > 1 && pid !== process.pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }
  runSync(['ip', '-force', '-batch', '-'], { input: targets.map((n) => `netns del ${n}\n`).join(''), timeoutMs: 15_000 });
}

function removeStateFiles(prefix: string, logsDir: string | undefined): void {
  try {
    fs.rmSync(labStateFile(prefix), { force: true });
  } catch {
    /* ignore */
  }
  // only ever remove a logs dir that lives under the lab state dir
  if (logsDir && path.resolve(logsDir).startsWith(LAB_STATE_DIR + path.sep)) {
    try {
      fs.rmSync(logsDir, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  }
}

export interface ReapOptions {
  /** Also remove lab-named namespaces (`tvXXXX-...`) that have no state file at all. Default true. */
  orphans?: boolean;
  /** Remove labs whose owner is still alive too. Default false. */
  force?: boolean;
  /** Keep the logs of reaped labs. Default false. */
  keepLogs?: boolean;
}

/**
 * Removes leftovers of labs whose owner process is dead: their namespaces (after killing
 * the processes inside them), state file and logs. Returns the reaped prefixes.
 * A lab's state file is written before its first namespace, so a namespace without one
 * is an orphan, never a lab under construction.
 */
export async function reapStaleLabs(opts: ReapOptions = {}): Promise<string[]> {
  const { orphans = true, force = false, keepLogs = false } = opts;
  const states = readLabStates();
  const all = await listNamespaces();
  const reaped: string[] = [];
  const known = new Set(states.map((s) => s.prefix));
  for (const s of states) {
    if (!force && isOwnerAlive(s.ownerPid, s.ownerStart)) continue;
    await destroyNamespaces(namespacesOf(s.prefix, all));
    removeStateFiles(s.prefix, keepLogs ? undefined : s.logsDir || path.join(LAB_STATE_DIR, 'logs', s.prefix));
    reaped.push(s.prefix);
  }
  if (orphans) {
    const orphanPrefixes = new Set<string>();
    for (const n of all) {
      const m = LAB_NS_RE.exec(n);
      if (m && !known.has(m[1]!)) orphanPrefixes.add(m[1]!);
    }
    for (const p of orphanPrefixes) {
      // re-check: a lab may have been claimed since we read the state dir
      if (fs.existsSync(labStateFile(p))) continue;
      await destroyNamespaces(namespacesOf(p, all));
      reaped.push(p);
    }
  }
  return reaped;
}

export { removeStateFiles as removeLabFiles };
