// What a system call and a wake-up cost on this machine, measured at the start of the bench.
// The overlay's figures depend on them far more than the C tunnels' do (a router pass is a
// wake-up plus a few batched calls; OpenVPN and tinc make one call per packet), and they
// differ several-fold between VM types (e.g. KVM vs PVM guests): with these two numbers in
// the output, runs on different machines can be compared. `perf bench` (Debian linux-perf)
// does the measuring; without it the profile says so and the bench goes on. It also times
// the GMAC of one full-size datagram through each GHASH this CPU runs (the largest per-byte
// cost of the default auth mode; which GHASH runs depends on the CPU).
import { execFileSync } from 'node:child_process';
import { HEADER_LEN, gmacNsPerTag } from '../../shared/packet-engine.js';
import { firstLine } from './measure.js';

/** Bytes a full-size datagram's MAC covers on the lab's paths: header + a 1432-byte packet (TUN MTU). */
export const GMAC_BENCH_LEN = HEADER_LEN + 1432;

export interface MachineProfile {
  /** One getppid() round trip into the kernel, ns (`perf bench syscall basic`). */
  syscall_ns: number | null;
  /** Two processes passing a token through pipes, µs per round trip = two wake-ups (`perf bench sched pipe`). */
  pipe_roundtrip_us: number | null;
  /** The same with both processes on CPU 0: task switches without waking another (v)CPU. */
  pipe_roundtrip_one_cpu_us: number | null;
  /** ns per GMAC tag of GMAC_BENCH_LEN bytes, per GHASH this CPU runs (fastest of 20 rounds of 2,000). */
  gmac_ns: Record<string, number | null>;
  /** Why a figure is missing. */
  unavailable?: string;
}

function usecsPerOp(cmd: string, args: string[]): number {
  const out = execFileSync(cmd, args, { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const m = /([\d.]+)\s+usecs\/op/.exec(out);
  if (!m) throw new Error(`${cmd} ${args.join(' ')}: no "usecs/op" in its output`);
  return Number(m[1]);
}

export function measureMachineProfile(): MachineProfile {
  const p: MachineProfile = { syscall_ns: null, pipe_roundtrip_us: null, pipe_roundtrip_one_cpu_us: null, gmac_ns: {} };
  const missing: string[] = [];
  const tryRun = (what: string, f: () => void) => {
    try {
      f();
    } catch (e) {
      missing.push(`${what}: ${firstLine(e)}`);
    }
  };
  tryRun('syscall', () => (p.syscall_ns = Math.round(usecsPerOp('perf', ['bench', 'syscall', 'basic', '-l', '300000']) * 1000)));
  tryRun('pipe', () => (p.pipe_roundtrip_us = Math.round(usecsPerOp('perf', ['bench', 'sched', 'pipe', '-l', '20000']) * 10) / 10));
  tryRun('pipe on one CPU', () => (p.pipe_roundtrip_one_cpu_us = Math.round(usecsPerOp('taskset', ['-c', '0', 'perf', 'bench', 'sched', 'pipe', '-l', '20000']) * 10) / 10));
  tryRun('gmac', () => {
    for (const [name, width] of [['avx512-vpclmulqdq', 512], ['avx2-vpclmulqdq', 256], ['openssl', 0]] as const) {
      const ns = gmacNsPerTag(width, GMAC_BENCH_LEN);
      if (ns !== null) p.gmac_ns[name] = Math.round(ns);
    }
  });
  if (missing.length > 0) p.unavailable = missing.join('; ');
  return p;
}

export function formatMachineProfile(p: MachineProfile): string {
  const f = (x: number | null, unit: string) => (x === null ? 'n/a' : `${x} ${unit}`);
  return (
    `machine: system call ${f(p.syscall_ns, 'ns')}, wake-up round trip through pipes ${f(p.pipe_roundtrip_us, 'µs')} ` +
    `(both on CPU 0: ${f(p.pipe_roundtrip_one_cpu_us, 'µs')})` +
    `, GMAC of a ${GMAC_BENCH_LEN}-byte datagram: ${Object.entries(p.gmac_ns).map(([k, v]) => `${k} ${f(v, 'ns')}`).join(', ') || 'n/a'}` +
    (p.unavailable ? `  [not measured: ${p.unavailable}; install linux-perf]` : '')
  );
}
