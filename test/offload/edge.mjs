#!/usr/bin/env node
// Test driver: one TinyVR-like edge (TUN <-> UDP with one fixed session, no router,
// no handshake) on the raw native addon, for the offload tests and benchmark. Runs
// inside a network namespace (ip netns exec); the harness is test/offload/pair.ts.
//
//   TINYVINE_NATIVE=build/Release/tinyvine_native.node node edge.mjs '<json config>'
//
// Config: { tun, addr4, addr6, mtu, bind, port, peer, peerPort, offload, gro, gso,
//           mode, txKey, rxKey, batch }. Prints "READY {...}" once up and
// "STATS {...}" on SIGTERM, then exits.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const cfg = JSON.parse(process.argv[2] ?? '{}');
if (!process.env.TINYVINE_NATIVE) throw new Error('TINYVINE_NATIVE must name the built addon');
const addon = createRequire(import.meta.url)(process.env.TINYVINE_NATIVE);
const { SLOT_SIZE, META_FIELDS, ADDR_STRIDE } = addon.constants;
const M_KIND = 1, M_ACTION = 5, M_OUTNET = 6;
const KIND_DATA = 1, ACTION_TUN = 0, SESSION = 1, NETWORK = 1;

const tun = addon.openTun(cfg.tun, cfg.offload ? 1 : 0);
const udp = addon.openUdp(cfg.bind, cfg.port, 8 << 20, cfg.gro ? 1 : 0);
const engine = new addon.Engine(udp.fd, tun.fd, cfg.mtu, tun.offload ? 1 : 0, cfg.gso ? 1 : 0);
engine.setSession(SESSION, cfg.peer, cfg.peerPort, SESSION, 1, cfg.mode, Buffer.from(cfg.txKey, 'hex'), Buffer.from(cfg.rxKey, 'hex'));

const ip = (...args) => execFileSync('ip', args, { stdio: 'pipe' });
ip('addr', 'add', cfg.addr4, 'dev', tun.name);
if (cfg.addr6) ip('-6', 'addr', 'add', cfg.addr6, 'dev', tun.name, 'nodad');
ip('link', 'set', 'dev', tun.name, 'mtu', String(cfg.mtu), 'txqueuelen', '1000', 'up');

function batch(cap) {
  return { cap, buf: Buffer.alloc(cap * SLOT_SIZE), meta: new Int32Array(cap * META_FIELDS), addr: Buffer.alloc(cap * ADDR_STRIDE) };
}

// Same shape as shared/pump.ts: a bounded number of full batches per wake-up.
function pump(b, read, decide) {
  return () => {
    for (let k = 0; k < 16; k++) {
      const n = read(b);
      if (n <= 0) return;
      decide(b, n);
      engine.forward(b.buf, b.meta, n);
      if (n < b.cap) return;
    }
  };
}

const cap = cfg.batch ?? 256;
engine.onTunReadable(
  pump(batch(cap), (b) => engine.tunRead(b.buf, b.meta), (b, n) => {
    const m = b.meta;
    for (let i = 0, o = 0; i < n; i++, o += META_FIELDS) {
      if (m[o + M_KIND] === KIND_DATA) {
        m[o + M_ACTION] = SESSION;
        m[o + M_OUTNET] = NETWORK;
      }
    }
  }),
);
engine.onUdpReadable(
  pump(batch(cap), (b) => engine.udpRecv(b.buf, b.meta, b.addr), (b, n) => {
    const m = b.meta;
    for (let i = 0, o = 0; i < n; i++, o += META_FIELDS) if (m[o + M_KIND] === KIND_DATA) m[o + M_ACTION] = ACTION_TUN;
  }),
);

process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, tun, udp: { port: udp.port, gro: udp.gro }, features: engine.features() })}\n`);
process.on('SIGTERM', () => {
  const stats = { ...engine.stats(), udp_gso_enabled: engine.features().udpGso ? 1 : 0 };
  process.stdout.write(`STATS ${JSON.stringify(stats)}\n`);
  engine.close();
  process.exit(0);
});
