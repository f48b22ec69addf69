// An OpenVPN point-to-point tunnel (no crypto) across the lab, as a reference path:
// server in a FullVR namespace on its public address, client in a VM behind the NAT.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RefTunnel, RefTunnelOptions } from './ref-tunnel.js';
import type { Lab } from '../lab/topology.js';

export type OpenvpnTunnel = RefTunnel;

export type OpenvpnOptions = RefTunnelOptions;

const COMMON = [
  'dev tun',
  'proto udp',
  // no crypto at all: p2p without --secret/--tls; cipher/auth none as documented for 2.6
  'cipher none',
  'data-ciphers none',
  'auth none',
  'sndbuf 4194304',
  'rcvbuf 4194304',
  'disable-dco',
  'ping 2',
  'ping-exit 60',
  'verb 3',
];

export async function startOpenvpn(lab: Lab, o: OpenvpnOptions): Promise<OpenvpnTunnel> {
  const port = o.port ?? 1194;
  const srvTun = o.serverTunAddr ?? '10.254.0.1';
  const cliTun = o.clientTunAddr ?? '10.254.0.2';
  const mtu = o.mtu ?? 1420;
  const common = [...COMMON, `tun-mtu ${mtu}`];
  const dir = mkdtempSync(join(tmpdir(), 'tinyvine-bench-ovpn-'));
  o.onDir?.(dir);
  const serverConf = join(dir, 'server.conf');
  const clientConf = join(dir, 'client.conf');
  writeFileSync(serverConf, [...common, `local ${o.serverAddr}`, `lport ${port}`, 'float', `ifconfig ${srvTun} ${cliTun}`].join('\n') + '\n');
  writeFileSync(clientConf, [...common, `remote ${o.serverAddr} ${port}`, 'nobind', `ifconfig ${cliTun} ${srvTun}`].join('\n') + '\n');
  const server = lab.spawn(o.serverNode, ['openvpn', '--config', serverConf], { logFile: join(lab.logsDir, 'openvpn-server.log') });
  const client = lab.spawn(o.clientNode, ['openvpn', '--config', clientConf], { logFile: join(lab.logsDir, 'openvpn-client.log') });
  const stop = async () => {
    await Promise.all([client.kill('SIGTERM', 3000), server.kill('SIGTERM', 3000)]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all([server.waitForLog(/Initialization Sequence Completed/, 20_000), client.waitForLog(/Initialization Sequence Completed/, 20_000)]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { server, client, serverTunAddr: srvTun, clientTunAddr: cliTun, mtu, dir, stop };
}
