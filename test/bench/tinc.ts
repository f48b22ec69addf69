// A tinc 1.0 tunnel with no cipher, no digest and no compression across the lab, as a
// reference path: one tincd in a FullVR namespace on its public address, one in a VM behind
// the NAT that connects to it (ConnectTo). Router mode, UDP data, RSA keys generated here.
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SpawnHandle } from '../lab/netns.js';
import type { RefTunnel, RefTunnelOptions } from './ref-tunnel.js';
import type { Lab } from '../lab/topology.js';

export type TincTunnel = RefTunnel;

export type TincOptions = RefTunnelOptions;

/** Written to tinc.conf and to both host files (tinc 1.0 reads these per host). */
const NO_CRYPTO = ['Cipher = none', 'Digest = none', 'MACLength = 0', 'Compression = 0'];

function rsaKeys(): { priv: string; pub: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    priv: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    pub: publicKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
  };
}

export async function startTinc(lab: Lab, o: TincOptions): Promise<TincTunnel> {
  const port = o.port ?? 655;
  const srvTun = o.serverTunAddr ?? '10.253.0.1';
  const cliTun = o.clientTunAddr ?? '10.253.0.2';
  const mtu = o.mtu ?? 1420;
  const dir = mkdtempSync(join(tmpdir(), 'tinyvine-bench-tinc-'));
  o.onDir?.(dir);
  // tinc node names: [A-Za-z0-9_] only
  const srvName = 'server';
  const cliName = 'client';
  const keys: Record<string, { priv: string; pub: string }> = { [srvName]: rsaKeys(), [cliName]: rsaKeys() };
  const hostFile = (name: string, lines: string[]) => [...lines, ...NO_CRYPTO, 'PMTUDiscovery = no', '', keys[name]!.pub].join('\n');
  const hosts = {
    [srvName]: hostFile(srvName, [`Address = ${o.serverAddr}`, `Port = ${port}`, `Subnet = ${srvTun}/32`]),
    [cliName]: hostFile(cliName, [`Port = ${port}`, `Subnet = ${cliTun}/32`]),
  };

  const confDir = (name: string, tunAddr: string, conf: string[]): string => {
    const d = join(dir, name);
    mkdirSync(join(d, 'hosts'), { recursive: true });
    writeFileSync(
      join(d, 'tinc.conf'),
      [
        `Name = ${name}`,
        'Mode = router',
        'AddressFamily = ipv4',
        'Device = /dev/net/tun',
        'Interface = tinc0',
        `Port = ${port}`,
        ...NO_CRYPTO,
        'PMTUDiscovery = no',
        // same socket buffers as the OpenVPN reference
        'UDPRcvBuf = 4194304',
        'UDPSndBuf = 4194304',
        ...conf,
      ].join('\n') + '\n',
    );
    writeFileSync(join(d, 'rsa_key.priv'), keys[name]!.priv, { mode: 0o600 });
    for (const [h, text] of Object.entries(hosts)) writeFileSync(join(d, 'hosts', h), text + '\n');
    const up = join(d, 'tinc-up');
    writeFileSync(up, `#!/bin/sh\nip link set dev "$INTERFACE" mtu ${mtu} up\nip addr add ${tunAddr}/30 dev "$INTERFACE"\n`);
    chmodSync(up, 0o755);
    return d;
  };
  const srvDir = confDir(srvName, srvTun, [`BindToAddress = ${o.serverAddr}`]);
  const cliDir = confDir(cliName, cliTun, [`ConnectTo = ${srvName}`]);

  // -D: foreground, so the lab's spawn handle owns (and kills) the daemon itself; -d1 logs connections.
  const tincd = (d: string) => ['tincd', '-c', d, '-D', '-d1', `--pidfile=${join(d, 'tinc.pid')}`];
  // the server first: a client that finds nobody listening retries only after 5 s
  const server = lab.spawn(o.serverNode, tincd(srvDir), { logFile: join(lab.logsDir, 'tinc-server.log') });
  let client: SpawnHandle | null = null;
  const stop = async () => {
    await Promise.all([client?.kill('SIGTERM', 3000), server.kill('SIGTERM', 3000)]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await server.waitForLog(/Ready/, 15_000);
    client = lab.spawn(o.clientNode, tincd(cliDir), { logFile: join(lab.logsDir, 'tinc-client.log') });
    await client.waitForLog(new RegExp(`Connection with ${srvName} .* activated`), 20_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return { server, client, serverTunAddr: srvTun, clientTunAddr: cliTun, mtu, dir, stop };
}
