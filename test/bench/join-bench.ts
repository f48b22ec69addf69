// Join benchmark (part of `npm run bench`, alone with `--only join`):
//
//  1. join_rps, join_p50_ms, join_p99_ms: a download server (the built CLI, `tinyvine server`)
//     on 127.0.0.1:<free port>, with a sites.json mapping 127.0.0.0/8 to provider "bench" and one
//     fake FullVR kept healthy by heartbeats from here, loaded with GET /join by autocannon
//     (programmatic API, in this process) after a warm-up. Every response body is checked to be a
//     join script; a few are fetched and checked in full (FullVR header, one-time bundle URL).
//  2. time_to_join_ms, join_script_ms: in a namespace lab like test/lab/join.test.ts (clouds a
//     and b with their FullVRs, the download server in inet on 198.51.100.1:8080), b1 joins
//     with the one-liner, then a1 runs `curl -fsSL http://198.51.100.1:8080/join | sh` and pings
//     b1 across the overlay every 20 ms from the moment the script exits; median of N runs,
//     uninstalling (?uninstall=1) in between.
//
// Everything it starts (server process, lab, temp dirs) is removed on success, failure and
// SIGINT/SIGTERM/SIGHUP (the lab's Cleanup registry kills the server synchronously on exit).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { generateSigningKey } from '../../shared/join-token.js';
import { Cleanup } from '../lab/netns.js';
import { blueNetwork, waitFor, writeJoinLabState } from '../lab/overlay-harness.js';
import { createLab, labSupport, type Lab } from '../lab/topology.js';
import { BenchOverlay } from './bench-overlay.js';
import { cpuSampler, firstLine, median, round1 } from './measure.js';

export const JOIN_TARGETS = { rps: 2000, p99Ms: 50, timeToJoinMs: 1500 } as const;

export interface JoinBenchOptions {
  /** The built CLI (dist/tinyvine.mjs). */
  cli: string;
  /** Load duration for join_rps (seconds). */
  seconds: number;
  /** Warm-up before the measured load (seconds). Default 2. */
  warmupSeconds?: number;
  /** autocannon connections. Default 50. */
  connections?: number;
  /** time_to_join runs (median reported). Default 3. */
  runs?: number;
  keepLogs: boolean;
  /** Run the load-test server with --cpu-prof, profiles written into this directory. */
  cpuProfDir?: string;
  /** Registers a temp dir for removal at exit (also on signals). */
  onTempDir: (dir: string) => void;
}

export interface JoinBenchResult {
  json: Record<string, unknown>;
  lines: string[];
  errors: string[];
  problems: string[];
}

const FAKE_FULLVR = '192.0.2.10:4789';
const API_TOKEN = `bench-api-token-${randomBytes(8).toString('hex')}`;
const LAB_SERVER = 'http://198.51.100.1:8080';

