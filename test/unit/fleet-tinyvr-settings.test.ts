// The download server's `tinyvr:` block: fleet-wide TinyVR settings (wake-up moderation,
// keepalive, shortcuts) validated like the rest of its config and baked into every TinyVR it
// installs, next to the FullVR's address, key and token.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseServerConfig } from '../../download-server/config.js';
import { startDownloadServer, type RunningServer } from '../../download-server/server.js';
import { parseTinyvrConfig } from '../../tinyvr/config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const API_TOKEN = 'fleet-settings-test-token-0123456789';

beforeAll(() => {
  // the server bundles the TinyVR with the native engine inside
  if (!existsSync(path.join(root, 'build', 'Release', 'tinyvine_native.node'))) {
    execFileSync(process.execPath, [path.join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
  }
});

const dirs: string[] = [];
const servers: RunningServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function baseConfig(dir: string, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const catalog = path.join(dir, 'catalog');
  mkdirSync(catalog, { recursive: true });
  writeFileSync(path.join(catalog, 'sites.json'), JSON.stringify({ sites: [{ name: 'here', provider: 'lab', region: 'local', cidrs: ['127.0.0.0/8'] }] }));
  return {
    listen: `127.0.0.1:${port}`,
    dataDir: path.join(dir, 'data'),
    catalog,
    catalogReloadSeconds: 0,
    apiToken: API_TOKEN,
    fullvrs: [{ id: 1, endpoint: '198.51.100.3:4789', publicKey: randomBytes(32).toString('base64'), provider: 'lab', region: 'local', networks: [1] }],
    ...extra,
  };
}

/** Joins like a VM would (GET /join, then the bundle URL in the script) and returns the config baked into the bundle. */
async function bakedConfig(extra: Record<string, unknown>): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tinyvine-fleet-'));
  dirs.push(dir);
  const port = await freePort();
  const srv = await startDownloadServer(parseServerConfig(baseConfig(dir, port, extra), 'server.yaml', dir));
  servers.push(srv);
  const base = `http://127.0.0.1:${port}`;
  const hb = await fetch(`${base}/api/v1/fullvrs/1/heartbeat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ members: 0, load: 0, peersUp: 0 }),
  });
  expect(hb.status).toBe(200);
  const join = await fetch(`${base}/join`);
  const script = await join.text();
  expect(join.status, script.slice(0, 300)).toBe(200);
  const url = /BUNDLE_URL='?([^'\s]+)/.exec(script)?.[1];
  expect(url, 'bundle URL in the join script').toBeDefined();
  const bundle = Buffer.from(await (await fetch(new URL(url!, base))).arrayBuffer());
  const first = bundle.subarray(0, bundle.indexOf(0x0a)).toString();
  const m = /^globalThis\.__TINYVINE_CONFIG=(.*);$/.exec(first);
  expect(m, first.slice(0, 200)).not.toBeNull();
  return JSON.parse(m![1]!);
}

describe('fleet-wide TinyVR settings (server config `tinyvr:`)', () => {
  it('are baked into every TinyVR the server installs, and the TinyVR accepts them', async () => {
    const cfg = await bakedConfig({ tinyvr: { moderationMicros: 1000, keepaliveSeconds: 5, shortcuts: false, shortcutIdleSeconds: 0, direct: false } });
    expect(cfg).toMatchObject({ moderationMicros: 1000, keepaliveSeconds: 5, shortcuts: false, shortcutIdleSeconds: 0, direct: false, fullvr: '198.51.100.3:4789' });
    expect(typeof cfg.token).toBe('string');
    const parsed = parseTinyvrConfig(cfg, 'embedded config');
    expect(parsed.moderationMicros).toBe(1000);
    expect(parsed.keepaliveSeconds).toBe(5);
    expect(parsed.shortcuts).toBe(false);
    expect(parsed.direct).toBe(false);
  }, 120_000);

  it('without the block the TinyVR keeps its own defaults (nothing extra is baked in)', async () => {
    const cfg = await bakedConfig({});
    expect(Object.keys(cfg).sort()).toEqual(['fullvr', 'fullvrKey', 'token']);
    expect(parseTinyvrConfig(cfg, 'embedded config').moderationMicros).toBe(500);
  }, 120_000);

  it('a bad value or an unknown key is one line naming the field', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tinyvine-fleet-'));
    dirs.push(dir);
    const bad = (tinyvr: unknown) => () => parseServerConfig(baseConfig(dir, 1, { tinyvr }), 'server.yaml', dir);
    for (const [tinyvr, re] of [
      [{ moderationMicros: 5 }, /^server\.yaml: tinyvr\.moderationMicros: must be 0 \(off\) or 10\.\.100000 microseconds/],
      [{ keepaliveSeconds: 30 }, /^server\.yaml: tinyvr\.keepaliveSeconds: must be <= 25/],
      [{ shortcutIdleSeconds: -1 }, /^server\.yaml: tinyvr\.shortcutIdleSeconds: must be >= 0/],
      [{ direct: 'yes' }, /^server\.yaml: tinyvr\.direct: /],
      [{ moderation: 1000 }, /^server\.yaml: unknown key "moderation" in tinyvr/],
    ] as const) {
      let msg = '';
      try {
        bad(tinyvr)();
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg, JSON.stringify(tinyvr)).toMatch(re);
      expect(msg.split('\n')).toHaveLength(1);
    }
  });
});
