// What every long-running entry point shares (bin/tinyvine.ts and the single-file TinyVR,
// bundle/tinyvr-entry.ts): flag parsing with one-line errors, the `tinyvr` flags and how they
// override a config, running a role until a signal, and turning an error into one stderr line
// and an exit code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UserError } from './user-error.js';
import { log } from './log.js';

/**
 * parseArgs with the CLI's conventions: `-h/--help` prints `usage` and exits 0; a bad flag is a
 * UserError "<first line of the parse error> (see --help)" (exit 2).
 */
/** What parseFlags returns for `options`: booleans for boolean flags, strings for the rest. */
export type FlagValues<T> = { [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : string };

export function parseFlags<T extends ParseArgsConfig['options']>(argv: string[], options: T, usage: string): FlagValues<T> {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
    if ((r.values as Record<string, unknown>).help) {
      process.stdout.write(usage + '\n');
      process.exit(0);
    }
    return r.values as FlagValues<T>;
  } catch (e) {
    throw new UserError(`${(e as Error).message.split('\n')[0]} (see --help)`);
  }
}

/** The options of `tinyvine tinyvr`, for parseFlags. */
export const TINYVR_FLAG_OPTIONS = {
  config: { type: 'string', short: 'c' },
  fullvr: { type: 'string' },
  'fullvr-key': { type: 'string' },
  token: { type: 'string' },
  tun: { type: 'string' },
  'status-file': { type: 'string' },
  'ticket-file': { type: 'string' },
  control: { type: 'string' },
  keepalive: { type: 'string' },
  'join-timeout': { type: 'string' },
  'moderation-us': { type: 'string' },
  secondary: { type: 'string' },
  'secondary-key': { type: 'string' },
  'secondary-token': { type: 'string' },
  'no-shortcuts': { type: 'boolean' },
  'no-direct': { type: 'boolean' },
  'shortcut-idle': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export type TinyvrFlags = FlagValues<typeof TINYVR_FLAG_OPTIONS>;

/**
 * Overrides the keys of a raw (not yet validated) TinyVR config with the flags that were given;
 * returns `raw`. Throws UserError for a non-numeric --keepalive / --join-timeout / --moderation-us / --shortcut-idle.
 */
export function applyTinyvrFlags(raw: Record<string, unknown>, o: TinyvrFlags): Record<string, unknown> {
  const num = (s: string | undefined, flag: string, unit = 'seconds') => {
    if (s === undefined) return undefined;
    if (!/^\d+$/.test(s)) throw new UserError(`--${flag}: "${s}" is not a whole number of ${unit}`);
    return Number(s);
  };
  const flags: Record<string, unknown> = {
    fullvr: o.fullvr,
    fullvrKey: o['fullvr-key'],
    token: o.token,
    tun: o.tun ? { name: o.tun } : undefined,
    statusFile: o['status-file'],
    ticketFile: o['ticket-file'],
    control: o.control,
    keepaliveSeconds: num(o.keepalive, 'keepalive'),
    joinTimeoutSeconds: num(o['join-timeout'], 'join-timeout'),
    moderationMicros: num(o['moderation-us'], 'moderation-us', 'microseconds'),
    shortcuts: o['no-shortcuts'] ? false : undefined,
    direct: o['no-direct'] ? false : undefined,
    shortcutIdleSeconds: num(o['shortcut-idle'], 'shortcut-idle'),
    secondary:
      o.secondary || o['secondary-key']
        ? { fullvr: o.secondary, fullvrKey: o['secondary-key'], ...(o['secondary-token'] ? { token: o['secondary-token'] } : {}) }
        : undefined,
  };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) raw[k] = v;
  return raw;
}

/** Start a long-running role; stop it cleanly on SIGINT/SIGTERM/SIGHUP or a crash. */
export async function runUntilSignal(start: () => Promise<void>, stop: () => void | Promise<void>): Promise<void> {
  let stopping = false;
  const shutdown = (code: number) => {
    if (stopping) return;
    stopping = true;
    // An asynchronous stop (closing HTTP servers) gets 5 s; then we exit regardless.
    const force = setTimeout(() => process.exit(code), 5000);
    force.unref();
    Promise.resolve()
      .then(stop)
      .catch((e) => log.error('stop failed', { error: (e as Error).message }))
      .finally(() => process.exit(code));
  };
  process.on('SIGINT', () => shutdown(0));
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGHUP', () => shutdown(0));
  process.on('uncaughtException', (e) => {
    log.error('fatal', { error: e.stack ?? String(e) });
    shutdown(1);
  });
  await start();
}

/**
 * Prints an error as one line `tinyvine: ...` on stderr and exits: a ConfigError with its first
 * problem (exit 2), a UserError with its message (its exitCode, default 2), anything else with its
 * message (exit 1; the stack too when TINYVINE_DEBUG=1).
 */
export function exitWithError(e: unknown): never {
  const problems = (e as { problems?: string[] })?.problems;
  if ((e as Error)?.name === 'ConfigError' && problems?.length) {
    // One line per error: the first problem, and how many more the file has.
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''} in that file)` : '';
    process.stderr.write(`tinyvine: ${problems[0]}${more}\n`);
    process.exit(2);
  }
  if (e instanceof UserError) {
    process.stderr.write(`tinyvine: ${(e as Error).message}\n`);
    process.exit((e as UserError).exitCode ?? 2);
  }
  process.stderr.write(`tinyvine: ${(e as Error)?.message ?? String(e)}\n`);
  if (process.env.TINYVINE_DEBUG === '1') process.stderr.write(`${(e as Error)?.stack}\n`);
  process.exit(1);
}
