// Join credentials a FullVR accepts. For now they come from the FullVR's config file;
// the download server's signed tokens plug in behind the same verify() call.
import { timingSafeEqual, createHash } from 'node:crypto';

export interface TokenGrant {
  network: number;
}

export interface TokenVerifier {
  /** Returns the grant, or a one-line reason the token is refused. */
  verify(token: string): TokenGrant | { error: string };
}

export class StaticTokens implements TokenVerifier {
  // Compare digests, not strings, so timing reveals nothing about a near-miss.
  private grants: Array<{ digest: Buffer; network: number }>;

  constructor(tokens: Array<{ token: string; network: number }>) {
    this.grants = tokens.map((t) => ({ digest: digest(t.token), network: t.network }));
  }

  verify(token: string): TokenGrant | { error: string } {
    const d = digest(token);
    for (const g of this.grants) if (timingSafeEqual(d, g.digest)) return { network: g.network };
    return { error: 'join token not accepted by this FullVR' };
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
