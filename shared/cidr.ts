// Address / CIDR / endpoint helpers for the control plane (config, routing-table setup).
// Everything here parses strings and allocates; the hot path works on bytes (shared/lpm-trie.ts).
//
// Validation is done twice on purpose: node:net's isIP is strict and standard (no leading
// zeros, well-formed IPv6), ip-cidr additionally rejects forms it cannot represent. We accept
// only what both accept. Zone indexes ("fe80::1%eth0") are rejected: they have no meaning in a
// routing prefix and would be silently dropped by the byte conversion.
import { isIP } from 'node:net';
import IPCIDR from 'ip-cidr';

export type Family = 4 | 6;

export interface ParsedIp {
  family: Family;
  /** Canonical text form: dotted quad, or RFC 5952 compressed lower-case IPv6. */
  address: string;
}

export interface ParsedCidr {
  family: Family;
  /** Canonical form of the address part as written (host bits kept), without "/bits". */
  address: string;
  bits: number;
  /** Canonical network address (host bits cleared), without "/bits": "10.1.0.0" for 10.1.0.5/24. */
  network: string;
}

/** Canonical "network/bits" text of a parsed CIDR, e.g. "10.1.0.0/24", "fd00::/64". */
export function prefixString(c: ParsedCidr): string {
  return `${c.network}/${c.bits}`;
}

export interface Endpoint {
  /** IP literal in canonical form (IPv6 without brackets), or a DNS name. */
  host: string;
  port: number;
  /** 4 or 6 for an IP literal, 0 for a DNS name (resolve it before use). */
  family: 0 | Family;
}

/** Quote a value for a one-line error message (JSON escapes newlines; long values are cut). */
export function show(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return JSON.stringify(s.length > 64 ? s.slice(0, 61) + '...' : s);
}

function v4Bytes(s: string, out: Uint8Array, at: number): void {
  const p = s.split('.');
  for (let i = 0; i < 4; i++) out[at + i] = Number(p[i]);
}

// Input must already be a valid IPv6 literal (checked with isIP).
function v6Bytes(s: string): Uint8Array {
  const out = new Uint8Array(16);
  const groups = (part: string): number[] => {
    const g: number[] = [];
    if (part === '') return g;
    for (const x of part.split(':')) {
      if (x.includes('.')) {
        const b = new Uint8Array(4);
        v4Bytes(x, b, 0);
        g.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
      } else {
        g.push(parseInt(x, 16));
      }
    }
    return g;
  };
  const dbl = s.indexOf('::');
  let all: number[];
  if (dbl < 0) {
    all = groups(s);
  } else {
    const head = groups(s.slice(0, dbl));
    const tail = groups(s.slice(dbl + 2));
    all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i] >> 8;
    out[2 * i + 1] = all[i] & 0xff;
  }
  return out;
}

// checkCidrLib: false where the caller runs ip-cidr on the whole CIDR anyway (isValidCIDR
// validates the address part too), so each prefix pays for ip-cidr once.
function tryBytes(s: unknown, checkCidrLib = true): Uint8Array | null {
  if (typeof s !== 'string' || s.includes('%')) return null;
  const fam = isIP(s);
  if (fam === 0 || (checkCidrLib && !IPCIDR.isValidAddress(s))) return null;
  if (fam === 6) return v6Bytes(s);
  const b = new Uint8Array(4);
  v4Bytes(s, b, 0);
  return b;
}

/** 4 bytes for IPv4, 16 for IPv6. Throws on anything that is not a plain IP literal. */
export function ipToBytes(s: string): Uint8Array {
  const b = tryBytes(s);
  if (!b) throw new Error(`${show(s)} is not a valid IP address`);
  return b;
}

