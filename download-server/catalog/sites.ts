// Operator sites, sites.json: address ranges of the operator's own sites (campus, lab, on-prem
// cloud), recognised like a provider:
//   { "sites": [{ "name": "campus", "provider": "ufl", "region": "gainesville", "cidrs": ["192.0.2.0/25"] }] }
// provider defaults to the site name; region is optional (null). Validated strictly: unknown keys
// are errors, and, as in the other operator-written files (fullvr.yaml subnets), a prefix with
// host bits set is rejected as a likely typo instead of being masked. A site name may appear only
// once and a prefix only in one site. An empty list is valid (no operator sites).
import { z } from 'zod';
import { formatPath, formatZodError, zName, zPrefix } from '../../shared/config-error.js';
import { parseCidr } from '../../shared/cidr.js';
import type { CatalogEntry } from './entry.js';
import { CatalogError } from './errors.js';
import { parseJsonText } from './json-text.js';

const zSite = z.strictObject({
  name: zName,
  provider: zName.optional(),
  region: z.string().min(1).max(64).nullable().optional(),
  cidrs: z.array(zPrefix).min(1),
});

export const SitesFileSchema = z.strictObject({
  sites: z.array(zSite),
});

export type SitesFile = z.infer<typeof SitesFileSchema>;

export function parseSites(text: string, file = 'sites.json'): CatalogEntry[] {
  const raw = parseJsonText(text, file);
  const res = SitesFileSchema.safeParse(raw, { reportInput: true });
  if (!res.success) throw CatalogError.fromLines(file, formatZodError(file, res.error));

  const problems: string[] = [];
  const names = new Map<string, number>();
  const owner = new Map<string, string>(); // canonical prefix -> "sites[i].cidrs[j]"
  const entries: CatalogEntry[] = [];
  res.data.sites.forEach((site, i) => {
    const first = names.get(site.name);
    if (first !== undefined) {
      problems.push(`${file}: sites[${i}].name: "${site.name}" is already used by sites[${first}]`);
    } else {
      names.set(site.name, i);
    }
    site.cidrs.forEach((cidr, j) => {
      const c = parseCidr(cidr);
      const prefix = `${c.network}/${c.bits}`;
      const here = formatPath(['sites', i, 'cidrs', j]);
      if (c.family === 6 && prefix.startsWith('::ffff:') && prefix.includes('.')) {
        problems.push(`${file}: ${here}: ${cidr} is an IPv4-mapped IPv6 prefix; write the IPv4 prefix instead`);
        return;
      }
      const prev = owner.get(prefix);
      if (prev !== undefined) {
        problems.push(`${file}: ${here}: ${prefix} is already listed at ${prev}`);
        return;
      }
      owner.set(prefix, here);
      entries.push({ prefix, provider: site.provider ?? site.name, region: site.region ?? null, site: site.name });
    });
  });
  if (problems.length > 0) throw CatalogError.fromLines(file, problems);
  return entries;
}
