// FullVR configuration: YAML (JSON is valid YAML), validated in two passes:
//  1. structure with zod strict objects (unknown keys are errors, defaults filled in);
//  2. semantics on the typed result (uniqueness, references, prefix relations).
// Every problem becomes one line "file: field: message" in a ConfigError.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { cidrContains, cidrsOverlap, parsePrefix, prefixString, show } from '../shared/cidr.js';
import {
  ConfigError,
  type Problem,
  readConfigFile,
  runSchema,
  zEndpoint,
  zId,
  zIfName,
  zKeepalive,
  zKey32,
  zName,
  zPrefix,
  zToken,
  zModerationMicros,
  DEFAULT_MODERATION_US,
} from '../shared/config-error.js';

/** A site: one entry of the network's GNDT. */
const SiteSchema = z.strictObject({
  // label for status output and error messages; unique within the network
  name: zName,
  // the site's subnet (physical mode: its real LAN/VPC subnet; virtual mode: its block of `overlay`)
  subnet: zPrefix,
  // VR id that serves this subnet: this VR's `id` or one of `peers[].id`
  vr: zId,
});

/** One virtual network (ViNe). */
const NetworkSchema = z.strictObject({
  // ViNe id, carried in every data packet header; unique in the deployment
  id: zId,
  // label for status output; unique in this file
  name: zName,
  // physical: members keep their own addresses, sites are real disjoint subnets;
  // virtual: members get addresses from `overlay`, each site owns a block of it
  mode: z.enum(['physical', 'virtual']).default('physical'),
  // per-packet protection: gmac (AES-GMAC, authenticated, default: cheapest with AES-NI) | hmac (HMAC-SHA256) | aes-gcm | chacha (encrypted) | none
  auth: z.enum(['hmac', 'gmac', 'aes-gcm', 'chacha', 'none']).default('gmac'),
  // virtual mode only: the overlay address space; every site subnet lies inside it
  overlay: zPrefix.optional(),
  // GNDT: subnet -> VR that serves it (longest prefix wins)
  sites: z.array(SiteSchema).min(1),
  // LNDT prefixes served by THIS VR's TUN (LAN gateway for hosts without TinyViNe software);
  // each must lie inside a site subnet whose vr is this VR
  lan: z.array(zPrefix).default([]),
});

export const FullvrConfigSchema = z.strictObject({
  // this VR's ID (1..2^32-1), unique in the deployment
  id: zId,
  // UDP endpoint (IP literal) for TinyVRs and other FullVRs
  listen: zEndpoint(true).default('0.0.0.0:4789'),
  // X25519 static private key, base64; or privateKeyFile (exactly one of the two)
  privateKey: zKey32.optional(),
  // file holding the base64 private key; relative paths are relative to the config file
  privateKeyFile: z.string().min(1).optional(),
  // underlay path MTU; TUN MTU = pathMtu - 68 over IPv4 (pathMtu - 88 over IPv6)
  // (at most 2036: the packet engine's 2048-byte slots bound the inner packet to 1968 bytes)
  pathMtu: z.number().min(576).max(2036).int().default(1500),
  // optional: only needed when some network has `lan` prefixes on this VR
  tun: z.strictObject({ name: zIfName.default('tvn0') }).optional(),
  // optional local HTTP status endpoint (JSON stats), e.g. "127.0.0.1:4790"; omit to disable
  control: zEndpoint(false).optional(),
  // NSKT: the other FullVRs
  peers: z
    .array(
      z.strictObject({
        // the peer's VR id
        id: zId,
        // its UDP endpoint; a host name is resolved at startup (a limited peer may have none)
        endpoint: zEndpoint(false).optional(),
        // its X25519 static public key, base64
        publicKey: zKey32,
        // the peer sits behind NAT and accepts no inbound traffic (a limited-VR): never
        // initiate to it; it opens the session, and when this VR is its queue-VR, packets
        // for its subnets arrive here and are relayed to it over that session
        limited: z.boolean().default(false),
      }),
    )
    .default([]),
  // the virtual networks this VR takes part in
  // (may be empty when `authority.managed` is true: the authority pushes them)
  networks: z.array(NetworkSchema).default([]),
  // join credentials accepted by this FullVR: a TinyVR presenting `token` joins `network`
  tokens: z.array(z.strictObject({ token: zToken, network: zId })).default([]),
  // keepalive interval towards peers and sessions, seconds (1..25, below common NAT timeouts)
  keepaliveSeconds: zKeepalive.default(10),
  // wake-up moderation, microseconds (0: off): see the TinyVR's moderationMicros
  moderationMicros: zModerationMicros.default(DEFAULT_MODERATION_US),
  // shortcuts: offer each member a direct session to every peer (with an endpoint) that serves
  // other sites of its network, and admit such sessions from peers' members. Traffic between
  // two sites then crosses one FullVR (the receiving site's) instead of two; a member that
  // cannot reach the peer keeps sending through this FullVR. false: all traffic of our members
  // goes through us, and peers' members are refused (they fall back to their own FullVR).
  shortcuts: z.boolean().default(true),
  // direct paths: when we forward between two TinyVRs we hold sessions with (ours, or peers'
  // members on a shortcut), introduce them to each other so they open a session straight
  // between them through their NATs and leave every FullVR off their path (less latency and
  // CPU; we no longer see or police that traffic, the members check each other's sources).
  // Members that cannot reach each other keep using us. Removing a member (or moving it to
  // another network) revokes its direct paths at once, and members renew each path with us
  // every 10 s, so a lost revocation holds at the next renewal. false: all traffic of our
  // members crosses a FullVR (e.g. where one must log or police it).
  directPaths: z.boolean().default(true),
  // the download server ("ViNe Authority") this FullVR trusts and reports to
  authority: z
    .strictObject({
      // Ed25519 public key (base64) the authority signs join tokens with; tokens are verified offline
      publicKey: zKey32,
      // base URL for heartbeats (load, members); omit to run without reporting
      url: z.string().url().optional(),
      // bearer token for the heartbeat API
      apiToken: z.string().min(16).optional(),
      // heartbeat interval, seconds
      heartbeatSeconds: z.number().int().min(1).max(300).default(5),
      // true: networks, peers and member placement come from the authority's signed tables
      // (pushed over a long-lived stream); local `networks`/`peers` must then be empty
      managed: z.boolean().default(false),
    })
    .optional(),
  // this FullVR is a limited-VR (behind NAT, no inbound traffic): its queue-VR (a peer id)
  // relays traffic for it; if UDP to the queue-VR does not work within tcpFallbackSeconds,
  // the datagrams go over one TCP connection to the queue-VR's port instead
  queueVr: z.strictObject({ id: zId, tcpFallbackSeconds: z.number().int().min(1).max(300).default(5) }).optional(),
  // where this FullVR is, as the authority names it (for FullVR selection)
  provider: z.string().min(1).max(64).optional(),
  region: z.string().min(1).max(64).optional(),
  // directory for state that must survive restarts (used single-use token ids); optional
  stateDir: z.string().min(1).optional(),
});

