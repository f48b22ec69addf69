// TinyVR configuration: YAML (JSON is valid YAML) validated with zod strict objects, so unknown
// keys are errors. Every problem becomes one line "file: field: message" in a ConfigError.
import { z } from 'zod';
import { ConfigError, DEFAULT_MODERATION_US, readConfigFile, runSchema, zEndpoint, zIfName, zKeepalive, zKey32, zModerationMicros, zShortcutIdleSeconds, zToken } from '../shared/config-error.js';

export const TinyvrConfigSchema = z.strictObject({
  // the FullVR to join: "host:port" or "[v6]:port"; a host name is resolved at startup
  fullvr: zEndpoint(false),
  // the FullVR's X25519 static public key, base64 (authenticates the FullVR in the handshake)
  fullvrKey: zKey32,
  // join token issued by the FullVR operator (secret; decides which network this VM joins)
  token: zToken,
  // local TUN device
  tun: z.strictObject({ name: zIfName.default('tvn0') }).default({ name: 'tvn0' }),
  // a second FullVR to move to when the first stops answering (within 5 s); the TinyVR keeps
  // its overlay address, so TCP connections crossing the overlay survive the move
  secondary: z
    .strictObject({
      fullvr: zEndpoint(false),
      fullvrKey: zKey32,
      // token for the secondary (default: the same token)
      token: zToken.optional(),
    })
    .optional(),
  // keepalive interval in seconds (1..25: keeps NAT mappings alive, most expire after 30 s)
  keepaliveSeconds: zKeepalive.default(10),
  // optional path where the TinyVR writes its state as JSON ({"state": "joined", "address": ...}),
  // atomically on every change; the join script waits on it
  statusFile: z.string().min(1).optional(),
  // optional file keeping the FullVR's rejoin ticket across restarts (a single-use join token
  // cannot be presented twice; the ticket lets a restarted TinyVR rejoin)
  ticketFile: z.string().min(1).optional(),
  // optional local HTTP status endpoint (JSON), e.g. "127.0.0.1:4791"; omit to disable
  control: zEndpoint(false).optional(),
  // give up when the FullVR does not answer the first join within this many seconds
  joinTimeoutSeconds: z.number().min(1).max(3600).int().default(15),
  // wake-up moderation, microseconds (0: off): under a steady bulk load (~0.45-1.7 Gbit/s)
  // drain the TUN and socket every this often instead of waking per packet; less CPU,
  // packets wait up to this long more. Idle paths and request/response traffic are not moderated.
  moderationMicros: zModerationMicros.default(DEFAULT_MODERATION_US),
  // shortcuts: where our FullVR offers it, also open a session straight to the FullVR of
  // another site and send that site's traffic there (one FullVR fewer on the path); whatever
  // has no live shortcut goes through our FullVR. false: everything goes through our FullVR.
  shortcuts: z.boolean().default(true),
  // a shortcut is opened when this VM first sends to that site, and closed again after this
  // many seconds without a packet either way (its traffic goes through our FullVR until the
  // next packet opens it again); 0: keep it open once opened
  shortcutIdleSeconds: zShortcutIdleSeconds.default(60),
  // direct paths: where a FullVR introduces us to another member we exchange traffic with
  // (its config `directPaths: true`), open a session straight to that member's TinyVR through
  // both NATs, so that traffic crosses no FullVR; closed after shortcutIdleSeconds unused.
  // Whatever has no live direct path goes the FullVR way. false: never.
  direct: z.boolean().default(true),
});

export type TinyvrConfig = z.output<typeof TinyvrConfigSchema>;

/** Read, parse and validate a TinyVR config file. Throws ConfigError. */
export function loadTinyvrConfig(path: string): TinyvrConfig {
  return parseTinyvrConfig(readConfigFile(path), path);
}

/**
 * Read a config file without validating it, for callers that merge command-line flags into it
 * before parseTinyvrConfig. Throws ConfigError (unreadable file, bad YAML, not a mapping).
 */
export function loadTinyvrRaw(path: string): Record<string, unknown> {
  const raw = readConfigFile(path);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(path, `${path}: expected a mapping (key: value) at top level, got ${Array.isArray(raw) ? 'a list' : typeof raw}`);
  }
  return { ...(raw as Record<string, unknown>) };
}

/** Validate an already-parsed config object; `sourceName` names it in error messages. */
export function parseTinyvrConfig(obj: unknown, sourceName: string): TinyvrConfig {
  // Nothing cross-field to check beyond the schema.
  return runSchema(TinyvrConfigSchema, obj, sourceName, () => []);
}