const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Percentile (nearest rank) of an ascending array. */
function pct(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** A body is a join script for our FullVR: its head, the FullVR line, and the final call (complete). */
export function looksLikeJoinScript(body: string, fullvr = FAKE_FULLVR): boolean {
  return body.startsWith('#!/bin/sh\n# TinyViNe ') && body.endsWith('\nmain "$@"\n') && body.includes(`\n  FULLVR_ENDPOINT=${fullvr}\n`) && body.includes('\n  MODE=install\n');
}

// ---------------------------------------------------------------------------
// autocannon (loaded at run time from node_modules: it is not bundled into dist/bench.mjs)
// ---------------------------------------------------------------------------

interface AcResult {
  duration: number;
  start: Date;
  finish: Date;
  requests: { average: number; total: number; sent: number };
  latency: { average: number; p50: number; p90: number; p99: number; max: number };
  errors: number;
  timeouts: number;
  mismatches: number;
  non2xx: number;
  resets: number;
  '2xx': number;
  statusCodeStats?: Record<string, { count: number }>;
}
interface AcInstance extends EventEmitter {
  stop(): void;
}
type Autocannon = (opts: Record<string, unknown>, cb: (err: Error | null, res: AcResult) => void) => AcInstance;

function loadAutocannon(): Autocannon {
  const req = createRequire(import.meta.url);
  try {
    return req('autocannon') as Autocannon;
  } catch (e) {
    throw new Error(`autocannon is not installed (npm install --save-dev autocannon): ${firstLine(e)}`);
  }
}

interface LoadRun {
  result: AcResult;
  /** Latency (ms) of every 200 response, ascending. */
  latencies: number[];
  /** Responses per 1 s tick. */
  perSecond: number[];
  wallS: number;
  errorSamples: string[];
}

function runLoad(ac: Autocannon, url: string, seconds: number, connections: number): Promise<LoadRun> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const perSecond: number[] = [];
    const errorSamples: string[] = [];
    const t0 = process.hrtime.bigint();
    const inst = ac(
      {
        url,
        method: 'GET',
        connections,
        pipelining: 1,
        duration: seconds,
        timeout: 10,
        // every body: cheap structural check (counted as mismatches otherwise)
        verifyBody: (b: string) => looksLikeJoinScript(b),
      },
      (err, result) => {
        if (err) return reject(err);
        latencies.sort((a, b) => a - b);
        resolve({ result, latencies, perSecond, wallS: Number(process.hrtime.bigint() - t0) / 1e9, errorSamples });
      },
    );
    inst.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      if (statusCode === 200) latencies.push(responseTime);
    });
    inst.on('tick', (t: { counter: number }) => perSecond.push(t.counter));
    inst.on('reqError', (e: Error) => {
      if (errorSamples.length < 5) errorSamples.push(firstLine(e));
    });
    inst.on('reqMismatch', (body: string) => {
      if (errorSamples.length < 5) errorSamples.push(`not a join script: ${JSON.stringify(String(body).slice(0, 120))}`);
    });
  });
}

// ---------------------------------------------------------------------------
// helpers: free port, the server process, heartbeats, sampled checks
// ---------------------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

interface ServerProc {
  pid: number;
  readonly running: boolean;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  log(): string;
  waitForLog(re: RegExp, timeoutMs: number): Promise<void>;
  /** SIGTERM (graceful: writes a --cpu-prof profile), SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void>;
  killSync(): void;
}

/** Starts `node <cli> server --config <cfg>` in its own process group, output appended to logFile. */
function spawnServer(cli: string, cfgPath: string, logFile: string, nodeArgs: string[]): ServerProc {
  const fd = openSync(logFile, 'a');
  let child;
  try {
    child = spawn(process.execPath, [...nodeArgs, cli, 'server', '--config', cfgPath], { stdio: ['ignore', fd, fd], detached: true });
  } finally {
    closeSync(fd);
  }
  let running = child.pid !== undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
    child.on('error', () => {
      running = false;
      resolve({ code: -1, signal: null });
    });
  });
  const pid = child.pid ?? -1;
  const signal = (sig: NodeJS.Signals) => {
    if (pid <= 0) return;
    try {
      process.kill(-pid, sig); // its own process group (detached)
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* gone */
      }
    }
  };
  const log = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  return {
    pid,
    get running() {
      return running;
    },
    exited,
    log,
    async waitForLog(re, timeoutMs) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        if (re.test(log())) return;
        if (!running) throw new Error(`download server exited before it was ready:\n${log().split('\n').slice(-8).join('\n')}`);
        if (Date.now() > end) throw new Error(`download server not ready within ${timeoutMs} ms:\n${log().split('\n').slice(-8).join('\n')}`);
        await sleep(50);
      }
    },
    async stop(graceMs = 5000) {
      if (!running) return;
      signal('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const t = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
      const first = await Promise.race([exited, t]);
      clearTimeout(timer);
      if (first === 'timeout') {
        signal('SIGKILL');
        await exited;
      }
    },
    killSync() {
      if (running) signal('SIGKILL');
    },
  };
}

interface Heartbeats {
  ok: number;
  failed: number;
  lastError: string | null;
  stop(): void;
}

