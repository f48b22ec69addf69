// What every parser returns, and the checks they share: walking parsed JSON with a path for
// error messages, validating prefixes, and keeping one entry per prefix.
import { isIP } from 'node:net';
import { formatPath } from '../../shared/config-error.js';
import { bytesToIp, maskBytes, parseCidr, show } from '../../shared/cidr.js';
import { CatalogError, describe } from './errors.js';

/** One published prefix. `prefix` is canonical ("network/bits", host bits cleared). */
export interface CatalogEntry {
  prefix: string;
  /** "aws", "gcp", "azure", "oracle", "digitalocean", "linode", or an operator site's label. */
  provider: string;
  /** The provider's own region name ("us-east-1", "europe-west1", "US-NY"); null if none given. */
  region: string | null;
  /** Provider-specific detail: AWS/GCP service, Azure service tag, Oracle tags. */
  service?: string;
  /** Operator sites only: the site name from sites.json. */
  site?: string;
}

/** Shortest prefixes a provider file may publish (see FileReader.prefix). */
export const MIN_BITS_V4 = 8;
export const MIN_BITS_V6 = 16;

export type Path = ReadonlyArray<string | number>;

/** Helpers bound to one file, so every failure names it. */
export class FileReader {
  /** raw prefix text -> canonical prefix (provider files repeat prefixes a lot, e.g. Azure). */
  private readonly seen = new Map<string, CanonicalPrefix>();

  constructor(readonly file: string) {}

  fail(path: Path, message: string): never {
    const where = formatPath(path);
    throw new CatalogError(this.file, where ? `${where}: ${message}` : message);
  }

  obj(v: unknown, path: Path): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      this.fail(path, path.length === 0 ? `expected a JSON object at top level, got ${describe(v)}` : `expected an object, got ${describe(v)}`);
    }
    return v as Record<string, unknown>;
  }

  /** Required list field `key` of `o`. */
  list(o: Record<string, unknown>, key: string, path: Path): unknown[] {
    const v = o[key];
    if (v === undefined) this.fail([...path, key], 'is required');
    if (!Array.isArray(v)) this.fail([...path, key], `expected a list, got ${describe(v)}`);
    return v;
  }

  /** String field `key` of `o`; undefined when absent and not required. */
  str(o: Record<string, unknown>, key: string, path: Path, required: true): string;
  str(o: Record<string, unknown>, key: string, path: Path, required: false): string | undefined;
  str(o: Record<string, unknown>, key: string, path: Path, required: boolean): string | undefined {
    const v = o[key];
    if (v === undefined && !required) return undefined;
    if (v === undefined) this.fail([...path, key], 'is required');
    if (typeof v !== 'string') this.fail([...path, key], `expected a string, got ${describe(v)}`);
    return v;
  }

  /**
   * Validate a published prefix and return its canonical form. Host bits are accepted and
   * cleared ("198.51.100.7/24" -> "198.51.100.0/24"): the mask still says unambiguously which
   * addresses are meant, and rejecting the file over one sloppy entry would drop a whole
   * provider from the catalog. Anything else that is not a CIDR (bad address,
   * length out of range, wrong family, not a string) rejects the file: it means the file is
   * corrupt or not what we think it is. So are absurdly broad prefixes (shorter than /8 for
   * IPv4, /16 for IPv6: nobody is allocated more), which would claim much of the Internet for
   * one provider; a line cut short, "203.0.113.0/2" for "/24", is the typical source.
   */
  prefix(v: unknown, path: Path | (() => Path), family?: 4 | 6): string {
    const at = () => (typeof path === 'function' ? path() : path);
    if (typeof v !== 'string') this.fail(at(), `expected a CIDR string, got ${describe(v)}`);
    let p = this.seen.get(v);
    if (p === undefined) {
      try {
        p = canonicalPrefix(v);
      } catch (e) {
        this.fail(at(), (e as Error).message);
      }
      this.seen.set(v, p);
    }
    if (family !== undefined && p.family !== family) this.fail(at(), `${show(v)} is not an IPv${family} prefix`);
    if (p.family === 6 && p.prefix.startsWith('::ffff:') && p.prefix.includes('.')) {
      // providers publish IPv4 ranges as IPv4; this form also does not survive ip-cidr
      this.fail(at(), `${show(v)} is an IPv4-mapped IPv6 prefix; expected a plain IPv4 or IPv6 prefix`);
    }
    const min = p.family === 4 ? MIN_BITS_V4 : MIN_BITS_V6;
    if (p.bits < min) {
      this.fail(at(), `${show(v)} is too broad for a provider range (IPv${p.family} prefixes must be /${min} or longer)`);
    }
    return p.prefix;
  }

  /** Provider files never legitimately list no prefixes: an empty one is a broken download. */
  nonEmpty(entries: CatalogEntry[]): CatalogEntry[] {
    if (entries.length === 0) throw new CatalogError(this.file, 'no prefixes found (empty or wrong file?)');
    return entries;
  }
}

