// Lab tests: build the simulated internet (network namespaces) and check its plumbing.
// Needs root, iproute2, nftables and ping; skipped (with the reason printed) otherwise.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLab, labSupport, withLab, type Lab, type LabSpec } from './topology.js';
import { LAB_STATE_DIR, labStateFile, listNamespaces, reapStaleLabs, run } from './netns.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');

const support = await labSupport();
if (!support.ok) console.log(`[lab] skipping lab tests: ${support.reason}`);

const SPEC: LabSpec = {
  sites: [
    { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '10.1.0.0/24', vms: ['a1', 'a2'] },
    { name: 'b', kind: 'cloud', publicPrefix: '203.0.113.0/25', subnet: '10.2.0.0/24', vms: ['b1', 'b2'] },
    { name: 'c', kind: 'lan', publicPrefix: '192.0.2.0/25', subnet: '10.3.0.0/24', hosts: ['h1'], overlayRoutes: ['10.1.0.0/24', '10.2.0.0/24'] },
  ],
};

/** A small spec for labs built only to be torn down. */
const SMALL: LabSpec = {
  sites: [
    { name: 'x', kind: 'cloud', publicPrefix: '198.51.100.128/26', subnet: '10.9.0.0/24', vms: ['x1'] },
    { name: 'y', kind: 'lan', publicPrefix: '203.0.113.128/26', subnet: '10.8.0.0/24', hosts: ['y1'] },
  ],
};

async function labNamespaces(prefix: string): Promise<string[]> {
  return (await listNamespaces()).filter((n) => n.startsWith(`${prefix}-`));
}

