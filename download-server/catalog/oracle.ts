// Oracle Cloud public_ip_ranges.json
// (https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json):
//   { "last_updated_timestamp": "...",
//     "regions": [{ "region": "us-phoenix-1", "cidrs": [{ "cidr": "129.146.0.0/21", "tags": ["OCI"] }] }] }
// service = the tags joined with "," ("OCI", "OCI,OSN"); absent when there are none.
import { type CatalogEntry, FileReader, PrefixSet, regionOrNull } from './entry.js';
import { describe } from './errors.js';
import { parseJsonText } from './json-text.js';

export function parseOracle(text: string, file = 'oracle.json'): CatalogEntry[] {
  const r = new FileReader(file);
  const root = r.obj(parseJsonText(text, file), []);
  const regions = r.list(root, 'regions', []);
  const set = new PrefixSet();
  for (let i = 0; i < regions.length; i++) {
    const path = ['regions', i];
    const reg = r.obj(regions[i], path);
    const region = regionOrNull(r.str(reg, 'region', path, true));
    const cidrs = r.list(reg, 'cidrs', path);
    for (let j = 0; j < cidrs.length; j++) {
      const cpath = [...path, 'cidrs', j];
      const c = r.obj(cidrs[j], cpath);
      if (c.cidr === undefined) r.fail([...cpath, 'cidr'], 'is required');
      const prefix = r.prefix(c.cidr, () => [...cpath, 'cidr']);
      let service: string | undefined;
      const tags = c.tags;
      if (tags !== undefined) {
        if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) {
          r.fail([...cpath, 'tags'], `expected a list of strings, got ${describe(tags)}`);
        } else if (tags.length > 0) {
          service = tags.join(',');
        }
      }
      set.add(service === undefined ? { prefix, provider: 'oracle', region } : { prefix, provider: 'oracle', region, service });
    }
  }
  return r.nonEmpty(set.entries());
}
