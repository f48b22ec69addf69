// HTTP API of the ViNe Authority, an express Router meant to be mounted at /api/v1.
//
//   POST   /sites                        {name, provider, region?, subnets, contact?}     admin
//   PATCH  /sites/:name                  {provider?, region?, subnets?, contact?}         site-admin of it
//   GET    /sites
//   POST   /fullvrs                      {id, endpoint, publicKey, site, nat?, queueVr?}   site-admin of site
//   GET    /fullvrs                      registered FullVRs (+ health from deps.health)
//   GET    /fullvrs/:id/tables           routing tables for that FullVR (computeTables)    site-admin of its site
//   POST   /networks                     {id, name, mode?, auth?, overlay?, blockPrefix?, sites}
//   GET    /networks                     GET /networks/:id (with its hosts)
//   DELETE /networks/:id
//   POST   /networks/:id/sites           {site}
//   POST   /networks/:id/shutdown
//   POST   /networks/:id/merge           {from}            (from's sites and hosts move into :id)
//   POST   /networks/:id/split           {sites, newId, newName, hosts?}
//   GET    /hosts[?network=N]
//   POST   /networks/:id/hosts           {address?, site?, name?}
//   DELETE /networks/:id/hosts/:address
//   POST   /networks/:id/tokens          {expiresIn=3600, singleUse=true, count=1, fullvr?} -> signed tokens, shown ONCE
//   GET    /tokens[?network=N]
//   POST   /tokens/:jti/revoke
//   POST   /api-tokens                   {role, scope?} -> secret, shown ONCE               admin
//   GET    /api-tokens                   GET /changelog                                      admin
//
// Bearer auth with API tokens (only their sha256 is stored). deps.bootstrapAdminToken acts as an
// admin only while the state holds no admin API token: use it once to create the first admin.
// Every input is checked by a strict zod schema (unknown keys are errors); errors are
// {error: "one line"} with 400/401/403/404/409 (500 when the state cannot be saved).
// A change runs: pure operation -> store.save(new) -> swap in memory -> onChange(new). If the
// save throws, nothing changes. Requests the router does not know fall through (next()), so it
// can share /api/v1 with the app's heartbeat route.
import express, { type NextFunction, type Request, type Response } from 'express';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { issueToken, type SigningKey } from '../../shared/join-token.js';
import { formatZodError } from '../../shared/config-error.js';
import { log } from '../../shared/log.js';
import { denied, type Action, type Principal, type Target } from './roles.js';
import {
  AuthorityError,
  addSiteToNetwork,
  checkTokensInput,
  computeTables,
  createApiToken,
  createNetwork,
  createTokens,
  deleteNetwork,
  emptyState,
  getFullvr,
  getNetwork,
  getSite,
  joinHost,
  leaveHost,
  listFullvrs,
  listHosts,
  listNetworks,
  listSites,
  listTokens,
  mergeNetworks,
  registerFullvr,
  registerSite,
  revokeToken,
  servingFullvr,
  shutdownNetwork,
  splitNetwork,
  updateSite,
  type Applied,
  type Ctx,
  type Network,
  type State,
} from './state.js';
import type { StateStore } from './store.js';

export interface AuthorityDeps {
  store: StateStore;
  signingKey: SigningKey;
  /** Called after every saved change with the new state (push tables to FullVRs from here). */
  onChange?: (state: State) => void;
  /** Admin token usable only while no admin API token exists (>= 16 characters). */
  bootstrapAdminToken?: string;
  /** What the heartbeat registry knows about a FullVR (merged into GET /fullvrs as `health`). */
  health?: (id: number) => unknown;
  /** Clock, ms since the epoch (tests). */
  now?: () => number;
}

export interface Authority {
  router: express.Router;
  /** The current (last saved) state. */
  current(): State;
  /** Apply a change made by the server itself (e.g. hosts reported by FullVR heartbeats). */
  internal<T>(op: (s: State, ctx: Ctx) => Applied<T>, who: string): T;
}

const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

