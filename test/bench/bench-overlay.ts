// The lab's Overlay harness, with the CLI path resolved so that it also works from the
// bundled benchmark (dist/bench.mjs): the harness computes its CLI path relative to its
// own source file, which inside the bundle points outside the repository.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CLI, Overlay, TINYVR_CONTROL, type FullvrHandle, type NetworkSpec, type OverlayOptions } from '../lab/overlay-harness.js';
import type { SpawnHandle } from '../lab/netns.js';
import type { Lab } from '../lab/topology.js';

export function findCli(): string {
  const here = import.meta.dirname;
  const candidates = [
    process.env.TINYVINE_CLI,
    CLI,
    resolve(here, 'tinyvine.mjs'), // bundled: dist/bench.mjs next to dist/tinyvine.mjs
    resolve(here, '../../dist/tinyvine.mjs'), // from test/bench/
  ].filter((c): c is string => typeof c === 'string' && c.length > 0);
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`cannot find the built CLI (tried ${candidates.join(', ')}); run npm run build`);
  return found;
}

export class BenchOverlay extends Overlay {
  constructor(
    lab: Lab,
    networks: NetworkSpec[],
    fullvrSites: string[],
    readonly cli: string,
    opts: OverlayOptions = {},
    /** extra environment of the routers (e.g. TINYVINE_NATIVE_WAIT=0) */
    readonly env: Record<string, string> = {},
  ) {
    super(lab, networks, fullvrSites, opts);
  }

  override async startFullvr(site: string): Promise<FullvrHandle> {
    const f = this.fullvrs.get(site)!;
    f.proc = this.lab.spawn(`${site}-fvr`, [process.execPath, this.cli, 'fullvr', '--config', f.configPath], {
      logFile: join(this.lab.logsDir, `fullvr-${site}-${Date.now()}.log`),
      env: { ...process.env, ...this.env },
    });
    await f.proc.waitForLog(/fullvr ready/, 15_000);
    return f;
  }

  override async startTinyvr(vm: string, site: string, network: number, extra: string[] = []): Promise<SpawnHandle> {
    const net = this.networks.find((n) => n.id === network)!;
    const f = this.fullvrs.get(site)!;
    const h = this.lab.spawn(
      vm,
      [
        process.execPath, this.cli, 'tinyvr', '--fullvr', this.endpoint(site), '--fullvr-key', f.publicKey, '--token', net.token, '--control', TINYVR_CONTROL, '--keepalive', '2',
        ...(this.opts.moderationMicros !== undefined ? ['--moderation-us', String(this.opts.moderationMicros)] : []),
        ...extra,
      ],
      { logFile: join(this.lab.logsDir, `tinyvr-${vm}-${Date.now()}.log`), env: { ...process.env, ...this.env } },
    );
    this.tinyvrs.set(vm, h);
    await h.waitForLog(/ joined /, 15_000);
    return h;
  }
}
