// ViNe Authority state (dissertation Ch. 5): sites, FullVRs, virtual networks, member hosts,
// join tokens, API tokens — and every change to them as a pure function
//
//   op(state, input, ctx) -> { state: newState, result }      or throws AuthorityError (4xx)
//
// Each operation validates everything first and only then builds the new state, so a refusal
// leaves nothing half-applied; the input state is never mutated (records are replaced, not
// edited). Every successful change bumps `version` by one and appends a changelog entry.
//
// Conventions documented here because the API and the tables depend on them:
//  * A site's serving FullVR is the FIRST FullVR registered at that site (registration order);
//    sites without a FullVR may be in networks but are left out of routing tables and cannot
//    take members until one is registered.
//  * Site names carry no dots: a site with several subnets appears in a GNDT as "<site>.1",
//    "<site>.2", ... (FullVR configs need unique site names per network).
//  * Token record `count` = uses allowed: 1 for single-use, 0 for "any number until expiry"
//    (join-token claims can only express single-use). The `count` of createTokens' input is
//    how many tokens to issue.
//  * Tokens of a deleted network, or of the network merged away, are kept as revoked until they
//    expire, so a later network reusing the id does not accept them. Expired token records are
//    dropped at the next change.
import { newTokenId } from '../../shared/join-token.js';
import { z } from 'zod';
import { cidrContains, cidrsOverlap, parseEndpoint, parseIp, show } from '../../shared/cidr.js';
import { allocateAddress, allocateBlock, canonicalPrefix, prefixInside, range, usableInBlock } from './addresses.js';

export const MAX_ID = 0xffffffff;
export const CHANGELOG_LIMIT = 1000;

export type NetworkMode = 'physical' | 'virtual';
export type NetworkAuth = 'hmac' | 'gmac' | 'aes-gcm' | 'chacha' | 'none';
export type Role = 'admin' | 'site-admin' | 'network-admin' | 'user';
export type Nat = 'public' | 'limited';

export interface Site {
  name: string;
  provider: string;
  region: string | null;
  /** Physical subnets (canonical prefixes), pairwise disjoint. */
  subnets: string[];
  contact: string | null;
}

export interface Fullvr {
  id: number;
  endpoint: string;
  publicKey: string;
  site: string;
  /** public: reachable from anywhere; limited: behind NAT/firewall, reached through queueVr. */
  nat: Nat;
  queueVr: number | null;
}

export interface Network {
  id: number;
  name: string;
  mode: NetworkMode;
  auth: NetworkAuth;
  /** Virtual mode: the overlay address space; null in physical mode. */
  overlay: string | null;
  /** Virtual mode: prefix length of the per-site blocks carved from the overlay. */
  blockPrefix: number | null;
  sites: string[];
  /** Virtual mode: site -> block of the overlay. Empty in physical mode. */
  blocks: Record<string, string>;
  state: 'active' | 'shutdown';
  /** API token ids with network-admin rights on this network (its creator, unless an admin). */
  owners: string[];
}

export interface Host {
  address: string;
  network: number;
  site: string;
  fullvr: number;
  name: string | null;
  /** ISO time. */
  joinedAt: string;
}

export interface TokenRecord {
  jti: string;
  network: number;
  fullvr: number | null;
  /** Unix seconds. */
  expires: number;
  singleUse: boolean;
  revoked: boolean;
  /** Uses allowed: 1 for single-use, 0 = any number until expiry. */
  count: number;
  /** Unix seconds. */
  issuedAt: number;
  issuedBy: string;
}

export interface ApiTokenRecord {
  id: string;
  /** sha256 (hex) of the secret; the secret itself is never stored. */
  hash: string;
  role: Role;
  /** site-admin: site name; network-admin: network id or null; user: network id; admin: null. */
  scope: string | number | null;
  createdAt: string;
  createdBy: string;
}

export interface ChangeEntry {
  version: number;
  what: string;
  who: string;
  /** ISO time. */
  when: string;
}

export interface State {
  version: number;
  sites: Site[];
  fullvrs: Fullvr[];
  networks: Network[];
  hosts: Host[];
  tokens: TokenRecord[];
  apiTokens: ApiTokenRecord[];
  changelog: ChangeEntry[];
}

/** Who makes a change and when (ms since the epoch). */
export interface Ctx {
  who: string;
  now: number;
}

export interface Applied<T> {
  state: State;
  result: T;
}

export class AuthorityError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409,
    message: string,
  ) {
    super(message.replace(/\s*[\r\n]+\s*/g, ' ').trim());
    this.name = 'AuthorityError';
  }
}

export function emptyState(): State {
  return { version: 0, sites: [], fullvrs: [], networks: [], hosts: [], tokens: [], apiTokens: [], changelog: [] };
}

// ------------------------------------------------------------------ validation helpers

const bad = (m: string) => new AuthorityError(400, m);
const missing = (m: string) => new AuthorityError(404, m);
const conflict = (m: string) => new AuthorityError(409, m);

const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/;
const NET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const LABEL = /^[\x21-\x7e]{1,64}$/;
const KEY32 = /^[A-Za-z0-9+/]{43}=$/;
const JTI = /^[A-Za-z0-9_-]{8,64}$/;
const API_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function checkId(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_ID) throw bad(`${what} must be an integer 1..${MAX_ID}, got ${show(v)}`);
  return v;
}

