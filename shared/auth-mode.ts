// Per-network authentication modes (docs/wire-format.md) and the MTU they leave for inner packets.
import { AuthMode, HEADER_LEN, TAG_LEN } from './packet-engine.js';

export type AuthName = 'none' | 'hmac' | 'gmac' | 'aes-gcm' | 'chacha';

export function authModeOf(name: AuthName | undefined): AuthMode {
  switch (name ?? 'gmac') {
    case 'none':
      return AuthMode.NONE;
    case 'hmac':
      return AuthMode.HMAC;
    case 'gmac':
      return AuthMode.GMAC;
    case 'aes-gcm':
      return AuthMode.AES_GCM;
    case 'chacha':
      return AuthMode.CHACHA;
    default:
      throw new Error(`unknown auth mode ${String(name)}`);
  }
}

/** none < hmac < encryption: a link shared by several networks must satisfy the strictest. */
export function strongestMode(modes: AuthMode[]): AuthMode {
  const rank = (m: AuthMode): number => (m === AuthMode.NONE ? 0 : m === AuthMode.HMAC || m === AuthMode.GMAC ? 1 : 2);
  let best: AuthMode = modes.length ? modes[0] : AuthMode.HMAC;
  for (const m of modes) if (rank(m) > rank(best)) best = m;
  return best;
}

/** TUN MTU so an encapsulated packet still fits the underlay path MTU without IP fragmentation. */
export function tunMtu(pathMtu: number, underlayFamily: 4 | 6): number {
  return pathMtu - (underlayFamily === 6 ? 40 : 20) - 8 - HEADER_LEN - TAG_LEN;
}