/** The validated config. privateKey is always set (read from privateKeyFile if that was used). */
export type FullvrConfig = z.output<typeof FullvrConfigSchema> & { privateKey: string };
export type FullvrNetworkConfig = FullvrConfig['networks'][number];

/** Read, parse and validate a FullVR config file. Throws ConfigError. */
export function loadFullvrConfig(path: string): FullvrConfig {
  return parseFullvrConfig(readConfigFile(path), path);
}

/**
 * Validate an already-parsed config object. `sourceName` names it in errors and, unless
 * opts.baseDir is given, its directory is where a relative privateKeyFile is looked up.
 */
export function parseFullvrConfig(obj: unknown, sourceName: string, opts: { baseDir?: string } = {}): FullvrConfig {
  const cfg = runSchema(FullvrConfigSchema, obj, sourceName, semanticProblems);
  if (cfg.privateKey !== undefined) return cfg as FullvrConfig;
  const file = resolve(opts.baseDir ?? dirname(sourceName), cfg.privateKeyFile!);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ConfigError(sourceName, `${sourceName}: privateKeyFile: cannot read ${show(file)} (${code})`);
  }
  const key = text.trim();
  if (!zKey32.safeParse(key).success) {
    throw new ConfigError(sourceName, `${sourceName}: privateKeyFile: ${show(file)} does not hold a 32-byte base64 key`);
  }
  return { ...cfg, privateKey: key };
}

type Parsed = z.output<typeof FullvrConfigSchema>;

