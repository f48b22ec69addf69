// Runs real FullVRs and TinyVRs (the built CLI, dist/tinyvine.mjs) inside a lab, with
// configs generated per test, and reads their JSON status endpoints.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { generateKeyPair } from '../../shared/handshake.js';
import type { CloudSiteSpec, Lab } from './topology.js';
import type { SpawnHandle } from './netns.js';

export const CLI = resolve(import.meta.dirname, '../../dist/tinyvine.mjs');
export const FULLVR_PORT = 4789;
export const FULLVR_CONTROL = '127.0.0.1:4790';
export const TINYVR_CONTROL = '127.0.0.1:4791';

export interface NetworkSpec {
  id: number;
  name: string;
  mode: 'physical' | 'virtual';
  auth?: 'hmac' | 'gmac' | 'aes-gcm' | 'chacha' | 'none';
  overlay?: string;
  /** GNDT: subnet -> FullVR (by lab site name). */
  sites: Array<{ site: string; subnet: string }>;
  /** LAN prefixes served through the TUN of the FullVR of the given site. */
  lan?: Array<{ site: string; prefix: string }>;
  token: string;
}

export interface FullvrHandle {
  site: string;
  id: number;
  publicKey: string;
  privateKey: string;
  configPath: string;
  proc: SpawnHandle | null;
}

/** The lab's standard clouds: public prefix from the documentation ranges, private subnet. */
const CLOUDS = {
  a: ['198.51.100.0/25', '10.1.0.0/24'],
  b: ['203.0.113.0/25', '10.2.0.0/24'],
  c: ['192.0.2.0/25', '10.3.0.0/24'],
} as const;
export type CloudName = keyof typeof CLOUDS;

export function cloud(name: CloudName, vms: string[], extra: Partial<CloudSiteSpec> = {}): CloudSiteSpec {
  return { name, kind: 'cloud', publicPrefix: CLOUDS[name][0], subnet: CLOUDS[name][1], vms, ...extra };
}

/** One physical-mode network spanning the standard clouds' subnets. */
export function blueNetwork(sites: CloudName[], extra: Partial<NetworkSpec> = {}): NetworkSpec {
  return { id: 1, name: 'blue', mode: 'physical', sites: sites.map((site) => ({ site, subnet: CLOUDS[site][1] })), token: 'blue-token-0123456789abcdef', ...extra };
}

/**
 * State a lab download server starts from: a provider catalog in the providers' own formats
 * (test ranges only: cloud a -> aws/us-east-1, cloud b -> gcp/europe-west1) and the
 * authority's signing key, so FullVR configs can name its public key before it starts.
 */
export function writeJoinLabState(dir: string, authorityPrivateKey: string): { catalog: string; dataDir: string } {
  const catalog = join(dir, 'catalog');
  const dataDir = join(dir, 'data');
  mkdirSync(catalog);
  mkdirSync(dataDir);
  writeFileSync(
    join(catalog, 'aws.json'),
    JSON.stringify({ syncToken: '1', createDate: '2026-11-01-00-00-00', prefixes: [{ ip_prefix: CLOUDS.a[0], region: 'us-east-1', service: 'EC2', network_border_group: 'us-east-1' }], ipv6_prefixes: [] }),
  );
  writeFileSync(join(catalog, 'gcp.json'), JSON.stringify({ syncToken: '1', creationTime: '2026-11-01T00:00:00', prefixes: [{ ipv4Prefix: CLOUDS.b[0], service: 'Google Cloud', scope: 'europe-west1' }] }));
  writeFileSync(join(dataDir, 'authority.key'), authorityPrivateKey + '\n', { mode: 0o600 });
  return { catalog, dataDir };
}

export interface OverlayOptions {
  /** The download server's authority settings, copied into every FullVR config. */
  authority?: { publicKey: string; url?: string; apiToken?: string; heartbeatSeconds?: number };
  /** site -> [provider, region] as the authority's catalog names it. */
  placement?: Record<string, [string, string]>;
  /** limited site -> its queue-VR's site (the limited FullVR sits behind NAT: lab fullvrBehindNat). */
  limited?: Record<string, string>;
  /** Wake-up moderation of every FullVR (and of TinyVRs the bench starts); default: the routers' own. */
  moderationMicros?: number;
  /** Sites whose FullVR runs with `shortcuts: false`. */
  shortcutsOff?: string[];
  /** Sites whose FullVR runs with `directPaths: true` (introduces its members to each other); the others run with false. */
  directPaths?: string[];
}

