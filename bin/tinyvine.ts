// `tinyvine` — one binary, subcommands for every role (like Nebula's single binary).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { UserError } from '../shared/user-error.js';
import { log, setLogComponent } from '../shared/log.js';

const VERSION = '0.1.0';

const HELP = `tinyvine ${VERSION} — join cloud VMs from different providers into one overlay network

Usage: tinyvine <command> [options]

Commands:
  fullvr   [--config FILE]          run a FullVR (full virtual router); without --config it
                                    runs on embedded defaults and prints how to join it
  tinyvr   --fullvr HOST:PORT --fullvr-key KEY --token TOKEN [--tun NAME]
           [--status-file FILE] [--control HOST:PORT] [--config FILE]
                                    join this machine to the overlay through one FullVR
  keygen                            print a new X25519 key pair (private, then public)
  pubkey                            read a private key on stdin, print its public key
  version                           print the version

Run 'tinyvine <command> --help' for the options of one command.
Set TINYVINE_DEBUG=1 for debug logs.`;

type Runner = (argv: string[]) => Promise<void>;

function parse<T extends ParseArgsConfig['options']>(argv: string[], options: T, usage: string) {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
    if ((r.values as Record<string, unknown>).help) {
      process.stdout.write(usage + '\n');
      process.exit(0);
    }
    return r.values as { [K in keyof T]?: string };
  } catch (e) {
    throw new UserError(`${(e as Error).message.split('\n')[0]} (see --help)`);
  }
}

const commands: Record<string, Runner> = {
  async fullvr(argv) {
    const usage = 'Usage: tinyvine fullvr [--config FILE] [--data-dir DIR]\n  Without --config: embedded defaults (see README), state in --data-dir (default ./.tinyvine).';
    const o = parse(argv, { config: { type: 'string', short: 'c' }, 'data-dir': { type: 'string' } }, usage);
    setLogComponent('fullvr');
    const { loadFullvrConfig } = await import('../fullvr/config.js');
    const { FullVR } = await import('../fullvr/fullvr.js');
    const { defaultFullvrConfig } = await import('../fullvr/defaults.js');
    const cfg = o.config ? { config: loadFullvrConfig(o.config), banner: null } : defaultFullvrConfig(o['data-dir'] ?? '.tinyvine');
    const vr = new FullVR(cfg.config);
    await runUntilSignal(() => vr.start(), () => vr.stop());
    if (cfg.banner) process.stdout.write(cfg.banner(vr.publicKey));
  },

  async tinyvr(argv) {
    const usage = `Usage: tinyvine tinyvr --fullvr HOST:PORT --fullvr-key KEY --token TOKEN [options]
  --config FILE         read these settings from a YAML file instead (flags override it)
  --tun NAME            TUN device name (default tvn0)
  --status-file FILE    write {"state": "joined", "address": ...} there (for scripts)
  --ticket-file FILE    keep the FullVR's rejoin ticket there across restarts
  --control HOST:PORT   serve JSON status over HTTP on this local endpoint
  --keepalive SECONDS   keepalive interval, at most 25 (default 10)
  --join-timeout SECONDS  give up if the FullVR does not answer (default 15)`;
    const o = parse(
      argv,
      {
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
      },
      usage,
    );
    setLogComponent('tinyvr');
    const { loadTinyvrRaw, parseTinyvrConfig } = await import('../tinyvr/config.js');
    const { TinyVR } = await import('../tinyvr/tinyvr.js');
    const raw: Record<string, unknown> = o.config ? loadTinyvrRaw(o.config) : {};
    const num = (s: string | undefined, flag: string) => {
      if (s === undefined) return undefined;
      if (!/^\d+$/.test(s)) throw new UserError(`--${flag}: "${s}" is not a whole number of seconds`);
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
    };
    for (const [k, v] of Object.entries(flags)) if (v !== undefined) raw[k] = v;
    const cfg = parseTinyvrConfig(raw, o.config ?? 'command line');
    const tv = new TinyVR(cfg);
    await runUntilSignal(() => tv.start(), () => tv.stop());
  },

  async keygen(argv) {
    parse(argv, {}, 'Usage: tinyvine keygen\n  Prints a private key line and a public key line (base64).');
    const { generateKeyPair } = await import('../shared/handshake.js');
    const k = generateKeyPair();
    process.stdout.write(`private: ${k.privateKey}\npublic:  ${k.publicKey}\n`);
  },

  async pubkey(argv) {
    parse(argv, {}, 'Usage: echo PRIVATE_KEY | tinyvine pubkey');
    const { loadPrivateKey, publicKeyOf } = await import('../shared/handshake.js');
    const input = readFileSync(0, 'utf8').trim();
    process.stdout.write(publicKeyOf(loadPrivateKey(input)) + '\n');
  },

  async version() {
    process.stdout.write(VERSION + '\n');
  },
};

/** Start a long-running role; stop it cleanly on SIGINT/SIGTERM or a crash. */
async function runUntilSignal(start: () => Promise<void>, stop: () => void): Promise<void> {
  let stopping = false;
  const shutdown = (code: number) => {
    if (stopping) return;
    stopping = true;
    try {
      stop();
    } finally {
      process.exit(code);
    }
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

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(HELP + '\n');
    return;
  }
  if (cmd === '--version') return commands.version([]);
  const run = commands[cmd];
  if (!run) throw new UserError(`unknown command "${cmd}" (try: tinyvine --help)`);
  await run(rest);
}

main().catch((e: unknown) => {
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
});
