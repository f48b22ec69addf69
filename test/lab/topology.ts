// A small simulated internet with clouds, built from network namespaces.
//
//   inet (router, ip_forward=1, no NAT, drops private src/dst = bogons)
//    ├─ br-<site> bridge per site, carrying the site's public prefix, inet at .1
//    │
//    ├─ cloud site:  <p>-<site>-rt   WAN .2 on br-<site>; one veth per VM (no shared L2):
//    │               VM <p>-<site>-<vm>: eth0 = subnet .11, .12, ... /len, default via .1
//    │               router: .1/32 on every VM veth, /32 route per VM, proxy_arp,
//    │               MASQUERADE out of wan, anti-spoofing (counter spoof_drops)
//    │               FullVR <p>-<site>-fvr: eth0 = public .3 on br-<site>
//    │               (fullvrBehindNat: behind the router instead, private .10)
//    │
//    └─ lan site:    FullVR <p>-<site>-fvr = LAN gateway: wan = public .3 on br-<site>,
//                    bridge `lan` = subnet .1; hosts <p>-<site>-<host>: eth0 = .10, .11, ...
//                    with static routes to the overlay prefixes via .1, no default route
//
// All traffic stays inside namespaces created here. Public prefixes must be inside the
// documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), site subnets
// inside RFC 1918 ranges.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  Cleanup,
  LAB_STATE_DIR,
  claimLabState,
  destroyNamespaces,
  destroyNamespacesSync,
  listNamespaces,
  namespacesOf,
  nsExec,
  nsSpawn,
  procStartTime,
  reapStaleLabs,
  removeLabFiles,
  run,
  writeLabState,
  type LabState,
  type RunOptions,
  type RunResult,
  type SpawnHandle,
} from './netns.js';

// ---------------------------------------------------------------------------
// Spec
// ---------------------------------------------------------------------------

interface BaseSiteSpec {
  /** [a-z][a-z0-9]{0,7} */
  name: string;
  /** Inside 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24; inet .1, router .2, FullVR .3. */
  publicPrefix: string;
  /** Private (RFC 1918) subnet of the site; gateway .1. */
  subnet: string;
  /** MTU of every link of this site (VM/host links, WAN links). Default 1500. */
  mtu?: number;
}

export interface CloudSiteSpec extends BaseSiteSpec {
  kind: 'cloud';
  /** VM names ([a-z][a-z0-9]{0,11}, unique in the lab); addresses .11, .12, ... */
  vms: string[];
  /** Whether the cloud has a FullVR namespace. Default true. */
  fullvr?: boolean;
  /** Put the FullVR behind the site router (private .10, NAT) instead of on a public address. */
  fullvrBehindNat?: boolean;
}

export interface LanSiteSpec extends BaseSiteSpec {
  kind: 'lan';
  /** LAN host names (unique in the lab); addresses .10, .11, ... */
  hosts: string[];
  /** Routes the LAN hosts get via the FullVR's LAN address (the overlay prefixes). */
  overlayRoutes?: string[];
}

export type SiteSpec = CloudSiteSpec | LanSiteSpec;

export interface LabSpec {
  sites: SiteSpec[];
  /** Keep IPv6 enabled in the namespaces. Default false (IPv6 disabled: no DAD/RS/MLD noise). */
  ipv6?: boolean;
  /** inet drops forwarded packets with a private/CGNAT source or destination. Default true. */
  bogonFilter?: boolean;
  /** Reap labs of dead owners before building. Default true. */
  reapStale?: boolean;
  /** Where spawned processes log. Default /tmp/tinyvine-lab/logs/<prefix> (removed on cleanup). */
  logsDir?: string;
  /** Keep the logs dir on cleanup (also: TINYVINE_LAB_KEEP_LOGS=1). */
  keepLogs?: boolean;
  /**
   * Model the cloud host's transmit path (the benchmark's labs): the far end of every cloud
   * VM's and FullVR's veth receives in a NAPI kernel thread of its own (GRO and UDP GRO
   * forwarding on, `threaded`), so the lab's routing, NAT and bridging beyond a node's NIC
   * run there, as a real VM's transmissions are handled by the host (vhost), instead of
   * inside the sending process's system calls. Needs ethtool. Default false: the tests
   * keep the plain lab.
   */
  hostTx?: boolean;
}

// ---------------------------------------------------------------------------
// Lab API
// ---------------------------------------------------------------------------

