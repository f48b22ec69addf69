// Starts the download server: authority signing key, provider catalog (reloaded, keeping
// the last good copy), FullVR registry, the cached TinyVR bundle, and the HTTP app.
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../shared/join-token.js';
import { log } from '../shared/log.js';
import { parseEndpoint } from '../shared/cidr.js';
import { UserError } from '../shared/user-error.js';
import { TinyvrBundle } from '../bundle/tinyvr-bundle.js';
import { ProviderCatalog } from './catalog/catalog.js';
import { createApp, type CatalogView } from './app.js';
import type { ServerConfig } from './config.js';
import { FullvrRegistry, type FullvrEntry } from './registry.js';
import { createAuthority } from './authority/api.js';
import { FileStore } from './authority/store.js';
import { computeTables, joinHost, type State } from './authority/state.js';
import { TablePush } from './table-push.js';
import { answerClientErrors } from './client-error.js';
import type { TablesBody } from '../shared/signed-tables.js';

export const VERSION = '0.1.0';

/** Repository root (sources for the TinyVR bundle), from this file's place in src or dist. */
export function projectRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..');
}

export function loadOrCreateSigningKey(dataDir: string): SigningKey {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, 'authority.key');
  if (!existsSync(file)) writeFileSync(file, generateSigningKey().privateKey + '\n', { mode: 0o600 });
  return loadSigningKey(readFileSync(file, 'utf8').trim());
}

export interface RunningServer {
  server: Server;
  registry: FullvrRegistry;
  signingKey: SigningKey;
  url: string;
  close(): Promise<void>;
}

