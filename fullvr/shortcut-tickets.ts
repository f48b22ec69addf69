// Shortcut tickets: a FullVR vouches to one of its peers for one of its members, so the
// member may also open a session straight to that peer and send it the traffic for the
// peer's sites: one router (this FullVR) fewer on the path, in both directions.
//
// The ticket is MACed with a key both FullVRs derive from their static X25519 keys
// (DH(a, B) = DH(b, A)), so issuing and checking one needs no round trip and no shared
// state, and only the two FullVRs named in it can make or check it. It names the member's
// overlay addresses: the peer admits the member with exactly those, nothing it asks for.
import { hkdfSync } from 'node:crypto';
import { staticSharedSecret, type StaticKey } from '../shared/handshake.js';
import { parseTicket, sealTicket, ticketMacOk } from './tickets.js';

/** A day: a TinyVR gets fresh tickets on every (re)join; an expired one only costs the shortcut. */
export const SHORTCUT_TTL_MS = 24 * 3600 * 1000;
const MAX_LEN = 2048;

export interface ShortcutClaim {
  /** the network the member joined */
  net: number;
  /** its overlay addresses (its identity at the issuer) */
  addrs: string[];
  /** the issuing FullVR (the member's own) */
  home: number;
  /** the FullVR the ticket is for */
  to: number;
  exp: number;
}

export class ShortcutTickets {
  private keys = new Map<string, Buffer>();

  /** `peerKey(id)`: the peer's static public key (raw 32 bytes), or undefined for an unknown peer. */
  constructor(
    private self: StaticKey,
    private selfId: number,
    private peerKey: (id: number) => Buffer | undefined,
  ) {}

  /** A ticket for peer `to`, or null when `to` is no known peer. */
  issue(to: number, net: number, addrs: string[], now = Date.now()): string | null {
    const key = this.key(to);
    if (!key) return null;
    const claim: ShortcutClaim = { net, addrs, home: this.selfId, to, exp: now + SHORTCUT_TTL_MS };
    return sealTicket(key, claim);
  }

  /** The claim of a ticket some peer issued for us, or a one-line reason it is refused. */
  verify(ticket: string, now = Date.now()): ShortcutClaim | { error: string } {
    const p = parseTicket(ticket, MAX_LEN);
    const claim = p?.claim as ShortcutClaim | null | undefined;
    if (!p || !claim || typeof claim !== 'object' || !Number.isInteger(claim.home) || !Number.isInteger(claim.net)) {
      return { error: 'malformed shortcut ticket' };
    }
    // The MAC first: nothing else the ticket says is believed before it is checked.
    const key = this.key(claim.home);
    if (!key) return { error: `shortcut ticket from VR ${claim.home}, which is not a peer of this FullVR` };
    if (!ticketMacOk(key, p.body, p.mac)) return { error: 'shortcut ticket has a bad MAC' };
    if (claim.to !== this.selfId) return { error: `shortcut ticket is for VR ${claim.to}, not this FullVR` };
    if (!(claim.exp > now)) return { error: 'shortcut ticket expired' };
    if (!Array.isArray(claim.addrs) || claim.addrs.length === 0 || !claim.addrs.every((a) => typeof a === 'string')) {
      return { error: 'shortcut ticket names no address' };
    }
    return claim;
  }

  private key(peer: number): Buffer | undefined {
    const pub = peer === this.selfId ? undefined : this.peerKey(peer);
    if (!pub) return undefined;
    const id = `${peer}|${pub.toString('base64')}`; // a re-keyed peer gets a new entry
    let k = this.keys.get(id);
    if (!k) {
      const lo = Math.min(peer, this.selfId);
      const hi = Math.max(peer, this.selfId);
      const secret = staticSharedSecret(this.self, pub);
      k = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `tinyvine shortcut ${lo}-${hi}`, 32));
      this.keys.set(id, k);
    }
    return k;
  }
}
