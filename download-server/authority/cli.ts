// `tinyvine net|site|fullvr|host|token ...`: management commands that talk to the authority's
// HTTP API (/api/v1 on the download server).
//
//   --server URL      or TINYVINE_SERVER      (e.g. http://authority.example:8080)
//   --api-token TOK   or TINYVINE_API_TOKEN
//   --json            machine-readable output (the server's JSON); default: human tables
//   --help            everywhere
//
// Errors are one line on stderr ("tinyvine: <the server's error line>"). Exit codes: 0 ok,
// 1 server/connection error (and 409 conflicts), 2 usage (bad flags, or the server said 400),
// 3 not found (404), 4 unauthorised/forbidden (401/403).
import { parseArgs, type ParseArgsConfig } from 'node:util';

export type CliGroup = 'net' | 'site' | 'fullvr' | 'host' | 'token';

export interface CliOpts {
  out: { write(s: string): unknown };
  err: { write(s: string): unknown };
  env: Record<string, string | undefined>;
  fetch?: typeof fetch;
}

export const EXIT = { ok: 0, server: 1, usage: 2, notFound: 3, forbidden: 4 } as const;

class CliError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message.replace(/\s*[\r\n]+\s*/g, ' ').trim());
  }
}

const usageError = (m: string) => new CliError(`${m} (see --help)`, EXIT.usage);

// ------------------------------------------------------------------ HTTP

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Client {
  call(method: string, path: string, body?: unknown): Promise<Json>;
}

function statusExit(status: number): number {
  if (status === 400) return EXIT.usage;
  if (status === 401 || status === 403) return EXIT.forbidden;
  if (status === 404) return EXIT.notFound;
  return EXIT.server;
}