export class Overlay {
  readonly dir = mkdtempSync(join(tmpdir(), 'tinyvine-e2e-'));
  readonly fullvrs = new Map<string, FullvrHandle>();
  readonly tinyvrs = new Map<string, SpawnHandle>();

  constructor(
    readonly lab: Lab,
    readonly networks: NetworkSpec[],
    fullvrSites: string[],
    readonly opts: OverlayOptions = {},
  ) {
    fullvrSites.forEach((site, i) => {
      const k = generateKeyPair();
      this.fullvrs.set(site, { site, id: i + 1, publicKey: k.publicKey, privateKey: k.privateKey, configPath: join(this.dir, `fullvr-${site}.yaml`), proc: null });
    });
    for (const f of this.fullvrs.values()) writeFileSync(f.configPath, stringify(this.fullvrConfig(f)));
  }

  endpoint(site: string): string {
    return `${this.lab.site(site).fullvrPublic}:${FULLVR_PORT}`;
  }

  /** Where a VM of `site` reaches its FullVR: a limited FullVR only on its private address. */
  memberEndpoint(site: string): string {
    return this.opts.limited?.[site] ? `${this.lab.node(`${site}-fvr`).privateAddr}:${FULLVR_PORT}` : this.endpoint(site);
  }

  private fullvrConfig(f: FullvrHandle): Record<string, unknown> {
    // Everyone but a limited VR and its queue-VR reaches the limited VR's subnets via the queue-VR.
    const vrOf = (site: string) => {
      const q = this.opts.limited?.[site];
      return this.fullvrs.get(q && f.site !== site && f.site !== q ? q : site)!.id;
    };
    const nets = this.networks.filter((n) => n.sites.some((s) => s.site === f.site) || n.lan?.some((l) => l.site === f.site));
    return {
      id: f.id,
      listen: `0.0.0.0:${FULLVR_PORT}`,
      privateKey: f.privateKey,
      control: FULLVR_CONTROL,
      tun: { name: 'tvfvr0' },
      keepaliveSeconds: 2,
      ...(this.opts.moderationMicros !== undefined ? { moderationMicros: this.opts.moderationMicros } : {}),
      ...(this.opts.shortcutsOff?.includes(f.site) ? { shortcuts: false } : {}),
      // Off unless asked for: the tests count what crosses each FullVR.
      directPaths: this.opts.directPaths?.includes(f.site) ?? false,
      peers: [...this.fullvrs.values()]
        .filter((p) => p !== f)
        .map((p) =>
          this.opts.limited?.[p.site] ? { id: p.id, publicKey: p.publicKey, limited: true } : { id: p.id, endpoint: this.endpoint(p.site), publicKey: p.publicKey },
        ),
      networks: nets.map((n) => ({
        id: n.id,
        name: n.name,
        mode: n.mode,
        ...(n.auth ? { auth: n.auth } : {}),
        ...(n.overlay ? { overlay: n.overlay } : {}),
        // A site with several subnets (IPv4 and IPv6) gets one GNDT entry per subnet, uniquely named.
        sites: n.sites.map((s, i) => ({ name: n.sites.filter((x) => x.site === s.site).length > 1 ? `${s.site}-${i}` : s.site, subnet: s.subnet, vr: vrOf(s.site) })),
        ...(n.lan?.some((l) => l.site === f.site) ? { lan: n.lan.filter((l) => l.site === f.site).map((l) => l.prefix) } : {}),
      })),
      tokens: nets.map((n) => ({ token: n.token, network: n.id })),
      ...(this.opts.authority ? { authority: this.opts.authority } : {}),
      ...(this.opts.placement?.[f.site] ? { provider: this.opts.placement[f.site][0], region: this.opts.placement[f.site][1] } : {}),
      ...(this.opts.limited?.[f.site] ? { queueVr: { id: this.fullvrs.get(this.opts.limited[f.site])!.id, tcpFallbackSeconds: 2 } } : {}),
    };
  }

  async startFullvr(site: string): Promise<FullvrHandle> {
    const f = this.fullvrs.get(site)!;
    f.proc = this.lab.spawn(`${site}-fvr`, [process.execPath, CLI, 'fullvr', '--config', f.configPath], {
      logFile: join(this.lab.logsDir, `fullvr-${site}-${Date.now()}.log`),
    });
    await f.proc.waitForLog(/fullvr ready/, 15_000);
    return f;
  }

  async startAllFullvrs(): Promise<void> {
    await Promise.all([...this.fullvrs.keys()].map((s) => this.startFullvr(s)));
  }

