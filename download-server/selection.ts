// Picks the best FullVR for a VM (dissertation Ch. 6): same provider and region, then
// same provider, then the operator's default, then any; only healthy FullVRs serving the
// network; least loaded among equals; an operator pin beats all of that.
import { cidrContains } from '../shared/cidr.js';
import type { FullvrEntry, FullvrRegistry } from './registry.js';

export interface Pin {
  provider?: string;
  region?: string;
  cidr?: string;
  fullvr: number;
}

export interface Choice {
  fullvr: FullvrEntry;
  why: string;
}

export function chooseFullvr(
  registry: FullvrRegistry,
  o: { ip: string; provider: string; region: string | null; network: number; pins: Pin[]; exclude?: number },
): Choice | { error: string } {
  const serving = registry.all().filter((f) => f.networks.includes(o.network) && f.id !== o.exclude);
  const healthy = serving.filter((f) => registry.isHealthy(f.id));
  for (const p of o.pins) {
    if (p.provider && p.provider !== o.provider) continue;
    if (p.region && p.region !== o.region) continue;
    if (p.cidr && !safeContains(p.cidr, o.ip)) continue;
    const f = healthy.find((x) => x.id === p.fullvr);
    if (f) return { fullvr: f, why: `operator pin (${describePin(p)})` };
  }
  if (!healthy.length) {
    return { error: serving.length ? `no healthy FullVR serves network ${o.network} (none sent a recent heartbeat)` : `no FullVR serves network ${o.network}` };
  }
  const tiers: Array<[string, (f: FullvrEntry) => boolean]> = [
    [`same provider and region (${o.provider}/${o.region})`, (f) => f.provider === o.provider && f.region !== null && f.region === o.region],
    [`same provider (${o.provider})`, (f) => f.provider === o.provider],
    ['operator default', (f) => f.isDefault],
    ['any healthy FullVR (no better match)', () => true],
  ];
  for (const [why, match] of tiers) {
    const c = healthy.filter(match);
    if (!c.length) continue;
    // Least loaded first; id as a stable tie-break so equal routers are picked predictably.
    c.sort((a, b) => registry.load(a.id) - registry.load(b.id) || a.id - b.id);
    return { fullvr: c[0], why: `${why}, least loaded` };
  }
  return { error: 'no FullVR available' };
}

function describePin(p: Pin): string {
  return [p.provider, p.region, p.cidr].filter(Boolean).join(' ') || 'all';
}

function safeContains(cidr: string, ip: string): boolean {
  try {
    return cidrContains(cidr, ip);
  } catch {
    return false;
  }
}