/** POSTs a heartbeat for FullVR `id` now and then every second (skipping a beat while one is in flight). */
function startHeartbeats(base: string, id: number): Heartbeats {
  let inFlight = false;
  const hb: Heartbeats = {
    ok: 0,
    failed: 0,
    lastError: null,
    stop: () => clearInterval(timer),
  };
  const beat = async () => {
    if (inFlight) return;
    inFlight = true;
    try {
      const r = await fetch(`${base}/api/v1/fullvrs/${id}/heartbeat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ members: 0, load: 0, peersUp: 0 }),
        signal: AbortSignal.timeout(3000),
      });
      await r.arrayBuffer();
      if (r.status === 200) hb.ok++;
      else {
        hb.failed++;
        hb.lastError = `HTTP ${r.status}`;
      }
    } catch (e) {
      hb.failed++;
      hb.lastError = firstLine(e);
    } finally {
      inFlight = false;
    }
  };
  const timer = setInterval(() => void beat(), 1000);
  void beat();
  return hb;
}

/**
 * Fetches /join `n` times and checks each in full: 200, shell script type, the FullVR header,
 * a complete join script, a fresh one-time bundle URL on this server; and that the first
 * bundle URL serves a TinyVR configured with our FullVR. Returns the bundle ids seen.
 */
async function checkSamples(base: string, n: number, seen: Set<string>, sizes: number[] = []): Promise<number> {
  const urlRe = new RegExp(`\\n  BUNDLE_URL=${base.replace(/[.]/g, '\\.')}/tinyvr/([A-Za-z0-9_-]{24})\\.mjs\\n`);
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${base}/join`, { signal: AbortSignal.timeout(10_000) });
    const body = await r.text();
    if (r.status !== 200) throw new Error(`GET /join: HTTP ${r.status}: ${body.trim().slice(0, 200)}`);
    if (!(r.headers.get('content-type') ?? '').startsWith('text/x-shellscript')) throw new Error(`GET /join: content-type ${r.headers.get('content-type')}`);
    if (!(r.headers.get('x-tinyvine-fullvr') ?? '').startsWith(`1 ${FAKE_FULLVR};`)) throw new Error(`GET /join: X-TinyViNe-FullVR is "${r.headers.get('x-tinyvine-fullvr')}"`);
    sizes.push(Buffer.byteLength(body));
    if (!looksLikeJoinScript(body)) throw new Error(`GET /join: body is not a complete join script: ${JSON.stringify(body.slice(0, 120))}`);
    const m = urlRe.exec(body);
    if (!m) throw new Error('GET /join: no one-time bundle URL on this server in the script');
    if (seen.has(m[1]!)) throw new Error(`GET /join: bundle id ${m[1]} handed out twice`);
    seen.add(m[1]!);
    if (i === 0) {
      const b = await fetch(`${base}/tinyvr/${m[1]}.mjs`, { signal: AbortSignal.timeout(10_000) });
      const text = await b.text();
      const head = text.slice(0, text.indexOf('\n'));
      if (b.status !== 200 || !head.startsWith('globalThis.__TINYVINE_CONFIG={') || !head.includes(FAKE_FULLVR)) {
        throw new Error(`GET /tinyvr/<id>.mjs: HTTP ${b.status}, first line ${JSON.stringify(head.slice(0, 80))}`);
      }
    }
  }
  return n;
}

// ---------------------------------------------------------------------------
// 1. join_rps / latency
// ---------------------------------------------------------------------------

interface RpsResult {
  rps: number;
  p50: number;
  p99: number;
  json: Record<string, unknown>;
  summary: string[];
}

async function measureRps(opt: JoinBenchOptions, cleanup: Cleanup, errors: string[], problems: string[]): Promise<RpsResult | null> {
  const ac = loadAutocannon();
  const connections = opt.connections ?? 50;
  const warmup = opt.warmupSeconds ?? 2;
  const dir = mkdtempSync(join(tmpdir(), 'tinyvine-joinrps-'));
  opt.onTempDir(dir);
  const catalog = join(dir, 'catalog');
  mkdirSync(catalog);
  writeFileSync(join(catalog, 'sites.json'), JSON.stringify({ sites: [{ name: 'bench', provider: 'bench', region: 'local', cidrs: ['127.0.0.0/8'] }] }));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const cfgPath = join(dir, 'server.yaml');
  writeFileSync(
    cfgPath,
    stringify({
      listen: `127.0.0.1:${port}`,
      dataDir: join(dir, 'data'),
      catalog,
      catalogReloadSeconds: 0,
      apiToken: API_TOKEN,
      fullvrs: [{ id: 1, endpoint: FAKE_FULLVR, publicKey: randomBytes(32).toString('base64'), provider: 'bench', region: 'local', networks: [1] }],
    }),
  );
  const nodeArgs = opt.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opt.cpuProfDir] : [];
  const logFile = join(dir, 'server.log');
  const srv = spawnServer(opt.cli, cfgPath, logFile, nodeArgs);
  const undo = cleanup.defer(
    'stop the load-test download server',
    () => srv.stop(),
    () => srv.killSync(),
  );
  let hb: Heartbeats | null = null;
  try {
    await srv.waitForLog(/download server ready/, 120_000);
    say(`join: download server pid ${srv.pid} on ${base}${opt.cpuProfDir ? ` (--cpu-prof into ${opt.cpuProfDir})` : ''}`);
    hb = startHeartbeats(base, 1);
    await waitFor(async () => hb!.ok > 0, 15_000, 50);

    const seen = new Set<string>();
    const sizes: number[] = [];
    let checked = await checkSamples(base, 3, seen, sizes);

    say(`join: warm-up ${warmup} s, ${connections} connections`);
    const w = await runLoad(ac, `${base}/join`, warmup, connections);
    say(`join: warm-up ${w.result['2xx']} responses (${Math.round(w.result['2xx'] / w.wallS)}/s)`);

    const logBytesBefore = Buffer.byteLength(srv.log());
    const cpu = cpuSampler({ server: srv.pid });
    const self0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const run = await runLoad(ac, `${base}/join`, opt.seconds, connections);
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const serverCpu = cpu.stop().server ?? null;
    const self = process.cpuUsage(self0);
    const benchCpu = round1((100 * (self.user + self.system)) / 1e6 / wall);

    checked += await checkSamples(base, 3, seen);
    if (!srv.running) throw new Error('the download server exited during the load');

    const r = run.result;
    const ok = r['2xx'];
    const bad = r.non2xx + r.errors + r.mismatches;
    if (ok === 0) throw new Error(`no 200 responses (${r.errors} errors, ${r.non2xx} non-2xx)${run.errorSamples.length ? `: ${run.errorSamples[0]}` : ''}`);
    if (bad > 0) {
      errors.push(`join_rps: ${r.non2xx} non-2xx, ${r.errors} errors (${r.timeouts} timeouts), ${r.mismatches} bodies not a join script out of ${r.requests.total}`);
      for (const s of run.errorSamples) problems.push(`join load: ${s}`);
    }
    if (hb.failed > 0) problems.push(`heartbeats: ${hb.failed} failed (last: ${hb.lastError}), ${hb.ok} ok`);
    // measured over the load window autocannon reports (its own start..finish)
    const rps = ok / r.duration;
    const p50 = pct(run.latencies, 50)!;
    const p99 = pct(run.latencies, 99)!;
    const logPerReq = (Buffer.byteLength(srv.log()) - logBytesBefore) / Math.max(1, r.requests.total);
    say(`join: ${Math.round(rps)}/s  p50 ${p50.toFixed(2)} ms  p99 ${p99.toFixed(2)} ms  server cpu ${serverCpu}%  bench cpu ${benchCpu}%`);

    const json = {
      url: `${base}/join`,
      connections,
      pipelining: 1,
      warmup_s: warmup,
      seconds: opt.seconds,
      duration_s: r.duration,
      requests_total: r.requests.total,
      responses_200: ok,
      non2xx: r.non2xx,
      errors: r.errors,
      timeouts: r.timeouts,
      mismatches: r.mismatches,
      status_codes: r.statusCodeStats ?? null,
      latency_ms: {
        p50: round2(p50),
        p90: round2(pct(run.latencies, 90)!),
        p99: round2(p99),
        max: round2(run.latencies.at(-1)!),
        mean: round2(run.latencies.reduce((a, b) => a + b, 0) / run.latencies.length),
      },
      autocannon_latency_ms: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max, mean: r.latency.average },
      autocannon_requests_per_s_mean: r.requests.average,
      responses_per_second: run.perSecond.slice(0, opt.seconds),
      warmup_responses: w.result['2xx'],
      server_cpu_pct: serverCpu,
      bench_process_cpu_pct: benchCpu,
      server_log_bytes_per_request: Math.round(logPerReq),
      body_bytes: median(sizes),
      bodies_checked_in_full: checked,
      heartbeats: { ok: hb.ok, failed: hb.failed },
      cpu_prof_dir: opt.cpuProfDir ?? null,
    };
    const summary = [
      `load: autocannon ${connections} connections, pipelining 1, ${opt.seconds} s after a ${warmup} s warm-up, GET ${base}/join; ` +
        `${ok} × 200 of ${r.requests.total} (${r.non2xx} non-2xx, ${r.errors} errors, ${r.mismatches} not a join script); every body checked structurally, ${checked} in full`,
      `CPU over the load, % of one core: download server ${serverCpu ?? '-'}, bench process (autocannon) ${benchCpu}; join script ${median(sizes)} bytes, server log ${Math.round(logPerReq)} bytes/request`,
      `caveat: autocannon runs inside the bench process on the same ${sysCpus()} CPUs as the server (and this box is shared), so join_rps and the latencies are lower/upper bounds of what the server alone can do`,
    ];
    return { rps, p50, p99, json, summary };
  } catch (e) {
    errors.push(`join_rps: ${firstLine(e)}`);
    say(`join: join_rps failed: ${((e as Error)?.message ?? String(e)).split('\n').slice(0, 8).join('\n  ')}`);
    return null;
  } finally {
    hb?.stop();
    await srv.stop(opt.cpuProfDir ? 15_000 : 5000);
    undo();
    const errLines = srv.log().split('\n').filter((l) => / (ERROR|WARN) /.test(l));
    if (errLines.length > 0) problems.push(`load-test server log: ${errLines.length} WARN/ERROR line(s), first: ${errLines[0]!.slice(0, 200)}`);
  }
}

