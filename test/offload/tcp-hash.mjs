#!/usr/bin/env node
// TCP bulk transfer with a SHA-256 of what was sent and what arrived.
//   node tcp-hash.mjs recv HOST PORT        -> "LISTENING", then "RESULT {bytes, sha256}" at EOF
//   node tcp-hash.mjs send HOST PORT BYTES  -> "RESULT {bytes, sha256}" once all is written
// The data is an AES-256-CTR keystream under a random key: incompressible and never
// repeating, so a lost, duplicated or reordered segment changes the hash.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

const [mode, host, portS, bytesS] = process.argv.slice(2);
const port = Number(portS);
const result = (bytes, hash) => process.stdout.write(`RESULT ${JSON.stringify({ bytes, sha256: hash.digest('hex') })}\n`);

if (mode === 'recv') {
  const server = net.createServer((sock) => {
    const hash = createHash('sha256');
    let bytes = 0;
    sock.on('data', (d) => {
      bytes += d.length;
      hash.update(d);
    });
    sock.on('end', () => {
      result(bytes, hash);
      sock.end();
      server.close();
    });
  });
  server.listen(port, host, () => process.stdout.write('LISTENING\n'));
} else if (mode === 'send') {
  const total = Number(bytesS);
  const ks = createCipheriv('aes-256-ctr', randomBytes(32), randomBytes(16));
  const zeros = Buffer.alloc(1 << 20);
  const hash = createHash('sha256');
  let sent = 0;
  const sock = net.connect(port, host, () => {
    const write = () => {
      while (sent < total) {
        const chunk = ks.update(zeros.subarray(0, Math.min(zeros.length, total - sent)));
        hash.update(chunk);
        sent += chunk.length;
        if (!sock.write(chunk)) return void sock.once('drain', write);
      }
      sock.end(() => result(sent, hash));
    };
    write();
  });
  sock.on('error', (e) => {
    console.error(e.message);
    process.exit(1);
  });
} else {
  console.error('usage: tcp-hash.mjs recv HOST PORT | send HOST PORT BYTES');
  process.exit(2);
}
