// Download server configuration (YAML or JSON), validated like the routers' configs:
// unknown keys are errors and every problem is one line naming the file and field.
import { resolve, dirname } from 'node:path';
import { z } from 'zod';
import { readConfigFile, runSchema, type Problem, zEndpoint, zId, zKeepalive, zKey32, zModerationMicros, zPrefix, zShortcutIdleSeconds } from '../shared/config-error.js';

const FullvrSchema = z.strictObject({
  // the FullVR's VR id (as in its own config)
  id: zId,
  // where TinyVRs reach it over UDP (public address or name)
  endpoint: zEndpoint(false),
  // its X25519 public key, base64 (baked into the TinyVRs that join it)
  publicKey: zKey32,
  // where it runs, in the catalog's words (e.g. aws / us-east-1), for "same provider and region first"
  provider: z.string().min(1).max(64).optional(),
  region: z.string().min(1).max(64).optional(),
  // networks it serves
  networks: z.array(zId).min(1),
  // operator default: chosen when no FullVR shares the VM's provider
  default: z.boolean().default(false),
});

export const ServerConfigSchema = z.strictObject({
  // HTTP listen endpoint
  listen: zEndpoint(true).default('0.0.0.0:8080'),
  // base URL VMs use to reach this server (goes into join scripts); default: from the request's Host
  publicUrl: z.string().url().optional(),
  // state: the authority signing key, the bundle cache
  dataDir: z.string().min(1).default('.tinyvine-server'),
  // provider range files (aws.json, gcp.json, azure.json, oracle.json, digitalocean.csv, linode.csv, sites.json)
  catalog: z.string().min(1).default('catalog'),
  // reload the catalog directory this often (seconds; 0 = only at start)
  catalogReloadSeconds: z.number().int().min(0).default(300),
  // proxies whose X-Forwarded-For / Forwarded headers are believed
  trustedProxies: z.array(zPrefix).default([]),
  // serve VMs whose address matches no provider or site as this provider/region; omit to refuse them (403)
  fallback: z.strictObject({ provider: z.string().min(1), region: z.string().min(1).nullable().default(null) }).optional(),
  // network a VM joins when the request does not name one
  network: zId.default(1),
  // join tokens handed out in join scripts
  tokenTtlSeconds: z.number().int().min(60).max(30 * 86400).default(3600),
  singleUseTokens: z.boolean().default(true),
  // a FullVR silent for longer than this is not chosen
  heartbeatTimeoutSeconds: z.number().int().min(1).default(15),
  // bearer token FullVRs use for heartbeats (>= 16 chars); omit to accept none
  apiToken: z.string().min(16).optional(),
  // first administrator token for the management API (>= 16 chars), usable only until an admin
  // API token exists; also read from env TINYVINE_BOOTSTRAP_TOKEN
  bootstrapToken: z.string().min(16).optional(),
  // operator-supplied Node runtimes: <runtimeDir>/<os>-<arch>/node
  runtimeDir: z.string().min(1).optional(),
  fullvrs: z.array(FullvrSchema).default([]),
  // operator pins: VMs matching provider/region/cidr go to this FullVR (first match wins)
  pins: z
    .array(
      z.strictObject({
        provider: z.string().min(1).optional(),
        region: z.string().min(1).optional(),
        cidr: zPrefix.optional(),
        fullvr: zId,
      }),
    )
    .default([]),
  // settings baked into every TinyVR this server installs, for the whole fleet (each one
  // optional: absent, the TinyVR's own default applies; a flag on the VM still wins). E.g.
  // moderationMicros: 1000 where wake-ups are dear (less CPU under a steady load, up to 1 ms
  // more latency per router then), 0 where latency under load matters more.
  tinyvr: z
    .strictObject({
      moderationMicros: zModerationMicros.optional(),
      keepaliveSeconds: zKeepalive.optional(),
      shortcuts: z.boolean().optional(),
      shortcutIdleSeconds: zShortcutIdleSeconds.optional(),
      direct: z.boolean().optional(),
    })
    .default({}),
});

export type ServerConfig = z.output<typeof ServerConfigSchema>;

export function parseServerConfig(obj: unknown, source: string, baseDir = process.cwd()): ServerConfig {
  const cfg = runSchema(ServerConfigSchema, obj, source, (c) => {
    const problems: Problem[] = [];
    const ids = new Map<number, number>();
    c.fullvrs.forEach((f, i) => {
      if (ids.has(f.id)) problems.push({ path: ['fullvrs', i, 'id'], message: `duplicate FullVR id ${f.id} (also fullvrs[${ids.get(f.id)}])` });
      ids.set(f.id, i);
    });
    c.pins.forEach((p, i) => {
      if (!ids.has(p.fullvr)) problems.push({ path: ['pins', i, 'fullvr'], message: `no FullVR with id ${p.fullvr} in fullvrs[]` });
    });
    return problems;
  });
  // Paths in the file are relative to the file.
  cfg.dataDir = resolve(baseDir, cfg.dataDir);
  cfg.catalog = resolve(baseDir, cfg.catalog);
  if (cfg.runtimeDir) cfg.runtimeDir = resolve(baseDir, cfg.runtimeDir);
  return cfg;
}

export function loadServerConfig(path: string): ServerConfig {
  return parseServerConfig(readConfigFile(path), path, dirname(resolve(path)));
}
