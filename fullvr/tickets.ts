// Rejoin tickets: on a successful join the FullVR hands the member a ticket, bound to its
// network and address and MACed with a key derived from the FullVR's static key. A member
// whose session is lost (FullVR restart, NAT change) rejoins with it, so a single-use join
// token is never needed twice, and the FullVR keeps no state to honour it.
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

const TTL_MS = 30 * 24 * 3600 * 1000;

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
    const body = Buffer.from(JSON.stringify({ net, addr, exp: now + TTL_MS })).toString('base64url');
    return `${body}.${this.mac(body)}`;
  }

  verify(ticket: string, now = Date.now()): Ticket | null {
    const [body, mac, extra] = ticket.split('.');
    if (!body || !mac || extra !== undefined || ticket.length > 1024) return null;
    const want = Buffer.from(this.mac(body));
    const got = Buffer.from(mac);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return null;
    try {
      const t = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Ticket;
      if (!Number.isInteger(t.net) || typeof t.addr !== 'string' || !(t.exp > now)) return null;
      return t;
    } catch {
      return null;
    }
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url').slice(0, 32);
  }
}
