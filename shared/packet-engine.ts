// Typed wrapper over the native packet engine (shared/native/*.c, built to
// build/Release/tinyvine_native.node). See docs/interfaces.md for the contract
// and docs/wire-format.md for what goes on the wire.
//
// Hot-path methods (udpRecv, tunRead, forward) are one native call per batch;
// keep them free of per-packet allocation on the JS side too.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from './user-error.js';

export const SLOT_SIZE = 2048;
export const HEADROOM = 64;
export const HEADER_LEN = 24;
export const TAG_LEN = 16;
export const META_FIELDS = 10;
/** udpPumpLocal's result flag: the returned batch holds CONTROL slots for the caller. */
export const PUMP_CONTROL = 0x10000;

const ADDR_STRIDE = 20;
const MAX_BATCH = 1024; // recvmmsg/sendmmsg accept at most UIO_MAXIOV messages

export const enum M { LEN = 0, KIND = 1, SESSION = 2, NETWORK = 3, OFF = 4, ACTION = 5, OUTNET = 6, SENDER = 7, HOPS = 8, TYPE = 9 }
export const enum Kind { DATA = 1, KEEPALIVE = 2, CONTROL = 3 }
export const enum DropReason { TRUNCATED = 1, BAD_VERSION = 2, BAD_TYPE = 3, UNKNOWN_SESSION = 4, BAD_MODE = 5, BAD_TAG = 6, REPLAY = 7, HOP_LIMIT = 8, OVERSIZE = 9 }
export const DROP_REASON_NAMES: readonly string[] = Object.freeze([
  '',
  'truncated',
  'bad_version',
  'bad_type',
  'unknown_session',
  'bad_mode',
  'bad_tag',
  'replay',
  'hop_limit',
  'oversize',
]);
export const enum Action { DROP = -1, TUN = 0 }
export const enum AuthMode { NONE = 0, HMAC = 1, AES_GCM = 2, CHACHA = 3, GMAC = 4 }

export interface SessionParams {
  peerHost: string;
  peerPort: number;
  remoteIndex: number;
  senderId: number;
  mode: AuthMode;
  txKey: Buffer;
  rxKey: Buffer;
}

export interface SessionInfo {
  lastRxMs: number;
  rxPackets: number;
  rxBytes: number;
  /** DATA datagrams among rxPackets (the rest are keepalives). */
  rxDataPackets: number;
  txPackets: number;
  txBytes: number;
  peerHost: string;
  peerPort: number;
}

interface NativeEngine {
  setSession(index: number, peerHost: string, peerPort: number, remoteIndex: number, senderId: number, mode: number, txKey: Buffer, rxKey: Buffer): void;
  setSessionEndpoint(index: number, host: string, port: number): void;
  deleteSession(index: number): void;
  setMtu(mtu: number): void;
  sessionInfo(index: number): SessionInfo | null;
  udpRecv(buf: Buffer, meta: Int32Array, addr: Buffer): number;
  tunRead(buf: Buffer, meta: Int32Array): number;
  forward(buf: Buffer, meta: Int32Array, n: number): void;
  tunPumpTo(buf: Buffer, meta: Int32Array, session: number, outnet: number): number;
  udpPumpLocal(buf: Buffer, meta: Int32Array, addr: Buffer, own4: Uint8Array, n4: number, own6: Uint8Array, n6: number): number;
  pumpTunNative(buf: Buffer, meta: Int32Array, cfg: Int32Array): void;
  pumpUdpNative(buf: Buffer, meta: Int32Array, addr: Buffer, cfg: Int32Array, own4: Uint8Array, own6: Uint8Array, onControl: (n: number) => void): void;
  routeUdpNative(buf: Buffer, meta: Int32Array, addr: Buffer, cfg: Int32Array, flags: Uint8Array, cb: (n: number) => void): void;
  routeTunNative(buf: Buffer, meta: Int32Array, cfg: Int32Array, flags: Uint8Array, cb: (n: number) => void): void;
  sendKeepalive(index: number): void;
  sendRaw(host: string, port: number, data: Uint8Array): void;
  onUdpReadable(cb: (() => void) | null): void;
  onTunReadable(cb: (() => void) | null): void;
  stats(): Record<string, number>;
  setModeration(us: number): void;
  features(): EngineFeatures;
  __tunInject(data: Uint8Array): void;
  __tunCapture(on: boolean): Buffer[];
  close(): void;
}

