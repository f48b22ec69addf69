// Address arithmetic for the authority: carving per-site blocks out of a virtual network's
// overlay and picking free member addresses inside a block. Control plane only (bigint math).
import { bytesToIp, ipToBytes, parsePrefix, prefixString, cidrsOverlap } from '../../shared/cidr.js';

interface Range {
  family: 4 | 6;
  bits: number;
  start: bigint; // first address
  end: bigint; // last address (inclusive)
}

function toBig(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function fromBig(v: bigint, family: 4 | 6): string {
  const n = family === 4 ? 4 : 16;
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return bytesToIp(out);
}

export function range(prefix: string): Range {
  const p = parsePrefix(prefix);
  const width = p.family === 4 ? 32 : 128;
  const start = toBig(ipToBytes(p.network));
  const size = 1n << BigInt(width - p.bits);
  return { family: p.family, bits: p.bits, start, end: start + size - 1n };
}

/** Canonical text of a prefix ("10.1.0.0/24"). Throws on a malformed one. */
export function canonicalPrefix(s: string): string {
  return prefixString(parsePrefix(s));
}

/** True if prefix `inner` lies entirely inside prefix `outer`. */
export function prefixInside(inner: string, outer: string): boolean {
  const a = range(inner);
  const b = range(outer);
  return a.family === b.family && a.start >= b.start && a.end <= b.end;
}

export { cidrsOverlap };

/**
 * First block of `/blockBits` inside `overlay` that overlaps none of `taken` (any sizes);
 * null when the overlay is full. Skips over taken ranges, so a sparse IPv6 overlay is cheap.
 */
export function allocateBlock(overlay: string, blockBits: number, taken: string[]): string | null {
  const o = range(overlay);
  const width = o.family === 4 ? 32 : 128;
  if (blockBits < o.bits || blockBits > width) return null;
  const size = 1n << BigInt(width - blockBits);
  const used = taken.map(range).filter((r) => r.family === o.family);
  let cand = o.start;
  while (cand + size - 1n <= o.end) {
    const candEnd = cand + size - 1n;
    const hit = used.find((r) => r.start <= candEnd && r.end >= cand);
    if (!hit) return `${fromBig(cand, o.family)}/${blockBits}`;
    // jump past the taken range, to the next block boundary
    let next = hit.end + 1n;
    const rem = (next - o.start) % size;
    if (rem !== 0n) next += size - rem;
    if (next <= cand) next = cand + size;
    cand = next;
  }
  return null;
}

/**
 * First free member address inside `block`: never the block's own (network) address and, for
 * IPv4 blocks of /30 or wider, never the broadcast address. null when the block is full.
 */
export function allocateAddress(block: string, taken: string[]): string | null {
  const b = range(block);
  const width = b.family === 4 ? 32 : 128;
  let first = b.start;
  let last = b.end;
  if (width - b.bits >= 2) {
    first = b.start + 1n;
    if (b.family === 4) last = b.end - 1n;
  }
  const used = taken
    .map((a) => toBig(ipToBytes(a)))
    .filter((v) => v >= first && v <= last)
    .sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  let cand = first;
  for (const u of used) {
    if (u === cand) cand++;
    else if (u > cand) break;
  }
  return cand <= last ? fromBig(cand, b.family) : null;
}

/** True if `ip` may be a member address of `block` (inside it, not its network/broadcast address). */
export function usableInBlock(block: string, ip: string): boolean {
  const b = range(block);
  const v = toBig(ipToBytes(ip));
  const fam = ipToBytes(ip).length === 4 ? 4 : 6;
  if (fam !== b.family || v < b.start || v > b.end) return false;
  const width = b.family === 4 ? 32 : 128;
  if (width - b.bits >= 2) {
    if (v === b.start) return false;
    if (b.family === 4 && v === b.end) return false;
  }
  return true;
}
