// Direct-path introductions: when this FullVR forwards between two members it holds sessions
// with (its own or shortcut members of one network), it tells each about the other (CTRL
// "direct": overlay addresses, the TinyVR's direct-path key, and its endpoint as we see it,
// i.e. its NAT mapping), so they can open a session straight to each other and leave us off
// the path (tinyvr/direct-paths.ts). The responder is told first: it punches its NAT open
// towards the initiator before the initiator's handshake arrives.
//
// The datapath reports member-to-member decisions it makes in JS (first packets of a flow;
// the engine forwards the rest from its verdict cache); a member may also ask again for a
// peer it knew (CTRL "direct" with an address). Each pair is introduced at most once per
// INTRO_EVERY_MS, so neither a busy flow nor a chatty member costs more than that.
//
// An introduction holds only while both stay members of that network here: when one leaves
// (removed by an operator, expired, replaced, moved to another network), the other is told
// at once (CTRL "direct-revoke" with the gone member's key, sent at REVOKE_AT_MS in case one
// is lost, each time to the session the member holds then: it may be rejoining) and drops the
// path, so removal and isolation hold on direct paths too. A member also renews each open
// path every 10 s (CTRL "direct" with the peer's address and key): we answer with a new
// introduction while that peer is a member here, and with a revocation if we revoked that
// key (kept REVOKED_KEEP_MS) or the authority lists its address as removed from the network,
// so a revocation that never arrived holds at the next renewal.
//
// Only a departure that ends membership revokes: removal, a move, a replacement by another
// key, a member of ours gone silent. A peer's member on a shortcut that merely went idle here
// (its TinyVR closed the shortcut: its traffic takes the direct path now) is still a member
// at its own FullVR; its pairs are forgotten, not revoked.
import { log } from '../shared/log.js';
import type { Member, Members } from './members.js';

export const INTRO_EVERY_MS = 5000;
/** A revocation is sent at these delays (ms): a lost one must not keep a path open. */
export const REVOKE_AT_MS = [0, 300, 1000, 3000];
/** A revoked key is answered with a revocation this long (renewals come every 10 s). */
export const REVOKED_KEEP_MS = 10 * 60_000;
const REVOKED_MAX = 4096;

interface Introduced {
  net: number;
  /** the two sessions, the keys they were introduced by, and an address of each */
  a: number;
  aKey: string;
  aAddr: string;
  b: number;
  bKey: string;
  bAddr: string;
}

export interface DirectIntroOptions {
  members: Members;
  /** Send a CTRL payload on a member's session (false: it has no control keys). */
  send: (session: number, payload: Record<string, unknown>) => boolean;
  now?: () => number;
}

export class DirectIntros {
  /** pair key (pairKey) -> when that pair was last introduced */
  private last = new Map<number, number>();
  /** pairs introduced (pairKey -> who), for revocation */
  private introduced = new Map<number, Introduced>();
  /** keys revoked (network|key -> when), answered with a revocation when a member renews a path to one */
  private revoked = new Map<string, number>();
  revocations = 0;
  /** pairs the datapath reported since the last flush (initiator, responder) */
  private pending: Array<[number, number]> = [];
  private scheduled = false;
  intros = 0;

  constructor(private o: DirectIntroOptions) {}

  /** From the datapath: member session `from` sent to member session `to`. Cheap: most calls are a map lookup. */
  forwarded(from: number, to: number): void {
    const t = this.last.get(pairKey(from, to));
    if (t !== undefined && this.now() - t < INTRO_EVERY_MS) return;
    this.pending.push([from, to]);
    if (this.scheduled) return;
    this.scheduled = true;
    // Not from inside the batch decision: the CTRL messages go out after the batch.
    setImmediate(() => this.flush());
  }

  /**
   * A member asked (CTRL "direct") to be introduced to the member holding `addr` again, or to
   * renew its path to the peer with `key`: a peer that is not (or no longer) that member of its
   * network here is revoked.
   */
  asked(from: number, addr: unknown, key?: unknown): void {
    const m = this.o.members.get(from);
    if (!m || typeof addr !== 'string') return;
    const to = this.o.members.byAddr(m.network, addr);
    // Revoked here, or removed by an operator (the authority tells every FullVR of the network,
    // also one that no longer held it): the asker must drop its path.
    if (typeof key === 'string' && to?.directKey !== key && (this.wasRevoked(m.network, key) || this.o.members.hasLeft(m.network, addr))) {
      this.revocations++;
      this.o.send(from, { op: 'direct-revoke', key });
    }
    if (to) this.introduce(m, to);
  }