/** What the engine's offloads are doing (see docs/interfaces.md). */
export interface EngineFeatures {
  /** The TUN carries a virtio_net_hdr: TSO super-packets are segmented on read, TCP segments coalesced on write. */
  tunOffload: boolean;
  /** The UDP socket has UDP_GRO: one receive can carry many datagrams. */
  udpGro: boolean;
  /** Consecutive datagrams to one session go out as one UDP_SEGMENT send; false once the kernel refused it. */
  udpGso: boolean;
}

export interface TunHandle {
  fd: number;
  name: string;
  /** True if the TUN has IFF_VNET_HDR + TSO/checksum offload: pass it as PacketEngine's tunOffload. */
  offload: boolean;
  /** Why offload was asked for but not enabled (the TUN then works plain). */
  offloadError?: string;
}

interface NativeAddon {
  Engine: new (udpFd: number, tunFd: number, mtu: number, tunOffload: number, udpGso: number) => NativeEngine;
  openTun(name: string, offload: number): TunHandle;
  openUdp(host: string, port: number, bufferBytes: number, gro: number): { fd: number; port: number; gro: boolean };
  closeFd(fd: number): void;
  monotonicMs(): number;
  gmacImpl(): string;
  gmacBench(width: number, len: number, iters: number, rounds: number): number;
  __gmacTag(width: number, key: Uint8Array, nonce: Uint8Array, data: Uint8Array): Buffer;
  constants: Record<string, number>;
}

let addonCache: NativeAddon | undefined;