function semanticProblems(cfg: Parsed): Problem[] {
  const out: Problem[] = [];
  const add = (path: PropertyKey[], message: string) => out.push({ path, message });

  if (cfg.privateKey === undefined && cfg.privateKeyFile === undefined) {
    add(['privateKey'], 'is required (or privateKeyFile)');
  } else if (cfg.privateKey !== undefined && cfg.privateKeyFile !== undefined) {
    add(['privateKeyFile'], 'cannot be used together with privateKey; keep one');
  }

  // VR ids: this VR and its peers, all distinct.
  const vrAt = new Map<number, string>([[cfg.id, 'id']]);
  cfg.peers.forEach((p, i) => {
    const seen = vrAt.get(p.id);
    if (seen === 'id') add(['peers', i, 'id'], `${p.id} is this VR's own id`);
    else if (seen) add(['peers', i, 'id'], `duplicate VR id ${p.id} (also ${seen})`);
    else vrAt.set(p.id, `peers[${i}].id`);
  });

  cfg.peers.forEach((p, i) => {
    if (!p.limited && !p.endpoint) add(['peers', i, 'endpoint'], 'required (only a limited peer may omit it)');
  });
  if (cfg.queueVr && !cfg.peers.some((p) => p.id === cfg.queueVr!.id && !p.limited)) {
    add(['queueVr', 'id'], `${cfg.queueVr.id} must be one of peers[].id (and not a limited peer)`);
  }

  if (cfg.authority?.managed) {
    if (!cfg.authority.url) add(['authority', 'url'], 'a managed FullVR needs the authority url to receive its tables');
  } else if (cfg.networks.length === 0) {
    add(['networks'], 'at least one network is required (or set authority.managed: true)');
  }

  const netIds = new Map<number, number>();
  const netNames = new Map<string, number>();
  const lanAll: Array<{ prefix: string; path: string }> = [];
  let firstLan: string | undefined;
  let needsIpv6 = '';

  cfg.networks.forEach((n, ni) => {
    const at = (...rest: PropertyKey[]) => ['networks', ni, ...rest];
    if (netIds.has(n.id)) add(at('id'), `duplicate network id ${n.id} (also networks[${netIds.get(n.id)}].id)`);
    else netIds.set(n.id, ni);
    if (netNames.has(n.name)) add(at('name'), `duplicate network name ${show(n.name)} (also networks[${netNames.get(n.name)}].name)`);
    else netNames.set(n.name, ni);

    if (n.mode === 'virtual' && n.overlay === undefined) add(at('overlay'), 'is required when mode is virtual');
    if (n.mode === 'physical' && n.overlay !== undefined) add(at('overlay'), 'is only used with mode: virtual');

    const siteNames = new Map<string, number>();
    n.sites.forEach((s, si) => {
      if (siteNames.has(s.name)) add(at('sites', si, 'name'), `duplicate site name ${show(s.name)} (also sites[${siteNames.get(s.name)}])`);
      else siteNames.set(s.name, si);
      if (!vrAt.has(s.vr)) add(at('sites', si, 'vr'), `${s.vr} is neither this VR (id ${cfg.id}) nor one of peers[].id`);
      if (parsePrefix(s.subnet).family === 6) needsIpv6 ||= n.name;

      if (n.mode === 'virtual' && n.overlay !== undefined && !inside(s.subnet, n.overlay)) {
        add(at('sites', si, 'subnet'), `${s.subnet} (site ${show(s.name)}) is not inside overlay ${n.overlay}`);
      }
      for (let sj = 0; sj < si; sj++) {
        const o = n.sites[sj];
        const what = `${s.subnet} (site ${show(s.name)})`;
        const other = `${o.subnet} (site ${show(o.name)}, sites[${sj}])`;
        if (n.mode === 'physical' && cidrsOverlap(s.subnet, o.subnet)) {
          // physical subnets are real LANs: an overlap means one of them is wrong
          add(at('sites', si, 'subnet'), `${what} overlaps ${other}`);
          break;
        }
        if (n.mode === 'virtual' && prefixString(parsePrefix(s.subnet)) === prefixString(parsePrefix(o.subnet))) {
          // nesting is allowed in virtual mode (longest prefix wins), an identical block is not
          add(at('sites', si, 'subnet'), `${what} duplicates ${other}`);
          break;
        }
      }
    });

    n.lan.forEach((l, li) => {
      firstLan ??= `networks[${ni}].lan`;
      if (parsePrefix(l).family === 6) needsIpv6 ||= n.name;
      if (!n.sites.some((s) => s.vr === cfg.id && inside(l, s.subnet))) {
        add(at('lan', li), `${l} is not inside a site subnet served by this VR (id ${cfg.id})`);
      }
      // the LNDT is keyed by address alone, so LAN prefixes of all networks must be disjoint
      const clash = lanAll.find((o) => cidrsOverlap(o.prefix, l));
      if (clash) add(at('lan', li), `${l} overlaps ${clash.prefix} (${clash.path})`);
      lanAll.push({ prefix: l, path: `networks[${ni}].lan[${li}]` });
    });
  });

  if (firstLan && cfg.tun === undefined) add(['tun'], `is required because ${firstLan} is not empty`);
  if (needsIpv6 && cfg.pathMtu - 68 < 1280) {
    add(['pathMtu'], `${cfg.pathMtu} gives a TUN MTU of ${cfg.pathMtu - 68}, below the IPv6 minimum of 1280 (network ${show(needsIpv6)} has IPv6 subnets); use at least 1348`);
  }

  const tokenAt = new Map<string, number>();
  cfg.tokens.forEach((t, ti) => {
    if (tokenAt.has(t.token)) add(['tokens', ti, 'token'], `same token as tokens[${tokenAt.get(t.token)}]`);
    else tokenAt.set(t.token, ti);
    const ni = netIds.get(t.network);
    if (ni === undefined) {
      add(['tokens', ti, 'network'], `no network with id ${t.network} in networks[]`);
    } else if (!cfg.networks[ni].sites.some((s) => s.vr === cfg.id)) {
      // a member joining here gets an address routed to this VR; without a site nobody could reach it
      add(['tokens', ti, 'network'], `network ${t.network} has no site served by this VR (id ${cfg.id})`);
    }
  });

  return out;
}

/** True if prefix `inner` lies entirely inside prefix `outer`. */
function inside(inner: string, outer: string): boolean {
  const a = parsePrefix(inner);
  const b = parsePrefix(outer);
  return a.family === b.family && a.bits >= b.bits && cidrContains(outer, a.address);
}
