// ProviderCatalog: every provider's published prefixes in ONE longest-prefix-match trie, so a
// source address is attributed to the most specific prefix any provider (or operator site)
// published. Trie values are indexes into the entry array; lookups cost at most 8 (IPv4) or 32
// (IPv6) slot reads whatever the catalog size. Files are inserted in CATALOG_SOURCES order and
// for an identical prefix the later insert wins, so operator sites (last) win ties.
//
// A catalog is immutable: reloading builds a new one, and reloadKeepingLastGood carries over the
// previous entries of any file that loaded before but fails now, so a bad update never makes the
// server forget a provider.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ipToBytes } from '../../shared/cidr.js';
import { PrefixTrie } from '../../shared/lpm-trie.js';
import type { CatalogEntry } from './entry.js';
import { CatalogError, oneLine } from './errors.js';
import { CATALOG_FILES, CATALOG_SOURCES } from './sources.js';

export interface CatalogMatch {
  provider: string;
  region: string | null;
  /** The published prefix that matched (canonical form). */
  prefix: string;
  /** Operator sites only. */
  site?: string;
}

export interface CatalogLoad {
  catalog: ProviderCatalog;
  /** One line per file that could not be used (or was kept from before, or removed). */
  problems: string[];
}

/** Prefixes inserted between two yields to the event loop while an async load builds the trie. */
const BUILD_CHUNK = 4096;

type FileOutcome =
  | { file: string; status: 'absent' }
  | { file: string; status: 'ok'; entries: CatalogEntry[] }
  | { file: string; status: 'failed'; problem: string };

export class ProviderCatalog {
  private readonly trie: PrefixTrie;
  private readonly matches: CatalogMatch[];
  private readonly byFile: ReadonlyMap<string, readonly CatalogEntry[]>;
  private readonly counts: Record<string, number>;
  /** Files whose entries come from an earlier load because the current copy failed. */
  readonly keptFiles: readonly string[];

  private constructor(
    byFile: ReadonlyMap<string, readonly CatalogEntry[]>,
    kept: readonly string[],
    trie: PrefixTrie,
    matches: CatalogMatch[],
    counts: Record<string, number>,
  ) {
    this.byFile = byFile;
    this.keptFiles = Object.freeze([...kept]);
    this.trie = trie;
    this.matches = matches;
    this.counts = counts;
  }

  /**
   * Insert every entry, in catalog file order. Generator so that the async loaders can yield to
   * the event loop between chunks: a 50k-prefix build takes a good fraction of a second (mostly
   * the trie re-validating each prefix) and a server reloading its catalog must keep answering.
   */
  private static *build(
    byFile: ReadonlyMap<string, readonly CatalogEntry[]>,
    kept: readonly string[],
    problems: string[],
  ): Generator<void, ProviderCatalog> {
    let total = 0;
    for (const list of byFile.values()) total += list.length;
    const trie = new PrefixTrie(Math.max(64, total * 2));
    const matches: CatalogMatch[] = [];
    const counts: Record<string, number> = {};
    let n = 0;
    for (const file of CATALOG_FILES) {
      for (const e of byFile.get(file) ?? []) {
        if (++n % BUILD_CHUNK === 0) yield;
        try {
          trie.insert(e.prefix, matches.length);
        } catch (err) {
          // Parsers hand over only prefixes the trie accepts; this is a safety net, not a path.
          problems.push(oneLine(`${file}: ${e.prefix}: ${(err as Error).message}; entry skipped`));
          continue;
        }
        const m: CatalogMatch = { provider: e.provider, region: e.region, prefix: e.prefix };
        if (e.site !== undefined) m.site = e.site;
        matches.push(Object.freeze(m));
        counts[e.provider] = (counts[e.provider] ?? 0) + 1;
      }
    }
    return new ProviderCatalog(byFile, kept, trie, matches, counts);
  }

  private static buildSync(byFile: ReadonlyMap<string, readonly CatalogEntry[]>): ProviderCatalog {
    const problems: string[] = [];
    const it = ProviderCatalog.build(byFile, [], problems);
    for (;;) {
      const r = it.next();
      if (r.done) {
        if (problems.length > 0) throw new Error(problems.join('\n'));
        return r.value;
      }
    }
  }