function sysCpus(): number {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length || 0;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------
// 2. time_to_join in the namespace lab
// ---------------------------------------------------------------------------

/**
 * Runs in the VM (bash for $EPOCHREALTIME, no fork per timestamp): the documented one-liner
 * (run by sh), each line it prints timestamped, then ping every 20 ms until the first reply.
 */
const MEASURE_JOIN = String.raw`set -u
url=$1; prefix=$2; addr=$3
printf 'TVB_T0 %s\n' "$EPOCHREALTIME"
{ curl -fsSL "$url" | TINYVINE_PREFIX="$prefix" TINYVINE_NO_SYSTEMD=1 sh; rc=$?; printf 'TVB_RC %s\n' "$rc"; exit "$rc"; } 2>&1 |
  while IFS= read -r l; do printf 'TVB_LINE %s %s\n' "$EPOCHREALTIME" "$l"; done
rc=${'$'}{PIPESTATUS[0]}
[ "$rc" -eq 0 ] || exit 0
end=$((EPOCHSECONDS + 15))
until ping -n -q -c 1 -w 5 -i 0.02 "$addr" >/dev/null 2>&1; do
  if [ "$EPOCHSECONDS" -ge "$end" ]; then printf 'TVB_NOPING %s\n' "$EPOCHREALTIME"; exit 0; fi
  sleep 0.02
done
printf 'TVB_T2 %s\n' "$EPOCHREALTIME"
printf 'TVB_TVJOINED %s\n' "$(grep -m1 ' joined ' "$prefix/tinyvr.log" 2>/dev/null | cut -d ' ' -f 1)"
`;

interface JoinRun {
  timeToJoinMs: number;
  scriptMs: number;
  /** When the TinyVR itself logged "joined" (its log's ms timestamp), ms after the start. */
  tinyvrJoinedMs: number | null;
  /** Every line the script printed, ms after the start. */
  timeline: Array<{ ms: number; line: string }>;
}

function parseJoinRun(out: string): JoinRun {
  const t0 = /^TVB_T0 ([\d.]+)$/m.exec(out);
  const lines = [...out.matchAll(/^TVB_LINE ([\d.]+) (.*)$/gm)].map((m) => ({ t: Number(m[1]), line: m[2]! }));
  const rc = lines.find((l) => l.line.startsWith('TVB_RC '));
  if (!t0 || !rc) throw new Error(`no timing output from the join run:\n${out.slice(-1500)}`);
  const start = Number(t0[1]);
  const ms = (t: number) => round1((t - start) * 1000);
  const code = Number(rc.line.slice(7));
  const timeline = lines.filter((l) => l !== rc).map((l) => ({ ms: ms(l.t), line: l.line }));
  if (code !== 0) throw new Error(`the join script exited ${code}: ${timeline.slice(-3).map((l) => l.line).join(' | ')}`);
  if (/^TVB_NOPING /m.test(out)) throw new Error(`joined, but no ping reply across the overlay within 15 s after the script exited`);
  const t2 = /^TVB_T2 ([\d.]+)$/m.exec(out);
  if (!t2) throw new Error(`no ping result:\n${out.slice(-800)}`);
  const tv = /^TVB_TVJOINED (\S+)$/m.exec(out);
  const tvAt = tv ? Date.parse(tv[1]!) : NaN;
  return { timeToJoinMs: ms(Number(t2[1])), scriptMs: ms(rc.t), tinyvrJoinedMs: Number.isFinite(tvAt) ? ms(tvAt / 1000) : null, timeline };
}

interface TtjResult {
  timeToJoinMs: number;
  scriptMs: number;
  json: Record<string, unknown>;
  summary: string[];
}

async function measureTimeToJoin(opt: JoinBenchOptions, errors: string[], problems: string[]): Promise<TtjResult | null> {
  const runs = opt.runs ?? 3;
  const support = await labSupport(['ip', 'nft', 'ping', 'curl', 'bash']);
  if (!support.ok) {
    errors.push(`time_to_join: cannot run: ${support.reason}`);
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'tinyvine-joinlab-'));
  opt.onTempDir(dir);
  const prefix = (vm: string) => join(dir, 'vm', vm);
  const oneLiner = (vm: string, url = `${LAB_SERVER}/join`) => ['sh', '-c', `curl -fsSL '${url}' | TINYVINE_PREFIX='${prefix(vm)}' TINYVINE_NO_SYSTEMD=1 sh`];
  const key = generateSigningKey();

  const lab: Lab = await createLab({
    sites: [
      { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '10.1.0.0/24', vms: ['a1'] },
      { name: 'b', kind: 'cloud', publicPrefix: '203.0.113.0/25', subnet: '10.2.0.0/24', vms: ['b1'] },
    ],
    keepLogs: opt.keepLogs,
  });
  let ov: BenchOverlay | null = null;
  const samples: JoinRun[] = [];
  const target = lab.addr('b1');
  try {
    say(`join: lab ${lab.prefix} built in ${Math.round(lab.buildMs)} ms; logs in ${lab.logsDir}`);
    const { catalog } = writeJoinLabState(dir, key.privateKey);
    ov = new BenchOverlay(
      lab,
      [blueNetwork(['a', 'b'], { token: 'static-token-unused-0123456789' })],
      ['a', 'b'],
      opt.cli,
      {
        authority: { publicKey: key.publicKey, url: LAB_SERVER, apiToken: API_TOKEN, heartbeatSeconds: 1 },
        placement: { a: ['aws', 'us-east-1'], b: ['gcp', 'europe-west1'] },
      },
    );
    opt.onTempDir(ov.dir);
    const cfgPath = join(dir, 'server.yaml');
    writeFileSync(
      cfgPath,
      stringify({
        listen: '198.51.100.1:8080',
        dataDir: join(dir, 'data'),
        catalog,
        apiToken: API_TOKEN,
        heartbeatTimeoutSeconds: 5,
        fullvrs: [...ov.fullvrs.values()].map((f) => ({
          id: f.id,
          endpoint: ov!.endpoint(f.site),
          publicKey: f.publicKey,
          provider: ov!.opts.placement![f.site]![0],
          region: ov!.opts.placement![f.site]![1],
          networks: [1],
        })),
      }),
    );
    const server = lab.spawn('inet', [process.execPath, opt.cli, 'server', '--config', cfgPath], { logFile: join(lab.logsDir, 'server.log') });
    await server.waitForLog(/download server ready/, 120_000);
    await ov.startAllFullvrs();
    await waitFor(async () => {
      const r = await lab.exec('inet', ['curl', '-sf', '-H', `authorization: Bearer ${API_TOKEN}`, `${LAB_SERVER}/api/v1/fullvrs`]);
      const list = JSON.parse(r.stdout) as Array<{ healthy: boolean }>;
      return list.length === 2 && list.every((f) => f.healthy);
    }, 20_000);

    // b1 joins first (and warms the bundle cache and the page cache).
    const rb = await lab.exec('b1', oneLiner('b1'), { timeoutMs: 60_000, check: false });
    const outB = rb.stdout + rb.stderr;
    if (rb.code !== 0 || !/joined network 1 as 10\.2\.0\.11 via FullVR 203\.0\.113\.3:4789/.test(outB)) {
      throw new Error(`b1 did not join (exit ${rb.code}): ${outB.trim().split('\n').slice(-3).join(' | ')}`);
    }
    say(`join: b1 joined; measuring a1 -> ${target}, ${runs} runs`);

    for (let i = 1; i <= runs; i++) {
      try {
        const r = await lab.exec('a1', ['bash', '-c', MEASURE_JOIN, 'bash', `${LAB_SERVER}/join`, prefix('a1'), target], { timeoutMs: 90_000, check: false });
        if (r.timedOut) throw new Error('the measuring run timed out after 90 s');
        const s = parseJoinRun(r.stdout + r.stderr);
        if (!s.timeline.some((l) => /joined network 1 as 10\.1\.0\.11 via FullVR 198\.51\.100\.3:4789/.test(l.line))) {
          throw new Error(`a1 joined, but not as expected: ${s.timeline.at(-3)?.line ?? ''}`);
        }
        samples.push(s);
        say(`join: run ${i}: time_to_join ${s.timeToJoinMs} ms, script ${s.scriptMs} ms`);
      } catch (e) {
        errors.push(`time_to_join run ${i}: ${firstLine(e)}`);
        say(`join: time_to_join run ${i} failed: ${((e as Error)?.message ?? String(e)).split('\n').slice(0, 10).join('\n  ')}`);
      }
      // uninstall between runs (and after the last one)
      const u = await lab.exec('a1', oneLiner('a1', `${LAB_SERVER}/join?uninstall=1`), { timeoutMs: 60_000, check: false });
      if (u.code !== 0 || existsSync(prefix('a1'))) problems.push(`uninstall a1 after run ${i}: exit ${u.code}, prefix ${existsSync(prefix('a1')) ? 'still there' : 'removed'}`);
      const links = await lab.exec('a1', ['ip', '-o', 'link', 'show'], { check: false });
      if (links.stdout.includes('tvn')) problems.push(`uninstall a1 after run ${i}: a tvn interface is left`);
      await sleep(300);
    }
    const errLines = server.log().split('\n').filter((l) => / (ERROR|WARN) /.test(l));
    if (errLines.length > 0) problems.push(`lab download server log: ${errLines.length} WARN/ERROR line(s), first: ${errLines[0]!.slice(0, 200)}`);
  } catch (e) {
    errors.push(`time_to_join: ${firstLine(e)}`);
    say(`join: time_to_join failed: ${((e as Error)?.message ?? String(e)).split('\n').slice(0, 10).join('\n  ')}`);
  } finally {
    for (const vm of ['a1', 'b1']) {
      if (existsSync(prefix(vm))) {
        const u = await lab.exec(vm, oneLiner(vm, `${LAB_SERVER}/join?uninstall=1`), { timeoutMs: 60_000, check: false }).catch(() => null);
        if (!u || u.code !== 0) problems.push(`uninstall ${vm} at the end failed`);
      }
    }
    await ov?.stop().catch((e) => problems.push(`overlay stop: ${firstLine(e)}`));
    try {
      await lab.cleanup();
    } catch (e) {
      errors.push(`join lab cleanup: ${firstLine(e)}`);
    }
  }
  if (samples.length === 0) return null;
  if (samples.length < runs && !errors.some((e) => e.startsWith('time_to_join'))) errors.push(`time_to_join: ${samples.length}/${runs} runs`);

  const ttj = median(samples.map((s) => s.timeToJoinMs))!;
  const script = median(samples.map((s) => s.scriptMs))!;
  // the run whose time_to_join is the median one, for the step breakdown
  const mid = [...samples].sort((a, b) => a.timeToJoinMs - b.timeToJoinMs)[samples.length >> 1]!;
  const steps = mid.timeline.filter((l) => /^tinyvine: /.test(l.line)).map((l) => `${l.line.replace(/^tinyvine: /, '').replace(/…$/, '').slice(0, 48)} @${Math.round(l.ms)}`);
  const json = {
    from: 'a1',
    to: target,
    server: `${LAB_SERVER}/join`,
    runs,
    time_to_join_samples_ms: samples.map((s) => s.timeToJoinMs),
    join_script_samples_ms: samples.map((s) => s.scriptMs),
    ping_after_script_samples_ms: samples.map((s) => round1(s.timeToJoinMs - s.scriptMs)),
    tinyvr_joined_samples_ms: samples.map((s) => s.tinyvrJoinedMs),
    timelines_ms: samples.map((s) => s.timeline),
  };
  const summary = [
    `time_to_join: a1 → b1 ${target} across the overlay (lab, download server in inet at ${LAB_SERVER}); median of ${samples.length}: ` +
      `${samples.map((s) => Math.round(s.timeToJoinMs)).join(' / ')} ms, of which the script ${samples.map((s) => Math.round(s.scriptMs)).join(' / ')} ms`,
    `join script steps, ms after start (median run): ${steps.join(', ')}` +
      (mid.tinyvrJoinedMs !== null ? `; the TinyVR itself logged "joined" @${Math.round(mid.tinyvrJoinedMs)}` : ''),
  ];
  return { timeToJoinMs: ttj, scriptMs: script, json, summary };
}