export async function startDownloadServer(cfg: ServerConfig, extraFullvrs: FullvrEntry[] = []): Promise<RunningServer> {
  const signingKey = loadOrCreateSigningKey(cfg.dataDir);
  const first = await ProviderCatalog.load(cfg.catalog);
  for (const p of first.problems) log.warn('catalog problem', { problem: p });
  let catalog = first.catalog;
  log.info('catalog loaded', { dir: cfg.catalog, prefixes: catalog.size, providers: JSON.stringify(catalog.providers()) });
  const reload = cfg.catalogReloadSeconds
    ? setInterval(async () => {
        try {
          const r = await ProviderCatalog.reloadKeepingLastGood(cfg.catalog, catalog);
          for (const p of r.problems) log.warn('catalog problem, keeping last good copy', { problem: p });
          catalog = r.catalog;
        } catch (e) {
          log.warn('catalog reload failed, keeping last good copy', { error: (e as Error).message });
        }
      }, cfg.catalogReloadSeconds * 1000)
    : null;
  reload?.unref();

  const registry = new FullvrRegistry(
    [
      ...cfg.fullvrs.map((f) => ({
        id: f.id,
        endpoint: f.endpoint,
        publicKey: f.publicKey,
        provider: f.provider ?? null,
        region: f.region ?? null,
        networks: f.networks,
        isDefault: f.default,
      })),
      ...extraFullvrs,
    ],
    cfg.heartbeatTimeoutSeconds * 1000,
  );
  // Alert when a FullVR goes silent (it is no longer chosen) and when it comes back.
  const health = setInterval(() => {
    for (const t of registry.transitions()) {
      if (t.healthy) log.info('fullvr up', { id: t.id });
      else log.warn('fullvr down', { id: t.id, silentMs: t.silentMs ?? undefined, timeoutMs: cfg.heartbeatTimeoutSeconds * 1000 });
    }
  }, 1000);
  health.unref();
  // The authority: management API, state in one file, signed tables pushed to FullVRs.
  // Hosts an operator removed are remembered for a while so FullVRs drop them and refuse
  // their rejoin, and late heartbeats do not bring them back.
  const left = new Map<string, { network: number; address: string; fullvr: number; at: number }>();
  let prevState: State | null = null;
  let push: TablePush | null = null;
  const syncRegistry = (st: State) => {
    for (const f of st.fullvrs) {
      if (cfg.fullvrs.some((c) => c.id === f.id)) continue;
      const site = st.sites.find((x) => x.name === f.site);
      registry.add({
        id: f.id,
        endpoint: f.endpoint,
        publicKey: f.publicKey,
        provider: site?.provider ?? null,
        region: site?.region ?? null,
        networks: st.networks.filter((n) => n.state === 'active' && n.sites.includes(f.site)).map((n) => n.id),
        isDefault: false,
      });
    }
  };
  const authority = createAuthority({
    store: new FileStore(join(cfg.dataDir, 'authority.json')),
    signingKey,
    bootstrapAdminToken: cfg.bootstrapToken ?? process.env.TINYVINE_BOOTSTRAP_TOKEN,
    health: (id) => registry.status().find((e: any) => e.id === id),
    onChange: (st) => {
      const now = Date.now();
      if (prevState) {
        for (const h of prevState.hosts) {
          if (!st.hosts.some((x) => x.address === h.address && x.network === h.network) && st.networks.some((n) => n.id === h.network)) {
            left.set(`${h.network}|${h.address}`, { network: h.network, address: h.address, fullvr: h.fullvr, at: now });
          }
        }
      }
      for (const h of st.hosts) left.delete(`${h.network}|${h.address}`);
      for (const [k, v] of left) if (now - v.at > 600_000) left.delete(k);
      prevState = st;
      syncRegistry(st);
      push?.broadcast();
    },
  });
  prevState = authority.current();
  syncRegistry(prevState);
  push = new TablePush(signingKey, (id): TablesBody | null => {
    const st = authority.current();
    if (!st.fullvrs.some((f) => f.id === id)) return null;
    const t = computeTables(st, id);
    const limited = new Set(t.limited.map((l) => l.id));
    return {
      version: t.version,
      fullvr: t.fullvr,
      peers: t.peers.map((p) => (limited.has(p.id) ? { id: p.id, publicKey: p.publicKey, limited: true } : p)) as TablesBody['peers'],
      networks: t.networks,
      members: t.members,
      // Every FullVR of the network hears of a host that left, not only the one it was with:
      // others may hold it as a shortcut member, or have introduced it to their members.
      left: [...left.values()].filter((l) => l.fullvr === id || t.networks.some((n) => n.id === l.network)).map(({ network, address }) => ({ network, address })),
      revokedTokens: t.revokedTokens,
    };
  });
  // Members a FullVR admitted (with a join token) become hosts of the authority.
  const onMembers = (fullvrId: number, members: Array<{ network: number; address: string }>) => {
    const st = authority.current();
    for (const m of members) {
      if (st.hosts.some((h) => h.address === m.address && h.network === m.network) || left.has(`${m.network}|${m.address}`)) continue;
      if (!st.networks.some((n) => n.id === m.network && n.state === 'active')) continue;
      try {
        authority.internal((s, c) => joinHost(s, { network: m.network, address: m.address }, c), `fullvr ${fullvrId}`);
      } catch (e) {
        log.debug('member report not recorded', { fullvr: fullvrId, address: m.address, error: (e as Error).message });
      }
    }
  };
  const bundle = await TinyvrBundle.build({ root: projectRoot(), cacheDir: join(cfg.dataDir, 'cache'), version: VERSION });
  const app = createApp({ cfg, catalog: () => catalog as CatalogView, registry, signingKey, bundle, version: VERSION, authorityRouter: authority.router, tablePush: push, onMembers });
  // Small header limit: a join request has no business sending more (absurd headers -> 431).
  const server = createServer({ maxHeaderSize: 8192, requestTimeout: 30_000, headersTimeout: 10_000 }, app);
  server.keepAliveTimeout = 5000;
  answerClientErrors(server);
  const { host, port } = parseEndpoint(cfg.listen);
  await new Promise<void>((res, rej) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      rej(new UserError(`download server ${cfg.listen}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`)),
    );
    server.listen(port, host, () => res());
  });
  const addr = server.address();
  const url = cfg.publicUrl ?? `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${typeof addr === 'object' && addr ? addr.port : port}`;
  log.info('download server ready', { listen: cfg.listen, authorityKey: signingKey.publicB64, bundle: bundle.sha256.slice(0, 12), fullvrs: registry.all().length });
  return {
    server,
    registry,
    signingKey,
    url,
    close: () =>
      new Promise<void>((res) => {
        if (reload) clearInterval(reload);
        clearInterval(health);
        push?.close();
        server.closeAllConnections?.();
        server.close(() => res());
      }),
  };
}