class BadRequest extends AuthorityError {
  constructor(m: string) {
    super(400, m);
  }
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value, { reportInput: true });
  if (r.success) return r.data;
  const lines = formatZodError(what, r.error);
  throw new BadRequest(lines[0] + (lines.length > 1 ? ` (and ${lines.length - 1} more problem${lines.length > 2 ? 's' : ''})` : ''));
}

// Thin structural schemas: types and sizes here, semantics (ranges, CIDRs, references) in state.ts.
const str = (max = 256) => z.string().max(max);
const num = z.number();
const SiteBody = z.strictObject({
  name: str(64),
  provider: str(64),
  region: str(64).nullable().optional(),
  subnets: z.array(str(64)).max(64),
  contact: str(200).nullable().optional(),
});
const SitePatch = SiteBody.omit({ name: true }).partial();
const FullvrBody = z.strictObject({
  id: num,
  endpoint: str(300),
  publicKey: str(64),
  site: str(64),
  nat: z.enum(['public', 'limited']).optional(),
  queueVr: num.nullable().optional(),
});
const NetworkBody = z.strictObject({
  id: num,
  name: str(64),
  mode: z.enum(['physical', 'virtual']).optional(),
  auth: z.enum(['hmac', 'gmac', 'aes-gcm', 'chacha', 'none']).optional(),
  overlay: str(64).nullable().optional(),
  blockPrefix: num.nullable().optional(),
  sites: z.array(str(64)).max(1000),
});
const AddSiteBody = z.strictObject({ site: str(64) });
const EmptyBody = z.strictObject({});
const MergeBody = z.strictObject({ from: num });
const SplitBody = z.strictObject({ sites: z.array(str(64)).max(1000), newId: num, newName: str(64), hosts: z.array(str(64)).max(10000).optional() });
const JoinBody = z.strictObject({ address: str(64).optional(), site: str(64).optional(), name: str(64).nullable().optional() });
const TokensBody = z.strictObject({
  expiresIn: num.default(3600),
  singleUse: z.boolean().default(true),
  count: num.default(1),
  fullvr: num.nullable().optional(),
});
const ApiTokenBody = z.strictObject({
  role: z.enum(['admin', 'site-admin', 'network-admin', 'user']),
  scope: z.union([str(64), num]).nullable().optional(),
});
const ListQuery = z.strictObject({ network: z.string().optional() });

function idParam(v: unknown, what = 'network'): number {
  const s = String(v);
  const n = /^[0-9]{1,10}$/.test(s) ? Number(s) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) throw new BadRequest(`${what} must be an integer 1..4294967295, got ${JSON.stringify(s.slice(0, 40))}`);
  return n;
}

function body(req: Request): unknown {
  return req.body === undefined ? {} : req.body;
}