function labPrefixesNow(all: string[]): Set<string> {
  const s = new Set<string>();
  for (const n of all) {
    const m = /^(tv[0-9a-f]{4})-/.exec(n);
    if (m) s.add(m[1]!);
  }
  return s;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // a killed process whose parent died is a zombie until init reaps it: that is dead
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Polls up to 2 s for `pid` to be gone (killed processes take a moment to vanish). */
async function pidGone(pid: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    if (!pidAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe.skipIf(!support.ok)('lab topology: 2 clouds + 1 LAN site', () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await createLab(SPEC);
    console.log(`[lab] ${lab.prefix}: built ${lab.namespaces.length} namespaces in ${lab.buildMs.toFixed(0)} ms`);
  });
  afterAll(async () => {
    await lab?.cleanup();
  });

  it('builds fast, with unique prefixed names and the documented addresses', async () => {
    expect(lab.buildMs).toBeLessThan(3000);
    expect(lab.prefix).toMatch(/^tv[0-9a-f]{4}$/);
    expect(lab.ns('inet')).toBe(`${lab.prefix}-inet`);
    expect(lab.ns('a1')).toBe(`${lab.prefix}-a-a1`);
    expect(lab.ns('a')).toBe(`${lab.prefix}-a-rt`);
    expect(lab.ns('c')).toBe(`${lab.prefix}-c-fvr`);
    expect(lab.addr('a1')).toBe('10.1.0.11');
    expect(lab.addr('a2')).toBe('10.1.0.12');
    expect(lab.addr('b2')).toBe('10.2.0.12');
    expect(lab.addr('h1')).toBe('10.3.0.10');
    expect(lab.addr('b-fvr')).toBe('203.0.113.3');
    expect(lab.publicAddr('a', 'rt')).toBe('198.51.100.2');
    expect(lab.publicAddr('a', 'fvr')).toBe('198.51.100.3');
    expect(lab.publicAddr('c', 'fvr')).toBe('192.0.2.3');
    expect(() => lab.publicAddr('c', 'rt')).toThrow(/no public rt/);
    const mine = await labNamespaces(lab.prefix);
    expect(mine.sort()).toEqual([...lab.namespaces].sort());
    expect(JSON.parse(fs.readFileSync(labStateFile(lab.prefix), 'utf8'))).toMatchObject({ prefix: lab.prefix, ownerPid: process.pid });
  });

  it('VM a1 pings a2 (same /24, through the router: no shared L2)', async () => {
    const r = await lab.ping('a1', lab.addr('a2'), { count: 3 });
    expect(r.ok, r.output).toBe(true);
    expect(r.rttAvgMs).not.toBeNull();
    // a2's MAC as a1 sees it is the router's (proxy ARP), not a2's own
    const a2mac = (await lab.exec('a2', ['cat', '/sys/class/net/eth0/address'])).stdout.trim();
    const neigh = (await lab.exec('a1', ['ip', 'neigh', 'show', lab.addr('a2')])).stdout;
    expect(neigh).not.toContain(a2mac);
  });

  it('VM a1 reaches the public address of FullVR b, through NAT', async () => {
    const r = await lab.ping('a1', lab.publicAddr('b', 'fvr'), { count: 3 });
    expect(r.ok, r.output).toBe(true);

    // the FullVR sees the site router's public address, not the VM's
    const server = lab.spawn('b-fvr', [
      process.execPath,
      '-e',
      `const s=require('dgram').createSocket('udp4');
       s.on('message',(m,r)=>{console.log('FROM '+r.address+':'+r.port+' '+m);s.send(m,r.port,r.address)});
       s.bind(40000,()=>console.log('LISTENING'));`,
    ]);
    await server.waitForLog(/LISTENING/);
    const client = await lab.exec('a1', [
      process.execPath,
      '-e',
      `const s=require('dgram').createSocket('udp4');
       s.on('message',m=>{console.log('REPLY '+m);process.exit(0)});
       s.send('hello',40000,${JSON.stringify(lab.publicAddr('b', 'fvr'))});
       setTimeout(()=>process.exit(1),3000);`,
    ]);
    expect(client.stdout).toContain('REPLY hello');
    expect(server.log()).toMatch(/FROM 198\.51\.100\.2:\d+ hello/);
    expect(server.logFile.startsWith(lab.logsDir)).toBe(true);
    const exit = await server.kill();
    expect(exit.signal).toBe('SIGTERM');
    expect(server.running).toBe(false);
  });

  it('VM a1 cannot reach b1 by its private address (no overlay yet)', async () => {
    const r = await lab.ping('a1', lab.addr('b1'), { count: 2 });
    expect(r.received).toBe(0);
    expect(r.ok).toBe(false);
  });

  it('a spoofed packet from a1 is dropped and counted', async () => {
    const before = await lab.spoofDrops('a');
    await lab.exec('a1', ['ip', 'addr', 'add', '10.1.0.99/32', 'dev', 'eth0']);
    try {
      const r = await lab.ping('a1', lab.addr('a2'), { count: 3, source: '10.1.0.99' });
      expect(r.received).toBe(0);
      const after = await lab.spoofDrops('a');
      expect(after - before).toBeGreaterThanOrEqual(3);
      // also towards the internet
      const r2 = await lab.ping('a1', lab.publicAddr('b', 'fvr'), { count: 2, source: '10.1.0.99' });
      expect(r2.received).toBe(0);
      expect((await lab.spoofDrops('a')) - after).toBeGreaterThanOrEqual(2);
    } finally {
      await lab.exec('a1', ['ip', 'addr', 'del', '10.1.0.99/32', 'dev', 'eth0']);
    }
    // the real address still works, and was not counted
    const ok = await lab.ping('a1', lab.addr('a2'), { count: 1 });
    expect(ok.ok, ok.output).toBe(true);
    expect(await lab.spoofDrops('b')).toBe(0);
  });

  it('LAN host h1 pings its FullVR and has static overlay routes, no default route', async () => {
    const r = await lab.ping('h1', '10.3.0.1', { count: 3 });
    expect(r.ok, r.output).toBe(true);
    const routes = (await lab.exec('h1', ['ip', '-4', 'route'])).stdout;
    expect(routes).toContain('10.1.0.0/24 via 10.3.0.1');
    expect(routes).toContain('10.2.0.0/24 via 10.3.0.1');
    expect(routes).not.toContain('default');
  });

  it('public addresses route through inet; private ones never cross it', async () => {
    expect((await lab.ping('c-fvr', lab.publicAddr('a', 'fvr'), { count: 1 })).ok).toBe(true);
    expect((await lab.ping('a-fvr', lab.publicAddr('b', 'rt'), { count: 1 })).ok).toBe(true);
    // h1 has no NAT: its packets to a public address die at inet (bogon source)
    const before = await lab.bogonDrops();
    await lab.exec('h1', ['ip', 'route', 'add', '198.51.100.0/25', 'via', '10.3.0.1']);
    const r = await lab.ping('h1', lab.publicAddr('a', 'fvr'), { count: 2 });
    expect(r.received).toBe(0);
    expect((await lab.bogonDrops()) - before).toBeGreaterThanOrEqual(2);
    await lab.exec('h1', ['ip', 'route', 'del', '198.51.100.0/25']);
  });

  it('cleanup kills spawned processes, removes every namespace and the state file; idempotent', async () => {
    const h = lab.spawn('a2', ['sleep', '60']);
    expect(h.pid).toBeGreaterThan(0);
    expect(h.running).toBe(true);
    const prefix = lab.prefix;
    await Promise.all([lab.cleanup(), lab.cleanup()]);
    await lab.cleanup();
    expect(h.running).toBe(false);
    expect(await pidGone(h.pid)).toBe(true);
    const { stdout } = await run(['ip', 'netns', 'list']);
    expect(stdout.split('\n').filter((l) => l.startsWith(`${prefix}-`))).toEqual([]);
    expect(fs.existsSync(labStateFile(prefix))).toBe(false);
    expect(fs.existsSync(lab.logsDir)).toBe(false);
  });
});

