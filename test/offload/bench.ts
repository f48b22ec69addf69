// Offload benchmark: iperf3 single-stream TCP (and optionally UDP) through the edge
// driver pair (test/offload/pair.ts), offload off and on in the same run, HMAC mode,
// with the CPU each edge process used. Root only; needs iperf3.
//
//   npx esbuild test/offload/bench.ts --bundle --platform=node --format=esm \
//     --outfile=/tmp/offload-bench.mjs && node /tmp/offload-bench.mjs [seconds] [rounds] [--udp RATE]
//
// Run from the repository root (the bundle finds edge.mjs and the addon from there).
import { readFileSync } from 'node:fs';
import { cpuSeconds, EdgePair, INNER4 } from './pair.js';

const args = process.argv.slice(2);
const udpAt = args.indexOf('--udp');
const udpRate = udpAt >= 0 ? args.splice(udpAt, 2)[1] : undefined;
const seconds = Number(args[0] ?? 10);
const rounds = Number(args[1] ?? 2);
const mode = Number(process.env.BENCH_MODE ?? 1); // AuthMode: 1 = HMAC

/** Busy and total jiffies of the whole box (all CPUs). */
function boxTicks(): [number, number] {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + f[4]!;
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return [total - idle, total];
}

interface Row {
  label: string;
  mbps: number;
  retr: number;
  cpuA: number;
  cpuB: number;
  box: number;
  lost?: number;
  stats: Record<string, number>[];
}

async function measure(pair: EdgePair, label: string, offload: boolean, udp?: string): Promise<Row> {
  const info = await pair.start({ offload, mode });
  const pids = info.map((i) => i.pid);
  const t0 = process.hrtime.bigint();
  const c0 = pids.map(cpuSeconds);
  const b0 = boxTicks();
  const r = await pair.iperf(INNER4[1], udp ? ['-u', '-b', udp, '-l', '1300'] : [], seconds);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  const c1 = pids.map(cpuSeconds);
  const b1 = boxTicks();
  const stats = await pair.stopEdges();
  const rx = r.end.sum_received ?? r.end.sum!;
  return {
    label,
    mbps: rx.bits_per_second / 1e6,
    retr: r.end.sum_sent?.retransmits ?? 0,
    lost: udp ? (r.end.sum?.lost_percent ?? rx.lost_percent) : undefined,
    cpuA: (100 * (c1[0]! - c0[0]!)) / dt,
    cpuB: (100 * (c1[1]! - c0[1]!)) / dt,
    box: (100 * (b1[0] - b0[0])) / (b1[1] - b0[1]),
    stats,
  };
}

const pair = new EdgePair();
try {
  await pair.setup();
  const rows: Row[] = [];
  for (let k = 0; k < rounds; k++) {
    for (const offload of [false, true]) {
      const row = await measure(pair, offload ? 'offload on ' : 'offload off', offload, udpRate);
      rows.push(row);
      const lost = row.lost !== undefined ? ` lost ${row.lost.toFixed(2)}%` : '';
      console.log(
        `${row.label} | ${row.mbps.toFixed(0)} Mbit/s${lost} | retr ${row.retr} | edge A (sender side) CPU ${row.cpuA.toFixed(0)}% | edge B CPU ${row.cpuB.toFixed(0)}% | box busy ${row.box.toFixed(0)}% of all CPUs`,
      );
      if (process.env.BENCH_STATS) console.log(JSON.stringify(row.stats));
    }
  }
} finally {
  const errors = await pair.destroy();
  for (const e of errors) console.error(e.message);
}
