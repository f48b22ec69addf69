// OS address, link and route setup through iproute2. Control plane only (start, join,
// stop), so spawning `ip` is fine and keeps us on the tool every distribution ships.
// Every change goes through a NetChanges journal so a failure half-way, a signal or a
// normal stop undoes exactly what this process did, in reverse order, and nothing else.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { UserError } from './user-error.js';

function ip(args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  } catch (e) {
    const err = e as { stderr?: string; code?: string; message: string };
    if (err.code === 'ENOENT') throw new UserError('the `ip` command (iproute2) is not installed');
    const detail = (err.stderr ?? err.message).trim().split('\n')[0];
    throw new UserError(`ip ${args.join(' ')}: ${detail}`);
  }
}

export interface LocalAddress {
  dev: string;
  address: string;
  prefixlen: number;
  family: 4 | 6;
}

/** Global-scope addresses of this host, excluding loopback and the given devices. */
export function localAddresses(excludeDevs: string[] = []): LocalAddress[] {
  const out = JSON.parse(ip(['-j', 'addr', 'show'])) as Array<{
    ifname: string;
    addr_info?: Array<{ family: string; local: string; prefixlen: number; scope: string }>;
  }>;
  const res: LocalAddress[] = [];
  for (const link of out) {
    if (link.ifname === 'lo' || excludeDevs.includes(link.ifname)) continue;
    for (const a of link.addr_info ?? []) {
      if (a.scope !== 'global') continue;
      res.push({ dev: link.ifname, address: a.local, prefixlen: a.prefixlen, family: a.family === 'inet6' ? 6 : 4 });
    }
  }
  return res;
}

/** Source address the kernel would use to reach host (the VM's provider-assigned address). */
export function sourceAddressFor(host: string): string | null {
  try {
    const r = JSON.parse(ip(['-j', 'route', 'get', host])) as Array<{ prefsrc?: string }>;
    return r[0]?.prefsrc ?? null;
  } catch {
    return null;
  }
}

export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

export function checkRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new UserError(`${what} must run as root (it creates a TUN device and routes)`);
  }
}

export function checkTunDevice(): void {
  if (!existsSync('/dev/net/tun')) {
    throw new UserError('/dev/net/tun does not exist: load the tun module (modprobe tun) or enable TUN for this VM/container');
  }
}

/** Journal of OS changes made by this process, undone in reverse by rollback(). */
export class NetChanges {
  private undo: Array<{ what: string; fn: () => void }> = [];

  private apply(doArgs: string[], undoArgs: string[] | null, what: string): void {
    ip(doArgs);
    if (undoArgs) this.undo.push({ what, fn: () => ip(undoArgs) });
  }

  linkUp(dev: string, mtu: number): void {
    // Link state and MTU vanish with the device itself; nothing to undo.
    this.apply(['link', 'set', 'dev', dev, 'mtu', String(mtu), 'up'], null, `link ${dev}`);
  }

  addAddress(dev: string, cidr: string): void {
    this.apply(['addr', 'add', cidr, 'dev', dev], ['addr', 'del', cidr, 'dev', dev], `addr ${cidr}`);
  }

  /** Route prefix into dev, optionally with a preferred source address (physical mode). */
  addRoute(prefix: string, dev: string, src?: string, mtu?: number): void {
    const spec = [prefix, 'dev', dev, ...(src ? ['src', src] : []), ...(mtu ? ['mtu', String(mtu)] : [])];
    this.apply(['route', 'replace', ...spec], ['route', 'del', prefix, 'dev', dev], `route ${prefix}`);
  }

  removeRoute(prefix: string, dev: string): void {
    this.undoOne(`route ${prefix}`, ['route', 'del', prefix, 'dev', dev]);
  }

  removeAddress(dev: string, cidr: string): void {
    this.undoOne(`addr ${cidr}`, ['addr', 'del', cidr, 'dev', dev]);
  }

  /** Undo one recorded change now (or run the fallback if this process did not make it). */
  private undoOne(what: string, fallback: string[]): void {
    const i = this.undo.findIndex((u) => u.what === what);
    try {
      if (i >= 0) this.undo.splice(i, 1)[0].fn();
      else ip(fallback);
    } catch {
      /* already gone (e.g. with the device) */
    }
  }

  /** Set a sysctl (e.g. net.ipv4.ip_forward) and restore the old value on rollback. */
  sysctl(key: string, value: string): void {
    const path = `/proc/sys/${key.replace(/\./g, '/')}`;
    const old = readFileSync(path, 'utf8').trim();
    if (old === value) return;
    writeFileSync(path, value);
    this.undo.push({ what: `sysctl ${key}`, fn: () => writeFileSync(path, old) });
  }

  /** Undo everything, newest first. Errors are collected, not thrown: a stop must finish. */
  rollback(): string[] {
    const errors: string[] = [];
    while (this.undo.length) {
      const u = this.undo.pop()!;
      try {
        u.fn();
      } catch (e) {
        // A route through a TUN disappears when the TUN closes; that is not an error.
        if (!/No such process|Cannot find device|No such device/.test(String((e as Error).message))) {
          errors.push(`${u.what}: ${(e as Error).message}`);
        }
      }
    }
    return errors;
  }
}
