// Entry point of the single-file TinyVR (bundle/tinyvr-bundle.ts builds it with esbuild).
//
// The file it becomes runs with nothing but `node` >= 20: no node_modules, no compiler. It holds
// the native packet engine (base64, built for one os/arch) and extracts it on start to
// `tinyvine_native-<sha12>.node` in $TINYVINE_STATE_DIR, or else next to itself, or else in
// /var/lib/tinyvine; then it runs the TinyVR exactly like `tinyvine tinyvr`.
//
// Its config comes from a line the download server puts in front of the bundle,
//   globalThis.__TINYVINE_CONFIG={"fullvr":...};
// (null in the unconfigured /tinyvr.js: then everything comes from flags). Flags override it.
// The line runs before this module's body but after every import of the module graph has been
// evaluated, so the config is read inside main(), never at import time.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setLogComponent } from '../shared/log.js';
import { applyTinyvrFlags, exitWithError, parseFlags, runUntilSignal, TINYVR_FLAG_OPTIONS } from '../shared/run-role.js';
import { UserError } from '../shared/user-error.js';

// Replaced by esbuild `define` when bundling; absent when this file runs from source.
declare const __TINYVINE_VERSION__: string;
declare const __TINYVINE_TARGET__: string; // "<os>-<arch>" the addon was built for
declare const __TINYVINE_ADDON_B64__: string;
declare const __TINYVINE_ADDON_SHA256__: string;

const VERSION = typeof __TINYVINE_VERSION__ === 'string' ? __TINYVINE_VERSION__ : 'dev';
const TARGET = typeof __TINYVINE_TARGET__ === 'string' ? __TINYVINE_TARGET__ : `${process.platform}-${process.arch}`;
const DEFAULT_STATE_DIR = '/var/lib/tinyvine';
const SECRET_KEYS = new Set(['token', 'privateKey', 'ticket']);

const USAGE = `tinyvine ${VERSION} single-file TinyVR (${TARGET})

Usage: node tinyvr.mjs [options]
  Joins this machine to the overlay through one FullVR, like 'tinyvine tinyvr'. A copy downloaded
  through a join script is configured already; the plain /tinyvr.js needs --fullvr, --fullvr-key
  and --token. Flags override the embedded config.

  --fullvr HOST:PORT    the FullVR to join
  --fullvr-key KEY      the FullVR's public key (base64)
  --token TOKEN         join token
  --config FILE         read settings from a YAML file (over the embedded config, under flags)
  --tun NAME            TUN device name (default tvn0)
  --status-file FILE    write {"state": "joined", "address": ...} there (for scripts)
  --ticket-file FILE    keep the FullVR's rejoin ticket there across restarts
  --control HOST:PORT   serve JSON status over HTTP on this local endpoint
  --keepalive SECONDS   keepalive interval, at most 25 (default 10)
  --join-timeout SECONDS  give up if the FullVR does not answer (default 15)
  --print-config        print the effective config (secrets redacted) as JSON and exit
  --version             print the version and exit

Environment:
  TINYVINE_STATE_DIR    where to extract the native packet engine (default: next to this
                        file if writable, else ${DEFAULT_STATE_DIR})
  TINYVINE_DEBUG=1      debug logs`;