export function createAuthority(deps: AuthorityDeps): Authority {
  if (deps.bootstrapAdminToken !== undefined && deps.bootstrapAdminToken.length < 16) {
    throw new Error('authority bootstrap admin token must be at least 16 characters');
  }
  const now = deps.now ?? Date.now;
  let state: State = deps.store.load() ?? emptyState();
  const bootstrapHash = deps.bootstrapAdminToken ? Buffer.from(sha256hex(deps.bootstrapAdminToken), 'hex') : null;

  function authenticate(req: Request): Principal {
    const h = req.headers.authorization;
    if (!h || !h.startsWith('Bearer ') || h.length > 600) throw new AuthorityError(401, 'missing or wrong API token (Authorization: Bearer <token>)');
    const presented = Buffer.from(sha256hex(h.slice(7).trim()), 'hex');
    let found: Principal | null = null;
    for (const t of state.apiTokens) {
      const stored = Buffer.from(t.hash, 'hex');
      if (stored.length === presented.length && timingSafeEqual(presented, stored) && !found) found = { id: t.id, role: t.role, scope: t.scope };
    }
    if (found) return found;
    if (bootstrapHash && timingSafeEqual(presented, bootstrapHash) && !state.apiTokens.some((t) => t.role === 'admin')) {
      return { id: 'bootstrap', role: 'admin', scope: null };
    }
    throw new AuthorityError(401, 'missing or wrong API token (Authorization: Bearer <token>)');
  }

  function allow(p: Principal, action: Action, target: Target = {}): void {
    const why = denied(p, action, target, state);
    if (why) throw new AuthorityError(403, why);
  }

  /** Apply a computed change: save, swap, notify. A failed save leaves everything as it was. */
  function commit<T>(applied: Applied<T>): T {
    try {
      deps.store.save(applied.state);
    } catch (e) {
      log.error('authority state not saved', { error: (e as Error).message });
      throw Object.assign(new Error(`state not saved, nothing changed: ${(e as Error).message}`), { httpStatus: 500 });
    }
    state = applied.state;
    try {
      deps.onChange?.(state);
    } catch (e) {
      log.error('authority onChange failed', { error: (e as Error).message });
    }
    return applied.result;
  }

  const ctx = (p: Principal): Ctx => ({ who: p.id, now: now() });
  const internal = <T>(op: (s: State, c: Ctx) => Applied<T>, who: string): T => commit(op(state, { who, now: now() }));

  type Handler = (req: Request, p: Principal) => { status?: number; json: unknown };
  const wrap =
    (h: Handler) =>
    (req: Request, res: Response): void => {
      try {
        const p = authenticate(req);
        const out = h(req, p);
        res.status(out.status ?? 200).json(out.json);
      } catch (e) {
        sendError(res, e);
      }
    };

  const router = express.Router();
  router.use(express.json({ limit: '64kb' }));

  // ---------------------------------------------------------------- sites
  router.post(
    '/sites',
    wrap((req, p) => {
      const b = parse(SiteBody, body(req), 'body');
      allow(p, 'site.register');
      const site = commit(registerSite(state, b, ctx(p)));
      return { status: 201, json: { site, version: state.version } };
    }),
  );
  router.patch(
    '/sites/:name',
    wrap((req, p) => {
      const b = parse(SitePatch, body(req), 'body');
      const name = String(req.params.name);
      getSite(state, name);
      allow(p, 'site.update', { site: name });
      const site = commit(updateSite(state, name, b, ctx(p)));
      return { json: { site, version: state.version } };
    }),
  );
  router.get(
    '/sites',
    wrap((_req, p) => {
      allow(p, 'list');
      return { json: { sites: listSites(state), version: state.version } };
    }),
  );

  // ---------------------------------------------------------------- FullVRs
  router.post(
    '/fullvrs',
    wrap((req, p) => {
      const b = parse(FullvrBody, body(req), 'body');
      allow(p, 'fullvr.register', { site: b.site });
      const fullvr = commit(registerFullvr(state, b, ctx(p)));
      return { status: 201, json: { fullvr, version: state.version } };
    }),
  );
  router.get(
    '/fullvrs',
    wrap((_req, p) => {
      allow(p, 'list');
      const fullvrs = listFullvrs(state).map((f) => ({
        ...f,
        serves: state.networks.filter((n) => n.state === 'active' && n.sites.some((s) => servingFullvr(state, s)?.id === f.id)).map((n) => n.id),
        health: deps.health ? (deps.health(f.id) ?? null) : null,
      }));
      return { json: { fullvrs, version: state.version } };
    }),
  );
  router.get(
    '/fullvrs/:id/tables',
    wrap((req, p) => {
      const f = getFullvr(state, idParam(req.params.id, 'FullVR id'));
      allow(p, 'fullvr.tables', { site: f.site });
      return { json: computeTables(state, f.id) };
    }),
  );

  // ---------------------------------------------------------------- networks
  const withCounts = (n: Network) => ({ ...n, hosts: state.hosts.filter((h) => h.network === n.id).length });
  router.post(
    '/networks',
    wrap((req, p) => {
      const b = parse(NetworkBody, body(req), 'body');
      allow(p, 'network.create');
      const network = commit(createNetwork(state, { ...b, owner: p.role === 'admin' ? null : p.id }, ctx(p)));
      return { status: 201, json: { network: withCounts(network), version: state.version } };
    }),
  );
  router.get(
    '/networks',
    wrap((_req, p) => {
      allow(p, 'list');
      return { json: { networks: listNetworks(state).map(withCounts), version: state.version } };
    }),
  );
  router.get(
    '/networks/:id',
    wrap((req, p) => {
      allow(p, 'list');
      const n = getNetwork(state, idParam(req.params.id));
      return { json: { network: withCounts(n), hosts: listHosts(state, { network: n.id }), version: state.version } };
    }),
  );
  router.delete(
    '/networks/:id',
    wrap((req, p) => {
      const id = getNetwork(state, idParam(req.params.id)).id;
      allow(p, 'network.delete', { networks: [id] });
      const network = commit(deleteNetwork(state, { network: id }, ctx(p)));
      return { json: { deleted: network.id, version: state.version } };
    }),
  );
  router.post(
    '/networks/:id/sites',
    wrap((req, p) => {
      const b = parse(AddSiteBody, body(req), 'body');
      const id = getNetwork(state, idParam(req.params.id)).id;
      allow(p, 'network.addSite', { networks: [id] });
      const network = commit(addSiteToNetwork(state, { network: id, site: b.site }, ctx(p)));
      return { json: { network: withCounts(network), version: state.version } };
    }),
  );
  router.post(
    '/networks/:id/shutdown',
    wrap((req, p) => {
      parse(EmptyBody, body(req), 'body');
      const id = getNetwork(state, idParam(req.params.id)).id;
      allow(p, 'network.shutdown', { networks: [id] });
      const network = commit(shutdownNetwork(state, { network: id }, ctx(p)));
      return { json: { network: withCounts(network), version: state.version } };
    }),
  );
  router.post(
    '/networks/:id/merge',
    wrap((req, p) => {
      const b = parse(MergeBody, body(req), 'body');
      const into = idParam(req.params.id);
      const from = idParam(b.from, 'from');
      if (into !== from) {
        getNetwork(state, into);
        getNetwork(state, from);
      }
      allow(p, 'network.merge', { networks: [into, from] });
      const network = commit(mergeNetworks(state, { into, from }, ctx(p)));
      return { json: { network: withCounts(network), merged: from, version: state.version } };
    }),
  );
  router.post(
    '/networks/:id/split',
    wrap((req, p) => {
      const b = parse(SplitBody, body(req), 'body');
      const id = getNetwork(state, idParam(req.params.id)).id;
      allow(p, 'network.split', { networks: [id] });
      const r = commit(splitNetwork(state, { network: id, ...b, owner: p.role === 'admin' ? null : p.id }, ctx(p)));
      return { json: { network: withCounts(r.network), created: withCounts(r.created), version: state.version } };
    }),
  );

  // ---------------------------------------------------------------- hosts
  router.get(
    '/hosts',
    wrap((req, p) => {
      allow(p, 'list');
      const q = parse(ListQuery, req.query, 'query');
      const hosts = listHosts(state, q.network === undefined ? {} : { network: idParam(q.network) });
      return { json: { hosts, version: state.version } };
    }),
  );
  router.post(
    '/networks/:id/hosts',
    wrap((req, p) => {
      const b = parse(JoinBody, body(req), 'body');
      const id = getNetwork(state, idParam(req.params.id)).id;
      // The host's site is known only once the operation placed it: compute, check, then save.
      const applied = joinHost(state, { network: id, ...b }, ctx(p));
      allow(p, 'host.join', { networks: [id], site: applied.result.site });
      const host = commit(applied);
      return { status: 201, json: { host, version: state.version } };
    }),
  );
  router.delete(
    '/networks/:id/hosts/:address',
    wrap((req, p) => {
      const id = getNetwork(state, idParam(req.params.id)).id;
      const address = String(req.params.address);
      const applied = leaveHost(state, { network: id, address }, ctx(p));
      allow(p, 'host.leave', { networks: [id], site: applied.result.site });
      const host = commit(applied);
      return { json: { host, version: state.version } };
    }),
  );

  // ---------------------------------------------------------------- join tokens
  router.post(
    '/networks/:id/tokens',
    wrap((req, p) => {
      const b = parse(TokensBody, body(req), 'body');
      const id = getNetwork(state, idParam(req.params.id)).id;
      allow(p, 'token.create', { networks: [id] });
      const input = { network: id, expiresIn: b.expiresIn, singleUse: b.singleUse, count: b.count, fullvr: b.fullvr ?? null };
      checkTokensInput(state, input); // before signing anything
      const t = now();
      const signed = Array.from({ length: b.count }, () =>
        issueToken(deps.signingKey, { network: id, fullvr: input.fullvr, ttlSeconds: b.expiresIn, singleUse: b.singleUse, now: t }),
      );
      const records = commit(createTokens(state, { ...input, issued: signed.map((s) => ({ jti: s.claims.jti, exp: s.claims.exp, iat: s.claims.iat })) }, { who: p.id, now: t }));
      const tokens = records.map((r, i) => ({ ...r, token: signed[i].token }));
      return { status: 201, json: { tokens, version: state.version } };
    }),
  );
  router.get(
    '/tokens',
    wrap((req, p) => {
      allow(p, 'list');
      const q = parse(ListQuery, req.query, 'query');
      const network = q.network === undefined ? undefined : idParam(q.network);
      return { json: { tokens: listTokens(state, { network }), version: state.version } };
    }),
  );
  router.post(
    '/tokens/:jti/revoke',
    wrap((req, p) => {
      parse(EmptyBody, body(req), 'body');
      const jti = String(req.params.jti);
      const rec = state.tokens.find((t) => t.jti === jti);
      if (!rec) throw new AuthorityError(404, `unknown token ${JSON.stringify(jti.slice(0, 64))}`);
      allow(p, 'token.revoke', { networks: [rec.network] });
      const token = commit(revokeToken(state, { jti }, ctx(p)));
      return { json: { token, version: state.version } };
    }),
  );

  // ---------------------------------------------------------------- API tokens, changelog
  router.post(
    '/api-tokens',
    wrap((req, p) => {
      const b = parse(ApiTokenBody, body(req), 'body');
      allow(p, 'apiToken.create');
      const id = randomBytes(6).toString('hex');
      const secret = `tva_${id}_${randomBytes(24).toString('base64url')}`;
      const rec = commit(createApiToken(state, { id, hash: sha256hex(secret), role: b.role, scope: b.scope ?? null }, ctx(p)));
      return { status: 201, json: { id: rec.id, role: rec.role, scope: rec.scope, token: secret, version: state.version } };
    }),
  );
  router.get(
    '/api-tokens',
    wrap((_req, p) => {
      allow(p, 'apiToken.list');
      return { json: { apiTokens: state.apiTokens.map(({ hash: _h, ...rest }) => rest), version: state.version } };
    }),
  );
  router.get(
    '/changelog',
    wrap((_req, p) => {
      allow(p, 'changelog');
      return { json: { changelog: state.changelog, version: state.version } };
    }),
  );

  // Malformed JSON / oversized bodies inside this router: one line, never a stack trace.
  router.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) log.error('authority http error', { error: err.message });
    res.status(status).json({ error: status === 500 ? 'internal error' : err.type === 'entity.too.large' ? 'request body too large (max 64 kB)' : 'malformed JSON body' });
  });

  return { router, current: () => state, internal };
}

export function createAuthorityRouter(deps: AuthorityDeps): express.Router {
  return createAuthority(deps).router;
}

function sendError(res: Response, e: unknown): void {
  if (e instanceof AuthorityError) {
    res.status(e.status).json({ error: e.message });
    return;
  }
  const status = (e as { httpStatus?: number }).httpStatus;
  if (status === 500) {
    res.status(500).json({ error: (e as Error).message.replace(/\s*[\r\n]+\s*/g, ' ') });
    return;
  }
  log.error('authority internal error', { error: (e as Error)?.stack ?? String(e) });
  res.status(500).json({ error: 'internal error' });
}