/** Inverse of ipToBytes (4 or 16 bytes); IPv6 per RFC 5952 (lower case, longest zero run as "::"). */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new Error(`bytesToIp: expected 4 or 16 bytes, got ${b.length}`);
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i] << 8) | b[2 * i + 1]);
  // IPv4-mapped addresses keep their dotted tail, like node and RFC 5952 section 5.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  let bestAt = -1;
  let bestLen = 1; // a single zero group is not compressed
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** Copy of `b` with every bit after the first `bits` cleared. */
export function maskBytes(b: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) {
    const keep = bits - i * 8;
    if (keep >= 8) out[i] = b[i];
    else if (keep > 0) out[i] = b[i] & (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

export function parseIp(s: string): ParsedIp {
  const b = ipToBytes(s);
  return { family: b.length === 4 ? 4 : 6, address: bytesToIp(b) };
}

/** Parse "a.b.c.d/n" or "v6/n". Host bits are allowed here (see parsePrefix for routing prefixes). */
export function parseCidr(s: string): ParsedCidr {
  return parseCidrBytes(s).cidr;
}

/** parseCidr plus the address bytes as written (4 or 16), for callers that need both. */
export function parseCidrBytes(s: string): { cidr: ParsedCidr; bytes: Uint8Array } {
  if (typeof s !== 'string') throw new Error(`${show(s)} is not a valid CIDR (expected a string like "10.1.0.0/24")`);
  const slash = s.lastIndexOf('/');
  if (slash < 0) throw new Error(`${show(s)} is not a valid CIDR (missing "/prefix-length")`);
  const bytes = tryBytes(s.slice(0, slash), false);
  if (!bytes) throw new Error(`${show(s)} is not a valid CIDR (bad address)`);
  const max = bytes.length * 8;
  const len = s.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(len) || Number(len) > max) {
    throw new Error(`${show(s)} is not a valid CIDR (prefix length must be 0..${max})`);
  }
  if (!IPCIDR.isValidCIDR(s)) throw new Error(`${show(s)} is not a valid CIDR`);
  const bits = Number(len);
  const net = maskBytes(bytes, bits);
  const address = bytesToIp(bytes);
  const cidr: ParsedCidr = {
    family: bytes.length === 4 ? 4 : 6,
    address,
    bits,
    network: net.every((b, i) => b === bytes[i]) ? address : bytesToIp(net), // usually no host bits
  };
  return { cidr, bytes };
}

/** parseCidr, but a routing prefix must not have host bits set (a likely typo, e.g. 10.1.0.5/24). */
export function parsePrefix(s: string): ParsedCidr {
  return parsePrefixBytes(s).cidr;
}

/** parsePrefix plus the network's bytes (the trie inserts tens of thousands: parse once). */
export function parsePrefixBytes(s: string): { cidr: ParsedCidr; bytes: Uint8Array } {
  const r = parseCidrBytes(s);
  if (r.cidr.address !== r.cidr.network) {
    throw new Error(`${s} has host bits set; did you mean ${prefixString(r.cidr)}?`);
  }
  return r;
}

// RFC 1123 host name; all-numeric names are rejected so "1.2.3.999" is not taken for a DNS name.
const HOSTNAME = /^(?=.{1,253}\.?$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Parse "host:port" or "[v6]:port"; host may be an IP literal or a DNS name; port 1..65535. */
export function parseEndpoint(s: string): Endpoint {
  const bad = (why: string) => new Error(`${show(s)} is not a valid endpoint (${why})`);
  if (typeof s !== 'string') throw bad('expected "host:port" or "[v6]:port"');
  let host: string;
  let port: string;
  if (s.startsWith('[')) {
    const m = /^\[([^\]]*)\]:([^:]*)$/.exec(s);
    if (!m) throw bad('expected "[v6]:port"');
    [, host, port] = m;
    if (isIP(host) !== 6) throw bad('brackets must hold an IPv6 address');
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0) throw bad('missing ":port"');
    host = s.slice(0, i);
    port = s.slice(i + 1);
    if (host.includes(':')) throw bad('write IPv6 endpoints as "[v6]:port"');
  }
  if (!/^[1-9][0-9]{0,4}$/.test(port) || Number(port) > 65535) throw bad('port must be 1..65535');
  const b = tryBytes(host);
  if (b) return { host: bytesToIp(b), port: Number(port), family: b.length === 4 ? 4 : 6 };
  if (/^[0-9.]+$/.test(host) || !HOSTNAME.test(host)) throw bad('bad host');
  return { host, port: Number(port), family: 0 };
}

/**
 * "host:port", or "[v6]:port" for an IPv6 host (what parseEndpoint reads back); an IPv4
 * address a dual-stack socket reports as IPv4-mapped ("::ffff:a.b.c.d") is written as IPv4.
 */
export function formatEndpoint(host: string, port: number): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) return `${mapped[1]}:${port}`;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True if `ip` lies inside `cidr` (false for different families). */
export function cidrContains(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  const a = ipToBytes(ip);
  if ((a.length === 4 ? 4 : 6) !== c.family) return false;
  return bytesToIp(maskBytes(a, c.bits)) === c.network;
}

/** True if the two prefixes share any address, i.e. one contains the other. */
export function cidrsOverlap(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  if (x.family !== y.family) return false;
  const bits = Math.min(x.bits, y.bits);
  return bytesToIp(maskBytes(ipToBytes(x.address), bits)) === bytesToIp(maskBytes(ipToBytes(y.address), bits));
}
