// Embedded defaults: `npm start` / `tinyvine fullvr` with no config runs a useful FullVR.
// One virtual-mode network (overlays may overlap clouds' private ranges), a key pair and a
// join token kept in a data directory so restarts keep the same identity.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair } from '../shared/handshake.js';
import { localAddresses } from '../shared/os-net.js';
import { parseFullvrConfig, type FullvrConfig } from './config.js';

export const DEFAULT_PORT = 4789;

function readOrCreate(path: string, make: () => string): string {
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const v = make();
  writeFileSync(path, v + '\n', { mode: 0o600 });
  return v;
}

export function defaultFullvrConfig(dataDir: string): { config: FullvrConfig; banner: (publicKey: string) => string } {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const privateKey = readOrCreate(join(dataDir, 'fullvr.key'), () => generateKeyPair().privateKey);
  const token = readOrCreate(join(dataDir, 'join-token'), () => randomBytes(24).toString('base64url'));
  const config = parseFullvrConfig(
    {
      id: 1,
      listen: `0.0.0.0:${DEFAULT_PORT}`,
      privateKey,
      control: '127.0.0.1:4790',
      peers: [],
      networks: [
        {
          id: 1,
          name: 'default',
          mode: 'virtual',
          auth: 'hmac',
          overlay: '10.255.0.0/16',
          sites: [{ name: 'this-fullvr', subnet: '10.255.1.0/24', vr: 1 }],
        },
      ],
      tokens: [{ token, network: 1 }],
    },
    'embedded defaults',
  );
  const banner = (publicKey: string): string => {
    let addr = '<this-host>';
    try {
      addr = localAddresses().find((a) => a.family === 4)?.address ?? addr;
    } catch {
      /* keep the placeholder */
    }
    return [
      '',
      `FullVR running on embedded defaults (state in ${dataDir}/). Network 1 "default", overlay 10.255.0.0/16.`,
      'Join a Linux machine that can reach this one over UDP 4789 (as root):',
      '',
      `  tinyvine tinyvr --fullvr ${addr}:${DEFAULT_PORT} --fullvr-key ${publicKey} --token ${token}`,
      '',
      'Status: curl -s http://127.0.0.1:4790/status',
      '',
    ].join('\n');
  };
  return { config, banner };
}