function checkSiteName(v: unknown, what = 'site name'): string {
  if (typeof v !== 'string' || !SITE_NAME.test(v)) throw bad(`${what} ${show(v)} is not valid (1-48 of A-Z a-z 0-9 _ -, starting with a letter or digit)`);
  return v;
}

function checkNetName(v: unknown): string {
  if (typeof v !== 'string' || !NET_NAME.test(v)) throw bad(`network name ${show(v)} is not valid (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit)`);
  return v;
}

function checkLabel(what: string, v: unknown): string {
  if (typeof v !== 'string' || !LABEL.test(v)) throw bad(`${what} ${show(v)} is not valid (1-64 printable characters, no spaces)`);
  return v;
}

function checkPrefix(what: string, v: unknown): string {
  if (typeof v !== 'string') throw bad(`${what} must be a CIDR string, got ${show(v)}`);
  try {
    return canonicalPrefix(v);
  } catch (e) {
    throw bad(`${what}: ${(e as Error).message}`);
  }
}

function checkAddress(v: unknown): string {
  if (typeof v !== 'string') throw bad(`address must be an IP address, got ${show(v)}`);
  try {
    return parseIp(v).address;
  } catch (e) {
    throw bad((e as Error).message);
  }
}

function oneOf<T extends string>(what: string, v: unknown, options: readonly T[]): T {
  if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) throw bad(`${what} ${show(v)} is not one of ${options.join(' | ')}`);
  return v as T;
}

// ------------------------------------------------------------------ lookups

export function getSite(s: State, name: string): Site {
  const site = s.sites.find((x) => x.name === name);
  if (!site) throw missing(`unknown site ${show(name)}`);
  return site;
}

export function getFullvr(s: State, id: number): Fullvr {
  const f = s.fullvrs.find((x) => x.id === id);
  if (!f) throw missing(`unknown FullVR ${id}`);
  return f;
}

export function getNetwork(s: State, id: number): Network {
  checkId('network', id);
  const n = s.networks.find((x) => x.id === id);
  if (!n) throw missing(`unknown network ${id}`);
  return n;
}

function activeNetwork(s: State, id: number): Network {
  const n = getNetwork(s, id);
  if (n.state !== 'active') throw conflict(`network ${id} (${n.name}) is shut down`);
  return n;
}

/** The FullVR serving a site: the first one registered there, or null. */
export function servingFullvr(s: State, site: string): Fullvr | null {
  return s.fullvrs.find((f) => f.site === site) ?? null;
}

// ------------------------------------------------------------------ committing a change

function finish(prev: State, next: Partial<State>, what: string, ctx: Ctx): State {
  const version = prev.version + 1;
  const nowS = Math.floor(ctx.now / 1000);
  const tokens = (next.tokens ?? prev.tokens).filter((t) => t.expires > nowS);
  const entry: ChangeEntry = { version, what, who: ctx.who, when: new Date(ctx.now).toISOString() };
  const log = [...prev.changelog, entry];
  return {
    ...prev,
    ...next,
    tokens,
    version,
    changelog: log.length > CHANGELOG_LIMIT ? log.slice(log.length - CHANGELOG_LIMIT) : log,
  };
}

function replaceNetwork(list: Network[], n: Network): Network[] {
  return list.map((x) => (x.id === n.id ? n : x));
}

// ------------------------------------------------------------------ physical overlap checks

/** First pair of overlapping subnets between site a and site b, as a message, or null. */
function siteOverlap(a: Site, b: Site): string | null {
  for (const x of a.subnets) {
    for (const y of b.subnets) {
      if (cidrsOverlap(x, y)) return `site ${show(a.name)} subnet ${x} overlaps site ${show(b.name)} subnet ${y}`;
    }
  }
  return null;
}

function checkPhysicalDisjoint(s: State, existing: string[], added: string[], where: string): void {
  const seen = [...existing];
  for (const name of added) {
    const site = getSite(s, name);
    for (const other of seen) {
      if (other === name) continue;
      const clash = siteOverlap(getSite(s, other), site);
      if (clash) throw conflict(`${where}: ${clash}`);
    }
    seen.push(name);
  }
}

// ------------------------------------------------------------------ sites

export interface SiteInput {
  name: string;
  provider: string;
  region?: string | null;
  subnets: string[];
  contact?: string | null;
}

function validateSite(input: SiteInput): Site {
  const name = checkSiteName(input.name);
  const provider = checkLabel('provider', input.provider);
  const region = input.region === undefined || input.region === null ? null : checkLabel('region', input.region);
  if (!Array.isArray(input.subnets) || input.subnets.length < 1 || input.subnets.length > 64) throw bad(`site ${show(name)} needs 1..64 subnets`);
  const subnets = input.subnets.map((x, i) => checkPrefix(`subnets[${i}]`, x));
  for (let i = 0; i < subnets.length; i++) {
    for (let j = 0; j < i; j++) {
      if (cidrsOverlap(subnets[i], subnets[j])) throw bad(`site ${show(name)}: subnet ${subnets[i]} overlaps its subnet ${subnets[j]}`);
    }
  }
  let contact: string | null = null;
  if (input.contact !== undefined && input.contact !== null) {
    if (typeof input.contact !== 'string' || input.contact.length < 1 || input.contact.length > 200 || /[\r\n]/.test(input.contact)) {
      throw bad('contact must be one line of 1..200 characters');
    }
    contact = input.contact;
  }
  return { name, provider, region, subnets, contact };
}