async function main(): Promise<void> {
  const major = Number(process.versions.node.split('.')[0]);
  if (!(major >= 20)) throw new UserError(`node >= 20 is required, this is node ${process.versions.node}`);

  const o = parseFlags(
    process.argv.slice(2),
    { ...TINYVR_FLAG_OPTIONS, version: { type: 'boolean' }, 'print-config': { type: 'boolean' } },
    USAGE,
  );
  if (o.version) {
    process.stdout.write(VERSION + '\n');
    return;
  }

  const injected = injectedConfig();
  const { loadTinyvrRaw, parseTinyvrConfig } = await import('../tinyvr/config.js');
  const raw: Record<string, unknown> = { ...(injected ?? {}) };
  if (o.config) Object.assign(raw, loadTinyvrRaw(o.config));
  applyTinyvrFlags(raw, o);

  const addonFile = extractAddon();
  if (addonFile) process.env.TINYVINE_NATIVE = addonFile;

  if (o['print-config']) {
    process.stdout.write(JSON.stringify(redact(raw), null, 2) + '\n');
    return;
  }

  if (addonFile) preloadAddon(addonFile);
  setLogComponent('tinyvr');
  const { TinyVR } = await import('../tinyvr/tinyvr.js');
  const source = o.config ?? (injected ? 'embedded config' : 'command line');
  const cfg = parseTinyvrConfig(raw, source);
  const tv = new TinyVR(cfg);
  await runUntilSignal(() => tv.start(), () => tv.stop());
}

/** The config the download server put in front of the bundle: an object, or null when absent. */
function injectedConfig(): Record<string, unknown> | null {
  const c = (globalThis as { __TINYVINE_CONFIG?: unknown }).__TINYVINE_CONFIG;
  if (c === undefined || c === null) return null;
  if (typeof c !== 'object' || Array.isArray(c)) {
    throw new UserError(`the embedded config is ${Array.isArray(c) ? 'a list' : typeof c}, expected an object: download the TinyVR again`);
  }
  return c as Record<string, unknown>;
}

function redact(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redact);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = SECRET_KEYS.has(k) && x !== undefined && x !== null ? '<redacted>' : redact(x);
    return out;
  }
  return v;
}

/**
 * Writes the embedded native addon to the first usable state directory, named by its sha256, and
 * returns its path; undefined when running from source (packet-engine.ts finds build/Release).
 * The file is written only when absent or different, atomically (temporary file + rename).
 */
function extractAddon(): string | undefined {
  if (typeof __TINYVINE_ADDON_B64__ !== 'string') return undefined;
  const bytes = Buffer.from(__TINYVINE_ADDON_B64__, 'base64');
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== __TINYVINE_ADDON_SHA256__) throw new UserError('the embedded native packet engine is corrupt: download the TinyVR again');
  const name = `tinyvine_native-${sha.slice(0, 12)}.node`;
  const dirs = stateDirs();
  const failures: string[] = [];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      if (sameContent(file, sha)) return file;
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      const tmp = path.join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
      const fd = openSync(tmp, 'wx', 0o755);
      try {
        writeSync(fd, bytes);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      try {
        renameSync(tmp, file);
      } catch (e) {
        try {
          unlinkSync(tmp);
        } catch {
          /* gone already */
        }
        throw e;
      }
      return file;
    } catch (e) {
      failures.push(`${dir}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new UserError(`cannot extract the native packet engine (${failures.join('; ')}); set TINYVINE_STATE_DIR to a writable directory`);
}

function stateDirs(): string[] {
  const env = process.env.TINYVINE_STATE_DIR;
  if (env) return [path.resolve(env)];
  let here: string | undefined;
  try {
    here = path.dirname(fileURLToPath(import.meta.url));
  } catch {
    here = undefined;
  }
  return here && here !== DEFAULT_STATE_DIR ? [here, DEFAULT_STATE_DIR] : [DEFAULT_STATE_DIR];
}

function sameContent(file: string, sha: string): boolean {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex') === sha;
  } catch {
    return false;
  }
}

/** Loads the addon once here (packet-engine.ts then gets the cached module) for a precise error. */
function preloadAddon(file: string): void {
  try {
    createRequire(import.meta.url)(file);
  } catch (e) {
    const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    const hint = /map segment|operation not permitted/i.test(msg)
      ? `; is ${path.dirname(file)} mounted noexec? set TINYVINE_STATE_DIR to another directory`
      : `; this TinyVR was built for ${TARGET} (node ${process.versions.node} on ${process.platform}-${process.arch} here)`;
    throw new UserError(`cannot load the native packet engine ${file}: ${msg}${hint}`, 1);
  }
}

main().catch(exitWithError);
