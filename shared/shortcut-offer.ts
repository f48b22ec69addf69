// A shortcut offer, as a FullVR's join answer carries it (`shortcuts: [...]`): a peer FullVR
// the member may also open a session to, for the traffic to that peer's sites.
export interface ShortcutOffer {
  /** the peer's VR id */
  vr: number;
  /** its UDP endpoint, "host:port" */
  endpoint: string;
  /** its X25519 static public key, base64 */
  publicKey: string;
  /** the subnets it serves in the member's network: what may be sent to it directly */
  routes: string[];
  /** the member's own FullVR vouching for it to that peer (opaque to the member) */
  ticket: string;
}

/** A member keeps a shortcut alive with a keepalive this often... */
export const SHORTCUT_KEEPALIVE_MS = 1000;
/** ...and stops using it after this much silence; the peer FullVR forgets it a second later,
 * so traffic back to the member falls back to the member's own FullVR as quickly. */
export const SHORTCUT_SILENCE_MS = 3000;

/** The well-formed offers of a join answer (anything else is ignored: shortcuts are optional). */
export function shortcutOffers(v: unknown): ShortcutOffer[] {
  if (!Array.isArray(v)) return [];
  return v.filter(
    (o): o is ShortcutOffer =>
      !!o &&
      typeof o === 'object' &&
      Number.isInteger(o.vr) &&
      typeof o.endpoint === 'string' &&
      typeof o.publicKey === 'string' &&
      typeof o.ticket === 'string' &&
      Array.isArray(o.routes) &&
      o.routes.every((r: unknown) => typeof r === 'string'),
  );
}