export function registerSite(s: State, input: SiteInput, ctx: Ctx): Applied<Site> {
  const site = validateSite(input);
  if (s.sites.some((x) => x.name === site.name)) throw conflict(`site ${show(site.name)} already exists`);
  return { state: finish(s, { sites: [...s.sites, site] }, `register site ${site.name}`, ctx), result: site };
}

/** Replace a site's provider/region/subnets/contact (name stays). Re-checks every network it is in. */
export function updateSite(s: State, name: string, patch: Partial<Omit<SiteInput, 'name'>>, ctx: Ctx): Applied<Site> {
  const old = getSite(s, name);
  const site = validateSite({ ...old, ...patch, name });
  const withNew: State = { ...s, sites: s.sites.map((x) => (x.name === name ? site : x)) };
  for (const n of s.networks) {
    if (!n.sites.includes(name) || n.mode !== 'physical') continue;
    checkPhysicalDisjoint(withNew, n.sites.filter((x) => x !== name), [name], `network ${n.id}`);
    for (const h of s.hosts) {
      if (h.network === n.id && h.site === name && !site.subnets.some((sub) => cidrContains(sub, h.address))) {
        throw conflict(`host ${h.address} of network ${n.id} would be outside the subnets of site ${show(name)}`);
      }
    }
  }
  return { state: finish(s, { sites: withNew.sites }, `update site ${name}`, ctx), result: site };
}

export function listSites(s: State): Site[] {
  return [...s.sites].sort((a, b) => a.name.localeCompare(b.name));
}

// ------------------------------------------------------------------ FullVRs

export interface FullvrInput {
  id: number;
  endpoint: string;
  publicKey: string;
  site: string;
  nat?: Nat;
  queueVr?: number | null;
}

