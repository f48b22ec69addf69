// The download server's HTTP surface (express):
//   GET  /join                 POSIX sh join script for the requesting VM (or a one-line refusal)
//   GET  /join?uninstall=1     script that removes everything the join script installed
//   GET  /tinyvr/<id>.mjs      the single-file TinyVR with this VM's config injected (short-lived id)
//   GET  /tinyvr.js            the same bundle without config (flags supply it)
//   GET  /runtime/<os>-<arch>/node   a Node runtime for VMs that have none
//   POST /api/v1/fullvrs/<id>/heartbeat   FullVR health and load (bearer API token)
//   GET  /api/v1/fullvrs       registry with health
//   GET  /healthz
import express, { type NextFunction, type Request, type Response } from 'express';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { issueToken, type SigningKey } from '../shared/join-token.js';
import { log } from '../shared/log.js';
import { clientAddress } from './client-address.js';
import type { ServerConfig } from './config.js';
import type { FullvrRegistry } from './registry.js';
import { chooseFullvr } from './selection.js';
import { renderJoinScript } from '../bundle/join-script.js';
import type { TinyvrBundle } from '../bundle/tinyvr-bundle.js';
import type { TablePush } from './table-push.js';

export interface CatalogView {
  lookup(ip: string): { provider: string; region: string | null; prefix: string; site?: string } | null;
}

export interface AppDeps {
  cfg: ServerConfig;
  /** Management API (authority) routes, mounted first under /api/v1. */
  authorityRouter?: express.Router;
  /** Pushes signed tables to FullVRs (GET /api/v1/fullvrs/:id/tables/stream). */
  tablePush?: TablePush;
  /** FullVRs report their members in heartbeats. */
  onMembers?: (fullvrId: number, members: Array<{ network: number; address: string }>) => void;
  catalog: () => CatalogView;
  registry: FullvrRegistry;
  signingKey: SigningKey;
  bundle: TinyvrBundle;
  version: string;
}

const DOWNLOAD_TTL_MS = 10 * 60 * 1000;
const MAX_PENDING_DOWNLOADS = 100_000;
const ARCH_ALIASES: Record<string, string> = { x86_64: 'x64', amd64: 'x64', x64: 'x64', aarch64: 'arm64', arm64: 'arm64' };

