// What the reference tunnels of the benchmark (OpenVPN, tinc) take and give.
import type { SpawnHandle } from '../lab/netns.js';

export interface RefTunnel {
  server: SpawnHandle;
  client: SpawnHandle;
  /** Tunnel address of the server end (iperf3 server binds here). */
  serverTunAddr: string;
  clientTunAddr: string;
  mtu: number;
  dir: string;
  stop(): Promise<void>;
}

export interface RefTunnelOptions {
  /** Node (namespace) of the server, e.g. 'b-fvr'. */
  serverNode: string;
  /** Public address the server listens on (and the client connects to). */
  serverAddr: string;
  clientNode: string;
  port?: number;
  /** Server .1, client .2 of the tunnel's /30. */
  serverTunAddr?: string;
  clientTunAddr?: string;
  /** MTU of the tun device (default 1420). */
  mtu?: number;
  /** Called with the temp dir as soon as it exists (so a signal handler can remove it). */
  onDir?: (dir: string) => void;
}
