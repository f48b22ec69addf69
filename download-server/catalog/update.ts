// `tinyvine ranges update`: download the providers' official range files into the catalog
// directory. Each download is checked with the same parser the catalog uses before it replaces
// anything, and is written atomically (temporary file in the same directory, fsync, rename), so
// the directory only ever holds complete files that parse; on any failure the previous copy
// stays. Azure publishes its Service Tags under a URL that changes weekly: it is taken from
// opts.sources.azure or TINYVINE_AZURE_URL, otherwise Azure is skipped with a note.
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../../shared/user-error.js';
import { CatalogError, oneLine } from './errors.js';
import { CATALOG_SOURCES, type CatalogSource } from './sources.js';

export const AZURE_URL_ENV = 'TINYVINE_AZURE_URL';
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface UpdateOptions {
  /** fetch implementation (tests inject a fake); default the global fetch. */
  fetch?: typeof fetch;
  /** Per download, covering the response body too. Default 30 s. */
  timeoutMs?: number;
  /** URL overrides by source key: aws, gcp, azure, oracle, digitalocean, linode. */
  sources?: Record<string, string>;
  /** Environment to read TINYVINE_AZURE_URL from; default process.env. */
  env?: Record<string, string | undefined>;
}

export type UpdateReport =
  | { file: string; ok: true; status: 'updated'; url: string; prefixes: number; bytes: number }
  | { file: string; ok: true; status: 'skipped'; note: string }
  | {
      file: string;
      ok: false;
      status: 'failed';
      url: string;
      /** One line, starting with the file name. */
      error: string;
      /** A previous copy exists in the directory and was left as it was. */
      keptPrevious: boolean;
    };

const DOWNLOADABLE = CATALOG_SOURCES.filter((s) => s.key !== 'sites');

/** Download every provider file into `dir`; one report per file, in catalog order. */
export async function updateRanges(dir: string, opts: UpdateOptions = {}): Promise<UpdateReport[]> {
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new UserError(`timeout must be a positive number of milliseconds, got ${timeoutMs}`);
  const overrides = opts.sources ?? {};
  for (const key of Object.keys(overrides)) {
    if (!DOWNLOADABLE.some((s) => s.key === key)) {
      throw new UserError(`unknown range source ${JSON.stringify(key)} (known: ${DOWNLOADABLE.map((s) => s.key).join(', ')})`);
    }
  }
  const env = opts.env ?? process.env;
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new UserError(`cannot create the catalog directory ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }

  return Promise.all(
    DOWNLOADABLE.map(async (src): Promise<UpdateReport> => {
      const url = overrides[src.key] ?? (src.key === 'azure' ? env[AZURE_URL_ENV] : undefined) ?? src.url;
      if (!url) {
        return {
          file: src.file,
          ok: true,
          status: 'skipped',
          note: `${src.file}: skipped: Azure's Service Tags download URL changes weekly; set ${AZURE_URL_ENV} to the current ServiceTags_Public_*.json URL (from https://www.microsoft.com/en-us/download/details.aspx?id=56519)`,
        };
      }
      try {
        return await updateOne(dir, src, url, fetchFn, timeoutMs);
      } catch (e) {
        const msg = e instanceof CatalogError ? e.message : `${src.file}: ${(e as Error).message}`;
        return { file: src.file, ok: false, status: 'failed', url, error: oneLine(msg), keptPrevious: await exists(join(dir, src.file)) };
      }
    }),
  );
}

async function updateOne(dir: string, src: CatalogSource, url: string, fetchFn: typeof fetch, timeoutMs: number): Promise<UpdateReport> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`${JSON.stringify(url)} is not a valid URL`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error(`${JSON.stringify(url)} is not an http(s) URL`);
  const text = await download(fetchFn, url, timeoutMs);
  const entries = src.parse(text, src.file); // throws CatalogError: nothing is written
  await writeAtomic(dir, src.file, text);
  return { file: src.file, ok: true, status: 'updated', url, prefixes: entries.length, bytes: Buffer.byteLength(text) };
}

/** GET `url` as text; the timeout covers headers and body (abort, and stop waiting regardless). */
async function download(fetchFn: typeof fetch, url: string, timeoutMs: number): Promise<string> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ac.abort();
      reject(new Error(`download from ${url} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
  });
  const work = (async () => {
    let res: Response;
    try {
      res = await fetchFn(url, { signal: ac.signal, redirect: 'follow', headers: { 'user-agent': 'tinyvine-ranges-update' } });
    } catch (e) {
      throw new Error(`download from ${url} failed: ${describeFetchError(e)}`);
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(`download from ${url} failed: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
    }
    try {
      return await res.text();
    } catch (e) {
      throw new Error(`download from ${url} failed while reading the body: ${describeFetchError(e)}`);
    }
  })();
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function describeFetchError(e: unknown): string {
  const err = e as Error & { cause?: unknown };
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${err.message ?? String(e)}${cause}`;
}

/** Write `dir/file` so that readers see either the old or the complete new content. */
export async function writeAtomic(dir: string, file: string, text: string): Promise<void> {
  const final = join(dir, file);
  const tmp = `${final}.tmp-${process.pid}`;
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(tmp, 'w', 0o644);
    await fh.writeFile(text, 'utf8');
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, final);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw new Error(`cannot write ${final}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  // Make the rename itself durable (best effort: not every filesystem lets a directory be synced).
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* ignore */
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
