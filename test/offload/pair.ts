// Two network namespaces joined by a veth, one edge driver (edge.mjs) in each: a TUN
// in A and a TUN in B tunnelled over UDP with one fixed session. Used by
// test/unit/offload.test.ts and test/offload/bench.ts. Everything it creates is
// removed by destroy(), also on failure (and on exit/signals through Cleanup).
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Cleanup, destroyNamespaces, destroyNamespacesSync, nsExec, nsSpawn, run, type SpawnHandle } from '../lab/netns.js';

// Next to this file, or (bundled benchmark) under the working directory.
const HERE = existsSync(resolve(import.meta.dirname, 'edge.mjs')) ? import.meta.dirname : resolve('test/offload');
export const EDGE = resolve(HERE, 'edge.mjs');
export const TCP_HASH = resolve(HERE, 'tcp-hash.mjs');
export const NATIVE = process.env.TINYVINE_NATIVE ?? resolve(HERE, '../../build/Release/tinyvine_native.node');

export interface EdgeOptions {
  /** TUN vnet header + TSO, UDP GRO and GSO; a pair gives A and B separately. */
  offload: boolean | [boolean, boolean];
  mode?: number; // AuthMode, default HMAC
  mtu?: number;
  batch?: number;
}

export interface EdgeInfo {
  pid: number;
  tun: { fd: number; name: string; offload: boolean; offloadError?: string };
  udp: { port: number; gro: boolean };
  features: { tunOffload: boolean; udpGro: boolean; udpGso: boolean };
}

// Outer (veth) and inner (TUN) addresses; private to the two namespaces.
export const OUTER = ['10.76.0.1', '10.76.0.2'] as const;
export const INNER4 = ['10.77.0.1', '10.77.0.2'] as const;
export const INNER6 = ['fd77::1', 'fd77::2'] as const;
const PORT = 7000;

export class EdgePair {
  readonly id = randomBytes(3).toString('hex');
  // 'tvoff-' never matches the lab's tv<4 hex>- names, so the lab reaper leaves these alone.
  readonly ns = [`tvoff-${this.id}-a`, `tvoff-${this.id}-b`] as const;
  readonly logDir = join(tmpdir(), `tinyvine-offload-${this.id}`);
  readonly cleanup = new Cleanup(`offload-${this.id}`);
  edges: SpawnHandle[] = [];
  info: EdgeInfo[] = [];
  private procs: SpawnHandle[] = [];
  private starts = 0;
  private readonly veth = [`tvo${this.id}a`, `tvo${this.id}b`] as const;

