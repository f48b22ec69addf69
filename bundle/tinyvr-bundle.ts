// The single-file TinyVR served by the download server: bundle/tinyvr-entry.ts and everything it
// imports, plus the native packet engine (base64), as one minified ESM file that runs with
// nothing but `node` >= 20.
//
// esbuild runs once per version/addon/sources: the output is cached in `cacheDir` (an input
// manifest next to it says when it is stale) and reused on the next start. Per request,
// render() only prepends one config line to the cached bytes:
//
//   globalThis.__TINYVINE_CONFIG={"fullvr":"203.0.113.7:4790",...};
//   <bundle>
//
// `sha256` is the digest of <bundle> alone, identical in every rendered file, so a client can
// check a download with `tail -n +2 tinyvr.mjs | sha256sum` (the join script does).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Bump when the build options below change: it invalidates every cached bundle. */
const BUILD_SCHEMA = 1;

const CONFIG_PREFIX = 'globalThis.__TINYVINE_CONFIG=';
// Bundled CommonJS dependencies call require(); an ESM bundle has to make one.
const BANNER = "import { createRequire as __tvCreateRequire } from 'node:module'; const require = __tvCreateRequire(import.meta.url);";

export interface TinyvrBundleOptions {
  /** Project root: holds bundle/tinyvr-entry.ts and build/Release/tinyvine_native.node. */
  root: string;
  /** Where built bundles are kept between starts. */
  cacheDir: string;
  /** TinyViNe version, printed by `--version` and part of the cache key. */
  version: string;
}

interface InputRecord {
  path: string; // absolute
  size: number;
  mtimeMs: number;
  sha256: string;
}

interface Manifest {
  schema: number;
  version: string;
  os: string;
  arch: string;
  addonSha256: string;
  sha256: string; // of the bundle file
  inputs: InputRecord[];
}

const sha256hex = (b: Buffer | Uint8Array | string) => createHash('sha256').update(b).digest('hex');

function writeAtomic(file: string, data: Buffer | string): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

function esbuildVersion(root: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(root, 'node_modules', 'esbuild', 'package.json'), 'utf8')) as { version?: string }).version ?? '?';
  } catch {
    return '?';
  }
}

export class TinyvrBundle {
  /** How many times esbuild ran in this process (tests check that a cached start runs none). */
  static esbuildRuns = 0;
  private static inFlight = new Map<string, Promise<TinyvrBundle>>();

  /** Digest of the unconfigured bundle bytes (what follows the config line of any render). */
  readonly sha256: string;
  /** Digest of renderUnconfigured(), i.e. of GET /tinyvr.js. */
  readonly unconfiguredSha256: string;
  readonly size: number;
  private readonly unconfigured: Buffer;

  private constructor(
    private readonly body: Buffer,
    readonly version: string,
    /** process.platform of the build, which is the platform of the embedded addon ("linux"). */
    readonly os: string,
    /** process.arch of the build ("x64", "arm64"). */
    readonly arch: string,
    readonly addonSha256: string,
    /** The cached bundle file. */
    readonly file: string,
    /** True when this call ran esbuild, false when it reused the cache. */
    readonly built: boolean,
    /** Time build() took, ms. */
    readonly buildMs: number,
    sha256: string,
  ) {
    this.sha256 = sha256;
    this.size = body.length;
    this.unconfigured = Buffer.concat([Buffer.from(`${CONFIG_PREFIX}null;\n`), body]);
    this.unconfiguredSha256 = sha256hex(this.unconfigured);
  }

  /**
   * Loads the bundle for `version` from `cacheDir`, or builds it with esbuild (once) and caches it.
   * Throws when the native addon is not built (run `node scripts/build.mjs`).
   */
  static async build(opts: TinyvrBundleOptions): Promise<TinyvrBundle> {
    const t0 = performance.now();
    const root = path.resolve(opts.root);
    const cacheDir = path.resolve(opts.cacheDir);
    const addonPath = path.join(root, 'build', 'Release', 'tinyvine_native.node');
    if (!existsSync(addonPath)) throw new Error(`native packet engine not built (missing ${addonPath}): run node scripts/build.mjs`);
    const addon = readFileSync(addonPath);
    const addonSha256 = sha256hex(addon);
    const os = process.platform;
    const arch = process.arch;
    const key = sha256hex(JSON.stringify([BUILD_SCHEMA, opts.version, os, arch, addonSha256, esbuildVersion(root), root])).slice(0, 16);
    const safeVersion = opts.version.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40);
    const file = path.join(cacheDir, `tinyvr-${safeVersion}-${os}-${arch}-${key}.mjs`);

    const cached = TinyvrBundle.loadCached(file, opts.version, addonSha256);
    if (cached) return new TinyvrBundle(cached.body, opts.version, os, arch, addonSha256, file, false, performance.now() - t0, cached.sha256);

