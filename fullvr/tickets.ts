// Rejoin tickets: on a successful join the FullVR hands the member a ticket, bound to its
// network and address and MACed with a key derived from the FullVR's static key. A member
// whose session is lost (FullVR restart, NAT change) rejoins with it, so a single-use join
// token is never needed twice, and the FullVR keeps no state to honour it.
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

const TTL_MS = 30 * 24 * 3600 * 1000;
/** Rejoin tickets carry a MAC cut to this many base64url characters (192 bits). */
const MEMBER_MAC_CHARS = 32;

// ---------- the ticket format both kinds share: base64url(JSON) "." base64url(HMAC-SHA256) ----------

/** A ticket for `claim`, MACed with `key` (the MAC cut to `macChars` characters if given). */
export function sealTicket(key: Buffer, claim: unknown, macChars?: number): string {
  const body = Buffer.from(JSON.stringify(claim)).toString('base64url');
  return `${body}.${ticketMac(key, body, macChars)}`;
}

/** A ticket's parts and its (not yet trusted) claim, or null if it is not one. */
export function parseTicket(ticket: string, maxLen: number): { body: string; mac: string; claim: unknown } | null {
  const [body, mac, extra] = ticket.split('.');
  if (!body || !mac || extra !== undefined || ticket.length > maxLen) return null;
  try {
    return { body, mac, claim: JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) };
  } catch {
    return null;
  }
}

/** Whether `mac` is the MAC of `body` under `key` (constant time). */
export function ticketMacOk(key: Buffer, body: string, mac: string, macChars?: number): boolean {
  const want = Buffer.from(ticketMac(key, body, macChars));
  const got = Buffer.from(mac);
  return want.length === got.length && timingSafeEqual(want, got);
}

function ticketMac(key: Buffer, body: string, macChars?: number): string {
  const m = createHmac('sha256', key).update(body).digest('base64url');
  return macChars === undefined ? m : m.slice(0, macChars);
}

export interface Ticket {
  net: number;
  addr: string;
  exp: number;
}

export class MemberTickets {
  private key: Buffer;

  constructor(staticPrivateKeyB64: string, selfId: number) {
    this.key = Buffer.from(hkdfSync('sha256', Buffer.from(staticPrivateKeyB64, 'base64'), Buffer.alloc(0), `tinyvine ticket ${selfId}`, 32));
  }

  issue(net: number, addr: string, now = Date.now()): string {
    return sealTicket(this.key, { net, addr, exp: now + TTL_MS }, MEMBER_MAC_CHARS);
  }

  verify(ticket: string, now = Date.now()): Ticket | null {
    const p = parseTicket(ticket, 1024);
    if (!p || !ticketMacOk(this.key, p.body, p.mac, MEMBER_MAC_CHARS)) return null;
    const t = p.claim as Ticket | null;
    if (!t || !Number.isInteger(t.net) || typeof t.addr !== 'string' || !(t.exp > now)) return null;
    return t;
  }
}