function makeClient(server: string, token: string | undefined, f: typeof fetch): Client {
  const base = server.replace(/\/+$/, '') + '/api/v1';
  return {
    async call(method, path, body) {
      let res: Response;
      try {
        res = await f(base + path, {
          method,
          headers: {
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
        });
      } catch (e) {
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        throw new CliError(`cannot reach ${server} (${cause?.code ?? cause?.message ?? (e as Error).message})`, EXIT.server);
      }
      const text = await res.text();
      let json: Json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      if (!res.ok) {
        const line = typeof json?.error === 'string' ? json.error : (text.split('\n')[0].replace(/^tinyvine:\s*/, '') || `HTTP ${res.status}`);
        throw new CliError(line, statusExit(res.status));
      }
      if (json === null) throw new CliError(`${server} answered ${method} ${path} with something that is not JSON (is it a TinyViNe download server?)`, EXIT.server);
      return json;
    },
  };
}

// ------------------------------------------------------------------ output

function table(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}

const isoSeconds = (unix: number) => new Date(unix * 1000).toISOString().replace(/\.000Z$/, 'Z');

// ------------------------------------------------------------------ argument helpers

const COMMON = {
  server: { type: 'string' },
  'api-token': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

const COMMON_HELP = `Common options:
  --server URL       authority (download server) base URL; default $TINYVINE_SERVER
  --api-token TOKEN  API token; default $TINYVINE_API_TOKEN
  --json             print the server's JSON instead of a table
  -h, --help         this help`;

function intArg(what: string, v: string | undefined): number {
  if (v === undefined) throw usageError(`${what} is required`);
  if (!/^[0-9]{1,10}$/.test(v)) throw usageError(`${what} must be a whole number, got "${v.slice(0, 40)}"`);
  return Number(v);
}

/** "3600", "90s", "30m", "12h", "7d" -> seconds. */
function durationArg(what: string, v: string): number {
  const m = /^([0-9]{1,9})([smhd]?)$/.exec(v);
  if (!m) throw usageError(`${what} must be a duration like 3600, 30m, 12h or 7d, got "${v.slice(0, 40)}"`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

/** Repeatable and/or comma-separated list flag. */
function listArg(v: string[] | undefined): string[] {
  return (v ?? []).flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean);
}

interface Sub {
  usage: string;
  options: ParseArgsConfig['options'];
  /** [min, max] positionals. */
  positionals: [number, number];
  run(a: { values: Record<string, any>; pos: string[]; client: Client; json: boolean; out: (s: string) => void }): Promise<void>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

// ------------------------------------------------------------------ commands

const GROUPS: Record<CliGroup, { summary: string; subs: Record<string, Sub> }> = {
  net: {
    summary: 'virtual networks (ViNes)',
    subs: {
      create: {
        usage: `tinyvine net create --id N --name NAME --site SITE[,SITE...] [--mode physical|virtual] [--auth hmac|aes-gcm|chacha|none]
                   [--overlay CIDR] [--block-prefix BITS]
  Create a network over registered sites. Virtual mode needs --overlay; each site gets a block of
  it (/24 for IPv4 by default, see --block-prefix).`,
        options: {
          id: { type: 'string' },
          name: { type: 'string' },
          site: { type: 'string', multiple: true },
          mode: { type: 'string' },
          auth: { type: 'string' },
          overlay: { type: 'string' },
          'block-prefix': { type: 'string' },
        },
        positionals: [0, 0],
        async run({ values: v, client, json, out }) {
          if (v.name === undefined) throw usageError('--name is required');
          const sites = listArg(v.site);
          if (!sites.length) throw usageError('--site is required (one or more site names)');
          const body: Record<string, unknown> = { id: intArg('--id', v.id), name: v.name, sites };
          if (v.mode !== undefined) body.mode = v.mode;
          if (v.auth !== undefined) body.auth = v.auth;
          if (v.overlay !== undefined) body.overlay = v.overlay;
          if (v['block-prefix'] !== undefined) body.blockPrefix = intArg('--block-prefix', v['block-prefix']);
          const r = await client.call('POST', '/networks', body);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          const n = r.network;
          out(`created network ${n.id} (${n.name}), ${n.mode}, sites: ${describeSites(n)}\n`);
        },
      },
      list: {
        usage: 'tinyvine net list\n  All networks with their mode, state, sites and member count.',
        options: {},
        positionals: [0, 0],
        async run({ client, json, out }) {
          const r = await client.call('GET', '/networks');
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(
            table(
              ['ID', 'NAME', 'MODE', 'AUTH', 'STATE', 'OVERLAY', 'HOSTS', 'SITES'],
              r.networks.map((n: Json) => [n.id, n.name, n.mode, n.auth, n.state, n.overlay, n.hosts, describeSites(n)]),
            ),
          );
        },
      },
      show: {
        usage: 'tinyvine net show ID\n  One network and its member hosts.',
        options: {},
        positionals: [1, 1],
        async run({ pos, client, json, out }) {
          const r = await client.call('GET', `/networks/${intArg('ID', pos[0])}`);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          const n = r.network;
          out(`network ${n.id} (${n.name}): ${n.mode}, auth ${n.auth}, ${n.state}${n.overlay ? `, overlay ${n.overlay}` : ''}\nsites: ${describeSites(n)}\n`);
          out(table(['ADDRESS', 'SITE', 'FULLVR', 'NAME', 'JOINED'], r.hosts.map((h: Json) => [h.address, h.site, h.fullvr, h.name, h.joinedAt])));
        },
      },
      delete: simpleNetOp('delete', 'DELETE', '', 'Delete a network: its hosts are removed, its join tokens revoked.', (r) => `deleted network ${r.deleted}`),
      shutdown: simpleNetOp('shutdown', 'POST', '/shutdown', 'Deactivate a network (kept, but left out of routing tables).', (r) => `network ${r.network.id} (${r.network.name}) is shut down`),
      'add-site': {
        usage: 'tinyvine net add-site ID SITE\n  Add a registered site to a network (virtual mode: allocates its block).',
        options: {},
        positionals: [2, 2],
        async run({ pos, client, json, out }) {
          const r = await client.call('POST', `/networks/${intArg('ID', pos[0])}/sites`, { site: pos[1] });
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(`network ${r.network.id} (${r.network.name}) sites: ${describeSites(r.network)}\n`);
        },
      },
      merge: {
        usage: "tinyvine net merge INTO FROM\n  Move FROM's sites and hosts into INTO; FROM is removed (its join tokens revoked).",
        options: {},
        positionals: [2, 2],
        async run({ pos, client, json, out }) {
          const into = intArg('INTO', pos[0]);
          const r = await client.call('POST', `/networks/${into}/merge`, { from: intArg('FROM', pos[1]) });
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(`merged network ${r.merged} into ${r.network.id} (${r.network.name}); sites: ${describeSites(r.network)}; ${r.network.hosts} hosts\n`);
        },
      },
      split: {
        usage: `tinyvine net split ID --sites SITE[,SITE...] --new-id N --new-name NAME
  Move these sites (a site is the unit of split) and their hosts to a new network.`,
        options: { sites: { type: 'string', multiple: true }, 'new-id': { type: 'string' }, 'new-name': { type: 'string' } },
        positionals: [1, 1],
        async run({ pos, values: v, client, json, out }) {
          const sites = listArg(v.sites);
          if (!sites.length) throw usageError('--sites is required');
          if (v['new-name'] === undefined) throw usageError('--new-name is required');
          const r = await client.call('POST', `/networks/${intArg('ID', pos[0])}/split`, { sites, newId: intArg('--new-id', v['new-id']), newName: v['new-name'] });
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(
            table(
              ['ID', 'NAME', 'HOSTS', 'SITES'],
              [r.network, r.created].map((n: Json) => [n.id, n.name, n.hosts, describeSites(n)]),
            ),
          );
        },
      },
    },
  },
  site: {
    summary: 'ViNe-enabled sites',
    subs: {
      add: {
        usage: `tinyvine site add NAME --provider P --subnet CIDR[,CIDR...] [--region R] [--contact TEXT]
  Register a site and its physical subnets (admin).`,
        options: { provider: { type: 'string' }, region: { type: 'string' }, subnet: { type: 'string', multiple: true }, contact: { type: 'string' } },
        positionals: [1, 1],
        async run({ pos, values: v, client, json, out }) {
          if (v.provider === undefined) throw usageError('--provider is required');
          const subnets = listArg(v.subnet);
          if (!subnets.length) throw usageError('--subnet is required (one or more CIDRs)');
          const body: Record<string, unknown> = { name: pos[0], provider: v.provider, subnets };
          if (v.region !== undefined) body.region = v.region;
          if (v.contact !== undefined) body.contact = v.contact;
          const r = await client.call('POST', '/sites', body);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(`registered site ${r.site.name} (${r.site.provider}${r.site.region ? `/${r.site.region}` : ''}): ${r.site.subnets.join(', ')}\n`);
        },
      },
      list: {
        usage: 'tinyvine site list',
        options: {},
        positionals: [0, 0],
        async run({ client, json, out }) {
          const r = await client.call('GET', '/sites');
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(table(['NAME', 'PROVIDER', 'REGION', 'SUBNETS', 'CONTACT'], r.sites.map((s: Json) => [s.name, s.provider, s.region, s.subnets.join(','), s.contact])));
        },
      },
    },
  },
  fullvr: {
    summary: 'FullVRs registered with the authority',
    subs: {
      list: {
        usage: 'tinyvine fullvr list\n  Registered FullVRs, the networks they serve and their health (heartbeats).',
        options: {},
        positionals: [0, 0],
        async run({ client, json, out }) {
          const r = await client.call('GET', '/fullvrs');
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(
            table(
              ['ID', 'ENDPOINT', 'SITE', 'NAT', 'QUEUE-VR', 'NETWORKS', 'HEALTH'],
              r.fullvrs.map((f: Json) => [f.id, f.endpoint, f.site, f.nat, f.queueVr, f.serves.join(','), describeHealth(f.health)]),
            ),
          );
        },
      },
      register: {
        usage: `tinyvine fullvr register --id N --endpoint HOST:PORT --public-key KEY --site SITE [--nat public|limited] [--queue-vr ID]
  Register a FullVR at a site (site-admin of that site). A limited FullVR (behind NAT) needs a
  public queue-VR.`,
        options: { id: { type: 'string' }, endpoint: { type: 'string' }, 'public-key': { type: 'string' }, site: { type: 'string' }, nat: { type: 'string' }, 'queue-vr': { type: 'string' } },
        positionals: [0, 0],
        async run({ values: v, client, json, out }) {
          for (const k of ['endpoint', 'public-key', 'site']) if (v[k] === undefined) throw usageError(`--${k} is required`);
          const body: Record<string, unknown> = { id: intArg('--id', v.id), endpoint: v.endpoint, publicKey: v['public-key'], site: v.site };
          if (v.nat !== undefined) body.nat = v.nat;
          if (v['queue-vr'] !== undefined) body.queueVr = intArg('--queue-vr', v['queue-vr']);
          const r = await client.call('POST', '/fullvrs', body);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(`registered FullVR ${r.fullvr.id} at site ${r.fullvr.site} (${r.fullvr.endpoint}, ${r.fullvr.nat}${r.fullvr.queueVr ? ` via queue-VR ${r.fullvr.queueVr}` : ''})\n`);
        },
      },
      tables: {
        usage: 'tinyvine fullvr tables ID\n  The routing tables (peers, networks, members) the authority computes for this FullVR, as JSON.',
        options: {},
        positionals: [1, 1],
        async run({ pos, client, out }) {
          const r = await client.call('GET', `/fullvrs/${intArg('ID', pos[0])}/tables`);
          out(JSON.stringify(r, null, 2) + '\n');
        },
      },
    },
  },
  host: {
    summary: 'member hosts of networks',
    subs: {
      list: {
        usage: 'tinyvine host list [--network N]',
        options: { network: { type: 'string' } },
        positionals: [0, 0],
        async run({ values: v, client, json, out }) {
          const q = v.network !== undefined ? `?network=${intArg('--network', v.network)}` : '';
          const r = await client.call('GET', `/hosts${q}`);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(table(['NETWORK', 'ADDRESS', 'SITE', 'FULLVR', 'NAME', 'JOINED'], r.hosts.map((h: Json) => [h.network, h.address, h.site, h.fullvr, h.name, h.joinedAt])));
        },
      },
      join: {
        usage: `tinyvine host join NETWORK [ADDRESS] [--site SITE] [--name NAME]
  Physical networks: ADDRESS is the host's own address (its site is derived from the subnets).
  Virtual networks: an address is allocated in the site's block unless ADDRESS is given.`,
        options: { site: { type: 'string' }, name: { type: 'string' } },
        positionals: [1, 2],
        async run({ pos, values: v, client, json, out }) {
          const body: Record<string, unknown> = {};
          if (pos[1] !== undefined) body.address = pos[1];
          if (v.site !== undefined) body.site = v.site;
          if (v.name !== undefined) body.name = v.name;
          const r = await client.call('POST', `/networks/${intArg('NETWORK', pos[0])}/hosts`, body);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(`${r.host.address} joined network ${r.host.network} at site ${r.host.site} (FullVR ${r.host.fullvr})\n`);
        },
      },
      leave: {
        usage: 'tinyvine host leave NETWORK ADDRESS',
        options: {},
        positionals: [2, 2],
        async run({ pos, client, json, out }) {
          const r = await client.call('DELETE', `/networks/${intArg('NETWORK', pos[0])}/hosts/${encodeURIComponent(pos[1])}`);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(`${r.host.address} left network ${r.host.network}\n`);
        },
      },
    },
  },
  token: {
    summary: 'join tokens',
    subs: {
      create: {
        usage: `tinyvine token create NETWORK [--expires-in 1h] [--multi-use] [--count N] [--fullvr ID]
  Issue signed join tokens (single-use unless --multi-use). The tokens are shown only now.`,
        options: { 'expires-in': { type: 'string' }, 'multi-use': { type: 'boolean' }, 'single-use': { type: 'boolean' }, count: { type: 'string' }, fullvr: { type: 'string' } },
        positionals: [1, 1],
        async run({ pos, values: v, client, json, out }) {
          if (v['multi-use'] && v['single-use']) throw usageError('--single-use and --multi-use exclude each other');
          const body: Record<string, unknown> = { singleUse: !v['multi-use'] };
          if (v['expires-in'] !== undefined) body.expiresIn = durationArg('--expires-in', v['expires-in']);
          if (v.count !== undefined) body.count = intArg('--count', v.count);
          if (v.fullvr !== undefined) body.fullvr = intArg('--fullvr', v.fullvr);
          const r = await client.call('POST', `/networks/${intArg('NETWORK', pos[0])}/tokens`, body);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          const t0 = r.tokens[0];
          out(`# ${r.tokens.length} ${t0.singleUse ? 'single-use' : 'multi-use'} token(s) for network ${t0.network}, expire ${isoSeconds(t0.expires)} (shown only now)\n`);
          for (const t of r.tokens) out(`${t.token}\n`);
        },
      },
      list: {
        usage: 'tinyvine token list [--network N]\n  Issued join tokens (ids only; the tokens themselves are never stored).',
        options: { network: { type: 'string' } },
        positionals: [0, 0],
        async run({ values: v, client, json, out }) {
          const q = v.network !== undefined ? `?network=${intArg('--network', v.network)}` : '';
          const r = await client.call('GET', `/tokens${q}`);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(
            table(
              ['JTI', 'NETWORK', 'FULLVR', 'USE', 'EXPIRES', 'STATE'],
              r.tokens.map((t: Json) => [t.jti, t.network, t.fullvr ?? 'any', t.singleUse ? 'single' : 'multi', isoSeconds(t.expires), t.revoked ? 'revoked' : 'valid']),
            ),
          );
        },
      },
      revoke: {
        usage: 'tinyvine token revoke JTI\n  Revoke a join token; FullVRs refuse it from their next routing-table update.',
        options: {},
        positionals: [1, 1],
        async run({ pos, client, json, out }) {
          const r = await client.call('POST', `/tokens/${encodeURIComponent(pos[0])}/revoke`);
          if (json) return out(JSON.stringify(r, null, 2) + '\n');
          out(`revoked token ${r.token.jti} (network ${r.token.network})\n`);
        },
      },
    },
  },
};

function simpleNetOp(name: string, method: string, suffix: string, what: string, say: (r: Json) => string): Sub {
  return {
    usage: `tinyvine net ${name} ID\n  ${what}`,
    options: {},
    positionals: [1, 1],
    async run({ pos, client, json, out }) {
      const r = await client.call(method, `/networks/${intArg('ID', pos[0])}${suffix}`);
      if (json) return out(JSON.stringify(r, null, 2) + '\n');
      out(say(r) + '\n');
    },
  };
}

function describeSites(n: Json): string {
  return (n.sites as string[]).map((s) => (n.blocks?.[s] ? `${s}=${n.blocks[s]}` : s)).join(', ');
}

function describeHealth(h: Json): string {
  if (h === null || h === undefined) return 'unknown';
  if (typeof h !== 'object') return String(h);
  const parts: string[] = [];
  if (typeof h.healthy === 'boolean') parts.push(h.healthy ? 'up' : 'down');
  if (typeof h.members === 'number') parts.push(`${h.members} members`);
  if (typeof h.load === 'number') parts.push(`load ${h.load}`);
  return parts.join(', ') || 'unknown';
}

function groupUsage(group: CliGroup): string {
  const g = GROUPS[group];
  const lines = Object.values(g.subs).map((s) => '  ' + s.usage.split('\n')[0]);
  return `Usage: tinyvine ${group} <command> [options]   — ${g.summary}\n\n${lines.join('\n')}\n\n${COMMON_HELP}\nRun 'tinyvine ${group} <command> --help' for details.`;
}

/**
 * Run `tinyvine <group> <argv...>`; returns the exit code. Never throws and never exits the
 * process: output goes to opts.out / opts.err.
 */
export async function runAuthorityCli(group: CliGroup, argv: string[], opts: CliOpts): Promise<number> {
  const out = (s: string) => void opts.out.write(s);
  try {
    const g = GROUPS[group];
    if (!g) throw new CliError(`unknown command group "${String(group)}"`, EXIT.usage);
    const [subName, ...rest] = argv;
    if (subName === undefined || subName === '--help' || subName === '-h' || subName === 'help') {
      out(groupUsage(group) + '\n');
      return subName === undefined ? EXIT.usage : EXIT.ok;
    }
    const sub = Object.prototype.hasOwnProperty.call(g.subs, subName) ? g.subs[subName] : undefined;
    if (!sub) throw usageError(`${group}: unknown command "${subName.slice(0, 40)}" (known: ${Object.keys(g.subs).join(', ')})`);
    let values: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    let positionals: string[];
    try {
      ({ values, positionals } = parseArgs({ args: rest, options: { ...COMMON, ...sub.options }, strict: true, allowPositionals: true }));
    } catch (e) {
      throw usageError(`${group} ${subName}: ${(e as Error).message.split('\n')[0]}`);
    }
    if (values.help) {
      out(`Usage: ${sub.usage}\n\n${COMMON_HELP}\n`);
      return EXIT.ok;
    }
    const [min, max] = sub.positionals;
    if (positionals.length < min || positionals.length > max) {
      const firstLine = sub.usage.split('\n')[0];
      throw usageError(`${group} ${subName}: expected ${min === max ? min : `${min} to ${max}`} argument${max === 1 ? '' : 's'}, got ${positionals.length}; usage: ${firstLine}`);
    }
    const server = values.server ?? opts.env.TINYVINE_SERVER;
    if (!server) throw usageError('no authority server: give --server URL or set TINYVINE_SERVER');
    if (!/^https?:\/\/[^\s/]+/.test(server)) throw usageError(`--server must be an http(s) URL, got "${String(server).slice(0, 60)}"`);
    const token = values['api-token'] ?? opts.env.TINYVINE_API_TOKEN;
    const f = opts.fetch ?? globalThis.fetch;
    await sub.run({ values, pos: positionals, client: makeClient(server, token, f), json: !!values.json, out });
    return EXIT.ok;
  } catch (e) {
    const code = e instanceof CliError ? e.code : EXIT.server;
    opts.err.write(`tinyvine: ${(e as Error).message}\n`);
    return code;
  }
}
