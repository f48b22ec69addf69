// Config errors are shown to operators: one line per problem, always naming the file and the
// offending field, e.g. `fullvr.yaml: networks[0].sites[1].subnet: "10.1.0.0/33" is not a valid CIDR`.
// Secret values (private keys, tokens) are never echoed.
//
// Also holds what fullvr/config.ts and tinyvr/config.ts share (they must not import each other):
// reading a YAML/JSON file, running a schema, and the zod field types for ids, keys, endpoints.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { parseEndpoint, parsePrefix, show } from './cidr.js';

export class ConfigError extends Error {
  /** The config file (or source name) the problems are in. */
  readonly file: string;
  /** One complete line per problem ("file: field: message"); `message` joins them with newlines. */
  readonly problems: string[];

  constructor(file: string, problems: string | string[]) {
    const lines = (Array.isArray(problems) ? problems : [problems]).map(oneLine);
    super(lines.join('\n'));
    this.name = 'ConfigError';
    this.file = file;
    this.problems = lines;
  }
}

/** Keys whose values must never appear in an error message. */
const SECRET_KEYS = new Set(['privateKey', 'token']);

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** networks[0].sites[1].subnet */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out === '' ? String(k) : `.${String(k)}`;
  }
  return out;
}

/** Short description of a value for a message: scalars are shown, collections named. */
function describe(v: unknown, secret: boolean): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string':
      if (secret) return 'a string';
      return JSON.stringify(v.length > 64 ? v.slice(0, 61) + '...' : v);
    case 'number':
    case 'boolean':
      return String(v);
    case 'object':
      return 'a mapping';
    default:
      return typeof v;
  }
}

const TYPE_NAMES: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
};

function bound(origin: string, n: number | bigint, inclusive: boolean | undefined, small: boolean): string {
  const v = Number(n);
  if (origin === 'string') {
    const limit = inclusive === false ? (small ? v + 1 : v - 1) : v;
    return `must be at ${small ? 'least' : 'most'} ${limit} character${limit === 1 ? '' : 's'} long`;
  }
  if (origin === 'array') {
    const limit = inclusive === false ? (small ? v + 1 : v - 1) : v;
    return `must have at ${small ? 'least' : 'most'} ${limit} entr${limit === 1 ? 'y' : 'ies'}`;
  }
  return `must be ${small ? '>' : '<'}${inclusive === false ? '' : '='} ${v}`;
}

/** One message (without file) for a zod issue. */
function issueLine(iss: z.core.$ZodIssue): string {
  const where = formatPath(iss.path);
  const last = iss.path[iss.path.length - 1];
  const secret = typeof last === 'string' && SECRET_KEYS.has(last);
  const at = (msg: string) => (where ? `${where}: ${msg}` : msg);
  const got = 'input' in iss && iss.input !== undefined ? ` (got ${describe(iss.input, secret)})` : '';

  switch (iss.code) {
    case 'unrecognized_keys': {
      const keys = iss.keys.map((k) => JSON.stringify(k)).join(', ');
      return `unknown key${iss.keys.length > 1 ? 's' : ''} ${keys} ${where ? `in ${where}` : 'at top level'}`;
    }
    case 'invalid_type': {
      const expected = TYPE_NAMES[iss.expected] ?? iss.expected;
      if (iss.input === undefined) return where ? `${where}: is required` : `expected ${expected} at top level`;
      if (!where) return `expected ${expected} at top level, got ${describe(iss.input, secret)}`;
      return at(`expected ${expected}, got ${describe(iss.input, secret)}`);
    }
    case 'invalid_format':
      // our regex checks carry messages written to follow the value
      return at(secret || iss.input === undefined ? iss.message : `${describe(iss.input, secret)} ${iss.message}`);
    case 'too_small':
      return at(bound(iss.origin, iss.minimum, iss.inclusive, true)) + (iss.origin === 'string' || iss.origin === 'array' ? '' : got);
    case 'too_big':
      return at(bound(iss.origin, iss.maximum, iss.inclusive, false)) + (iss.origin === 'string' || iss.origin === 'array' ? '' : got);
    case 'invalid_value': {
      const options = iss.values.map((v) => (typeof v === 'string' ? v : String(v))).join(' | ');
      return at(`${describe(iss.input, secret)} is not one of ${options}`);
    }
    default:
      // custom refinements already carry a complete message (with the value when not secret)
      return at(iss.message);
  }
}

/**
 * One line per problem: `file: field: message`. zod can report several failed checks for one
 * value (e.g. a bound and an integer check); only the first per field is kept, so one mistake
 * gives one line. Schemas put their most telling check first.
 */
