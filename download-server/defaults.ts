// `npm start` with no configuration at all: a download server plus a FullVR in the same
// process, state in one data directory, and the exact join one-liner printed.
//
// The embedded catalog knows no cloud (`tinyvine ranges update` fetches the providers'
// files); it has one operator site, "local", covering private and loopback ranges, so VMs
// on this machine's private networks can join, and public strangers get a 403.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { localAddresses } from '../shared/os-net.js';
import { log } from '../shared/log.js';
import { defaultFullvrConfig, DEFAULT_PORT } from '../fullvr/defaults.js';
import { FullVR } from '../fullvr/fullvr.js';
import { parseServerConfig } from './config.js';
import { loadOrCreateSigningKey, startDownloadServer } from './server.js';

const LOCAL_SITE = {
  sites: [
    {
      name: 'local',
      provider: 'local',
      region: 'default',
      cidrs: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '127.0.0.0/8', 'fc00::/7', '::1/128'],
    },
  ],
};

export async function startDefaultServer(dataDirArg: string, listen = '0.0.0.0:8080'): Promise<{ stop: () => Promise<void>; banner: string }> {
  const dataDir = resolve(dataDirArg);
  const catalogDir = join(dataDir, 'catalog');
  mkdirSync(catalogDir, { recursive: true });
  if (!existsSync(join(catalogDir, 'sites.json'))) writeFileSync(join(catalogDir, 'sites.json'), JSON.stringify(LOCAL_SITE, null, 2) + '\n');
  const signingKey = loadOrCreateSigningKey(dataDir);
  const fv = defaultFullvrConfig(join(dataDir, 'fullvr'));
  fv.config.authority = { publicKey: signingKey.publicB64, heartbeatSeconds: 5, managed: false };
  fv.config.provider = 'local';
  fv.config.region = 'default';
  const fullvr = new FullVR(fv.config);
  await fullvr.start();
  const host = localAddresses().find((a) => a.family === 4)?.address ?? '127.0.0.1';
  const port = Number(listen.split(':').pop());
  const cfg = parseServerConfig(
    { listen, dataDir, catalog: catalogDir, network: 1, fallback: undefined, fullvrs: [] },
    'embedded defaults',
  );
  let srv;
  try {
    srv = await startDownloadServer(cfg, [
      { id: 1, endpoint: `${host}:${DEFAULT_PORT}`, publicKey: fullvr.publicKey, provider: 'local', region: 'default', networks: [1], isDefault: true },
    ]);
  } catch (e) {
    fullvr.stop();
    throw e;
  }
  // The FullVR runs in this process: report its health directly instead of over HTTP.
  const beat = () => srv.registry.heartbeat(1, fullvr.heartbeat());
  beat();
  const t = setInterval(beat, 2000);
  t.unref();
  log.info('embedded defaults', { dataDir });
  const banner = [
    '',
    `TinyViNe download server on http://${host}:${port}/ with a local FullVR (UDP ${DEFAULT_PORT}), state in ${dataDir}/.`,
    'Join a Linux VM on a private network that reaches this machine (as root, in its startup script or by hand):',
    '',
    `  curl -fsSL http://${host}:${port}/join | sh`,
    '',
    `Uninstall: curl -fsSL "http://${host}:${port}/join?uninstall=1" | sh`,
    'FullVR status: curl -s http://127.0.0.1:4790/status',
    '',
  ].join('\n');
  return {
    banner,
    stop: async () => {
      clearInterval(t);
      await srv.close();
      fullvr.stop();
    },
  };
}
