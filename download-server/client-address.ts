// The requesting VM's address: the socket peer, unless that peer is a configured trusted
// proxy, in which case the proxy's X-Forwarded-For / Forwarded header is believed — and
// only the part of it added by trusted proxies (walking right to left).
import { isIP } from 'node:net';
import { cidrContains } from '../shared/cidr.js';

export function normaliseIp(a: string | undefined): string | null {
  if (!a) return null;
  let s = a.trim();
  if (s.startsWith('[')) s = s.slice(1, s.indexOf(']'));
  if (s.startsWith('::ffff:') && isIP(s.slice(7)) === 4) s = s.slice(7);
  return isIP(s) ? s : null;
}

function trusted(ip: string, proxies: string[]): boolean {
  return proxies.some((p) => {
    try {
      return cidrContains(p, ip);
    } catch {
      return false;
    }
  });
}

/** Addresses named by Forwarded (RFC 7239) or X-Forwarded-For, in order, client first. */
function forwardedChain(headers: Record<string, string | string[] | undefined>): string[] | null {
  const fwd = headers['forwarded'];
  if (typeof fwd === 'string' && fwd.length < 4096) {
    const out: string[] = [];
    for (const part of fwd.split(',')) {
      const m = /(?:^|;)\s*for=("?)([^";,]+)\1/i.exec(part);
      if (m) out.push(m[2].replace(/:\d+$/, '').replace(/^\[(.*)\](:\d+)?$/, '$1'));
    }
    if (out.length) return out;
  }
  const xff = headers['x-forwarded-for'];
  if (typeof xff === 'string' && xff.length < 4096) return xff.split(',').map((s) => s.trim());
  return null;
}

export function clientAddress(
  socketAddr: string | undefined,
  headers: Record<string, string | string[] | undefined>,
  trustedProxies: string[],
): string | null {
  const peer = normaliseIp(socketAddr);
  if (!peer || !trusted(peer, trustedProxies)) return peer;
  const chain = forwardedChain(headers);
  if (!chain) return peer;
  // Right to left: skip our own proxies; the first address they did not add is the client.
  for (let i = chain.length - 1; i >= 0; i--) {
    const ip = normaliseIp(chain[i]);
    if (!ip) return peer; // garbage in the header: trust nothing from it
    if (!trusted(ip, trustedProxies)) return ip;
  }
  return normaliseIp(chain[0]) ?? peer;
}