export function formatZodError(file: string, err: z.ZodError): string[] {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const iss of err.issues) {
    const key = `${iss.code === 'unrecognized_keys' ? 'keys:' : ''}${formatPath(iss.path)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    lines.push(oneLine(`${file}: ${issueLine(iss)}`));
  }
  return lines;
}

/** A semantic problem found after the schema passed: reported like a zod issue. */
export interface Problem {
  path: PropertyKey[];
  message: string;
}

export function formatProblem(file: string, p: Problem): string {
  const where = formatPath(p.path);
  return oneLine(`${file}: ${where ? `${where}: ` : ''}${p.message}`);
}

/** Read and parse a YAML (or JSON) file; every failure is a ConfigError of one-line problems. */
export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ConfigError(file, `${file}: cannot read file (${code})`);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // Only the first: later YAML errors are usually knock-on effects of it.
    const e = doc.errors[0];
    // yaml's message is "<what> at line L, column C:\n\n<excerpt>"; keep what + position.
    const what = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    const pos = e.linePos?.[0];
    throw new ConfigError(file, `${file}: ${pos ? `line ${pos.line}, column ${pos.col}: ` : ''}invalid YAML: ${what}`);
  }
  try {
    const value = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) throw new Error('file is empty');
    return value;
  } catch (e) {
    throw new ConfigError(file, `${file}: ${(e as Error).message}`);
  }
}

/** Validate `obj` with `schema`; structural errors first, then `semantic` on the typed result. */
export function runSchema<S extends z.ZodType>(
  schema: S,
  obj: unknown,
  file: string,
  semantic: (cfg: z.output<S>) => Problem[],
): z.output<S> {
  const r = schema.safeParse(obj, { reportInput: true });
  if (!r.success) throw new ConfigError(file, formatZodError(file, r.error));
  const problems = semantic(r.data);
  if (problems.length > 0) throw new ConfigError(file, problems.map((p) => formatProblem(file, p)));
  return r.data;
}

// ------------------------------------------------------------------ shared field types

/** VR, network and member ids: 1..2^32-1 (0 is reserved on the wire, e.g. network 0 = control). */
export const zId = z.number().min(1).max(0xffffffff).int(); // bounds first: see formatZodError

/** Static X25519 key: exactly 32 bytes in standard base64 (44 characters, like WireGuard keys). */
export const zKey32 = z.string().superRefine((s, ctx) => {
  const ok = /^[A-Za-z0-9+/]{43}=$/.test(s) && Buffer.from(s, 'base64').toString('base64') === s;
  if (!ok) ctx.addIssue({ code: 'custom', message: 'must be a 32-byte key in base64 (44 characters ending in "=")' });
});

/** Routing prefix "a.b.c.d/n" or "v6/n" without host bits. */
export const zPrefix = z.string().superRefine((s, ctx) => {
  try {
    parsePrefix(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
  }
});

/** "host:port" or "[v6]:port"; with ipOnly the host must be an IP literal (addresses to bind). */
export function zEndpoint(ipOnly: boolean) {
  return z.string().superRefine((s, ctx) => {
    try {
      const ep = parseEndpoint(s);
      if (ipOnly && ep.family === 0) {
        ctx.addIssue({ code: 'custom', message: `${show(s)} must use an IP address, not a host name (it is bound locally)` });
      }
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  });
}

/** Join token: a shared secret, 16..256 printable ASCII characters without spaces. */
export const zToken = z
  .string()
  .min(16)
  .max(256)
  .regex(/^[\x21-\x7e]+$/, { error: 'must be printable ASCII without spaces' });

/** Linux interface name (IFNAMSIZ - 1 = 15 bytes); "%d" lets the kernel pick a number. */
export const zIfName = z
  .string()
  .regex(/^[A-Za-z0-9_.%-]{1,15}$/, { error: 'is not a valid interface name (1-15 of A-Z a-z 0-9 _ . - %)' })
  .refine((s) => s !== '.' && s !== '..', { error: 'is not a valid interface name' });

/** Human-readable names of networks and sites (shown in status output). */
export const zName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, { error: 'is not a valid name (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit)' });

/** Keepalive interval: NAT UDP mappings often expire after 30 s, so at most 25. */
export const zKeepalive = z.number().min(1).max(25).int();

/** Seconds without a packet after which a TinyVR closes a shortcut (0: never). */
export const zShortcutIdleSeconds = z.number().int().min(0).max(86400);

/** Wake-up moderation default (µs): see PacketEngine.setModeration. */
export const DEFAULT_MODERATION_US = 500;
/** Wake-up moderation period in µs: 0 (off) or 10..100000. */
export const zModerationMicros = z
  .number()
  .int()
  .refine((v) => v === 0 || (v >= 10 && v <= 100000), 'must be 0 (off) or 10..100000 microseconds');
