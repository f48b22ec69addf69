// `tinyvine` — one binary, subcommands for every role (like Nebula's single binary).
import { readFileSync } from 'node:fs';
import { UserError } from '../shared/user-error.js';
import { setLogComponent } from '../shared/log.js';
import { applyTinyvrFlags, exitWithError, parseFlags as parse, runUntilSignal, TINYVR_FLAG_OPTIONS } from '../shared/run-role.js';

const VERSION = '0.1.0';

const HELP = `tinyvine ${VERSION} — join cloud VMs from different providers into one overlay network

Usage: tinyvine <command> [options]

Commands:
  fullvr   [--config FILE]          run a FullVR (full virtual router); without --config it
                                    runs on embedded defaults and prints how to join it
  tinyvr   --fullvr HOST:PORT --fullvr-key KEY --token TOKEN [--tun NAME]
           [--status-file FILE] [--control HOST:PORT] [--config FILE]
                                    join this machine to the overlay through one FullVR
  server   [--config FILE]          run the download server (zero-config join, FullVR choice);
                                    without --config: embedded defaults plus a local FullVR
  ranges   update|lookup [--catalog DIR] [IP ...]
                                    fetch the providers' IP range files / look addresses up
  net      create|list|show|delete|shutdown|merge|split|add-site   virtual networks
  site     add|list                 sites (provider, region, subnets)
  fullvr   list|register|tables     FullVRs known to the authority
  host     list|join|leave          hosts (members) of networks
  token    create|list|revoke       join tokens
           (these talk to the server: --server URL or TINYVINE_SERVER, --api-token or TINYVINE_API_TOKEN)
  keygen                            print a new X25519 key pair (private, then public)
  pubkey                            read a private key on stdin, print its public key
  version                           print the version

Run 'tinyvine <command> --help' for the options of one command.
Set TINYVINE_DEBUG=1 for debug logs.`;

type Runner = (argv: string[]) => Promise<void>;

/** Operator commands against the authority's HTTP API (--server / TINYVINE_SERVER). */
async function authorityCli(group: 'net' | 'site' | 'fullvr' | 'host' | 'token', argv: string[]): Promise<void> {
  const { runAuthorityCli } = await import('../download-server/authority/cli.js');
  process.exitCode = await runAuthorityCli(group, argv, {
    out: process.stdout,
    err: process.stderr,
    env: process.env,
  });
}

const commands: Record<string, Runner> = {
  async fullvr(argv) {
    if (['list', 'register', 'tables'].includes(argv[0] ?? '')) return authorityCli('fullvr', argv);
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
  --join-timeout SECONDS  give up if the FullVR does not answer (default 15)
  --moderation-us N     wake-up moderation under bulk load, 0 = off (default 500)
  --no-shortcuts        send all overlay traffic through our FullVR, even where it offers
                        a direct session to the FullVR of the destination's site
  --shortcut-idle SECONDS  close a shortcut (or direct path) unused this long, 0 = never (default 60)
  --no-direct           never open a direct path to another member's TinyVR, even where a
                        FullVR introduces us (traffic then always crosses a FullVR)`;
    const o = parse(argv, TINYVR_FLAG_OPTIONS, usage);
    setLogComponent('tinyvr');
    const { loadTinyvrRaw, parseTinyvrConfig } = await import('../tinyvr/config.js');
    const { TinyVR } = await import('../tinyvr/tinyvr.js');
    const raw = applyTinyvrFlags(o.config ? loadTinyvrRaw(o.config) : {}, o);
    const cfg = parseTinyvrConfig(raw, o.config ?? 'command line');
    const tv = new TinyVR(cfg);
    await runUntilSignal(() => tv.start(), () => tv.stop());
  },

  async server(argv) {
    const usage = `Usage: tinyvine server [--config FILE] [--data-dir DIR] [--listen HOST:PORT]
  Without --config: embedded defaults — a download server on 0.0.0.0:8080 plus a FullVR on
  UDP 4789 in the same process, state in --data-dir (default ./.tinyvine); prints the join one-liner.`;
    const o = parse(argv, { config: { type: 'string', short: 'c' }, 'data-dir': { type: 'string' }, listen: { type: 'string' } }, usage);
    setLogComponent('server');
    if (o.config) {
      const { loadServerConfig } = await import('../download-server/config.js');
      const { startDownloadServer } = await import('../download-server/server.js');
      const cfg = loadServerConfig(o.config);
      if (o.listen) cfg.listen = o.listen;
      let srv: { close(): Promise<void> } | null = null;
      await runUntilSignal(
        async () => void (srv = await startDownloadServer(cfg)),
        () => srv?.close(),
      );
      return;
    }
    const { startDefaultServer } = await import('../download-server/defaults.js');
    let run: { stop(): Promise<void>; banner: string } | null = null;
    await runUntilSignal(
      async () => void (run = await startDefaultServer(o['data-dir'] ?? '.tinyvine', o.listen ?? '0.0.0.0:8080')),
      () => run?.stop(),
    );
    process.stdout.write(run!.banner);
  },

  async ranges(argv) {
    const usage = `Usage: tinyvine ranges update [--catalog DIR]
       tinyvine ranges lookup [--catalog DIR] [IP ...]
  update: download the providers' published IP range files into DIR (default ./catalog),
          validated, written atomically; a failed download keeps the last good copy.
  lookup: one JSON line per address (from stdin when none are given); exit 3 if any is unknown.`;
    const [sub, ...rest] = argv;
    if (sub !== 'update' && sub !== 'lookup') {
      if (sub === '--help' || sub === '-h') {
        process.stdout.write(usage + '\n');
        return;
      }
      throw new UserError(`ranges: expected "update" or "lookup", got ${sub ? `"${sub}"` : 'nothing'} (see --help)`);
    }
    const { parseArgs } = await import('node:util');
    let values: { catalog?: string; help?: boolean };
    let positionals: string[];
    try {
      ({ values, positionals } = parseArgs({ args: rest, options: { catalog: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: sub === 'lookup', strict: true }));
    } catch (e) {
      throw new UserError(`${(e as Error).message.split('\n')[0]} (see --help)`);
    }
    if (values.help) {
      process.stdout.write(usage + '\n');
      return;
    }
    const dir = values.catalog ?? 'catalog';
    if (sub === 'update') {
      const { updateRanges } = await import('../download-server/catalog/update.js');
      const report = await updateRanges(dir, {});
      for (const r of report) process.stdout.write(JSON.stringify(r) + '\n');
      if (report.some((r) => !r.ok)) process.exitCode = 1;
      return;
    }
    const { lookupCommand } = await import('../download-server/catalog/lookup-command.js');
    const readStdin = async () => readFileSync(0, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
    process.exitCode = await lookupCommand(dir, positionals.length ? positionals : null, (l) => process.stdout.write(l + '\n'), readStdin);
  },

  net: (argv) => authorityCli('net', argv),
  site: (argv) => authorityCli('site', argv),
  host: (argv) => authorityCli('host', argv),
  token: (argv) => authorityCli('token', argv),

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

main().catch(exitWithError);