  /**
   * Member `session` is gone here without leaving its network (a peer's member whose shortcut
   * went idle): its pairs are forgotten, their paths stand.
   */
  forget(session: number): void {
    this.forgetTimes(session);
    for (const [k, x] of this.introduced) if (x.a === session || x.b === session) this.introduced.delete(k);
  }

  flush(): void {
    this.scheduled = false;
    const pending = this.pending;
    this.pending = [];
    for (const [from, to] of pending) {
      const a = this.o.members.get(from);
      const b = this.o.members.get(to);
      if (a && b) this.introduce(a, b);
    }
  }

  /**
   * Member `session` left (or moved to another network): every member introduced to it
   * drops that path. Call before its session index can be reused.
   */
  revoke(session: number): void {
    this.forgetTimes(session);
    for (const [k, x] of this.introduced) {
      if (x.a !== session && x.b !== session) continue;
      this.introduced.delete(k);
      const goneIsA = x.a === session;
      const [otherSession, otherAddr, otherKey, goneKey, goneAddr] = goneIsA ? [x.b, x.bAddr, x.bKey, x.aKey, x.aAddr] : [x.a, x.aAddr, x.aKey, x.bKey, x.bAddr];
      // The same TinyVR rejoined on a new session (same key, same network): the path stands.
      const now = this.o.members.byAddr(x.net, goneAddr);
      if (now && now.session !== session && now.directKey === goneKey) {
        this.introduced.set(pairKey(now.session, otherSession), goneIsA ? { ...x, a: now.session } : { ...x, b: now.session });
        continue;
      }
      this.revocations++;
      this.remember(x.net, goneKey);
      log.info('direct path revoked', { member: otherAddr, peer: goneAddr, reason: 'its peer left or moved' });
      for (const ms of REVOKE_AT_MS) {
        const send = () => {
          // The same member (by key), on the session it holds now: it may have rejoined since.
          const other = this.o.members.byAddr(x.net, otherAddr);
          if (other?.directKey === otherKey) this.o.send(other.session, { op: 'direct-revoke', key: goneKey });
        };
        if (ms === 0) send();
        else setTimeout(send, ms).unref();
      }
    }
  }

  private introduce(a: Member, b: Member): void {
    if (a.session === b.session || a.network !== b.network || !a.directKey || !b.directKey) return;
    const k = pairKey(a.session, b.session);
    const now = this.now();
    const t = this.last.get(k);
    if (t !== undefined && now - t < INTRO_EVERY_MS) return;
    this.last.set(k, now);
    // Roles by key, not by who sent first: the FullVRs at both ends may introduce the same
    // pair at once (each forwards one direction), and must agree.
    const [ini, resp] = a.directKey < b.directKey ? [a, b] : [b, a];
    const about = (m: Member) => ({ op: 'direct', net: m.network, addrs: m.addresses, endpoint: m.endpoint, key: m.directKey });
    // The responder first: its punches should leave before the initiator's handshake arrives.
    if (!this.o.send(resp.session, { ...about(ini), initiate: false })) return;
    if (!this.o.send(ini.session, { ...about(resp), initiate: true })) return;
    this.introduced.set(k, { net: a.network, a: a.session, aKey: a.directKey, aAddr: a.address, b: b.session, bKey: b.directKey, bAddr: b.address });
    this.intros++;
    log.info('direct path introduced', { network: a.network, initiator: ini.address, responder: resp.address });
  }

  /** When session's pairs were last introduced (its index may be reused by another member). */
  private forgetTimes(session: number): void {
    for (const k of this.last.keys()) if (Math.floor(k / 65536) === session || k % 65536 === session) this.last.delete(k);
  }

  private remember(net: number, key: string): void {
    const now = this.now();
    this.revoked.delete(`${net}|${key}`);
    this.revoked.set(`${net}|${key}`, now);
    // Oldest first (insertion order): drop what expired, and the oldest beyond the cap.
    for (const [k, t] of this.revoked) {
      if (now - t <= REVOKED_KEEP_MS && this.revoked.size <= REVOKED_MAX) break;
      this.revoked.delete(k);
    }
  }

  private wasRevoked(net: number, key: string): boolean {
    const t = this.revoked.get(`${net}|${key}`);
    return t !== undefined && this.now() - t <= REVOKED_KEEP_MS;
  }

  private now(): number {
    return this.o.now ? this.o.now() : Date.now();
  }
}

/** One number per unordered pair of session indices (< 65536 each). */
function pairKey(a: number, b: number): number {
  return a < b ? a * 65536 + b : b * 65536 + a;
}