// ---------------------------------------------------------------------------
// entry point
// ---------------------------------------------------------------------------

export async function runJoinBench(opt: JoinBenchOptions): Promise<JoinBenchResult> {
  const errors: string[] = [];
  const problems: string[] = [];
  const cleanup = new Cleanup('join bench');
  let rps: RpsResult | null = null;
  let ttj: TtjResult | null = null;
  try {
    try {
      rps = await measureRps(opt, cleanup, errors, problems);
    } catch (e) {
      errors.push(`join_rps: ${firstLine(e)}`);
    }
    try {
      ttj = await measureTimeToJoin(opt, errors, problems);
    } catch (e) {
      errors.push(`time_to_join: ${firstLine(e)}`);
    }
  } finally {
    await cleanup.run();
  }

  const verdict = (ok: boolean | null) => (ok === null ? '' : ok ? 'met' : 'MISSED');
  const T = JOIN_TARGETS;
  const rows: string[][] = [
    ['join_rps', rps ? `${Math.round(rps.rps)} /s` : 'FAILED', `≥ ${T.rps.toLocaleString('en-US')} /s`, verdict(rps ? rps.rps >= T.rps : null)],
    ['join_p50_ms', rps ? `${rps.p50.toFixed(2)} ms` : 'FAILED', '', ''],
    ['join_p99_ms', rps ? `${rps.p99.toFixed(2)} ms` : 'FAILED', `≤ ${T.p99Ms} ms`, verdict(rps ? rps.p99 <= T.p99Ms : null)],
    ['time_to_join_ms', ttj ? `${Math.round(ttj.timeToJoinMs)} ms` : 'FAILED', `≤ ${T.timeToJoinMs.toLocaleString('en-US')} ms`, verdict(ttj ? ttj.timeToJoinMs <= T.timeToJoinMs : null)],
    ['join_script_ms', ttj ? `${Math.round(ttj.scriptMs)} ms` : 'FAILED', '', ''],
  ];
  const hdr = ['join metric', 'value', 'target', ''];
  const widths = hdr.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const lines = [fmt(hdr), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt), ''];
  for (const l of rps?.summary ?? []) lines.push(`  ${l}`);
  for (const l of ttj?.summary ?? []) lines.push(`  ${l}`);

  const json: Record<string, unknown> = {
    join_rps: rps ? Math.round(rps.rps) : null,
    join_p50_ms: rps ? round2(rps.p50) : null,
    join_p99_ms: rps ? round2(rps.p99) : null,
    time_to_join_ms: ttj ? Math.round(ttj.timeToJoinMs) : null,
    join_script_ms: ttj ? Math.round(ttj.scriptMs) : null,
    join_targets: { join_rps_min: T.rps, join_p99_ms_max: T.p99Ms, time_to_join_ms_max: T.timeToJoinMs },
    join_load: rps?.json ?? null,
    join_time_samples: ttj?.json ?? null,
  };
  return { json, lines, errors, problems };
}
