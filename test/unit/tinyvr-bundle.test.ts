// The single-file TinyVR: built once and cached, rendered per request by a concat, and the
// rendered file runs alone (no node_modules) with `node`, extracting its native addon.
import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TinyvrBundle } from '../../bundle/tinyvr-bundle.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const addonPath = path.join(root, 'build', 'Release', 'tinyvine_native.node');
const tmp = mkdtempSync(path.join(tmpdir(), 'tv-bundle-'));
const cacheDir = path.join(tmp, 'cache');
const VERSION = '0.1.0-test';
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

const config = {
  fullvr: '127.0.0.1:9',
  fullvrKey: 'PCd7jd8P5tsJvkrkUdO7RZ74uER6DC6Oy1nEvLtwYWE=',
  token: 'very-secret-join-token-0123456789',
  joinTimeoutSeconds: 1,
};

let first: TinyvrBundle;

beforeAll(() => {
  if (!existsSync(addonPath)) execFileSync(process.execPath, [path.join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Copies `content` alone into a fresh empty directory and runs it with node there. */
function runAlone(name: string, content: Buffer, args: string[], env: Record<string, string> = {}) {
  const dir = mkdtempSync(path.join(tmp, `${name}-`));
  const file = path.join(dir, 'tinyvr.mjs');
  writeFileSync(file, content);
  const r = spawnSync(process.execPath, [file, ...args], {
    cwd: dir,
    env: { PATH: '/usr/bin:/bin', ...env }, // no NODE_PATH, no TINYVINE_NATIVE
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { ...r, dir, file };
}

describe('TinyvrBundle', () => {
  it('builds once with esbuild into the cache dir', async () => {
    const runs = TinyvrBundle.esbuildRuns;
    first = await TinyvrBundle.build({ root, cacheDir, version: VERSION });
    expect(first.built).toBe(true);
    expect(TinyvrBundle.esbuildRuns).toBe(runs + 1);
    expect(first.os).toBe(process.platform);
    expect(first.arch).toBe(process.arch);
    expect(first.version).toBe(VERSION);
    expect(first.addonSha256).toBe(sha256(readFileSync(addonPath)));
    expect(first.file.startsWith(cacheDir)).toBe(true);
    const body = readFileSync(first.file);
    expect(sha256(body)).toBe(first.sha256);
    expect(first.size).toBe(body.length);
    // the addon is inside, as base64
    expect(body.includes(Buffer.from(readFileSync(addonPath).toString('base64').slice(0, 200)))).toBe(true);
    expect(body.includes(Buffer.from('sourceMappingURL'))).toBe(false);
  });

  it('reuses the cache on the next start: no esbuild run, fast', async () => {
    const runs = TinyvrBundle.esbuildRuns;
    const second = await TinyvrBundle.build({ root, cacheDir, version: VERSION });
    expect(second.built).toBe(false);
    expect(TinyvrBundle.esbuildRuns).toBe(runs);
    expect(second.sha256).toBe(first.sha256);
    expect(second.file).toBe(first.file);
    console.log(`bundle ${(first.size / 1024).toFixed(0)} KiB: esbuild build ${first.buildMs.toFixed(1)} ms, cached start ${second.buildMs.toFixed(1)} ms`);
    expect(second.buildMs).toBeLessThan(first.buildMs);
    expect(second.buildMs).toBeLessThan(500);
  });

  it('a different version builds a separate cache entry; concurrent builds run esbuild once', async () => {
    const runs = TinyvrBundle.esbuildRuns;
    const [a, b] = await Promise.all([
      TinyvrBundle.build({ root, cacheDir, version: '9.9.9' }),
      TinyvrBundle.build({ root, cacheDir, version: '9.9.9' }),
    ]);
    expect(TinyvrBundle.esbuildRuns).toBe(runs + 1);
    expect(a).toBe(b);
    expect(a.file).not.toBe(first.file);
    expect(a.sha256).not.toBe(first.sha256); // the version is compiled in
  });

  it('rebuilds a damaged cache file', async () => {
    const dir = path.join(tmp, 'cache-damaged');
    const a = await TinyvrBundle.build({ root, cacheDir: dir, version: VERSION });
    writeFileSync(a.file, 'garbage');
    const runs = TinyvrBundle.esbuildRuns;
    const b = await TinyvrBundle.build({ root, cacheDir: dir, version: VERSION });
    expect(b.built).toBe(true);
    expect(TinyvrBundle.esbuildRuns).toBe(runs + 1);
    expect(b.sha256).toBe(a.sha256);
  });

  it('render() is a config line plus the cached bytes: no build, about the cost of one copy', () => {
    const out = first.render(config);
    const nl = out.indexOf(0x0a);
    expect(out.subarray(0, nl + 1).toString()).toBe(`globalThis.__TINYVINE_CONFIG=${JSON.stringify(config)};\n`);
    expect(sha256(out.subarray(nl + 1))).toBe(first.sha256);
    const runs = TinyvrBundle.esbuildRuns;
    // Timed against a plain copy of the same bytes, interleaved, because absolute times on a
    // shared machine running the lab tests in parallel say nothing (this once took 2.7 ms).
    const body = out.subarray(nl + 1);
    const copy = () => Buffer.concat([Buffer.from('x'.repeat(nl + 1)), body], out.length);
    for (let i = 0; i < 50; i++) (first.render(config), copy()); // warm up
    const times: number[] = [];
    const ref: number[] = [];
    for (let i = 0; i < 200; i++) {
      let t0 = performance.now();
      first.render({ ...config, token: `token-${i}-abcdefghijklmnop` });
      times.push(performance.now() - t0);
      t0 = performance.now();
      copy();
      ref.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    ref.sort((x, y) => x - y);
    const median = times[100];
    console.log(`render: median ${(median * 1000).toFixed(0)} µs (a plain copy: ${(ref[100] * 1000).toFixed(0)} µs), p99 ${(times[198] * 1000).toFixed(0)} µs for ${(out.length / 1024).toFixed(0)} KiB`);
    expect(TinyvrBundle.esbuildRuns).toBe(runs);
    expect(median).toBeLessThan(ref[100] * 5 + 0.2);
    expect(() => first.render(null as unknown as object)).toThrow(TypeError);
    // U+2028 cannot break the line
    expect(first.render({ token: 'a\u2028b' }).subarray(0, 60).toString()).toContain('\\u2028');
  });

  it('renderUnconfigured() has a null config and the same bundle bytes', () => {
    const u = first.renderUnconfigured();
    const nl = u.indexOf(0x0a);
    expect(u.subarray(0, nl + 1).toString()).toBe('globalThis.__TINYVINE_CONFIG=null;\n');
    expect(sha256(u.subarray(nl + 1))).toBe(first.sha256);
    expect(sha256(u)).toBe(first.unconfiguredSha256);
  });
});

describe('the rendered file, alone in an empty directory', () => {
  it('--print-config prints the injected config with the token redacted and extracts the addon', () => {
    const state = path.join(tmp, 'state-a');
    const r = runAlone('print', first.render(config), ['--print-config'], { TINYVINE_STATE_DIR: state });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ...config, token: '<redacted>' });
    expect(r.stdout).not.toContain(config.token);
    expect(readdirSync(r.dir)).toEqual(['tinyvr.mjs']); // nothing else next to it: no node_modules, addon went to the state dir
    const name = `tinyvine_native-${first.addonSha256.slice(0, 12)}.node`;
    expect(readdirSync(state)).toEqual([name]);
    const extracted = path.join(state, name);
    expect(sha256(readFileSync(extracted))).toBe(first.addonSha256);

    // a second start keeps the extracted file as it is; a damaged one is replaced
    const mtime = statSync(extracted).mtimeMs;
    expect(runAlone('print2', first.render(config), ['--print-config'], { TINYVINE_STATE_DIR: state }).status).toBe(0);
    expect(statSync(extracted).mtimeMs).toBe(mtime);
    writeFileSync(extracted, 'damaged');
    expect(runAlone('print3', first.render(config), ['--print-config'], { TINYVINE_STATE_DIR: state }).status).toBe(0);
    expect(sha256(readFileSync(extracted))).toBe(first.addonSha256);
    expect(readdirSync(state)).toEqual([name]); // no temporary files left
  });

  it('without TINYVINE_STATE_DIR the addon goes next to the file', () => {
    const r = runAlone('nextto', first.render(config), ['--print-config']);
    expect(r.status).toBe(0);
    expect(readdirSync(r.dir).sort()).toEqual([`tinyvine_native-${first.addonSha256.slice(0, 12)}.node`, 'tinyvr.mjs']);
  });

  it('flags override the injected config', () => {
    const r = runAlone('flags', first.render(config), ['--print-config', '--tun', 'tvx9', '--status-file', '/run/x.json', '--control', '127.0.0.1:4791', '--token', 'other-secret-token-000000'], {
      TINYVINE_STATE_DIR: path.join(tmp, 'state-b'),
    });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ...config, token: '<redacted>', tun: { name: 'tvx9' }, statusFile: '/run/x.json', control: '127.0.0.1:4791' });
  });

  it('--version prints the version; --help the usage; a bad flag is one line, exit 2', () => {
    const v = runAlone('version', first.render(config), ['--version']);
    expect(v.status).toBe(0);
    expect(v.stdout).toBe(`${VERSION}\n`);
    const h = runAlone('help', first.render(config), ['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('--print-config');
    const bad = runAlone('bad', first.render(config), ['--bogus']);
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^tinyvine: .*bogus.*\(see --help\)\n$/);
  });

  it('the unconfigured bundle takes everything from flags, like `tinyvine tinyvr`', () => {
    const state = path.join(tmp, 'state-c');
    const u = runAlone('unconf', first.renderUnconfigured(), ['--print-config', '--fullvr', '198.51.100.7:4790', '--fullvr-key', config.fullvrKey, '--token', config.token], {
      TINYVINE_STATE_DIR: state,
    });
    expect(u.status).toBe(0);
    expect(JSON.parse(u.stdout)).toEqual({ fullvr: '198.51.100.7:4790', fullvrKey: config.fullvrKey, token: '<redacted>' });
    // with nothing given it fails like `tinyvine tinyvr` does: one line naming the field, exit 2
    const none = runAlone('unconf-none', first.renderUnconfigured(), [], { TINYVINE_STATE_DIR: state });
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/^tinyvine: command line: .*fullvr/);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('an invalid injected config is one line naming the embedded config, exit 2', () => {
    const r = runAlone('invalid', first.render({ ...config, token: 'short' }), [], { TINYVINE_STATE_DIR: path.join(tmp, 'state-d') });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^tinyvine: embedded config: token: /);
    expect(r.stderr).not.toContain('short');
  });

  const canTun = process.getuid?.() === 0 && existsSync('/dev/net/tun');
  it.skipIf(!canTun)('runs the real TinyVR from the extracted addon (no FullVR answers: one-line error, exit 2)', () => {
    const dir = path.join(tmp, 'real');
    mkdirSync(dir, { recursive: true });
    const status = path.join(dir, 'status.json');
    const r = runAlone('real', first.render(config), ['--status-file', status, '--tun', `tvb${process.pid % 10000}`], { TINYVINE_STATE_DIR: path.join(tmp, 'state-e') });
    expect(r.stderr).toBe(`tinyvine: FullVR 127.0.0.1:9 did not answer within 1 s (check its address, UDP port, key and firewall)\n`);
    expect(r.status).toBe(2);
    expect(JSON.parse(readFileSync(status, 'utf8')).state).toBe('stopped');
  });
});
