// Join credentials a FullVR accepts: tokens signed by the authority (verified offline with
// its public key, scoped to a network and optionally to this FullVR, expiring, possibly
// single-use) and, for hand-run deployments, static tokens from the config file.
import { timingSafeEqual, createHash, type KeyObject } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isSignedToken, TokenError, verifyToken } from '../shared/join-token.js';

export interface TokenGrant {
  network: number;
  /** Single-use token id: consume() it once the join is committed. */
  singleUseId?: string;
  singleUseExp?: number;
}

export type TokenRefusal = { error: string; reason: string };

export interface TokenVerifier {
  /** Returns the grant, or a one-line reason the token is refused. Pure: records nothing. */
  verify(token: string): TokenGrant | TokenRefusal;
  /** Record that a single-use grant was used. */
  consume(grant: TokenGrant): void;
  /** Refuse this token id from now on (authority revocation). */
  revoke?(jti: string): void;
  /** The networks this FullVR serves changed (authority tables). */
  setServedNetworks?(ids: Set<number>): void;
}

export class FullvrTokens implements TokenVerifier {
  // Static tokens are compared as digests so timing reveals nothing about a near-miss.
  private statics: Array<{ digest: Buffer; network: number }>;
  private used = new Map<string, number>(); // jti -> exp (Unix s)
  private revoked = new Set<string>();
  private usedFile: string | null;

  private readonly authorityKey?: KeyObject;
  private readonly selfId: number;
  private served: Set<number>;

  constructor(o: {
    statics: Array<{ token: string; network: number }>;
    authorityKey?: KeyObject;
    selfId: number;
    servedNetworks: Set<number>;
    stateDir?: string;
  }) {
    this.authorityKey = o.authorityKey;
    this.selfId = o.selfId;
    this.served = o.servedNetworks;
    this.statics = o.statics.map((t) => ({ digest: digest(t.token), network: t.network }));
    this.usedFile = o.stateDir ? join(o.stateDir, 'used-tokens') : null;
    if (this.usedFile) {
      mkdirSync(o.stateDir!, { recursive: true });
      try {
        const now = Date.now() / 1000;
        for (const line of readFileSync(this.usedFile, 'utf8').split('\n')) {
          const [jti, exp] = line.split(' ');
          if (jti && Number(exp) > now) this.used.set(jti, Number(exp));
        }
      } catch {
        /* first start */
      }
    }
  }

  verify(token: string): TokenGrant | TokenRefusal {
    if (isSignedToken(token)) {
      if (!this.authorityKey) return { error: 'this FullVR does not accept authority-signed tokens (no authority configured)', reason: 'no_authority' };
      try {
        const c = verifyToken(this.authorityKey, token);
        if (!this.served.has(c.net)) throw new TokenError(`join token is for network ${c.net}, which this FullVR does not serve`, 'wrong_network');
        if (c.vr !== null && c.vr !== this.selfId) throw new TokenError(`join token was issued for FullVR ${c.vr}, not this one (${this.selfId})`, 'wrong_fullvr');
        if (this.revoked.has(c.jti)) throw new TokenError('join token was revoked by an operator', 'revoked');
        if (c.su && this.used.has(c.jti)) throw new TokenError('single-use join token was already used', 'reused');
        return { network: c.net, ...(c.su ? { singleUseId: c.jti, singleUseExp: c.exp } : {}) };
      } catch (e) {
        if (e instanceof TokenError) return { error: e.message, reason: e.reason };
        throw e;
      }
    }
    const d = digest(token);
    for (const g of this.statics) if (timingSafeEqual(d, g.digest)) return { network: g.network };
    return { error: 'join token not accepted by this FullVR', reason: 'unknown_token' };
  }

  setServedNetworks(ids: Set<number>): void {
    this.served = ids;
  }

  revoke(jti: string): void {
    this.revoked.add(jti);
  }

  consume(grant: TokenGrant): void {
    if (!grant.singleUseId) return;
    this.used.set(grant.singleUseId, grant.singleUseExp ?? 0);
    if (this.usedFile) appendFileSync(this.usedFile, `${grant.singleUseId} ${grant.singleUseExp}\n`);
    // Forget ids whose tokens expired: they cannot be presented again anyway.
    if (this.used.size > 10_000) {
      const now = Date.now() / 1000;
      for (const [k, exp] of this.used) if (exp <= now) this.used.delete(k);
    }
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