// Loaded lazily so that importing this module (constants, PacketBatch) works
// even where the addon is not built, e.g. for `tinyvine --help`.
function addon(): NativeAddon {
  if (addonCache) return addonCache;
  // Read by the engine (crypto.c) once per process; a typo would otherwise be ignored silently.
  const gmac = process.env.TINYVINE_GMAC;
  if (gmac !== undefined && gmac !== '' && gmac !== 'openssl' && gmac !== 'avx2') {
    throw new UserError(`TINYVINE_GMAC must be "openssl" or "avx2" (or unset), not "${gmac}"`);
  }
  // Relative to this file: shared/ in the source tree, dist/ once bundled; both one level below the root.
  const file = process.env.TINYVINE_NATIVE
    ? path.resolve(process.env.TINYVINE_NATIVE)
    : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../build/Release/tinyvine_native.node');
  if (!existsSync(file)) throw new Error(`native packet engine not built: run npm install (missing ${file})`);
  let mod: NativeAddon;
  try {
    mod = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (err) {
    const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    throw new Error(`native packet engine failed to load (${file}): ${msg}; run npm install`);
  }
  const c = mod.constants;
  if (!c || c.SLOT_SIZE !== SLOT_SIZE || c.HEADROOM !== HEADROOM || c.HEADER_LEN !== HEADER_LEN || c.TAG_LEN !== TAG_LEN ||
      c.META_FIELDS !== META_FIELDS || c.ADDR_STRIDE !== ADDR_STRIDE) {
    throw new Error(`native packet engine is out of date (${file}): run npm install`);
  }
  addonCache = mod;
  return mod;
}

function formatIPv6(a: Buffer, o: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(a.readUInt16BE(o + i * 2));
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on a tie.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (x: number[]) => x.map((v) => v.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

export class PacketBatch {
  readonly capacity: number;
  readonly buf: Buffer;
  readonly meta: Int32Array;
  readonly addr: Buffer;

  // 256: room for several 64 KB TSO super-packets (up to ~45 segments each) per tunRead.
  constructor(capacity = 256) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_BATCH) {
      throw new RangeError(`PacketBatch capacity must be an integer 1..${MAX_BATCH}, got ${capacity}`);
    }
    this.capacity = capacity;
    this.buf = Buffer.alloc(capacity * SLOT_SIZE);
    this.meta = new Int32Array(capacity * META_FIELDS);
    this.addr = Buffer.alloc(capacity * ADDR_STRIDE);
  }

  /** Source address of received datagram i (control plane only: allocates). */
  addrString(i: number): { host: string; port: number } {
    if (!Number.isInteger(i) || i < 0 || i >= this.capacity) throw new RangeError(`batch index ${i} out of range`);
    const a = this.addr, o = i * ADDR_STRIDE;
    const port = a.readUInt16BE(o + 16);
    let v4mapped = a[o + 10] === 0xff && a[o + 11] === 0xff;
    for (let k = 0; k < 10 && v4mapped; k++) if (a[o + k] !== 0) v4mapped = false;
    const host = v4mapped ? `${a[o + 12]}.${a[o + 13]}.${a[o + 14]}.${a[o + 15]}` : formatIPv6(a, o);
    return { host, port };
  }
}

/**
 * Opens a TUN (IFF_TUN|IFF_NO_PI, non-blocking, close-on-exec). An empty name lets the kernel pick one.
 * offload: also IFF_VNET_HDR (10-byte header) and TUNSETOFFLOAD(CSUM|TSO4|TSO6); if the kernel refuses,
 * the TUN is opened plain and the result says offload: false with offloadError.
 */
export function openTun(name: string, opts?: { offload?: boolean }): TunHandle {
  return addon().openTun(name, opts?.offload ? 1 : 0);
}

/**
 * Bound, non-blocking UDP socket. IPv4 host -> AF_INET; IPv6 host or '::' -> dual-stack AF_INET6.
 * gro (default true): enable UDP_GRO; the result says whether the kernel accepted it.
 */
export function openUdp(host: string, port: number, opts?: { bufferBytes?: number; gro?: boolean }): { fd: number; port: number; gro: boolean } {
  return addon().openUdp(host, port, opts?.bufferBytes ?? 4 * 1024 * 1024, opts?.gro === false ? 0 : 1);
}

export function closeFd(fd: number): void {
  addon().closeFd(fd);
}

/**
 * Batched UDP/TUN packet engine. It takes ownership of udpFd and tunFd: close()
 * closes them (a non-persistent TUN disappears with its fd).
 */
export class PacketEngine {
  readonly #n: NativeEngine;

  /**
   * tunOffload: whether tunFd carries a virtio_net_hdr (openTun(..., { offload: true }).offload);
   * omitted: detected from the fd, and a value contradicting the fd throws. udpGso (default true):
   * use UDP_SEGMENT when the kernel has it. UDP GRO follows the socket (openUdp's gro).
   */
  constructor(opts: { udpFd: number; tunFd?: number; mtu: number; tunOffload?: boolean; udpGso?: boolean }) {
    const tunOffload = opts.tunOffload === undefined ? -1 : opts.tunOffload ? 1 : 0;
    this.#n = new (addon().Engine)(opts.udpFd, opts.tunFd ?? -1, opts.mtu, tunOffload, opts.udpGso === false ? 0 : 1);
  }

  /** index 1..65535; (re)sets counters and replay window. Keys: 32 bytes per direction (ignored for NONE). */
  setSession(index: number, s: SessionParams): void {
    this.#n.setSession(index, s.peerHost, s.peerPort, s.remoteIndex, s.senderId, s.mode, s.txKey, s.rxKey);
  }

  setSessionEndpoint(index: number, host: string, port: number): void {
    this.#n.setSessionEndpoint(index, host, port);
  }

  /** Largest inner packet sent to UDP, and the MSS clamp target (mtu - 40 / - 60). */
  setMtu(mtu: number): void {
    this.#n.setMtu(mtu);
  }

  deleteSession(index: number): void {
    this.#n.deleteSession(index);
  }

  /** lastRxMs is CLOCK_MONOTONIC ms (compare with monotonicMs()), 0 before the first packet; bytes are datagram bytes. */
  sessionInfo(index: number): SessionInfo | null {
    return this.#n.sessionInfo(index);
  }

  /**
   * recvmmsg + verify/decrypt; fills meta (and addr) for the n datagrams returned. With UDP GRO a
   * message carrying several datagrams fills several slots, each verified on its own; what does
   * not fit the batch is handed out first by the next call. Datagram i is at i * SLOT_SIZE + OFF,
   * and OFF may exceed SLOT_SIZE (received straight into a later slot, docs/interfaces.md).
   */
  udpRecv(batch: PacketBatch): number {
    return this.#n.udpRecv(batch.buf, batch.meta, batch.addr);
  }

  /**
   * Reads up to batch.capacity packets from the TUN: KIND=DATA, SESSION=-1, OFF=HEADROOM, ACTION=DROP.
   * With tunOffload a TSO super-packet becomes one slot per MSS-sized segment.
   */
  tunRead(batch: PacketBatch): number {
    return this.#n.tunRead(batch.buf, batch.meta);
  }

  /**
   * Per meta ACTION: drop, write to TUN, or seal in place and send (one sendmmsg batch). Consecutive
   * UDP-bound slots of one session with equal datagram size share a UDP_SEGMENT send; with tunOffload,
   * consecutive TCP segments of one flow share one GSO write to the TUN.
   */
  forward(batch: PacketBatch, n: number): void {
    this.#n.forward(batch.buf, batch.meta, n);
  }

  /**
   * An end host's fixed decision in one native call per wake-up (read + decide + forward, up to
   * 16 batches while they come full): every TUN packet goes to `session` with network `outnet`
   * (session <= 0: dropped). Returns the packets read.
   */
  tunPumpTo(batch: PacketBatch, session: number, outnet: number): number {
    return this.#n.tunPumpTo(batch.buf, batch.meta, session, outnet);
  }

  /**
   * Receives and forwards in one native call per wake-up: DATA addressed to one of the own
   * addresses (own4: n4 IPv4 addresses of 4 bytes, own6: n6 IPv6 of 16) goes to the TUN, other
   * DATA is dropped and counted (`not_for_me`), keepalives and drops are dropped. A batch that
   * holds CONTROL slots ends the call: the result is that batch's n with PUMP_CONTROL set, and
   * the caller handles its CONTROL slots. Otherwise the result is the last batch's n.
   */
  udpPumpLocal(batch: PacketBatch, own4: Uint8Array, n4: number, own6: Uint8Array, n6: number): number {
    return this.#n.udpPumpLocal(batch.buf, batch.meta, batch.addr, own4, n4, own6, n6);
  }

  /**
   * tunPumpTo run by the engine itself on every TUN wake-up, without a JS call: session
   * cfg[0] (<= 0: drop), network cfg[1]. JS changes the target by writing cfg. Replaces any
   * onTunReadable callback.
   */
  pumpTunNative(batch: PacketBatch, cfg: Int32Array): void {
    this.#n.pumpTunNative(batch.buf, batch.meta, cfg);
  }

  /**
   * udpPumpLocal run by the engine itself on every UDP wake-up, with own-address counts
   * cfg[2] (IPv4, in own4) and cfg[3] (IPv6, in own6). onControl(n) runs only for a batch
   * holding CONTROL slots, before the batch is reused. Replaces any onUdpReadable callback.
   */
  pumpUdpNative(batch: PacketBatch, cfg: Int32Array, own4: Uint8Array, own6: Uint8Array, onControl: (n: number) => void): void {
    this.#n.pumpUdpNative(batch.buf, batch.meta, batch.addr, cfg, own4, own6, onControl);
  }

  /**
   * A router's pump with a verdict cache in the engine: packets whose (session, network,
   * IP version, source, destination) have a cached verdict are forwarded without a JS call.
   * Verdicts are valid while gen[0] (bump it on every routing change; never 0) and the
   * engine's sessions are unchanged. cb(n) runs for a batch with a miss or a control
   * message: decide all n slots and set flags[i] = 1 (routed) or 2 (relayed) where the
   * verdict may be cached (0: not, e.g. drops). cb(n | PUMP_CONTROL) runs after such a batch
   * holding control messages was forwarded. Replaces any onUdpReadable callback.
   */
  routeUdpNative(batch: PacketBatch, gen: Int32Array, flags: Uint8Array, cb: (n: number) => void): void {
    this.#n.routeUdpNative(batch.buf, batch.meta, batch.addr, gen, flags, cb);
  }

  /** routeUdpNative for TUN reads (no control messages there). Replaces any onTunReadable callback. */
  routeTunNative(batch: PacketBatch, gen: Int32Array, flags: Uint8Array, cb: (n: number) => void): void {
    this.#n.routeTunNative(batch.buf, batch.meta, gen, flags, cb);
  }

  sendKeepalive(index: number): void {
    this.#n.sendKeepalive(index);
  }

  /** Control plane (INIT/RESP/ERROR): sends data as one datagram, unchanged. */
  sendRaw(host: string, port: number, data: Buffer): void {
    this.#n.sendRaw(host, port, data);
  }

  /** Level-triggered: cb runs while the socket has data, so drain it with udpRecv. */
  onUdpReadable(cb: () => void): void {
    this.#n.onUdpReadable(cb);
  }

  onTunReadable(cb: () => void): void {
    this.#n.onTunReadable(cb);
  }

  stats(): Record<string, number> {
    return this.#n.stats();
  }

  features(): EngineFeatures {
    return this.#n.features();
  }

  /**
   * Wake-up moderation: while wake-ups come densely and each brings few packets, drain the
   * fds every `us` µs from a timer instead of waking per packet (fewer context switches per
   * byte at moderate load; a packet then waits at most `us` longer). Idle and fully loaded
   * paths are not moderated. 0 turns it off; otherwise 10..100000.
   */
  setModeration(us: number): void {
    this.#n.setModeration(us);
  }

  /** Test hook: the next tunRead processes data (virtio_net_hdr + packet) as if read from the TUN. Needs tunOffload. */
  __tunInject(data: Uint8Array): void {
    this.#n.__tunInject(data);
  }

  /** Test hook: returns the TUN writes captured so far (virtio_net_hdr + packet each) and turns capturing on/off. */
  __tunCapture(on: boolean): Buffer[] {
    return this.#n.__tunCapture(on);
  }

  /** Stops polling, closes the fds, wipes session keys. Safe to call more than once. */
  close(): void {
    this.#n.close();
  }
}

/**
 * The GHASH behind the gmac mode on this machine: "avx512-vpclmulqdq" (ours, four blocks
 * per instruction), "avx2-vpclmulqdq" (ours, two blocks per instruction: VPCLMULQDQ without
 * AVX-512, or TINYVINE_GMAC=avx2) or "openssl" (no VPCLMULQDQ, or TINYVINE_GMAC=openssl).
 */
export function gmacImpl(): string {
  return addon().gmacImpl();
}

/**
 * Nanoseconds per AES-256-GMAC tag of `len` bytes through our GHASH of that width (512 or
 * 256) or OpenSSL's GCM core (0): the fastest of `rounds` rounds of `iters` tags, null where
 * the CPU lacks that width. For the benchmark.
 */
export function gmacNsPerTag(width: 0 | 256 | 512, len: number, iters = 2000, rounds = 20): number | null {
  const ns = addon().gmacBench(width, len, iters, rounds);
  return ns < 0 ? null : ns;
}

/**
 * Test hook: the AES-256-GMAC tag of data through our GHASH of that width (512 or 256 bits per
 * instruction; throws where the CPU lacks it) or OpenSSL's GCM core (0).
 */
export function gmacTagForTest(width: 0 | 256 | 512, key: Uint8Array, nonce: Uint8Array, data: Uint8Array): Buffer {
  return addon().__gmacTag(width, key, nonce, data);
}

/** CLOCK_MONOTONIC in ms: libuv's hrtime reads the same clock the engine stamps lastRxMs with. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
