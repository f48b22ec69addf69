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
  const bundle = await TinyvrBundle.build({ root: projectRoot(), cacheDir: join(cfg.dataDir, 'cache'), version: VERSION });
  const app = createApp({ cfg, catalog: () => catalog as CatalogView, registry, signingKey, bundle, version: VERSION });
  // Small header limit: a join request has no business sending more (absurd headers -> 431).
  const server = createServer({ maxHeaderSize: 8192, requestTimeout: 30_000, headersTimeout: 10_000 }, app);
  server.keepAliveTimeout = 5000;
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
        server.closeAllConnections?.();
        server.close(() => res());
      }),
  };
}
