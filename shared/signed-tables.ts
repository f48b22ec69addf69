// Routing tables pushed by the authority to FullVRs: a JSON body signed with the
// authority's Ed25519 key. A FullVR applies a table only if the signature verifies with
// the key in its config, the table names it, and the version is newer than what it has.
import { sign, verify, type KeyObject } from 'node:crypto';

export interface TablesBody {
  version: number;
  fullvr: number;
  peers: Array<{ id: number; endpoint?: string; publicKey: string; limited?: boolean }>;
  networks: Array<{
    id: number;
    name: string;
    mode: 'physical' | 'virtual';
    auth: 'hmac' | 'gmac' | 'aes-gcm' | 'chacha' | 'none';
    overlay?: string;
    sites: Array<{ name: string; subnet: string; vr: number }>;
    lan?: string[];
  }>;
  /** Hosts the authority placed at this FullVR: address -> network (merge/split relabel them). */
  members: Array<{ network: number; address: string }>;
  /** Addresses an operator removed from their network: drop them, refuse their rejoin. */
  left?: Array<{ network: number; address: string }>;
  revokedTokens: string[];
}

export interface SignedTables {
  body: string;
  sig: string;
}

export class TablesError extends Error {}

export function signTables(key: KeyObject, body: TablesBody): SignedTables {
  const text = JSON.stringify(body);
  return { body: text, sig: sign(null, Buffer.from(text), key).toString('base64') };
}

export function verifyTables(pub: KeyObject, t: unknown, selfId: number, currentVersion: number): TablesBody {
  const s = t as SignedTables;
  if (typeof s?.body !== 'string' || typeof s?.sig !== 'string') throw new TablesError('tables message is malformed');
  let ok = false;
  try {
    ok = verify(null, Buffer.from(s.body), pub, Buffer.from(s.sig, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) throw new TablesError('tables signature does not verify with the authority key');
  const body = JSON.parse(s.body) as TablesBody;
  if (!Number.isInteger(body.version) || body.fullvr !== selfId) throw new TablesError(`tables are for FullVR ${body.fullvr}, not ${selfId}`);
  if (body.version <= currentVersion) throw new TablesError(`tables version ${body.version} is not newer than ${currentVersion}`);
  if (!Array.isArray(body.peers) || !Array.isArray(body.networks) || !Array.isArray(body.members) || !Array.isArray(body.revokedTokens)) {
    throw new TablesError('tables body is malformed');
  }
  return body;
}