export type NodeRole = 'inet' | 'router' | 'fullvr' | 'vm' | 'host';

export interface LabNode {
  /** 'inet', '<site>-rt', '<site>-fvr', or a VM/host name. */
  name: string;
  ns: string;
  role: NodeRole;
  site: string | null;
  /** Address on the inet side (inet: null, it has one per site bridge). */
  publicAddr: string | null;
  /** Address inside the site subnet (VMs, hosts, FullVR behind NAT, lan FullVR's LAN side, router's .1). */
  privateAddr: string | null;
}

export interface LabSite {
  name: string;
  kind: 'cloud' | 'lan';
  publicPrefix: string;
  subnet: string;
  /** inet's address on this site's bridge (.1 of publicPrefix). */
  inetAddr: string;
  /** Private gateway of the site (.1 of subnet): router (cloud) or FullVR (lan). */
  gateway: string;
  /** Public address of the site router (cloud) — null for lan sites. */
  routerPublic: string | null;
  /** Public address through which the FullVR is reached (router's for fullvrBehindNat); null if none. */
  fullvrPublic: string | null;
  /** VM names (cloud) or host names (lan). */
  members: string[];
}

export interface PingOptions {
  count?: number;
  /** Payload bytes (-s). */
  size?: number;
  /** true: -M do (set DF, no fragmentation); false: -M dont. */
  df?: boolean;
  /** Seconds between packets (-i). Default 0.2. */
  interval?: number;
  /** Seconds to wait for a reply after the last packet (-W). Default 1. */
  waitS?: number;
  /** Source address or interface (-I). */
  source?: string;
}

export interface PingResult {
  /** Every packet got a reply. */
  ok: boolean;
  transmitted: number;
  received: number;
  lossPct: number;
  rttAvgMs: number | null;
  output: string;
}

export interface Lab {
  readonly prefix: string;
  readonly spec: LabSpec;
  readonly logsDir: string;
  /** Wall time createLab took. */
  readonly buildMs: number;
  /** All namespaces of the lab. */
  readonly namespaces: readonly string[];
  nodes(): LabNode[];
  node(name: string): LabNode;
  site(name: string): LabSite;
  /** Namespace of a node ('inet', '<site>-rt', '<site>-fvr', VM/host name) or of a site's gateway (site name). */
  ns(nameOrSite: string): string;
  /** Primary address of a node: VM/host private address; FullVR: its public one (private if behind NAT); router: WAN. */
  addr(name: string): string;
  publicAddr(site: string, which: 'fvr' | 'rt'): string;
  exec(name: string, cmd: readonly string[], opts?: RunOptions): Promise<RunResult>;
  spawn(name: string, cmd: readonly string[], opts?: { logFile?: string; env?: NodeJS.ProcessEnv }): SpawnHandle;
  /** `to`: an IPv4 address or a node name. Never throws for unreachable targets. */
  ping(from: string, to: string, opts?: PingOptions): Promise<PingResult>;
  /** Packets the site router dropped because a VM sent with a source that is not its own. */
  spoofDrops(site: string): Promise<number>;
  /** Packets inet dropped for a private source/destination. */
  bogonDrops(): Promise<number>;
  /** Kills spawned processes (by pid, waiting for them), deletes the namespaces. Idempotent. */
  cleanup(): Promise<void>;
}