export function registerFullvr(s: State, input: FullvrInput, ctx: Ctx): Applied<Fullvr> {
  const id = checkId('FullVR id', input.id);
  if (typeof input.endpoint !== 'string') throw bad(`endpoint must be "host:port", got ${show(input.endpoint)}`);
  try {
    parseEndpoint(input.endpoint);
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (typeof input.publicKey !== 'string' || !KEY32.test(input.publicKey) || Buffer.from(input.publicKey, 'base64').toString('base64') !== input.publicKey) {
    throw bad('publicKey must be a 32-byte key in base64 (44 characters ending in "=")');
  }
  checkSiteName(input.site, 'site');
  const nat = oneOf('nat', input.nat ?? 'public', ['public', 'limited'] as const);
  const queueVr = input.queueVr === undefined || input.queueVr === null ? null : checkId('queueVr', input.queueVr);
  if (nat === 'public' && queueVr !== null) throw bad(`FullVR ${id} is public; queueVr is only for nat: limited`);
  if (nat === 'limited' && queueVr === null) throw bad(`FullVR ${id} has nat: limited and needs a queueVr (a public FullVR that queues its traffic)`);
  getSite(s, input.site);
  if (s.fullvrs.some((f) => f.id === id)) throw conflict(`FullVR ${id} already exists`);
  const sameKey = s.fullvrs.find((f) => f.publicKey === input.publicKey);
  if (sameKey) throw conflict(`FullVR ${sameKey.id} already uses this public key`);
  if (queueVr !== null) {
    if (queueVr === id) throw bad(`FullVR ${id} cannot be its own queueVr`);
    const q = s.fullvrs.find((f) => f.id === queueVr);
    if (!q) throw missing(`unknown FullVR ${queueVr} (queueVr)`);
    if (q.nat !== 'public') throw conflict(`queueVr ${queueVr} is itself limited; a queue-VR must be public`);
  }
  const f: Fullvr = { id, endpoint: input.endpoint, publicKey: input.publicKey, site: input.site, nat, queueVr };
  return { state: finish(s, { fullvrs: [...s.fullvrs, f] }, `register FullVR ${id} at site ${f.site}`, ctx), result: f };
}

export function listFullvrs(s: State): Fullvr[] {
  return [...s.fullvrs].sort((a, b) => a.id - b.id);
}

// ------------------------------------------------------------------ networks

export interface NetworkInput {
  id: number;
  name: string;
  mode?: NetworkMode;
  auth?: NetworkAuth;
  overlay?: string | null;
  /** Virtual mode: size of each site's block (default /24 for IPv4, /64 for IPv6). */
  blockPrefix?: number | null;
  sites: string[];
  /** API token id to record as an owner (network-admin rights); omit for admins. */
  owner?: string | null;
}

function uniqueNames(list: unknown, what: string): string[] {
  if (!Array.isArray(list)) throw bad(`${what} must be a list of site names`);
  const out: string[] = [];
  for (const x of list) {
    checkSiteName(x, 'site');
    if (out.includes(x)) throw bad(`site ${show(x)} is listed twice in ${what}`);
    out.push(x);
  }
  return out;
}

/** Blocks for `sites` (in order) inside the network's overlay, avoiding `taken`. */
function allocateBlocks(n: { id: number; overlay: string; blockPrefix: number }, sites: string[], taken: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const used = [...taken];
  for (const site of sites) {
    const b = allocateBlock(n.overlay, n.blockPrefix, used);
    if (!b) throw conflict(`network ${n.id}: overlay ${n.overlay} has no free /${n.blockPrefix} block left for site ${show(site)}`);
    out[site] = b;
    used.push(b);
  }
  return out;
}

export function createNetwork(s: State, input: NetworkInput, ctx: Ctx): Applied<Network> {
  const id = checkId('network id', input.id);
  const name = checkNetName(input.name);
  const mode = oneOf('mode', input.mode ?? 'physical', ['physical', 'virtual'] as const);
  const auth = oneOf('auth', input.auth ?? 'gmac', ['hmac', 'gmac', 'aes-gcm', 'chacha', 'none'] as const);
  const sites = uniqueNames(input.sites, 'sites');
  if (sites.length === 0) throw bad(`network ${id} needs at least one site`);
  let overlay: string | null = null;
  let blockPrefix: number | null = null;
  if (mode === 'virtual') {
    if (input.overlay === undefined || input.overlay === null) throw bad('overlay is required when mode is virtual');
    overlay = checkPrefix('overlay', input.overlay);
    const r = range(overlay);
    const width = r.family === 4 ? 32 : 128;
    blockPrefix = input.blockPrefix ?? Math.max(r.bits, r.family === 4 ? 24 : 64);
    if (!Number.isInteger(blockPrefix) || blockPrefix < r.bits || blockPrefix > width - 2) {
      throw bad(`blockPrefix must be an integer ${r.bits}..${width - 2} for overlay ${overlay}, got ${show(blockPrefix)}`);
    }
  } else {
    if (input.overlay !== undefined && input.overlay !== null) throw bad('overlay is only used with mode: virtual');
    if (input.blockPrefix !== undefined && input.blockPrefix !== null) throw bad('blockPrefix is only used with mode: virtual');
  }
  const owner = input.owner ?? null;
  for (const site of sites) getSite(s, site);
  if (s.networks.some((n) => n.id === id)) throw conflict(`network ${id} already exists`);
  const sameName = s.networks.find((n) => n.name === name);
  if (sameName) throw conflict(`network name ${show(name)} is already used by network ${sameName.id}`);
  if (mode === 'physical') checkPhysicalDisjoint(s, [], sites, `network ${id}`);
  const blocks = mode === 'virtual' ? allocateBlocks({ id, overlay: overlay!, blockPrefix: blockPrefix! }, sites, []) : {};
  const n: Network = { id, name, mode, auth, overlay, blockPrefix, sites, blocks, state: 'active', owners: owner ? [owner] : [] };
  return { state: finish(s, { networks: [...s.networks, n] }, `create network ${id} (${name}, ${mode}) with sites ${sites.join(', ')}`, ctx), result: n };
}

export function addSiteToNetwork(s: State, input: { network: number; site: string }, ctx: Ctx): Applied<Network> {
  checkSiteName(input.site, 'site');
  const n = activeNetwork(s, input.network);
  getSite(s, input.site);
  if (n.sites.includes(input.site)) throw conflict(`site ${show(input.site)} is already in network ${n.id}`);
  let blocks = n.blocks;
  if (n.mode === 'physical') checkPhysicalDisjoint(s, n.sites, [input.site], `network ${n.id}`);
  else blocks = { ...n.blocks, ...allocateBlocks({ id: n.id, overlay: n.overlay!, blockPrefix: n.blockPrefix! }, [input.site], Object.values(n.blocks)) };
  const next: Network = { ...n, sites: [...n.sites, input.site], blocks };
  return { state: finish(s, { networks: replaceNetwork(s.networks, next) }, `add site ${input.site} to network ${n.id}`, ctx), result: next };
}

export function shutdownNetwork(s: State, input: { network: number }, ctx: Ctx): Applied<Network> {
  const n = getNetwork(s, input.network);
  if (n.state === 'shutdown') throw conflict(`network ${n.id} (${n.name}) is already shut down`);
  const next: Network = { ...n, state: 'shutdown' };
  return { state: finish(s, { networks: replaceNetwork(s.networks, next) }, `shut down network ${n.id}`, ctx), result: next };
}

function revokeNetworkTokens(tokens: TokenRecord[], network: number): TokenRecord[] {
  return tokens.map((t) => (t.network === network && !t.revoked ? { ...t, revoked: true } : t));
}

export function deleteNetwork(s: State, input: { network: number }, ctx: Ctx): Applied<Network> {
  const n = getNetwork(s, input.network);
  return {
    state: finish(
      s,
      {
        networks: s.networks.filter((x) => x.id !== n.id),
        hosts: s.hosts.filter((h) => h.network !== n.id),
        tokens: revokeNetworkTokens(s.tokens, n.id),
      },
      `delete network ${n.id} (${n.name})`,
      ctx,
    ),
    result: n,
  };
}

/**
 * Merge network `from` into `into`: from's sites (with their virtual blocks) and hosts move to
 * `into`, which keeps its id, name, auth, overlay and block size; `from` disappears and its
 * tokens are revoked. Refused: same network, different modes, a shut-down side, overlapping
 * physical subnets, a virtual block of one side overlapping a block of the other, a virtual
 * overlay of `from` outside the one of `into`, a site in both virtual networks.
 */
export function mergeNetworks(s: State, input: { into: number; from: number }, ctx: Ctx): Applied<Network> {
  checkId('network', input.into);
  checkId('network', input.from);
  if (input.into === input.from) throw bad(`cannot merge network ${input.into} with itself`);
  const a = activeNetwork(s, input.into);
  const b = activeNetwork(s, input.from);
  if (a.mode !== b.mode) throw conflict(`cannot merge ${b.mode} network ${b.id} into ${a.mode} network ${a.id}`);
  const newSites = b.sites.filter((x) => !a.sites.includes(x));
  let blocks = a.blocks;
  if (a.mode === 'physical') {
    checkPhysicalDisjoint(s, a.sites, newSites, `cannot merge network ${b.id} into ${a.id}`);
  } else {
    const shared = b.sites.find((x) => a.sites.includes(x));
    if (shared) throw conflict(`cannot merge network ${b.id} into ${a.id}: site ${show(shared)} is in both (each virtual network gave it its own block)`);
    if (!prefixInside(b.overlay!, a.overlay!)) throw conflict(`cannot merge network ${b.id} into ${a.id}: overlay ${b.overlay} is not inside overlay ${a.overlay}`);
    for (const sb of b.sites) {
      for (const sa of a.sites) {
        if (cidrsOverlap(b.blocks[sb], a.blocks[sa])) {
          throw conflict(`cannot merge network ${b.id} into ${a.id}: block ${b.blocks[sb]} of site ${show(sb)} (network ${b.id}) overlaps block ${a.blocks[sa]} of site ${show(sa)} (network ${a.id})`);
        }
      }
    }
    blocks = { ...a.blocks, ...b.blocks };
  }
  const aHosts = new Set(s.hosts.filter((h) => h.network === a.id).map((h) => h.address));
  const hosts = s.hosts.filter((h) => !(h.network === b.id && aHosts.has(h.address))).map((h) => (h.network === b.id ? { ...h, network: a.id } : h));
  const next: Network = { ...a, sites: [...a.sites, ...newSites], blocks, owners: [...a.owners, ...b.owners.filter((o) => !a.owners.includes(o))] };
  return {
    state: finish(
      s,
      { networks: replaceNetwork(s.networks, next).filter((x) => x.id !== b.id), hosts, tokens: revokeNetworkTokens(s.tokens, b.id) },
      `merge network ${b.id} (${b.name}) into ${a.id} (${a.name})`,
      ctx,
    ),
    result: next,
  };
}

export interface SplitInput {
  network: number;
  /** Sites that move (with all their hosts) to the new network. */
  sites: string[];
  newId: number;
  newName: string;
  /** Optional: the hosts the caller expects to move; must be exactly the hosts of `sites`. */
  hosts?: string[];
  /** API token id to add to the new network's owners (the splitter, unless an admin). */
  owner?: string | null;
}

/**
 * Split: `sites` and their hosts move to a new network (same mode, auth, overlay, owners, plus
 * `owner` — the splitter).
 * A site is the unit of split: a host list that would put hosts of one site in both halves is
 * refused, as is a split leaving either half without sites.
 */
export function splitNetwork(s: State, input: SplitInput, ctx: Ctx): Applied<{ network: Network; created: Network }> {
  const newId = checkId('newId', input.newId);
  const newName = checkNetName(input.newName);
  const moving = uniqueNames(input.sites, 'sites');
  const n = activeNetwork(s, input.network);
  if (moving.length === 0) throw bad(`split of network ${n.id} would leave the new network without sites`);
  for (const x of moving) if (!n.sites.includes(x)) throw conflict(`site ${show(x)} is not in network ${n.id}`);
  if (moving.length === n.sites.length) throw conflict(`split of network ${n.id} would leave it without sites`);
  if (s.networks.some((x) => x.id === newId)) throw conflict(`network ${newId} already exists`);
  const sameName = s.networks.find((x) => x.name === newName);
  if (sameName) throw conflict(`network name ${show(newName)} is already used by network ${sameName.id}`);
  const members = s.hosts.filter((h) => h.network === n.id);
  if (input.hosts !== undefined) {
    if (!Array.isArray(input.hosts)) throw bad('hosts must be a list of addresses');
    const listed = new Set(input.hosts.map(checkAddress));
    for (const a of listed) {
      const h = members.find((x) => x.address === a);
      if (!h) throw conflict(`host ${a} is not a member of network ${n.id}`);
      if (!moving.includes(h.site)) throw conflict(`host ${a} is listed to move but its site ${show(h.site)} stays: a site is the unit of split`);
    }
    for (const h of members) {
      if (moving.includes(h.site) && !listed.has(h.address)) {
        throw conflict(`hosts of site ${show(h.site)} would end in both halves (${h.address} is not listed): a site is the unit of split`);
      }
    }
  }
  const keep: Record<string, string> = {};
  const give: Record<string, string> = {};
  for (const [site, block] of Object.entries(n.blocks)) (moving.includes(site) ? give : keep)[site] = block;
  const rest: Network = { ...n, sites: n.sites.filter((x) => !moving.includes(x)), blocks: keep };
  const owners = input.owner && !n.owners.includes(input.owner) ? [...n.owners, input.owner] : [...n.owners];
  const created: Network = { ...n, id: newId, name: newName, sites: moving, blocks: give, state: 'active', owners };
  const hosts = s.hosts.map((h) => (h.network === n.id && moving.includes(h.site) ? { ...h, network: newId } : h));
  return {
    state: finish(
      s,
      { networks: [...replaceNetwork(s.networks, rest), created], hosts },
      `split network ${n.id}: sites ${moving.join(', ')} to new network ${newId} (${newName})`,
      ctx,
    ),
    result: { network: rest, created },
  };
}

export function listNetworks(s: State): Network[] {
  return [...s.networks].sort((a, b) => a.id - b.id);
}

// ------------------------------------------------------------------ hosts

export interface JoinInput {
  network: number;
  /** Physical: required (the host's own address). Virtual: optional (allocated when omitted). */
  address?: string;
  /** Physical: optional check; virtual: which site's block (optional when the network has one site). */
  site?: string;
  name?: string | null;
}

export function joinHost(s: State, input: JoinInput, ctx: Ctx): Applied<Host> {
  const n = activeNetwork(s, input.network);
  const name = input.name === undefined || input.name === null ? null : checkNetName(input.name);
  const wanted = input.address === undefined ? null : checkAddress(input.address);
  if (input.site !== undefined) checkSiteName(input.site, 'site');
  const members = s.hosts.filter((h) => h.network === n.id);
  let site: string;
  let address: string;
  if (n.mode === 'physical') {
    if (wanted === null) throw bad(`network ${n.id} is physical: give the host's own address`);
    const owner = n.sites.find((x) => getSite(s, x).subnets.some((sub) => cidrContains(sub, wanted)));
    if (!owner) throw conflict(`${wanted} is not inside a subnet of any site of network ${n.id} (${n.sites.join(', ')})`);
    if (input.site !== undefined && input.site !== owner) throw conflict(`${wanted} belongs to site ${show(owner)}, not ${show(input.site)}`);
    site = owner;
    address = wanted;
  } else {
    if (input.site !== undefined) {
      if (!n.sites.includes(input.site)) throw conflict(`site ${show(input.site)} is not in network ${n.id}`);
      site = input.site;
    } else if (wanted !== null) {
      const owner = n.sites.find((x) => cidrContains(n.blocks[x], wanted));
      if (!owner) throw conflict(`${wanted} is not inside the block of any site of network ${n.id}`);
      site = owner;
    } else if (n.sites.length === 1) {
      site = n.sites[0];
    } else {
      throw bad(`network ${n.id} has several sites (${n.sites.join(', ')}); say which one (site)`);
    }
    const block = n.blocks[site];
    if (wanted !== null) {
      if (!usableInBlock(block, wanted)) throw conflict(`${wanted} is not a usable address of block ${block} (site ${show(site)})`);
      address = wanted;
    } else {
      const a = allocateAddress(block, members.map((h) => h.address));
      if (!a) throw conflict(`block ${block} of site ${show(site)} in network ${n.id} is full`);
      address = a;
    }
  }
  if (members.some((h) => h.address === address)) throw conflict(`${address} is already a member of network ${n.id}`);
  const vr = servingFullvr(s, site);
  if (!vr) throw conflict(`site ${show(site)} has no FullVR registered; register one before adding hosts`);
  const host: Host = { address, network: n.id, site, fullvr: vr.id, name, joinedAt: new Date(ctx.now).toISOString() };
  return { state: finish(s, { hosts: [...s.hosts, host] }, `host ${address} joins network ${n.id} at site ${site}`, ctx), result: host };
}

export function leaveHost(s: State, input: { network: number; address: string }, ctx: Ctx): Applied<Host> {
  const n = getNetwork(s, input.network);
  const address = checkAddress(input.address);
  const h = s.hosts.find((x) => x.network === n.id && x.address === address);
  if (!h) throw missing(`${address} is not a member of network ${n.id}`);
  return { state: finish(s, { hosts: s.hosts.filter((x) => x !== h) }, `host ${address} leaves network ${n.id}`, ctx), result: h };
}

export function listHosts(s: State, filter: { network?: number } = {}): Host[] {
  if (filter.network !== undefined) getNetwork(s, filter.network);
  return s.hosts
    .filter((h) => filter.network === undefined || h.network === filter.network)
    .sort((a, b) => a.network - b.network || a.site.localeCompare(b.site) || a.address.localeCompare(b.address, undefined, { numeric: true }));
}

// ------------------------------------------------------------------ join tokens

export interface TokensInput {
  network: number;
  /** Seconds, 60..30 days. */
  expiresIn: number;
  singleUse: boolean;
  /** How many tokens to issue, 1..1000. */
  count: number;
  fullvr?: number | null;
  /**
   * Claims of tokens already signed by the caller (shared/join-token.ts issueToken), one per
   * token, so the recorded jti/expiry are the signed ones. Omitted: jtis are generated here.
   */
  issued?: Array<{ jti: string; exp: number; iat: number }>;
}

export const TOKEN_TTL_MIN = 60;
export const TOKEN_TTL_MAX = 30 * 86400;
export const TOKEN_BATCH_MAX = 1000;

/** Validate a token request without changing anything (the API calls it before signing). */
export function checkTokensInput(s: State, input: TokensInput): void {
  const n = activeNetwork(s, input.network);
  if (!Number.isInteger(input.expiresIn) || input.expiresIn < TOKEN_TTL_MIN || input.expiresIn > TOKEN_TTL_MAX) {
    throw bad(`expiresIn must be ${TOKEN_TTL_MIN}..${TOKEN_TTL_MAX} seconds, got ${show(input.expiresIn)}`);
  }
  if (typeof input.singleUse !== 'boolean') throw bad('singleUse must be true or false');
  if (!Number.isInteger(input.count) || input.count < 1 || input.count > TOKEN_BATCH_MAX) throw bad(`count must be 1..${TOKEN_BATCH_MAX}, got ${show(input.count)}`);
  if (input.fullvr !== undefined && input.fullvr !== null) {
    const f = getFullvr(s, checkId('fullvr', input.fullvr));
    if (!n.sites.some((x) => servingFullvr(s, x)?.id === f.id)) throw conflict(`FullVR ${f.id} serves no site of network ${n.id}`);
  }
}

export function createTokens(s: State, input: TokensInput, ctx: Ctx): Applied<TokenRecord[]> {
  checkTokensInput(s, input);
  const nowS = Math.floor(ctx.now / 1000);
  const issued = input.issued ?? Array.from({ length: input.count }, () => ({ jti: newTokenId(), exp: nowS + input.expiresIn, iat: nowS }));
  if (issued.length !== input.count) throw bad(`count is ${input.count} but ${issued.length} signed tokens were given`);
  const known = new Set(s.tokens.map((t) => t.jti));
  const records: TokenRecord[] = [];
  for (const c of issued) {
    if (typeof c.jti !== 'string' || !JTI.test(c.jti)) throw bad(`token id ${show(c.jti)} is not valid`);
    if (known.has(c.jti)) throw conflict(`token id ${c.jti} already exists`);
    known.add(c.jti);
    records.push({
      jti: c.jti,
      network: input.network,
      fullvr: input.fullvr ?? null,
      expires: c.exp,
      singleUse: input.singleUse,
      revoked: false,
      count: input.singleUse ? 1 : 0,
      issuedAt: c.iat,
      issuedBy: ctx.who,
    });
  }
  return {
    state: finish(s, { tokens: [...s.tokens, ...records] }, `issue ${records.length} ${input.singleUse ? 'single-use' : 'multi-use'} token(s) for network ${input.network}`, ctx),
    result: records,
  };
}

export function listTokens(s: State, filter: { network?: number } = {}): TokenRecord[] {
  return s.tokens.filter((t) => filter.network === undefined || t.network === filter.network).sort((a, b) => a.issuedAt - b.issuedAt || a.jti.localeCompare(b.jti));
}

export function revokeToken(s: State, input: { jti: string }, ctx: Ctx): Applied<TokenRecord> {
  if (typeof input.jti !== 'string' || !JTI.test(input.jti)) throw bad(`token id ${show(input.jti)} is not valid`);
  const t = s.tokens.find((x) => x.jti === input.jti);
  if (!t) throw missing(`unknown token ${input.jti}`);
  if (t.revoked) throw conflict(`token ${t.jti} is already revoked`);
  const next = { ...t, revoked: true };
  return { state: finish(s, { tokens: s.tokens.map((x) => (x === t ? next : x)) }, `revoke token ${t.jti} (network ${t.network})`, ctx), result: next };
}

// ------------------------------------------------------------------ API tokens

export interface ApiTokenInput {
  id: string;
  /** sha256 hex of the secret. */
  hash: string;
  role: Role;
  scope?: string | number | null;
}

export function createApiToken(s: State, input: ApiTokenInput, ctx: Ctx): Applied<ApiTokenRecord> {
  if (typeof input.id !== 'string' || !API_ID.test(input.id)) throw bad(`API token id ${show(input.id)} is not valid`);
  if (typeof input.hash !== 'string' || !/^[0-9a-f]{64}$/.test(input.hash)) throw bad('API token hash must be 64 hex characters (sha256)');
  const role = oneOf('role', input.role, ['admin', 'site-admin', 'network-admin', 'user'] as const);
  const scope = input.scope ?? null;
  if (role === 'admin' && scope !== null) throw bad('an admin token has no scope');
  if (role === 'site-admin') {
    if (typeof scope !== 'string') throw bad('a site-admin token needs a site name as scope');
    getSite(s, checkSiteName(scope, 'scope'));
  }
  if (role === 'network-admin' && scope !== null) getNetwork(s, checkId('scope', scope));
  if (role === 'user') {
    if (typeof scope !== 'number') throw bad('a user token needs a network id as scope');
    getNetwork(s, checkId('scope', scope));
  }
  if (s.apiTokens.some((t) => t.id === input.id)) throw conflict(`API token ${input.id} already exists`);
  if (s.apiTokens.some((t) => t.hash === input.hash)) throw conflict('an API token with this secret already exists');
  const rec: ApiTokenRecord = { id: input.id, hash: input.hash, role, scope, createdAt: new Date(ctx.now).toISOString(), createdBy: ctx.who };
  return { state: finish(s, { apiTokens: [...s.apiTokens, rec] }, `create ${role} API token ${rec.id}${scope === null ? '' : ` scoped to ${scope}`}`, ctx), result: rec };
}

// ------------------------------------------------------------------ routing tables

export interface TablesSite {
  name: string;
  subnet: string;
  vr: number;
}

export interface Tables {
  version: number;
  fullvr: number;
  peers: Array<{ id: number; endpoint: string; publicKey: string }>;
  networks: Array<{ id: number; name: string; mode: NetworkMode; auth: NetworkAuth; overlay?: string; sites: TablesSite[]; lan: string[] }>;
  members: Array<{ network: number; address: string }>;
  revokedTokens: string[];
  /** Peers behind NAT (nat: limited): they open sessions to us; initiating towards them fails. */
  limited: Array<{ id: number; queueVr: number }>;
}

/**
 * Routing tables for one FullVR F (shape of a FullVR config's peers/networks):
 *
 *  networks: every ACTIVE network in which F is the serving FullVR of a site, or the queue-VR of
 *    a limited FullVR serving a site (shut-down networks are omitted). One GNDT entry per site
 *    subnet (physical) or per site block (virtual); sites without a FullVR are omitted.
 *  GNDT `vr` of a site whose serving FullVR is O:
 *    - O public                              -> O
 *    - O limited, F is O or O's queue-VR Q   -> O   (Q forwards over the session O keeps open)
 *    - O limited, any other F                -> Q   (packets for O's subnets go to its queue-VR)
 *  peers (NSKT): every FullVR other than F that serves a site in F's networks, the queue-VRs of
 *    the limited ones among them, F's own queue-VR, and the limited FullVRs queued at F. A
 *    limited F leaves out other limited FullVRs (both sides go through queue-VRs). Every GNDT
 *    `vr` is F or one of `peers`, as a FullVR config requires.
 *  members: hosts assigned to F in those networks. revokedTokens: jtis of revoked tokens of
 *    those networks that F could admit (scoped to F or to any FullVR).
 */
export function computeTables(s: State, fullvrId: number): Tables {
  checkId('FullVR id', fullvrId);
  const F = getFullvr(s, fullvrId);
  const byId = new Map(s.fullvrs.map((f) => [f.id, f]));
  const serving = new Map<string, Fullvr>();
  for (const f of s.fullvrs) if (!serving.has(f.site)) serving.set(f.site, f);
  const target = (o: Fullvr): number => (o.nat === 'public' || F.id === o.id || F.id === o.queueVr ? o.id : o.queueVr!);
  const takesPart = (n: Network) =>
    n.state === 'active' &&
    n.sites.some((x) => {
      const o = serving.get(x);
      return !!o && (o.id === F.id || (o.nat === 'limited' && o.queueVr === F.id));
    });

  const nets = s.networks.filter(takesPart).sort((a, b) => a.id - b.id);
  const peerIds = new Set<number>();
  const networks: Tables['networks'] = nets.map((n) => {
    const sites: TablesSite[] = [];
    for (const name of n.sites) {
      const o = serving.get(name);
      if (!o) continue;
      const vr = target(o);
      peerIds.add(vr);
      if (!(F.nat === 'limited' && o.nat === 'limited')) peerIds.add(o.id);
      const subnets = n.mode === 'physical' ? getSite(s, name).subnets : [n.blocks[name]];
      subnets.forEach((subnet, i) => sites.push({ name: subnets.length > 1 ? `${name}.${i + 1}` : name, subnet, vr }));
    }
    const out: Tables['networks'][number] = { id: n.id, name: n.name, mode: n.mode, auth: n.auth, sites, lan: [] };
    if (n.mode === 'virtual') out.overlay = n.overlay!;
    return out;
  });
  if (F.queueVr !== null) peerIds.add(F.queueVr);
  for (const f of s.fullvrs) if (f.queueVr === F.id) peerIds.add(f.id);
  peerIds.delete(F.id);
  const peers = [...peerIds]
    .sort((a, b) => a - b)
    .map((id) => byId.get(id)!)
    .map((p) => ({ id: p.id, endpoint: p.endpoint, publicKey: p.publicKey }));
  const netIds = new Set(nets.map((n) => n.id));
  return {
    version: s.version,
    fullvr: F.id,
    peers,
    networks,
    members: s.hosts
      .filter((h) => h.fullvr === F.id && netIds.has(h.network))
      .map((h) => ({ network: h.network, address: h.address }))
      .sort((a, b) => a.network - b.network || a.address.localeCompare(b.address, undefined, { numeric: true })),
    revokedTokens: s.tokens
      .filter((t) => t.revoked && netIds.has(t.network) && (t.fullvr === null || t.fullvr === F.id))
      .map((t) => t.jti)
      .sort(),
    limited: peers.map((p) => byId.get(p.id)!).filter((p) => p.nat === 'limited').map((p) => ({ id: p.id, queueVr: p.queueVr! })),
  };
}

// ------------------------------------------------------------------ stored-state schema

const zNum = z.number().int().min(0).max(MAX_ID);
export const StateSchema = z.strictObject({
  version: z.number().int().min(0),
  sites: z.array(
    z.strictObject({ name: z.string(), provider: z.string(), region: z.string().nullable(), subnets: z.array(z.string()), contact: z.string().nullable() }),
  ),
  fullvrs: z.array(
    z.strictObject({ id: zNum, endpoint: z.string(), publicKey: z.string(), site: z.string(), nat: z.enum(['public', 'limited']), queueVr: zNum.nullable() }),
  ),
  networks: z.array(
    z.strictObject({
      id: zNum,
      name: z.string(),
      mode: z.enum(['physical', 'virtual']),
      auth: z.enum(['hmac', 'gmac', 'aes-gcm', 'chacha', 'none']),
      overlay: z.string().nullable(),
      blockPrefix: z.number().int().nullable(),
      sites: z.array(z.string()),
      blocks: z.record(z.string(), z.string()),
      state: z.enum(['active', 'shutdown']),
      owners: z.array(z.string()),
    }),
  ),
  hosts: z.array(
    z.strictObject({ address: z.string(), network: zNum, site: z.string(), fullvr: zNum, name: z.string().nullable(), joinedAt: z.string() }),
  ),
  tokens: z.array(
    z.strictObject({
      jti: z.string(),
      network: zNum,
      fullvr: zNum.nullable(),
      expires: z.number().int(),
      singleUse: z.boolean(),
      revoked: z.boolean(),
      count: z.number().int().min(0),
      issuedAt: z.number().int(),
      issuedBy: z.string(),
    }),
  ),
  apiTokens: z.array(
    z.strictObject({
      id: z.string(),
      hash: z.string().regex(/^[0-9a-f]{64}$/),
      role: z.enum(['admin', 'site-admin', 'network-admin', 'user']),
      scope: z.union([z.string(), z.number(), z.null()]),
      createdAt: z.string(),
      createdBy: z.string(),
    }),
  ),
  changelog: z.array(z.strictObject({ version: z.number().int(), what: z.string(), who: z.string(), when: z.string() })),
});