  private static async buildAsync(
    byFile: ReadonlyMap<string, readonly CatalogEntry[]>,
    kept: readonly string[],
    problems: string[],
  ): Promise<ProviderCatalog> {
    const it = ProviderCatalog.build(byFile, kept, problems);
    for (;;) {
      const r = it.next();
      if (r.done) return r.value;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Catalog from already-parsed entries, keyed by catalog file name ("aws.json", ...). Entries
   * must be canonical (as the parsers return them); throws if the trie rejects one.
   */
  static fromEntries(files: Readonly<Record<string, readonly CatalogEntry[]>>): ProviderCatalog {
    const map = new Map<string, readonly CatalogEntry[]>();
    for (const [file, entries] of Object.entries(files)) {
      if (!CATALOG_FILES.includes(file)) throw new Error(`unknown catalog file ${JSON.stringify(file)} (known: ${CATALOG_FILES.join(', ')})`);
      map.set(file, entries);
    }
    return ProviderCatalog.buildSync(map);
  }

  /**
   * Read the known files from `dir` (each may be absent). A file that cannot be read or parsed
   * is left out and reported in `problems`; the caller decides whether that is fatal.
   */
  static async load(dir: string): Promise<CatalogLoad> {
    const outcomes = await readCatalogFiles(dir);
    const byFile = new Map<string, CatalogEntry[]>();
    const problems: string[] = [];
    for (const o of outcomes) {
      if (o.status === 'ok') byFile.set(o.file, o.entries);
      else if (o.status === 'failed') problems.push(o.problem);
    }
    return { catalog: await ProviderCatalog.buildAsync(byFile, [], problems), problems };
  }

  /**
   * Like load, but a file that loaded in `previous` (or was kept there) and now fails keeps its
   * previous entries: the server goes on serving the last good data for that provider, and the
   * problem line says so. A file that was removed from `dir` is dropped (with a note).
   */
  static async reloadKeepingLastGood(dir: string, previous: ProviderCatalog): Promise<CatalogLoad> {
    const outcomes = await readCatalogFiles(dir);
    const byFile = new Map<string, readonly CatalogEntry[]>();
    const kept: string[] = [];
    const problems: string[] = [];
    for (const o of outcomes) {
      const before = previous.byFile.get(o.file);
      if (o.status === 'ok') {
        byFile.set(o.file, o.entries);
      } else if (o.status === 'failed') {
        if (before) {
          byFile.set(o.file, before);
          kept.push(o.file);
          problems.push(`${o.problem} (still serving the last good ${o.file}: ${plural(before.length, 'prefix', 'prefixes')})`);
        } else {
          problems.push(o.problem);
        }
      } else if (before) {
        problems.push(`${o.file}: file removed; dropped its ${plural(before.length, 'prefix', 'prefixes')}`);
      }
    }
    return { catalog: await ProviderCatalog.buildAsync(byFile, kept, problems), problems };
  }

  /**
   * Longest published prefix containing `ip`, across all providers and sites; null if none.
   * IPv4-mapped IPv6 addresses ("::ffff:198.51.100.7", what a dual-stack socket reports for an
   * IPv4 client) are looked up as IPv4; an IPv6 zone index ("%eth0") is ignored. Throws an
   * Error if `ip` is not an IP address.
   */
  lookup(ip: string): CatalogMatch | null {
    let s = ip;
    const zone = s.indexOf('%');
    if (zone > 0 && s.includes(':')) s = s.slice(0, zone);
    const b = ipToBytes(s);
    let i: number;
    if (b.length === 4) i = this.trie.lookupV4(b, 0);
    else if (isV4Mapped(b)) i = this.trie.lookupV4(b, 12);
    else i = this.trie.lookupV6(b, 0);
    return i < 0 ? null : this.matches[i];
  }

  /** Number of entries (published prefixes, one per prefix per file). */
  get size(): number {
    return this.matches.length;
  }

  /** Entries per provider label, e.g. { aws: 8123, gcp: 912, campus: 2 }. */
  providers(): Record<string, number> {
    return { ...this.counts };
  }

  /** Files the catalog's data comes from (including kept ones), in catalog order. */
  get loadedFiles(): string[] {
    return CATALOG_FILES.filter((f) => this.byFile.has(f));
  }

  /** The entries a file contributed (empty if it did not), e.g. for status pages. */
  entriesOf(file: string): readonly CatalogEntry[] {
    return this.byFile.get(file) ?? [];
  }
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let k = 0; k < 10; k++) if (b[k] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Read and parse every known file of `dir`; reads run concurrently, parsing one file at a time. */
async function readCatalogFiles(dir: string): Promise<FileOutcome[]> {
  const texts = await Promise.all(
    CATALOG_SOURCES.map(async (src) => {
      try {
        return { src, text: await readFile(join(dir, src.file), 'utf8') };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return { src, text: null };
        return { src, text: null, error: `${src.file}: cannot read file (${code ?? (e as Error).message})` };
      }
    }),
  );
  const out: FileOutcome[] = [];
  for (const { src, text, error } of texts) {
    if (error !== undefined) {
      out.push({ file: src.file, status: 'failed', problem: error });
      continue;
    }
    if (text === null) {
      out.push({ file: src.file, status: 'absent' });
      continue;
    }
    try {
      out.push({ file: src.file, status: 'ok', entries: src.parse(text, src.file) });
    } catch (e) {
      const problem = e instanceof CatalogError ? e.message : oneLine(`${src.file}: ${(e as Error).message}`);
      out.push({ file: src.file, status: 'failed', problem });
    }
    await new Promise<void>((resolve) => setImmediate(resolve)); // big files parse for a while
  }
  return out;
}