// ---------------------------------------------------------------------------
// IPv4 helpers
// ---------------------------------------------------------------------------

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function ipToInt(s: string): number {
  const m = IPV4_RE.exec(s);
  if (!m) throw new Error(`invalid IPv4 address: ${s}`);
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) throw new Error(`invalid IPv4 address: ${s}`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

interface Cidr {
  base: number;
  len: number;
  size: number;
  text: string;
}

function parseCidr(s: string): Cidr {
  const [a, l, extra] = s.split('/');
  const len = Number(l);
  if (extra !== undefined || a === undefined || !Number.isInteger(len) || len < 0 || len > 32 || l === '') {
    throw new Error(`invalid IPv4 prefix: ${s}`);
  }
  const size = 2 ** (32 - len);
  const addr = ipToInt(a);
  const base = len === 0 ? 0 : (addr & (0xffffffff << (32 - len))) >>> 0;
  if (base !== addr) throw new Error(`prefix ${s} has host bits set`);
  return { base, len, size, text: s };
}

function within(inner: Cidr, outer: Cidr): boolean {
  return inner.len >= outer.len && inner.base >= outer.base && inner.base + inner.size <= outer.base + outer.size;
}

function overlaps(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + b.size && b.base < a.base + a.size;
}

function hostAddr(c: Cidr, offset: number, what: string): string {
  if (offset < 1 || offset > c.size - 2) throw new Error(`${c.text} is too small for ${what} (host .${offset})`);
  return intToIp(c.base + offset);
}

const PUBLIC_RANGES = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'].map(parseCidr);
const PRIVATE_RANGES = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'].map(parseCidr);
const BOGONS = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'];

// ---------------------------------------------------------------------------
// Plan: validate the spec and compute every namespace, address and command
// ---------------------------------------------------------------------------

const SITE_NAME_RE = /^[a-z][a-z0-9]{0,7}$/;
const MEMBER_NAME_RE = /^[a-z][a-z0-9]{0,11}$/;
const RESERVED = new Set(['inet', 'rt', 'fvr', 'lan', 'wan', 'eth0', 'lo']);

interface Plan {
  nodes: Map<string, LabNode>;
  sites: Map<string, LabSite>;
}

function validate(spec: LabSpec): void {
  if (!spec || !Array.isArray(spec.sites) || spec.sites.length === 0) throw new Error('lab spec: sites must be a non-empty array');
  const names = new Set<string>();
  const claim = (n: string, what: string) => {
    if (RESERVED.has(n)) throw new Error(`lab spec: ${what} name '${n}' is reserved`);
    if (names.has(n)) throw new Error(`lab spec: duplicate name '${n}'`);
    names.add(n);
  };
  const publics: Cidr[] = [];
  for (const s of spec.sites) {
    if (!SITE_NAME_RE.test(s.name)) throw new Error(`lab spec: site name '${s.name}' must match ${SITE_NAME_RE}`);
    claim(s.name, 'site');
    const kind: string = s.kind;
    if (kind !== 'cloud' && kind !== 'lan') throw new Error(`lab spec: site ${s.name}: unknown kind '${kind}'`);
    const pub = parseCidr(s.publicPrefix);
    if (!PUBLIC_RANGES.some((r) => within(pub, r))) {
      throw new Error(`lab spec: site ${s.name}: publicPrefix ${s.publicPrefix} must be inside 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24`);
    }
    if (pub.size < 8) throw new Error(`lab spec: site ${s.name}: publicPrefix ${s.publicPrefix} is too small (need /29 or larger)`);
    for (const p of publics) if (overlaps(p, pub)) throw new Error(`lab spec: site ${s.name}: publicPrefix ${s.publicPrefix} overlaps ${p.text}`);
    publics.push(pub);
    const sub = parseCidr(s.subnet);
    if (!PRIVATE_RANGES.some((r) => within(sub, r))) throw new Error(`lab spec: site ${s.name}: subnet ${s.subnet} must be a private (RFC 1918) prefix`);
    if (s.mtu !== undefined && (!Number.isInteger(s.mtu) || s.mtu < 68)) throw new Error(`lab spec: site ${s.name}: bad mtu ${s.mtu}`);
    const members = s.kind === 'cloud' ? s.vms : s.hosts;
    if (!Array.isArray(members)) throw new Error(`lab spec: site ${s.name}: ${s.kind === 'cloud' ? 'vms' : 'hosts'} must be an array`);
    for (const m of members) {
      if (!MEMBER_NAME_RE.test(m)) throw new Error(`lab spec: site ${s.name}: name '${m}' must match ${MEMBER_NAME_RE}`);
      claim(m, 'member');
    }
    if (s.kind === 'lan') {
      for (const r of s.overlayRoutes ?? []) {
        const c = parseCidr(r);
        if (!PRIVATE_RANGES.some((p) => within(c, p))) throw new Error(`lab spec: site ${s.name}: overlay route ${r} must be private`);
      }
    }
  }
}

function plan(spec: LabSpec, prefix: string): Plan {
  validate(spec);
  const nodes = new Map<string, LabNode>();
  const sites = new Map<string, LabSite>();
  const add = (n: LabNode) => nodes.set(n.name, n);
  add({ name: 'inet', ns: `${prefix}-inet`, role: 'inet', site: null, publicAddr: null, privateAddr: null });
  for (const s of spec.sites) {
    const pub = parseCidr(s.publicPrefix);
    const sub = parseCidr(s.subnet);
    const gateway = hostAddr(sub, 1, 'the gateway');
    const inetAddr = hostAddr(pub, 1, 'inet');
    if (s.kind === 'cloud') {
      const routerPublic = hostAddr(pub, 2, 'the router');
      add({ name: `${s.name}-rt`, ns: `${prefix}-${s.name}-rt`, role: 'router', site: s.name, publicAddr: routerPublic, privateAddr: gateway });
      let fullvrPublic: string | null = null;
      if (s.fullvr !== false) {
        if (s.fullvrBehindNat) {
          fullvrPublic = routerPublic;
          add({
            name: `${s.name}-fvr`, ns: `${prefix}-${s.name}-fvr`, role: 'fullvr', site: s.name,
            publicAddr: null, privateAddr: hostAddr(sub, 10, 'the FullVR'),
          });
        } else {
          fullvrPublic = hostAddr(pub, 3, 'the FullVR');
          add({ name: `${s.name}-fvr`, ns: `${prefix}-${s.name}-fvr`, role: 'fullvr', site: s.name, publicAddr: fullvrPublic, privateAddr: null });
        }
      }
      s.vms.forEach((vm, i) => {
        add({ name: vm, ns: `${prefix}-${s.name}-${vm}`, role: 'vm', site: s.name, publicAddr: null, privateAddr: hostAddr(sub, 11 + i, `VM ${vm}`) });
      });
      sites.set(s.name, {
        name: s.name, kind: 'cloud', publicPrefix: s.publicPrefix, subnet: s.subnet, inetAddr, gateway,
        routerPublic, fullvrPublic, members: [...s.vms],
      });
    } else {
      const fullvrPublic = hostAddr(pub, 3, 'the FullVR');
      add({ name: `${s.name}-fvr`, ns: `${prefix}-${s.name}-fvr`, role: 'fullvr', site: s.name, publicAddr: fullvrPublic, privateAddr: gateway });
      s.hosts.forEach((h, i) => {
        add({ name: h, ns: `${prefix}-${s.name}-${h}`, role: 'host', site: s.name, publicAddr: null, privateAddr: hostAddr(sub, 10 + i, `host ${h}`) });
      });
      sites.set(s.name, {
        name: s.name, kind: 'lan', publicPrefix: s.publicPrefix, subnet: s.subnet, inetAddr, gateway,
        routerPublic: null, fullvrPublic, members: [...s.hosts],
      });
    }
  }
  return { nodes, sites };
}

// ---------------------------------------------------------------------------
// Build
// ---------------------------------------------------------------------------

function mtuArg(mtu: number | undefined): string {
  return mtu === undefined ? '' : ` mtu ${mtu}`;
}

function ipBatch(ns: string, lines: string[]): Promise<unknown> {
  if (lines.length === 0) return Promise.resolve();
  return run(['ip', '-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: 20_000 });
}

function sysctl(ns: string, settings: string[]): Promise<unknown> {
  if (settings.length === 0) return Promise.resolve();
  return nsExec(ns, ['sysctl', '-q', '-w', ...settings], { timeoutMs: 10_000 });
}

function nftLoad(ns: string, ruleset: string): Promise<unknown> {
  return nsExec(ns, ['nft', '-f', '-'], { input: ruleset, timeoutMs: 10_000 });
}

function randomPrefix(): string {
  return `tv${randomBytes(2).toString('hex')}`;
}

async function claimPrefix(logsDirFor: (p: string) => string, namespacesFor: (p: string) => string[]): Promise<LabState> {
  const existing = await listNamespaces();
  for (let i = 0; i < 64; i++) {
    const prefix = randomPrefix();
    if (namespacesOf(prefix, existing).length > 0) continue;
    const state: LabState = {
      prefix,
      ownerPid: process.pid,
      ownerStart: procStartTime(process.pid),
      createdAt: new Date().toISOString(),
      namespaces: namespacesFor(prefix),
      pids: [],
      logsDir: logsDirFor(prefix),
    };
    if (claimLabState(state)) return state;
  }
  throw new Error('could not find a free lab prefix');
}

/** Builds the lab described by `spec`. On failure everything built so far is removed. */
export async function createLab(spec: LabSpec): Promise<Lab> {
  const t0 = performance.now();
  validate(spec);
  if (spec.reapStale !== false) await reapStaleLabs();

  const keepLogs = spec.keepLogs === true || process.env.TINYVINE_LAB_KEEP_LOGS === '1';
  const state = await claimPrefix(
    (p) => spec.logsDir ?? path.join(LAB_STATE_DIR, 'logs', p),
    (p) => [...plan(spec, p).nodes.values()].map((n) => n.ns),
  );
  const prefix = state.prefix;
  const { nodes, sites } = plan(spec, prefix);
  const namespaces = [...nodes.values()].map((n) => n.ns);
  const logsDir = state.logsDir;
  const cleanup = new Cleanup(`lab ${prefix}`);

  // Registered first, so they run last.
  cleanup.defer(
    'remove lab state',
    () => removeLabFiles(prefix, keepLogs ? undefined : logsDir),
    () => removeLabFiles(prefix, keepLogs ? undefined : logsDir),
  );
  cleanup.defer(
    'delete namespaces',
    () => destroyNamespaces(namespaces),
    () => destroyNamespacesSync(namespaces),
  );
  const spawned: SpawnHandle[] = [];
  cleanup.defer(
    'stop spawned processes',
    async () => {
      await Promise.all([...spawned].reverse().map((h) => h.kill('SIGTERM', 2000)));
    },
    () => {
      for (const h of [...spawned].reverse()) h.killSync();
    },
  );

  const nodeOf = (name: string): LabNode => {
    const n = nodes.get(name);
    if (!n) throw new Error(`lab ${prefix}: no node '${name}' (have: ${[...nodes.keys()].join(', ')})`);
    return n;
  };

  try {
    fs.mkdirSync(logsDir, { recursive: true });
    await build(spec, nodes, sites);
    if (spec.hostTx) await threadHostTx(spec, nodes);
  } catch (e) {
    const errs = await cleanup.run();
    if (errs.length > 0) (e as Error).message += `\n(cleanup after failed build: ${errs.map((x) => x.message).join('; ')})`;
    throw e;
  }

  let cleaned: Promise<void> | null = null;
  let spawnSeq = 0;
  const buildMs = performance.now() - t0;

  const lab: Lab = {
    prefix,
    spec,
    logsDir,
    buildMs,
    namespaces,
    nodes: () => [...nodes.values()].map((n) => ({ ...n })),
    node: (name) => ({ ...nodeOf(name) }),
    site(name) {
      const s = sites.get(name);
      if (!s) throw new Error(`lab ${prefix}: no site '${name}'`);
      return { ...s, members: [...s.members] };
    },
    ns(nameOrSite) {
      const s = sites.get(nameOrSite);
      if (s) return s.kind === 'cloud' ? nodeOf(`${s.name}-rt`).ns : nodeOf(`${s.name}-fvr`).ns;
      return nodeOf(nameOrSite).ns;
    },
    addr(name) {
      const n = nodeOf(name);
      const a = n.role === 'vm' || n.role === 'host' ? n.privateAddr : (n.publicAddr ?? n.privateAddr);
      if (!a) throw new Error(`lab ${prefix}: node '${name}' has no single address`);
      return a;
    },
    publicAddr(siteName, which) {
      const s = lab.site(siteName);
      const a = which === 'rt' ? s.routerPublic : s.fullvrPublic;
      if (!a) throw new Error(`lab ${prefix}: site ${siteName} has no public ${which} address`);
      return a;
    },
    exec(name, cmd, opts) {
      return nsExec(lab.ns(name), cmd, opts);
    },
    spawn(name, cmd, opts = {}) {
      if (cleaned) throw new Error(`lab ${prefix} is cleaned up`);
      const ns = lab.ns(name);
      const base = path.basename(cmd[0] ?? 'cmd').replace(/[^A-Za-z0-9_.-]/g, '_');
      const logFile = opts.logFile ?? path.join(logsDir, `${name}-${++spawnSeq}-${base}.log`);
      const h = nsSpawn(ns, cmd, { logFile, env: opts.env });
      spawned.push(h);
      if (h.pid > 0) {
        state.pids.push(h.pid);
        try {
          writeLabState(state);
        } catch {
          /* informational only */
        }
      }
      return h;
    },
    async ping(from, to, opts = {}) {
      const count = opts.count ?? 3;
      const interval = opts.interval ?? 0.2;
      const waitS = opts.waitS ?? 1;
      const target = IPV4_RE.test(to) ? to : lab.addr(to);
      const cmd = ['ping', '-n', '-c', String(count), '-i', String(interval), '-W', String(waitS)];
      if (opts.size !== undefined) cmd.push('-s', String(opts.size));
      if (opts.df !== undefined) cmd.push('-M', opts.df ? 'do' : 'dont');
      if (opts.source !== undefined) cmd.push('-I', opts.source);
      cmd.push(target);
      const r = await lab.exec(from, cmd, { check: false, timeoutMs: Math.ceil((count * interval + waitS) * 1000) + 10_000 });
      return parsePing(r.stdout + r.stderr);
    },
    async spoofDrops(siteName) {
      const s = lab.site(siteName);
      if (s.kind !== 'cloud') throw new Error(`lab ${prefix}: site ${siteName} is not a cloud (no anti-spoofing router)`);
      return readCounter(lab.ns(`${siteName}-rt`), 'spoof_drops');
    },
    async bogonDrops() {
      if (spec.bogonFilter === false) return 0;
      return readCounter(lab.ns('inet'), 'bogon_drops');
    },
    cleanup() {
      if (!cleaned) {
        cleaned = cleanup.run().then((errs) => {
          if (errs.length > 0) throw new AggregateError(errs, `lab ${prefix}: cleanup had errors: ${errs.map((e) => e.message).join('; ')}`);
        });
      }
      return cleaned;
    },
  };
  return lab;
}

/** Builds a lab, runs fn, and always cleans up (also when fn throws). */
export async function withLab<T>(spec: LabSpec, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await createLab(spec);
  try {
    return await fn(lab);
  } finally {
    await lab.cleanup();
  }
}

async function readCounter(ns: string, name: string): Promise<number> {
  const r = await nsExec(ns, ['nft', '-j', 'list', 'counter', 'ip', 'tvlab', name], { timeoutMs: 10_000 });
  const j = JSON.parse(r.stdout) as { nftables: Array<{ counter?: { packets: number } }> };
  const c = j.nftables.find((x) => x.counter)?.counter;
  if (!c) throw new Error(`counter ${name} not found in ${ns}`);
  return c.packets;
}

export function parsePing(output: string): PingResult {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  const transmitted = m ? Number(m[1]) : 0;
  const received = m ? Number(m[2]) : 0;
  const rtt = /= [\d.]+\/([\d.]+)\/[\d.]+\/[\d.]+ ms/.exec(output);
  return {
    ok: transmitted > 0 && received === transmitted,
    transmitted,
    received,
    lossPct: transmitted > 0 ? (100 * (transmitted - received)) / transmitted : 100,
    rttAvgMs: rtt ? Number(rtt[1]) : null,
    output,
  };
}

async function build(spec: LabSpec, nodes: Map<string, LabNode>, sites: Map<string, LabSite>): Promise<void> {
  const nsOf = (name: string) => nodes.get(name)!.ns;
  const all = [...nodes.values()];
  const ipv6Off = spec.ipv6 !== true && fs.existsSync('/proc/sys/net/ipv6');

  // 1. namespaces
  await run(['ip', '-batch', '-'], { input: all.map((n) => `netns add ${n.ns}`).join('\n') + '\n', timeoutMs: 20_000 });

  // 2. namespace-wide sysctls, before any interface exists (so `default` applies to all)
  await Promise.all(
    all.map((n) => {
      const s = ['net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'];
      if (ipv6Off) s.push('net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
      if (n.role === 'inet' || n.role === 'router' || n.role === 'fullvr') s.push('net.ipv4.ip_forward=1');
      return sysctl(n.ns, s);
    }),
  );

  // 3. inet: one bridge per site, veths to the site router / public FullVR
  const inetLines = ['link set lo up'];
  for (const s of spec.sites) {
    const site = sites.get(s.name)!;
    const br = `br-${s.name}`;
    const plen = parseCidr(s.publicPrefix).len;
    inetLines.push(`link add ${br}${mtuArg(s.mtu)} type bridge stp_state 0 forward_delay 0`, `addr add ${site.inetAddr}/${plen} dev ${br}`, `link set ${br} up`);
    const uplinks: Array<[string, string, string]> = []; // [inet side, peer ns, peer name]
    if (s.kind === 'cloud') {
      uplinks.push([`${s.name}-rt`, nsOf(`${s.name}-rt`), 'wan']);
      if (s.fullvr !== false && !s.fullvrBehindNat) uplinks.push([`${s.name}-fvr`, nsOf(`${s.name}-fvr`), 'eth0']);
    } else {
      uplinks.push([`${s.name}-fvr`, nsOf(`${s.name}-fvr`), 'wan']);
    }
    for (const [local, peerNs, peerName] of uplinks) {
      inetLines.push(
        `link add ${local}${mtuArg(s.mtu)} type veth peer name ${peerName}${mtuArg(s.mtu)} netns ${peerNs}`,
        `link set ${local} master ${br}`,
        `link set ${local} up`,
      );
    }
  }
  await ipBatch(nsOf('inet'), inetLines);

  const inetNft: Promise<unknown>[] = [];
  if (spec.bogonFilter !== false) {
    inetNft.push(
      nftLoad(
        nsOf('inet'),
        `table ip tvlab {
  counter bogon_drops { }
  set bogons { type ipv4_addr; flags interval; elements = { ${BOGONS.join(', ')} } }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip saddr @bogons counter name "bogon_drops" drop
    ip daddr @bogons counter name "bogon_drops" drop
  }
}
`,
      ),
    );
  }

  // 4. per site: gateway namespace, then its members, nft, per-interface sysctls
  await Promise.all([...inetNft, ...spec.sites.map((s) => (s.kind === 'cloud' ? buildCloud(s, sites.get(s.name)!, nodes) : buildLan(s, sites.get(s.name)!, nodes)))]);
}

/** The far ends of the cloud nodes' NICs: [namespace, device], see LabSpec.hostTx. */
function hostTxEnds(spec: LabSpec, nodes: Map<string, LabNode>): Array<[string, string]> {
  const ends: Array<[string, string]> = [];
  for (const s of spec.sites) {
    if (s.kind !== 'cloud') continue;
    const rtNs = nodes.get(`${s.name}-rt`)!.ns;
    for (const vm of s.vms) ends.push([rtNs, `v-${vm}`]);
    if (s.fullvr === false) continue;
    ends.push(s.fullvrBehindNat ? [rtNs, 'v-fvr'] : [nodes.get('inet')!.ns, `${s.name}-fvr`]);
  }
  return ends;
}

async function threadHostTx(spec: LabSpec, nodes: Map<string, LabNode>): Promise<void> {
  await Promise.all(
    hostTxEnds(spec, nodes).map(async ([ns, dev]) => {
      // veth receives through NAPI only with GRO on, and a sending socket's UDP only with
      // UDP GRO forwarding too; `threaded` then moves that NAPI into a kernel thread.
      try {
        await nsExec(ns, ['ethtool', '-K', dev, 'gro', 'on', 'rx-udp-gro-forwarding', 'on'], { timeoutMs: 10_000 });
        await nsExec(ns, ['sh', '-c', `echo 1 > /sys/class/net/${dev}/threaded && test "$(cat /sys/class/net/${dev}/threaded)" = 1`], { timeoutMs: 10_000 });
      } catch (e) {
        const why = ((e as Error).message ?? String(e)).split('\n')[0];
        throw new Error(`hostTx: cannot give ${dev} a NAPI thread of its own on this kernel (${why}); run without it (bench: --plain-lab)`);
      }
    }),
  );
}

async function buildCloud(s: CloudSiteSpec, site: LabSite, nodes: Map<string, LabNode>): Promise<void> {
  const rt = nodes.get(`${s.name}-rt`)!;
  const sub = parseCidr(s.subnet);
  const plen = parseCidr(s.publicPrefix).len;
  const members: LabNode[] = s.vms.map((v) => nodes.get(v)!);
  const fvr = nodes.get(`${s.name}-fvr`);
  const behind = s.fullvr !== false && s.fullvrBehindNat === true && fvr !== undefined;
  if (behind) members.unshift(fvr);
  const veth = (n: LabNode) => (n.role === 'fullvr' ? 'v-fvr' : `v-${n.name}`);

  const rtLines = [
    'link set lo up',
    `addr add ${site.routerPublic}/${plen} dev wan`,
    'link set wan up',
    `route add default via ${site.inetAddr}`,
    // never proxy-ARP for / route out unassigned site addresses
    `route add unreachable ${s.subnet}`,
  ];
  for (const m of members) {
    const v = veth(m);
    rtLines.push(
      `link add ${v}${mtuArg(s.mtu)} type veth peer name eth0${mtuArg(s.mtu)} netns ${m.ns}`,
      `addr add ${site.gateway}/32 dev ${v}`,
      `link set ${v} up`,
      `route add ${m.privateAddr}/32 dev ${v}`,
    );
  }
  await ipBatch(rt.ns, rtLines);

  const antispoof = members.map((m) => `    iifname "${veth(m)}" ip saddr != ${m.privateAddr} counter name "spoof_drops" drop`).join('\n');
  const ruleset = `table ip tvlab {
  counter spoof_drops { }
  chain antispoof {
    type filter hook prerouting priority raw; policy accept;
${antispoof}
  }
  chain nat_out {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ip saddr ${s.subnet} masquerade
  }
  # Unsolicited UDP from the internet is dropped, as a cloud's NAT gateway does, not answered
  # by the router itself: an answered packet would leave a conntrack entry that makes the
  # NAT give the VM's next outgoing flow to that sender another port (what breaks UDP hole
  # punching behind a plain Linux NAT box; clouds' NATs do not behave that way).
  chain wan_in {
    type filter hook input priority filter; policy accept;
    iifname "wan" meta l4proto udp ct state new drop
  }
}
`;
  const jobs: Promise<unknown>[] = [
    // proxy ARP (answers otherwise delayed by up to 0.8 s: proxy_delay)
    sysctl(rt.ns, members.flatMap((m) => [`net.ipv4.conf.${veth(m)}.proxy_arp=1`, `net.ipv4.neigh.${veth(m)}.proxy_delay=0`])),
    nftLoad(rt.ns, ruleset),
  ];
  for (const m of members) {
    jobs.push(
      ipBatch(m.ns, [
        'link set lo up',
        `addr add ${m.privateAddr}/${sub.len} dev eth0`,
        'link set eth0 up',
        `route add default via ${site.gateway}`,
      ]),
    );
  }
  if (fvr && !behind) {
    jobs.push(ipBatch(fvr.ns, ['link set lo up', `addr add ${fvr.publicAddr}/${plen} dev eth0`, 'link set eth0 up', `route add default via ${site.inetAddr}`]));
  }
  await Promise.all(jobs);
}

async function buildLan(s: LanSiteSpec, site: LabSite, nodes: Map<string, LabNode>): Promise<void> {
  const fvr = nodes.get(`${s.name}-fvr`)!;
  const sub = parseCidr(s.subnet);
  const plen = parseCidr(s.publicPrefix).len;
  const hosts = s.hosts.map((h) => nodes.get(h)!);
  const lines = [
    'link set lo up',
    `addr add ${fvr.publicAddr}/${plen} dev wan`,
    'link set wan up',
    `route add default via ${site.inetAddr}`,
    `link add lan${mtuArg(s.mtu)} type bridge stp_state 0 forward_delay 0`,
    `addr add ${site.gateway}/${sub.len} dev lan`,
    'link set lan up',
  ];
  for (const h of hosts) {
    lines.push(
      `link add h-${h.name}${mtuArg(s.mtu)} type veth peer name eth0${mtuArg(s.mtu)} netns ${h.ns}`,
      `link set h-${h.name} master lan`,
      `link set h-${h.name} up`,
    );
  }
  await ipBatch(fvr.ns, lines);
  await Promise.all(
    hosts.map((h) =>
      ipBatch(h.ns, [
        'link set lo up',
        `addr add ${h.privateAddr}/${sub.len} dev eth0`,
        'link set eth0 up',
        ...(s.overlayRoutes ?? []).map((r) => `route add ${r} via ${site.gateway}`),
      ]),
    ),
  );
}

// ---------------------------------------------------------------------------
// Support check for tests
// ---------------------------------------------------------------------------

function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (!dir) continue;
    try {
      fs.accessSync(path.join(dir, cmd), fs.constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

/** Whether lab tests can run here: root, the tools, and network namespaces that actually work. */
export async function labSupport(tools: readonly string[] = ['ip', 'nft', 'ping', 'sysctl']): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `lab needs Linux (this is ${process.platform})` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { ok: false, reason: 'lab needs root (network namespaces, nftables)' };
  const missing = tools.filter((t) => !onPath(t));
  if (missing.length > 0) return { ok: false, reason: `missing tools: ${missing.join(', ')}` };
  // Probe by building a tiny lab; one retry, so a transient hiccup does not skip a whole suite.
  let last = '';
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const lab = await createLab({ sites: [{ name: 'p', kind: 'lan', publicPrefix: '192.0.2.248/29', subnet: '10.255.255.0/29', hosts: [] }], reapStale: false });
      await lab.cleanup();
      return { ok: true };
    } catch (e) {
      last = (e as Error).message.split('\n').slice(0, 3).join(' ');
    }
  }
  return { ok: false, reason: `cannot build a network namespace lab here: ${last}` };
}