/** A refusal that is both a readable line and a harmless script (`curl | sh` prints it and fails). */
function refusal(res: Response, status: number, message: string): void {
  const line = message.replace(/[\r\n]+/g, ' ').replace(/'/g, "'\\''");
  res.status(status).type('text/x-shellscript').send(`echo 'tinyvine: ${line}' >&2; exit 3\n`);
}

export function createApp(d: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // Join scripts are unique per request (token, download id): an ETag is wasted hashing.
  app.set('etag', false);
  app.set('query parser', 'simple');
  // Configured bundle downloads: id -> config, short-lived, a few downloads each (retries).
  const pending = new Map<string, { config: Record<string, unknown>; expires: number; left: number }>();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [k, v] of pending) if (v.expires < now) pending.delete(k);
  }, 30_000);
  sweep.unref();

  app.use((req, res, next) => {
    if ((req.url ?? '').length > 2048) return refusal(res, 414, 'request URL too long');
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ ok: true, version: d.version });
  });

  app.get('/join', (req, res) => {
    const q = req.query as Record<string, unknown>;
    for (const [k, v] of Object.entries(q)) {
      if (!['uninstall', 'network', 'arch'].includes(k)) return refusal(res, 400, `unknown query parameter "${k.slice(0, 40)}" (allowed: uninstall, network, arch)`);
      if (typeof v !== 'string' || v.length > 64) return refusal(res, 400, `query parameter "${k}" must be one short value`);
    }
    const serverUrl = publicUrl(d.cfg, req);
    if (!serverUrl) return refusal(res, 400, 'bad Host header');
    const base = { serverUrl, version: d.version, bundleSha256: d.bundle.sha256, arch: d.bundle.arch, os: d.bundle.os };
    if (q.uninstall !== undefined) {
      if (!['1', 'true', 'yes'].includes(String(q.uninstall))) return refusal(res, 400, 'uninstall takes 1');
      return void res
        .type('text/x-shellscript')
        .send(renderJoinScript({ ...base, fullvr: { id: 0, endpoint: '', why: '' }, network: 0, bundleUrl: '', uninstall: true }));
    }
    if (q.arch !== undefined) {
      const a = ARCH_ALIASES[String(q.arch)];
      if (!a) return refusal(res, 400, `unknown architecture "${String(q.arch).slice(0, 32)}" (known: x86_64, aarch64)`);
      if (a !== d.bundle.arch) return refusal(res, 400, `architecture ${String(q.arch)} is not supported by this download server (it serves ${d.bundle.arch})`);
    }
    let network = d.cfg.network;
    if (q.network !== undefined) {
      if (!/^\d{1,10}$/.test(String(q.network)) || Number(q.network) < 1 || Number(q.network) > 0xffffffff) return refusal(res, 400, 'network must be a number 1..4294967295');
      network = Number(q.network);
    }
    const ip = clientAddress(req.socket.remoteAddress, req.headers, d.cfg.trustedProxies);
    if (!ip) return refusal(res, 400, 'cannot tell the client address');
    const hit = d.catalog().lookup(ip);
    const where = hit ?? (d.cfg.fallback ? { provider: d.cfg.fallback.provider, region: d.cfg.fallback.region, prefix: 'fallback' } : null);
    if (!where) {
      log.info('join refused', { ip, reason: 'unknown range' });
      return refusal(
        res,
        403,
        `${ip} is not in any known cloud provider range or operator site, so there is nothing to install. An operator can add a site (name, provider, region, cidrs) to sites.json in the catalog directory, or configure a fallback.`,
      );
    }
    const choice = chooseFullvr(d.registry, { ip, provider: where.provider, region: where.region, network, pins: d.cfg.pins });
    if ('error' in choice) {
      log.warn('join refused', { ip, provider: where.provider, region: where.region ?? undefined, reason: choice.error });
      return refusal(res, 503, choice.error);
    }
    const f = choice.fullvr;
    const { token } = issueToken(d.signingKey, { network, fullvr: f.id, ttlSeconds: d.cfg.tokenTtlSeconds, singleUse: d.cfg.singleUseTokens });
    if (pending.size >= MAX_PENDING_DOWNLOADS) return refusal(res, 503, 'too many joins in progress, retry in a minute');
    // The next best healthy FullVR is the TinyVR's secondary: it fails over there (own token).
    const second = chooseFullvr(d.registry, { ip, provider: where.provider, region: where.region, network, pins: [], exclude: f.id });
    const secondary =
      'error' in second
        ? undefined
        : {
            fullvr: second.fullvr.endpoint,
            fullvrKey: second.fullvr.publicKey,
            token: issueToken(d.signingKey, { network, fullvr: second.fullvr.id, ttlSeconds: 30 * 86400, singleUse: false }).token,
          };
    const id = randomBytes(18).toString('base64url');
    pending.set(id, { config: { ...d.cfg.tinyvr, fullvr: f.endpoint, fullvrKey: f.publicKey, token, ...(secondary ? { secondary } : {}) }, expires: Date.now() + DOWNLOAD_TTL_MS, left: 3 });
    const script = renderJoinScript({ ...base, fullvr: { id: f.id, endpoint: f.endpoint, why: choice.why }, network, bundleUrl: `${serverUrl}/tinyvr/${id}.mjs` });
    res.setHeader('X-TinyViNe-FullVR', `${f.id} ${f.endpoint}; reason="${choice.why}"`);
    res.setHeader('Cache-Control', 'no-store');
    res.type('text/x-shellscript').send(script);
    log.info('join', { ip, provider: where.provider, region: where.region ?? undefined, prefix: where.prefix, fullvr: f.id, why: choice.why, network });
  });

  app.get('/tinyvr/:id.mjs', (req, res) => {
    const p = pending.get(String(req.params.id));
    if (!p || p.expires < Date.now()) return void res.status(404).type('text/plain').send('tinyvine: unknown or expired download; run the join one-liner again\n');
    if (--p.left <= 0) pending.delete(String(req.params.id));
    res.setHeader('Cache-Control', 'no-store');
    res.type('text/javascript').send(d.bundle.render(p.config));
  });

  app.get('/tinyvr.js', (_req, res) => {
    res.type('text/javascript').send(d.bundle.renderUnconfigured());
  });

  app.get('/runtime/:platform/node', (req, res) => {
    const plat = String(req.params.platform);
    const m = /^(linux)-(x64|arm64)$/.exec(plat);
    if (!m) return void res.status(404).type('text/plain').send(`tinyvine: no runtime for "${plat.slice(0, 32)}" (known: linux-x64, linux-arm64)\n`);
    let file: string | null = null;
    if (d.cfg.runtimeDir && existsSync(join(d.cfg.runtimeDir, plat, 'node'))) file = join(d.cfg.runtimeDir, plat, 'node');
    else if (process.platform === m[1] && process.arch === m[2]) file = process.execPath;
    if (!file) return void res.status(404).type('text/plain').send(`tinyvine: this server has no Node runtime for ${plat}; put one at <runtimeDir>/${plat}/node\n`);
    res.setHeader('Content-Length', String(statSync(file).size));
    res.type('application/octet-stream');
    createReadStream(file).pipe(res);
  });

  const api = express.Router();
  api.use(express.json({ limit: '64kb' }));
  api.get('/fullvrs/:id/tables/stream', (req, res) => {
    if (!authorised(d.cfg.apiToken, req.headers.authorization)) return void res.status(401).json({ error: 'missing or wrong API token' });
    if (!d.tablePush) return void res.status(404).json({ error: 'this server does not manage routing tables' });
    d.tablePush.handle(req, res, Number(req.params.id));
  });
  api.post('/fullvrs/:id/heartbeat', (req, res) => {
    if (!authorised(d.cfg.apiToken, req.headers.authorization)) return void res.status(401).json({ error: 'missing or wrong API token' });
    const id = Number(req.params.id);
    const b = req.body as Record<string, unknown>;
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
    const members = num(b?.members);
    const load = num(b?.load);
    if (!Number.isInteger(id) || members === null || load === null) return void res.status(400).json({ error: 'heartbeat needs {members: number, load: number}' });
    const peers = Array.isArray(b.peers)
      ? (b.peers as unknown[]).slice(0, 1000).filter((p) => typeof p === 'object' && p !== null && Number.isInteger((p as any).id))
      : undefined;
    if (!d.registry.heartbeat(id, { members, load, peersUp: num(b.peersUp) ?? 0, peers })) return void res.status(404).json({ error: `unknown FullVR ${id}` });
    if (Array.isArray(b.memberList) && d.onMembers) {
      const list = (b.memberList as unknown[])
        .filter((m): m is { network: number; address: string } => typeof (m as any)?.network === 'number' && typeof (m as any)?.address === 'string')
        .slice(0, 10_000);
      d.onMembers(id, list);
    }
    res.json({ ok: true });
  });
  api.get('/fullvrs', (req, res, next) => {
    // With the FullVR token: the heartbeat registry; otherwise the management API answers.
    if (!authorised(d.cfg.apiToken, req.headers.authorization)) {
      if (d.authorityRouter) return next();
      return void res.status(401).json({ error: 'missing or wrong API token' });
    }
    res.json(d.registry.status());
  });
  // Heartbeats and the table stream first (FullVR token), then the management API (user tokens).
  app.use('/api/v1', api);
  if (d.authorityRouter) app.use('/api/v1', d.authorityRouter);

  app.use((_req, res) => {
    res.status(404).type('text/plain').send('tinyvine: not found (try GET /join)\n');
  });
  // Malformed JSON, oversized bodies: a 4xx with one line, never a stack trace.
  app.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) log.error('http error', { error: err.message });
    res.status(status).json({ error: status === 500 ? 'internal error' : err.type === 'entity.too.large' ? 'request body too large' : 'malformed request' });
  });
  return app;
}

function authorised(apiToken: string | undefined, header: string | undefined): boolean {
  if (!apiToken || !header?.startsWith('Bearer ')) return false;
  const a = createHash('sha256').update(header.slice(7)).digest();
  const b = createHash('sha256').update(apiToken).digest();
  return timingSafeEqual(a, b);
}

function publicUrl(cfg: ServerConfig, req: Request): string | null {
  if (cfg.publicUrl) return cfg.publicUrl.replace(/\/+$/, '');
  const host = req.headers.host;
  if (!host || !/^[A-Za-z0-9.\-:[\]]{1,255}$/.test(host)) return null;
  return `http://${host}`;
}
