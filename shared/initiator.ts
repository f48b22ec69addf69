// The initiating side of a handshake, with retries: a TinyVR joining its FullVR, or a
// FullVR opening a session to a peer FullVR. Each attempt uses a fresh session index so a
// late RESP to an abandoned attempt can never be mistaken for the current one.
import { createInit, consumeResp, HandshakeError, type InitiatorState, type StaticKey } from './handshake.js';
import type { PacketEngine } from './packet-engine.js';
import type { SessionIndexAllocator } from './session-index.js';

export interface Established {
  index: number;
  remoteIndex: number;
  remoteSenderId: number;
  txKey: Buffer;
  rxKey: Buffer;
  payload: Record<string, unknown>;
  /** INIT→RESP round trip of the attempt that succeeded (ms); absent on the responder side. */
  rttMs?: number;
}

export interface InitiatorOptions {
  engine: PacketEngine;
  indices: SessionIndexAllocator;
  responderPublic: Buffer;
  initiatorStatic?: StaticKey;
  senderId: number;
  host: string;
  port: number;
  payload: () => Record<string, unknown>;
  /** Called once per successful handshake; the caller installs the session in the engine. */
  onEstablished: (s: Established) => void;
  /** Called when the responder answered but refused (payload.error). */
  onRefused?: (reason: string) => void;
  firstRetryMs?: number;
  maxRetryMs?: number;
}

interface Pending {
  state: InitiatorState;
  sentAt: number;
}

export class Initiator {
  private pending = new Map<number, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private retryMs: number;
  private running = false;
  attempts = 0;

  constructor(private o: InitiatorOptions) {
    this.retryMs = o.firstRetryMs ?? 500;
  }

  get active(): boolean {
    return this.running;
  }

  /** Start (or restart) handshaking now; no-op if already trying. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.retryMs = this.o.firstRetryMs ?? 500;
    this.attempt();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const idx of this.pending.keys()) this.o.indices.release(idx);
    this.pending.clear();
  }

  setEndpoint(host: string, port: number): void {
    this.o.host = host;
    this.o.port = port;
  }

  private attempt(): void {
    if (!this.running) return;
    this.attempts++;
    const now = Date.now();
    // Abandon attempts older than 10 s; their index goes back to the pool.
    for (const [idx, p] of this.pending) {
      if (now - p.sentAt > 10_000) {
        this.pending.delete(idx);
        this.o.indices.release(idx);
      }
    }
    const index = this.o.indices.allocate();
    const { message, state } = createInit({
      responderPublic: this.o.responderPublic,
      initiatorStatic: this.o.initiatorStatic,
      index,
      senderId: this.o.senderId,
      payload: this.o.payload(),
    });
    this.pending.set(index, { state, sentAt: now });
    try {
      this.o.engine.sendRaw(this.o.host, this.o.port, message);
    } catch {
      /* unreachable network: the retry timer tries again */
    }
    this.timer = setTimeout(() => this.attempt(), this.retryMs);
    this.timer.unref();
    this.retryMs = Math.min(this.retryMs * 2, this.o.maxRetryMs ?? 4000);
  }

  /** Offer a RESP; returns true when it belonged to one of our attempts. */
  handleResp(receiverIndex: number, message: Buffer): boolean {
    const p = this.pending.get(receiverIndex);
    if (!p) return false;
    let r;
    try {
      r = consumeResp(p.state, message);
    } catch (e) {
      if (e instanceof HandshakeError) return false;
      throw e;
    }
    this.pending.delete(receiverIndex);
    const error = r.payload.error;
    if (typeof error === 'string') {
      this.o.indices.release(receiverIndex);
      this.o.onRefused?.(error);
      return true;
    }
    // Success: the other pending attempts are moot.
    for (const idx of this.pending.keys()) this.o.indices.release(idx);
    this.pending.clear();
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.o.onEstablished({
      rttMs: Date.now() - p.sentAt,
      index: receiverIndex,
      remoteIndex: r.remoteIndex,
      remoteSenderId: r.senderId,
      txKey: r.txKey,
      rxKey: r.rxKey,
      payload: r.payload,
    });
    return true;
  }
}
