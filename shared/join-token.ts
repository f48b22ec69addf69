// Join tokens: issued and signed (Ed25519) by the download server ("ViNe Authority"),
// verified offline by FullVRs that know the authority's public key.
//
//   tvt1.<base64url(JSON claims)>.<base64url(signature over "tvt1.<claims>")>
//
// Claims are scoped to one network and (optionally) one FullVR, expire, and may be
// single-use. A token is a bearer credential: the TinyVR sends it only inside the
// encrypted handshake, never in clear.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';

export interface TokenClaims {
  /** Network (ViNe ID) the bearer may join. */
  net: number;
  /** FullVR the token is scoped to; null: any FullVR serving the network. */
  vr: number | null;
  /** Expiry, Unix seconds. */
  exp: number;
  /** Issued at, Unix seconds. */
  iat: number;
  /** Unique id (single-use bookkeeping, revocation). */
  jti: string;
  /** Single use: a FullVR admits it once. */
  su: boolean;
}

const PREFIX = 'tvt1.';
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');

export class TokenError extends Error {
  constructor(
    message: string,
    readonly reason: 'malformed' | 'bad_signature' | 'expired' | 'wrong_network' | 'wrong_fullvr' | 'reused' | 'revoked',
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicB64: string;
}

/**
 * A random token id (96 bits, base64url) that does not start with "-": operators paste ids
 * into `tinyvine authority token revoke <id>`, where a leading "-" reads as an option.
 */
export function newTokenId(): string {
  for (;;) {
    const id = randomBytes(12).toString('base64url');
    if (id[0] !== '-') return id; // rejection keeps the other ids uniform
  }
}

export function generateSigningKey(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(ED25519_PKCS8.length).toString('base64'),
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(ED25519_SPKI.length).toString('base64'),
  };
}

export function loadSigningKey(privateB64: string): SigningKey {
  const raw = Buffer.from(privateB64, 'base64');
  if (raw.length !== 32) throw new Error('authority signing key must be 32 bytes of base64');
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8, raw]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey);
  const publicB64 = publicKey.export({ format: 'der', type: 'spki' }).subarray(ED25519_SPKI.length).toString('base64');
  return { privateKey, publicKey, publicB64 };
}

export function loadVerifyKey(publicB64: string): KeyObject {
  const raw = Buffer.from(publicB64, 'base64');
  if (raw.length !== 32) throw new Error('authority public key must be 32 bytes of base64');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI, raw]), format: 'der', type: 'spki' });
}

export function issueToken(
  key: SigningKey,
  o: { network: number; fullvr?: number | null; ttlSeconds: number; singleUse?: boolean; now?: number },
): { token: string; claims: TokenClaims } {
  const now = Math.floor((o.now ?? Date.now()) / 1000);
  const claims: TokenClaims = {
    net: o.network,
    vr: o.fullvr ?? null,
    exp: now + o.ttlSeconds,
    iat: now,
    jti: newTokenId(),
    su: !!o.singleUse,
  };
  const body = PREFIX + Buffer.from(JSON.stringify(claims)).toString('base64url');
  const sig = sign(null, Buffer.from(body), key.privateKey).toString('base64url');
  return { token: `${body}.${sig}`, claims };
}

export function isSignedToken(token: string): boolean {
  return token.startsWith(PREFIX);
}

/** Verify signature and expiry; scope checks (network, FullVR, single use) are the caller's. */
export function verifyToken(pub: KeyObject, token: string, now = Date.now()): TokenClaims {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== 'tvt1' || token.length > 2048) throw new TokenError('join token is malformed', 'malformed');
  const body = `${parts[0]}.${parts[1]}`;
  let ok = false;
  try {
    ok = verify(null, Buffer.from(body), pub, Buffer.from(parts[2], 'base64url'));
  } catch {
    ok = false;
  }
  if (!ok) throw new TokenError('join token signature is invalid (tampered, or signed by another authority)', 'bad_signature');
  let c: TokenClaims;
  try {
    c = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as TokenClaims;
  } catch {
    throw new TokenError('join token is malformed', 'malformed');
  }
  if (
    typeof c !== 'object' ||
    c === null ||
    !Number.isInteger(c.net) ||
    !Number.isInteger(c.exp) ||
    typeof c.jti !== 'string' ||
    (c.vr !== null && !Number.isInteger(c.vr))
  ) {
    throw new TokenError('join token is malformed', 'malformed');
  }
  if (c.exp * 1000 <= now) throw new TokenError(`join token expired at ${new Date(c.exp * 1000).toISOString()}`, 'expired');
  return c;
}