describe.skipIf(!support.ok)('lab variants', () => {
  it('two clouds may use the same private subnet; FullVR behind NAT', async () => {
    await withLab(
      {
        sites: [
          { name: 'x', kind: 'cloud', publicPrefix: '198.51.100.0/26', subnet: '172.31.0.0/24', vms: ['x1', 'x2'] },
          { name: 'y', kind: 'cloud', publicPrefix: '203.0.113.64/26', subnet: '172.31.0.0/24', vms: ['y1'], fullvrBehindNat: true },
        ],
      },
      async (lab) => {
        expect(lab.addr('x1')).toBe('172.31.0.11');
        expect(lab.addr('y1')).toBe('172.31.0.11');
        expect(lab.addr('y-fvr')).toBe('172.31.0.10');
        expect(lab.publicAddr('y', 'fvr')).toBe(lab.publicAddr('y', 'rt'));
        expect((await lab.ping('x1', lab.addr('x2'), { count: 2 })).ok).toBe(true);
        expect((await lab.ping('y1', lab.addr('y-fvr'), { count: 2 })).ok).toBe(true);
        expect((await lab.ping('y-fvr', lab.publicAddr('x', 'fvr'), { count: 2 })).ok).toBe(true);
        expect((await lab.ping('x1', lab.publicAddr('y', 'rt'), { count: 2 })).ok).toBe(true);
      },
    );
  });

  it('rejects addresses outside the documentation / private ranges before touching anything', async () => {
    await expect(
      createLab({ sites: [{ name: 'z', kind: 'cloud', publicPrefix: '8.8.8.0/24', subnet: '10.0.0.0/24', vms: [] }] }),
    ).rejects.toThrow(/publicPrefix/);
    await expect(
      createLab({ sites: [{ name: 'z', kind: 'cloud', publicPrefix: '192.0.2.0/24', subnet: '100.64.0.0/24', vms: [] }] }),
    ).rejects.toThrow(/subnet/);
    await expect(
      createLab({ sites: [{ name: 'averylongname', kind: 'cloud', publicPrefix: '192.0.2.0/24', subnet: '10.0.0.0/24', vms: [] }] }),
    ).rejects.toThrow(/site name/);
  });

  it('a thrown error inside withLab still removes everything', async () => {
    let prefix = '';
    let pid = 0;
    await expect(
      withLab(SMALL, async (lab) => {
        prefix = lab.prefix;
        pid = lab.spawn('x1', ['sleep', '60']).pid;
        expect(await labNamespaces(prefix)).toHaveLength(lab.namespaces.length);
        throw new Error('boom inside the test');
      }),
    ).rejects.toThrow('boom inside the test');
    expect(prefix).not.toBe('');
    expect(await labNamespaces(prefix)).toEqual([]);
    expect(fs.existsSync(labStateFile(prefix))).toBe(false);
    expect(await pidGone(pid)).toBe(true);
  });

  it('a build that fails half-way leaves nothing behind', async () => {
    const before = labPrefixesNow(await listNamespaces());
    const statesBefore = new Set(fs.existsSync(LAB_STATE_DIR) ? fs.readdirSync(LAB_STATE_DIR) : []);
    // the namespaces get created, then `ip link add ... mtu 70000` fails
    await expect(
      createLab({ sites: [{ name: 'm', kind: 'cloud', publicPrefix: '198.51.100.0/26', subnet: '10.7.0.0/24', vms: ['m1'], mtu: 70000 }] }),
    ).rejects.toThrow(/mtu|Command failed/i);
    const after = labPrefixesNow(await listNamespaces());
    expect([...after].filter((p) => !before.has(p))).toEqual([]);
    const statesAfter = fs.existsSync(LAB_STATE_DIR) ? fs.readdirSync(LAB_STATE_DIR) : [];
    expect(statesAfter.filter((f) => f.endsWith('.json') && !statesBefore.has(f))).toEqual([]);
  });
});