  /** Until every FullVR sends on a confirmed session to each peer it can reach (limited peers reach us). */
  async waitPeersUp(timeoutMs = 15_000): Promise<void> {
    await waitFor(async () => {
      for (const site of this.fullvrs.keys()) {
        const st = await this.fullvrStatus(site);
        if (!st.peers.every((p: any) => p.session > 0)) return false;
      }
      return true;
    }, timeoutMs);
  }

  /** Start a TinyVR in VM `vm` joining the FullVR of `site` with the token of `network`. */
  async startTinyvr(vm: string, site: string, network: number, extra: string[] = []): Promise<SpawnHandle> {
    const net = this.networks.find((n) => n.id === network)!;
    const f = this.fullvrs.get(site)!;
    const h = this.lab.spawn(
      vm,
      [process.execPath, CLI, 'tinyvr', '--fullvr', this.memberEndpoint(site), '--fullvr-key', f.publicKey, '--token', net.token, '--control', TINYVR_CONTROL, '--keepalive', '2', ...extra],
      { logFile: join(this.lab.logsDir, `tinyvr-${vm}-${Date.now()}.log`) },
    );
    this.tinyvrs.set(vm, h);
    await h.waitForLog(/ joined /, 15_000);
    return h;
  }

  /** Stop VM `vm`'s TinyVR (SIGTERM: it leaves cleanly), if one runs. */
  async stopTinyvr(vm: string): Promise<void> {
    await this.tinyvrs.get(vm)?.kill('SIGTERM', 3000);
    this.tinyvrs.delete(vm);
  }

  /** Stop VM `vm`'s TinyVR (if one runs) and start it again with these options. */
  async restartTinyvr(vm: string, site: string, network: number, extra: string[] = []): Promise<SpawnHandle> {
    await this.stopTinyvr(vm);
    return this.startTinyvr(vm, site, network, extra);
  }

  async status(node: string, control = FULLVR_CONTROL): Promise<any> {
    const r = await this.lab.exec(node, ['curl', '-sf', '--max-time', '3', `http://${control}/status`]);
    return JSON.parse(r.stdout);
  }

  fullvrStatus(site: string): Promise<any> {
    return this.status(`${site}-fvr`);
  }

  tinyvrStatus(vm: string): Promise<any> {
    return this.status(vm, TINYVR_CONTROL);
  }

  /** Pings `to` from `vm` until vm's shortcut to FullVR `vr` is up (shortcuts open on traffic). */
  async openShortcut(vm: string, to: string, vr: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(
      async () => {
        await this.lab.ping(vm, to, { count: 1, waitS: 0.5 });
        return (await this.tinyvrStatus(vm)).shortcuts.some((s: any) => s.vr === vr && s.state === 'up');
      },
      timeoutMs,
      200,
    );
  }

  /** Pings `to` from `from` (VMs) until both report their direct path to each other up. */
  async openDirect(from: string, to: string, timeoutMs = 15_000): Promise<void> {
    const fromAddr = this.lab.addr(from);
    const toAddr = this.lab.addr(to);
    const up = async (vm: string, peer: string) => (await this.tinyvrStatus(vm)).direct.some((d: any) => d.peer.includes(peer) && d.state === 'up');
    await waitFor(
      async () => {
        await this.lab.ping(from, toAddr, { count: 1, waitS: 0.5 });
        return (await up(from, toAddr)) && (await up(to, fromAddr));
      },
      timeoutMs,
      200,
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.tinyvrs.values()].map((h) => h.kill('SIGTERM', 3000)));
    await Promise.all([...this.fullvrs.values()].map((f) => f.proc?.kill('SIGTERM', 3000)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Sends `file` over one TCP connection from VM `from` to a receiver on `addr`:`port` in VM
 * `to`, which hashes what arrives; returns the receiver's output ("sha <hex>" at the end).
 */
export async function tcpTransferSha(lab: Lab, from: string, to: string, addr: string, port: number, file: string): Promise<string> {
  const srv = lab.spawn(to, ['python3', '-c', `import socket,hashlib
s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('${addr}',${port}));s.listen(1);print('listening',flush=True)
c,_=s.accept();h=hashlib.sha256()
while True:
  d=c.recv(1<<20)
  if not d: break
  h.update(d)
print('sha',h.hexdigest(),flush=True)`]);
  await srv.waitForLog(/listening/, 5000);
  await lab.exec(from, ['python3', '-c', `import socket;s=socket.create_connection(('${addr}',${port}));s.sendall(open('${file}','rb').read());s.close()`], { timeoutMs: 60_000 });
  await srv.exited;
  return srv.log();
}

/** Poll `fn` until it returns truthy or the time is up. */
export async function waitFor<T>(fn: () => Promise<T>, timeoutMs: number, stepMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
