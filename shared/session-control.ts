// Authenticated control messages over an established session (wire type 6, CTRL): between
// FullVRs ("I now serve host 10.1.0.11 of network 1" after a TinyVR failed over to us), and
// between a FullVR and its members (direct-path introductions, tinyvr/direct-paths.ts). The
// MAC key is derived from that session's data keys, so only the router we handshook with
// can produce them; a counter (time-based) refuses replays. Both routers use this module.
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { encodeHeader, HEADER_LEN, MsgType } from './wire.js';
import type { PacketEngine } from './packet-engine.js';

const TAG = 16;

interface Keys {
  tx: Buffer;
  rx: Buffer;
  remoteIndex: number;
  /** the other side's VR id (a member: any number the caller chooses, e.g. -1) */
  vr: number;
}

function derive(k: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', k, Buffer.alloc(0), 'tinyvine vr control', 32));
}

export class SessionControl {
  private keys = new Map<number, Keys>();
  /** per session: the data keys, and so the MAC key, are the session's own */
  private lastCounter = new Map<number, bigint>();
  private lastSent = 0n;

  constructor(private selfId: number) {}

  register(session: number, o: { txKey: Buffer; rxKey: Buffer; remoteIndex: number; vr: number }): void {
    this.keys.set(session, { tx: derive(o.txKey), rx: derive(o.rxKey), remoteIndex: o.remoteIndex, vr: o.vr });
  }

  unregister(session: number): void {
    this.keys.delete(session);
    this.lastCounter.delete(session);
  }

  encode(session: number, payload: Record<string, unknown>): Buffer | null {
    const k = this.keys.get(session);
    if (!k) return null;
    // Strictly increasing, across restarts too: wall-clock microseconds, or one more than the
    // last when several go out within a microsecond (a wrapping sequence could step back).
    const wall = BigInt(Date.now()) * 1000n;
    const counter = (this.lastSent = wall > this.lastSent ? wall : this.lastSent + 1n);
    const body = Buffer.from(JSON.stringify(payload));
    const hdr = encodeHeader({ type: MsgType.QUEUE, mode: 0, hops: 0, receiverIndex: k.remoteIndex, senderId: this.selfId, networkId: 0, counter });
    const tag = createHmac('sha256', k.tx).update(hdr).update(body).digest().subarray(0, TAG);
    return Buffer.concat([hdr, body, tag]);
  }

  /**
   * Encode and send a CTRL on `session` to the endpoint the engine knows for it (its latest,
   * NAT rebinding included). False when the session has no control keys or is gone, or the
   * send failed (unreachable): callers retry on their own schedule.
   */
  send(engine: Pick<PacketEngine, 'sessionInfo' | 'sendRaw'>, session: number, payload: Record<string, unknown>): boolean {
    const m = this.encode(session, payload);
    const info = m ? engine.sessionInfo(session) : null;
    if (!m || !info) return false;
    try {
      engine.sendRaw(info.peerHost, info.peerPort, m);
      return true;
    } catch {
      return false;
    }
  }

  /** Verify a CTRL datagram; returns the sending VR, our session and the payload, or null (forged, replayed, malformed). */
  decode(msg: Buffer): { vr: number; session: number; payload: Record<string, unknown> } | null {
    if (msg.length < HEADER_LEN + TAG + 2) return null;
    const session = msg.readUInt32BE(4);
    const k = this.keys.get(session);
    if (!k) return null;
    const body = msg.subarray(HEADER_LEN, msg.length - TAG);
    const want = createHmac('sha256', k.rx).update(msg.subarray(0, HEADER_LEN)).update(body).digest().subarray(0, TAG);
    if (!timingSafeEqual(want, msg.subarray(msg.length - TAG))) return null;
    const counter = msg.readBigUInt64BE(16);
    if (counter <= (this.lastCounter.get(session) ?? 0n)) return null;
    this.lastCounter.set(session, counter);
    try {
      const p = JSON.parse(body.toString('utf8'));
      return typeof p === 'object' && p !== null && !Array.isArray(p) ? { vr: k.vr, session, payload: p } : null;
    } catch {
      return null;
    }
  }
}
