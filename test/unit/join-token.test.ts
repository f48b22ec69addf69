import { describe, expect, it } from 'vitest';
import { generateSigningKey, issueToken, loadSigningKey, loadVerifyKey, newTokenId, TokenError, verifyToken } from '../../shared/join-token.js';
import { FullvrTokens } from '../../fullvr/tokens.js';
import { MemberTickets } from '../../fullvr/tickets.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const k = generateSigningKey();
const sk = loadSigningKey(k.privateKey);
const pub = loadVerifyKey(k.publicKey);

describe('join tokens', () => {
  it('round trip keeps the claims', () => {
    const { token, claims } = issueToken(sk, { network: 7, fullvr: 3, ttlSeconds: 60, singleUse: true });
    expect(verifyToken(pub, token)).toEqual(claims);
  });
  it('rejects tampering anywhere, another authority, expiry and garbage', () => {
    const { token } = issueToken(sk, { network: 7, ttlSeconds: 60 });
    for (let i = 5; i < token.length; i += 7) {
      const t = token.slice(0, i) + (token[i] === 'x' ? 'y' : 'x') + token.slice(i + 1);
      if (t === token) continue;
      expect(() => verifyToken(pub, t)).toThrow(TokenError);
    }
    const other = loadVerifyKey(generateSigningKey().publicKey);
    expect(() => verifyToken(other, token)).toThrow(/signature/);
    const old = issueToken(sk, { network: 7, ttlSeconds: 60, now: Date.now() - 120_000 }).token;
    expect(() => verifyToken(pub, old)).toThrow(/expired/);
    for (const g of ['', 'tvt1.', 'tvt1.a.b', 'x.y.z', 'tvt1.' + 'A'.repeat(3000) + '.b']) expect(() => verifyToken(pub, g)).toThrow(TokenError);
  });
});

describe('token ids', () => {
  it('are 96 random bits in base64url and never start with "-" (a CLI argument would read as an option)', () => {
    // A plain base64url id starts with "-" one time in 64: 4,000 ids would hold ~60 of them.
    const ids = Array.from({ length: 4000 }, () => newTokenId());
    expect(ids.filter((id) => id.startsWith('-'))).toEqual([]);
    expect(ids.every((id) => /^[A-Za-z0-9_-]{16}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.some((id) => id.includes('-'))).toBe(true); // the alphabet is still base64url
  });
});

describe('FullVR token verifier', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-tokens-'));
  const mk = () => new FullvrTokens({ statics: [{ token: 'static-token-0123456789', network: 1 }], authorityKey: pub, selfId: 3, servedNetworks: new Set([1, 7]), stateDir: dir });

  it('checks network, FullVR scope and single use (persisted across restarts)', () => {
    const v = mk();
    expect(v.verify(issueToken(sk, { network: 9, ttlSeconds: 60 }).token)).toMatchObject({ reason: 'wrong_network' });
    expect(v.verify(issueToken(sk, { network: 7, fullvr: 4, ttlSeconds: 60 }).token)).toMatchObject({ reason: 'wrong_fullvr' });
    const once = issueToken(sk, { network: 7, fullvr: 3, ttlSeconds: 60, singleUse: true }).token;
    const g = v.verify(once);
    expect(g).toMatchObject({ network: 7, singleUseId: expect.any(String) });
    // verify() alone records nothing: a refused join must not burn the token.
    expect(v.verify(once)).toMatchObject({ network: 7 });
    v.consume(g as never);
    expect(v.verify(once)).toMatchObject({ reason: 'reused' });
    expect(mk().verify(once)).toMatchObject({ reason: 'reused' });
    expect(v.verify('static-token-0123456789')).toEqual({ network: 1 });
    expect(v.verify('static-token-0123456788')).toMatchObject({ reason: 'unknown_token' });
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('rejoin tickets', () => {
  it('are bound to the FullVR key and id, and expire', () => {
    const t = new MemberTickets(Buffer.alloc(32, 1).toString('base64'), 1);
    const ticket = t.issue(5, '10.1.0.11');
    expect(t.verify(ticket)).toMatchObject({ net: 5, addr: '10.1.0.11' });
    expect(new MemberTickets(Buffer.alloc(32, 2).toString('base64'), 1).verify(ticket)).toBeNull();
    expect(new MemberTickets(Buffer.alloc(32, 1).toString('base64'), 2).verify(ticket)).toBeNull();
    expect(t.verify(ticket.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')))).toBeNull();
    expect(t.verify(t.issue(5, '10.1.0.11', Date.now() - 40 * 86400_000))).toBeNull();
  });
});