describe.skipIf(!support.ok)('lab cleanup when the owning process dies', () => {
  let dir = '';
  let bundle = '';
  const children = new Set<ChildProcess>();

  beforeAll(async () => {
    // The child is this TS lab bundled into one plain .mjs (Node 20 cannot run TS itself).
    const { build } = await import('esbuild');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tinyvine-lab-child-'));
    bundle = path.join(dir, 'child.mjs');
    await build({
      stdin: {
        contents: `
          import { createLab } from './topology.js';
          const mode = process.argv[2];
          const lab = await createLab(${JSON.stringify(SMALL)});
          const h = lab.spawn('x1', ['sleep', '60']);
          process.stdout.write('READY ' + lab.prefix + ' ' + h.pid + '\\n');
          if (mode === 'throw') setTimeout(() => { throw new Error('child boom'); }, 50);
          setTimeout(() => process.exit(3), 30000); // bounded, whatever happens
        `,
        resolveDir: HERE,
        sourcefile: 'lab-child.ts',
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: bundle,
      logLevel: 'silent',
    });
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    await reapStaleLabs({ orphans: false });
  });

  /** Starts the child lab; resolves once its lab is built. */
  async function startChild(mode: string): Promise<{ child: ChildProcess; prefix: string; sleepPid: number; exited: Promise<[number | null, string | null]> }> {
    const child = spawn(process.execPath, [bundle, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const exited = new Promise<[number | null, string | null]>((r) => child.on('exit', (code, sig) => r([code, sig])));
    let out = '';
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const m = await new Promise<RegExpMatchArray>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`child did not get ready: ${out}\n${err}`)), 20_000);
      child.stdout!.on('data', (d) => {
        out += d;
        const mm = /READY (tv[0-9a-f]{4}) (\d+)/.exec(out);
        if (mm) {
          clearTimeout(t);
          resolve(mm);
        }
      });
      void exited.then(() => reject(new Error(`child exited early: ${out}\n${err}`)));
    });
    return { child, prefix: m[1]!, sleepPid: Number(m[2]), exited };
  }

  async function waitExit(exited: Promise<[number | null, string | null]>): Promise<[number | null, string | null]> {
    return Promise.race([exited, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('child did not exit')), 20_000))]);
  }

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig} to a process that built a lab leaves no namespaces`, async () => {
      const { child, prefix, sleepPid, exited } = await startChild('wait');
      expect(await labNamespaces(prefix)).not.toEqual([]);
      expect(pidAlive(sleepPid)).toBe(true);
      child.kill(sig);
      const [code, signal] = await waitExit(exited);
      expect(signal).toBe(sig); // the signal is re-raised after cleanup
      expect(code).toBeNull();
      expect(await labNamespaces(prefix)).toEqual([]);
      expect(fs.existsSync(labStateFile(prefix))).toBe(false);
      expect(await pidGone(sleepPid)).toBe(true);
    });
  }

  it('an uncaught exception in the owner leaves no namespaces', async () => {
    const { prefix, sleepPid, exited } = await startChild('throw');
    const [code] = await waitExit(exited);
    expect(code).toBe(1);
    expect(await labNamespaces(prefix)).toEqual([]);
    expect(fs.existsSync(labStateFile(prefix))).toBe(false);
    expect(await pidGone(sleepPid)).toBe(true);
  });

  it('after SIGKILL, reapStaleLabs() and scripts/lab-clean.mjs remove the leftovers', async () => {
    const [c1, c2] = await Promise.all([startChild('wait'), startChild('wait')]);
    for (const c of [c1, c2]) {
      c.child.kill('SIGKILL');
      await waitExit(c.exited);
      expect(await labNamespaces(c.prefix)).not.toEqual([]); // nothing could clean up
      expect(fs.existsSync(labStateFile(c.prefix))).toBe(true);
    }
    // the lab's own processes (in its namespaces) outlived the owner
    expect(pidAlive(c1.sleepPid)).toBe(true);

    const script = path.join(REPO, 'scripts', 'lab-clean.mjs');
    const dry = await run([process.execPath, script, '--dry-run']);
    expect(dry.stdout).toContain(c1.prefix);
    expect(dry.stdout).toContain(c2.prefix);

    const reaped = await reapStaleLabs();
    expect(reaped).toContain(c1.prefix);
    expect(reaped).toContain(c2.prefix);
    for (const c of [c1, c2]) {
      expect(await labNamespaces(c.prefix)).toEqual([]);
      expect(fs.existsSync(labStateFile(c.prefix))).toBe(false);
      expect(await pidGone(c.sleepPid)).toBe(true);
    }

    // the operator script on a fresh leftover
    const c3 = await startChild('wait');
    c3.child.kill('SIGKILL');
    await waitExit(c3.exited);
    expect(await labNamespaces(c3.prefix)).not.toEqual([]);
    const res = await run([process.execPath, script]);
    expect(res.stdout).toContain(c3.prefix);
    expect(await labNamespaces(c3.prefix)).toEqual([]);
    expect(fs.existsSync(labStateFile(c3.prefix))).toBe(false);
    expect(await pidGone(c3.sleepPid)).toBe(true);
  });
});
