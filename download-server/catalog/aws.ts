// AWS ip-ranges.json (https://ip-ranges.amazonaws.com/ip-ranges.json):
//   { "syncToken": "...", "createDate": "...",
//     "prefixes":      [{ "ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON", ... }],
//     "ipv6_prefixes": [{ "ipv6_prefix": "2600:1f14::/35", "region": "us-west-2", "service": "EC2", ... }] }
// The same prefix is listed once per service (AMAZON is the superset, EC2 the VM ranges, ...);
// one entry per prefix is kept, the EC2 listing if there is one (that is where VMs boot),
// otherwise the first. Region is taken verbatim ("GLOBAL" included); "" becomes null.
import { type CatalogEntry, FileReader, PrefixSet, regionOrNull } from './entry.js';
import { parseJsonText } from './json-text.js';

export function parseAws(text: string, file = 'aws.json'): CatalogEntry[] {
  const r = new FileReader(file);
  const root = r.obj(parseJsonText(text, file), []);
  const set = new PrefixSet((cand, kept) => cand.service === 'EC2' && kept.service !== 'EC2');
  const lists = [
    { key: 'prefixes', field: 'ip_prefix', family: 4 as const },
    { key: 'ipv6_prefixes', field: 'ipv6_prefix', family: 6 as const },
  ];
  for (const { key, field, family } of lists) {
    const items = r.list(root, key, []);
    for (let i = 0; i < items.length; i++) {
      const path = [key, i];
      const item = r.obj(items[i], path);
      if (item[field] === undefined) r.fail([...path, field], 'is required');
      const prefix = r.prefix(item[field], () => [...path, field], family);
      const region = regionOrNull(r.str(item, 'region', path, true));
      const service = r.str(item, 'service', path, true);
      set.add({ prefix, provider: 'aws', region, service });
    }
  }
  return r.nonEmpty(set.entries());
}
