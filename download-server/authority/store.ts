// Where the authority keeps its state. One small interface so a replicated/distributed store
// can replace the file store later:
//
//   load(): the last saved state, null when nothing was ever saved; throws on a damaged store
//   save(next): durable before it returns; throws (and keeps the previous state) on failure
//
// FileStore layout: one header line, then the body (the state as JSON):
//
//   {"format":"tinyvine-authority","version":1,"sha256":"<hex of the body bytes>","bytes":N}
//   {...state...}
//
// save() writes a temporary file in the same directory, fsyncs it, renames it over the old file
// (atomic on POSIX) and fsyncs the directory, so a crash leaves either the old or the new file,
// never a mix. load() refuses a file whose header, checksum or JSON is wrong — a damaged file is
// reported (one line naming it), never silently replaced by an empty state.
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { StateSchema, type State } from './state.js';

export const STORE_FORMAT = 'tinyvine-authority';
export const STORE_VERSION = 1;

export interface StateStore {
  load(): State | null;
  save(next: State): void;
}

export class StoreError extends Error {
  constructor(message: string) {
    super(message.replace(/\s*[\r\n]+\s*/g, ' ').trim());
    this.name = 'StoreError';
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Serialise a state the way FileStore writes it (exported for tests and tools). */
export function encodeState(state: State): Buffer {
  const body = Buffer.from(JSON.stringify(state) + '\n');
  const header = JSON.stringify({ format: STORE_FORMAT, version: STORE_VERSION, sha256: sha256(body), bytes: body.length });
  return Buffer.concat([Buffer.from(header + '\n'), body]);
}

/** Parse FileStore bytes; `name` is used in error messages. Throws StoreError. */
export function decodeState(buf: Buffer, name: string): State {
  const damaged = (why: string) => new StoreError(`${name}: authority state is damaged (${why}); restore it from a backup or move it away to start empty`);
  const nl = buf.indexOf(0x0a);
  if (nl < 0) throw damaged(buf.length === 0 ? 'file is empty' : 'no header line');
  let header: { format?: unknown; version?: unknown; sha256?: unknown; bytes?: unknown };
  try {
    header = JSON.parse(buf.subarray(0, nl).toString('utf8'));
  } catch {
    throw damaged('header is not JSON');
  }
  if (typeof header !== 'object' || header === null || header.format !== STORE_FORMAT) throw damaged(`not a ${STORE_FORMAT} file`);
  if (header.version !== STORE_VERSION) {
    throw new StoreError(`${name}: authority state format version ${JSON.stringify(header.version)} is not supported (this build reads version ${STORE_VERSION})`);
  }
  const body = buf.subarray(nl + 1);
  if (typeof header.bytes === 'number' && header.bytes !== body.length) throw damaged(`body is ${body.length} bytes, header says ${header.bytes} (truncated or half-written)`);
  if (typeof header.sha256 !== 'string' || sha256(body) !== header.sha256) throw damaged('checksum mismatch');
  let obj: unknown;
  try {
    obj = JSON.parse(body.toString('utf8'));
  } catch {
    throw damaged('body is not JSON');
  }
  const r = StateSchema.safeParse(obj);
  if (!r.success) {
    const iss = r.error.issues[0];
    throw damaged(`unexpected content at ${iss.path.join('.') || 'top level'}: ${iss.message}`);
  }
  return r.data as State;
}

export class FileStore implements StateStore {
  readonly path: string;

  constructor(path: string) {
    this.path = resolve(path);
  }

  private tmpPrefix(): string {
    return `.${basename(this.path)}.tmp-`;
  }

  load(): State | null {
    this.removeStaleTemps();
    let buf: Buffer;
    try {
      buf = readFileSync(this.path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      throw new StoreError(`${this.path}: cannot read authority state (${code ?? (e as Error).message})`);
    }
    return decodeState(buf, this.path);
  }

  save(next: State): void {
    const dir = dirname(this.path);
    const tmp = join(dir, `${this.tmpPrefix()}${process.pid}-${randomBytes(6).toString('hex')}`);
    const data = encodeState(next);
    let fd: number | null = null;
    try {
      fd = openSync(tmp, 'wx', 0o600);
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      fsyncSync(fd);
      closeSync(fd);
      fd = null;
      renameSync(tmp, this.path);
    } catch (e) {
      if (fd !== null) {
        try {
          closeSync(fd);
        } catch {
          /* already failing */
        }
      }
      try {
        if (existsSync(tmp)) unlinkSync(tmp);
      } catch {
        /* best effort */
      }
      const code = (e as NodeJS.ErrnoException).code;
      throw new StoreError(`${this.path}: cannot save authority state (${code ?? (e as Error).message})`);
    }
    // The rename is durable once the directory entry is: fsync the directory (not possible on
    // every platform/filesystem; the data itself is already synced).
    try {
      const dfd = openSync(dir, 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch {
      /* e.g. EISDIR/EPERM on some filesystems */
    }
  }

  /** Temporary files left by a crash during save() (never the state file itself, nor a live process's). */
  private removeStaleTemps(): void {
    const dir = dirname(this.path);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      if (!n.startsWith(this.tmpPrefix())) continue;
      const pid = Number(/^(\d+)-/.exec(n.slice(this.tmpPrefix().length))?.[1]);
      if (pid && pid !== process.pid && processAlive(pid)) continue; // another process is saving right now
      try {
        unlinkSync(join(dir, n));
      } catch {
        /* best effort */
      }
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** In-memory store (tests, or a server that keeps nothing). */
export class MemoryStore implements StateStore {
  private data: Buffer | null = null;
  load(): State | null {
    return this.data ? decodeState(this.data, 'memory') : null;
  }
  save(next: State): void {
    this.data = encodeState(next);
  }
}