    // One esbuild run per cache file, even when several callers ask at once.
    let p = TinyvrBundle.inFlight.get(file);
    if (!p) {
      p = TinyvrBundle.runEsbuild({ root, file, version: opts.version, os, arch, addon, addonSha256, t0 });
      TinyvrBundle.inFlight.set(file, p);
      p.finally(() => TinyvrBundle.inFlight.delete(file)).catch(() => {});
    }
    return p;
  }

  /** The cached bundle, if its manifest matches and none of its inputs changed. */
  private static loadCached(file: string, version: string, addonSha256: string): { body: Buffer; sha256: string } | null {
    let m: Manifest;
    let body: Buffer;
    try {
      m = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as Manifest;
      if (m.schema !== BUILD_SCHEMA || m.version !== version || m.addonSha256 !== addonSha256 || !Array.isArray(m.inputs)) return null;
      for (const inp of m.inputs) {
        const st = statSync(inp.path);
        if (st.size === inp.size && st.mtimeMs === inp.mtimeMs) continue;
        // Touched (checkout, copy) but maybe not changed: compare content.
        if (st.size !== inp.size || sha256hex(readFileSync(inp.path)) !== inp.sha256) return null;
      }
      body = readFileSync(file);
    } catch {
      return null;
    }
    const sha256 = sha256hex(body);
    return sha256 === m.sha256 ? { body, sha256 } : null; // a damaged cache file is rebuilt
  }

  private static async runEsbuild(a: {
    root: string;
    file: string;
    version: string;
    os: string;
    arch: string;
    addon: Buffer;
    addonSha256: string;
    t0: number;
  }): Promise<TinyvrBundle> {
    const esbuild = await import('esbuild');
    TinyvrBundle.esbuildRuns++;
    const result = await esbuild.build({
      absWorkingDir: a.root,
      entryPoints: [path.join(a.root, 'bundle', 'tinyvr-entry.ts')],
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      minify: true,
      sourcemap: false,
      legalComments: 'eof',
      logLevel: 'silent',
      banner: { js: BANNER },
      define: {
        __TINYVINE_VERSION__: JSON.stringify(a.version),
        __TINYVINE_TARGET__: JSON.stringify(`${a.os}-${a.arch}`),
        __TINYVINE_ADDON_SHA256__: JSON.stringify(a.addonSha256),
        __TINYVINE_ADDON_B64__: JSON.stringify(a.addon.toString('base64')),
      },
    });
    const out = result.outputFiles?.[0];
    if (!out) throw new Error('esbuild produced no output for the TinyVR bundle');
    let body = Buffer.from(out.contents);
    if (body[body.length - 1] !== 0x0a) body = Buffer.concat([body, Buffer.from('\n')]);
    const sha256 = sha256hex(body);

    const inputs: InputRecord[] = [];
    for (const rel of Object.keys(result.metafile?.inputs ?? {})) {
      const p = path.resolve(a.root, rel);
      try {
        const content = readFileSync(p);
        const st = statSync(p);
        inputs.push({ path: p, size: st.size, mtimeMs: st.mtimeMs, sha256: sha256hex(content) });
      } catch {
        /* not a file on disk (virtual input): nothing to watch */
      }
    }
    mkdirSync(path.dirname(a.file), { recursive: true });
    writeAtomic(a.file, body);
    const manifest: Manifest = { schema: BUILD_SCHEMA, version: a.version, os: a.os, arch: a.arch, addonSha256: a.addonSha256, sha256, inputs };
    writeAtomic(`${a.file}.json`, JSON.stringify(manifest, null, 1) + '\n');
    return new TinyvrBundle(body, a.version, a.os, a.arch, a.addonSha256, a.file, true, performance.now() - a.t0, sha256);
  }

  /**
   * The bundle configured for one VM: `globalThis.__TINYVINE_CONFIG=<JSON>;\n` + the cached bytes.
   * `config` is a TinyVR config object (fullvr, fullvrKey, token, ...); it is not validated here
   * (the TinyVR does, on start). No esbuild run: one JSON.stringify and one copy.
   */
  render(config: object): Buffer {
    if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new TypeError('TinyvrBundle.render: config must be an object');
    const json = JSON.stringify(config).replace(/[\u2028\u2029]/g, (c) => (c === '\u2028' ? '\\u2028' : '\\u2029'));
    const head = Buffer.from(`${CONFIG_PREFIX}${json};\n`);
    return Buffer.concat([head, this.body], head.length + this.body.length);
  }

  /** The bundle for GET /tinyvr.js: config null, so it takes everything from flags. One shared buffer: do not modify it. */
  renderUnconfigured(): Buffer {
    return this.unconfigured;
  }
}