  /** Creates the namespaces and the veth between them. */
  async setup(): Promise<void> {
    // Logs go with the rest (failures quote them through describe()).
    this.cleanup.defer('logs', () => rmSync(this.logDir, { recursive: true, force: true }), () => rmSync(this.logDir, { recursive: true, force: true }));
    const ns = [...this.ns];
    this.cleanup.defer('namespaces', () => destroyNamespaces(ns), () => destroyNamespacesSync(ns));
    for (const n of ns) await run(['ip', 'netns', 'add', n]);
    const veth = this.veth;
    await run(['ip', 'link', 'add', veth[0], 'netns', ns[0], 'type', 'veth', 'peer', 'name', veth[1], 'netns', ns[1]]);
    for (let i = 0; i < 2; i++) {
      await nsExec(ns[i], ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0']);
      await nsExec(ns[i], ['ip', 'link', 'set', 'lo', 'up']);
      await nsExec(ns[i], ['ip', 'addr', 'add', `${OUTER[i]}/24`, 'dev', veth[i]]);
      await nsExec(ns[i], ['ip', 'link', 'set', veth[i], 'up']);
    }
  }

  /** MTU of the veth between the namespaces. */
  async setOuterMtu(mtu: number): Promise<void> {
    for (let i = 0; i < 2; i++) await nsExec(this.ns[i]!, ['ip', 'link', 'set', 'dev', this.veth[i]!, 'mtu', String(mtu)]);
  }

  /** Starts (or restarts) the two edges. */
  async start(o: EdgeOptions): Promise<EdgeInfo[]> {
    await this.stopEdges();
    const k = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
    const tun = `tvo${this.id}t${this.starts++}`; // a fresh name: the last owner's TUN may still be going away
    const off = Array.isArray(o.offload) ? o.offload : [o.offload, o.offload];
    this.edges = [0, 1].map((i) => {
      const cfg = {
        tun,
        addr4: `${INNER4[i]}/24`,
        addr6: `${INNER6[i]}/64`,
        mtu: o.mtu ?? 1420,
        bind: OUTER[i],
        port: PORT,
        peer: OUTER[1 - i],
        peerPort: PORT,
        offload: off[i],
        gro: off[i],
        gso: off[i],
        mode: o.mode ?? 1,
        txKey: k[i],
        rxKey: k[1 - i],
        batch: o.batch ?? 256,
      };
      return this.spawn(i, 'edge', [process.execPath, EDGE, JSON.stringify(cfg)], { TINYVINE_NATIVE: NATIVE });
    });
    this.info = [];
    for (const e of this.edges) this.info.push(JSON.parse((await e.waitForLog(/READY (.*)/))[1]!) as EdgeInfo);
    return this.info;
  }

  /** SIGTERM to both edges; returns their final stats. */
  async stopEdges(): Promise<Record<string, number>[]> {
    const out: Record<string, number>[] = [];
    for (const e of this.edges) {
      await e.kill('SIGTERM', 3000);
      const m = e.log().match(/STATS (.*)/);
      out.push(m ? (JSON.parse(m[1]!) as Record<string, number>) : {});
    }
    this.edges = [];
    return out;
  }

  /** A process in namespace i, killed by pid in destroy() if still running. */
  spawn(i: number, label: string, cmd: string[], env: NodeJS.ProcessEnv = {}): SpawnHandle {
    const h = nsSpawn(this.ns[i]!, cmd, { logFile: join(this.logDir, `${label}-${i}-${Date.now()}.log`), env: { ...process.env, ...env } });
    this.procs.push(h);
    this.cleanup.defer(`${label} ${h.pid}`, async () => void (await h.kill('SIGKILL', 1000)), () => h.killSync());
    return h;
  }

  /** Sends `bytes` over TCP from A to B's address `dst`; returns both ends' byte counts and hashes. */
  async tcpHash(dst: string, bytes: number, timeoutMs = 120_000): Promise<{ sent: { bytes: number; sha256: string }; got: { bytes: number; sha256: string } }> {
    const port = 5201 + Math.floor(Math.random() * 1000);
    const recv = this.spawn(1, 'recv', [process.execPath, TCP_HASH, 'recv', dst, String(port)]);
    await recv.waitForLog(/LISTENING/);
    const s = await nsExec(this.ns[0], [process.execPath, TCP_HASH, 'send', dst, String(port), String(bytes)], { timeoutMs });
    const sent = JSON.parse(s.stdout.match(/RESULT (.*)/)![1]!) as { bytes: number; sha256: string };
    const got = JSON.parse((await recv.waitForLog(/RESULT (.*)/, 30_000))[1]!) as { bytes: number; sha256: string };
    return { sent, got };
  }

  /** iperf3 client in A against a one-shot server in B; returns the parsed JSON. */
  async iperf(dst: string, args: string[], seconds: number): Promise<IperfResult> {
    const srv = this.spawn(1, 'iperf3-s', ['iperf3', '-s', '-1', '-B', dst]);
    await new Promise((r) => setTimeout(r, 300));
    const c = await nsExec(this.ns[0], ['iperf3', '-c', dst, '-t', String(seconds), '-J', ...args], { timeoutMs: (seconds + 30) * 1000 });
    await srv.exited;
    return JSON.parse(c.stdout) as IperfResult;
  }

  async destroy(): Promise<Error[]> {
    return this.cleanup.run();
  }

  private logs(): string {
    return this.procs.map((p) => `--- ${p.logFile}\n${readFileSync(p.logFile, 'utf8')}`).join('\n');
  }

  /** Logs of everything started, for failure messages. */
  describe(): string {
    try {
      return this.logs();
    } catch {
      return '';
    }
  }
}

export interface IperfSum {
  bits_per_second: number;
  lost_percent?: number;
  lost_packets?: number;
  packets?: number;
  retransmits?: number;
}
export interface IperfResult {
  end: { sum?: IperfSum; sum_sent?: IperfSum; sum_received?: IperfSum };
  error?: string;
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}