export interface CanonicalPrefix {
  /** "network/bits", host bits cleared. */
  prefix: string;
  family: 4 | 6;
  bits: number;
}

/**
 * Canonical form of a CIDR (host bits cleared), or an Error saying why it is not one; the same
 * answer as parseCidr from shared/cidr.ts (node:net isIP + ip-cidr), which it calls for anything
 * unusual. The two common spellings take a fast path, because ip-cidr needs several microseconds
 * per prefix and provider files hold tens of thousands:
 *  - IPv4 as four decimal octets 0..255 without leading zeros, length 0..32;
 *  - IPv6 of hex digits and colons only (no embedded dotted quad, no zone) that node:net accepts,
 *    length 0..128.
 * Both are subsets of what parseCidr accepts (a test compares the two), and every catalog prefix
 * goes through parseCidr/ip-cidr again when the catalog's trie inserts it.
 */
export function canonicalPrefix(s: string): CanonicalPrefix {
  const m4 = V4_PREFIX.exec(s);
  if (m4 !== null) {
    const bits = Number(m4[5]);
    const addr = ((Number(m4[1]) << 24) | (Number(m4[2]) << 16) | (Number(m4[3]) << 8) | Number(m4[4])) >>> 0;
    const net = bits === 0 ? 0 : (addr & (0xffffffff << (32 - bits))) >>> 0;
    return { prefix: `${net >>> 24}.${(net >>> 16) & 255}.${(net >>> 8) & 255}.${net & 255}/${bits}`, family: 4, bits };
  }
  const m6 = V6_PREFIX.exec(s);
  if (m6 !== null && isIP(m6[1]) === 6) {
    const bits = Number(m6[2]);
    return { prefix: `${bytesToIp(maskBytes(hexV6Bytes(m6[1]), bits))}/${bits}`, family: 6, bits };
  }
  const c = parseCidr(s); // throws with the reason
  return { prefix: `${c.network}/${c.bits}`, family: c.family, bits: c.bits };
}

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const V4_PREFIX = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}/(3[0-2]|[12]?[0-9])$`);
const V6_PREFIX = /^([0-9A-Fa-f:]{2,39})\/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$/;

/** Bytes of an IPv6 address of hex groups and "::" only, already accepted by node:net isIP. */
function hexV6Bytes(s: string): Uint8Array {
  const dbl = s.indexOf('::');
  const part = (t: string) => (t === '' ? [] : t.split(':'));
  const head = dbl < 0 ? part(s) : part(s.slice(0, dbl));
  const tail = dbl < 0 ? [] : part(s.slice(dbl + 2));
  const groups = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = parseInt(groups[i], 16);
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  }
  return out;
}

/**
 * Keep one entry per prefix. By default the first one listed wins; `better(candidate, kept)`
 * returning true replaces the kept one (e.g. AWS prefers the EC2 listing).
 */
export class PrefixSet {
  private readonly byPrefix = new Map<string, CatalogEntry>();

  constructor(private readonly better?: (candidate: CatalogEntry, kept: CatalogEntry) => boolean) {}

  add(e: CatalogEntry): void {
    const kept = this.byPrefix.get(e.prefix);
    if (kept === undefined || (this.better !== undefined && this.better(e, kept))) this.byPrefix.set(e.prefix, e);
  }

  /** The entry kept so far for a canonical prefix. */
  get(prefix: string): CatalogEntry | undefined {
    return this.byPrefix.get(prefix);
  }

  /** In order of first appearance. */
  entries(): CatalogEntry[] {
    return [...this.byPrefix.values()];
  }
}

/** "" -> null: providers use an empty string for "no particular region". */
export function regionOrNull(s: string | undefined): string | null {
  const t = s?.trim();
  return t ? t : null;
}
