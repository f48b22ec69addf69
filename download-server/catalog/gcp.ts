// Google Cloud cloud.json (https://www.gstatic.com/ipranges/cloud.json):
//   { "syncToken": "...", "creationTime": "...",
//     "prefixes": [{ "ipv4Prefix": "34.1.208.0/20", "service": "Google Cloud", "scope": "africa-south1" },
//                  { "ipv6Prefix": "2600:1900:8000::/44", "service": "Google Cloud", "scope": "africa-south1" }] }
// Each item has exactly one of ipv4Prefix / ipv6Prefix; scope is the region.
import { type CatalogEntry, FileReader, PrefixSet, regionOrNull } from './entry.js';
import { parseJsonText } from './json-text.js';

export function parseGcp(text: string, file = 'gcp.json'): CatalogEntry[] {
  const r = new FileReader(file);
  const root = r.obj(parseJsonText(text, file), []);
  const items = r.list(root, 'prefixes', []);
  const set = new PrefixSet();
  for (let i = 0; i < items.length; i++) {
    const path = ['prefixes', i];
    const item = r.obj(items[i], path);
    const has4 = item.ipv4Prefix !== undefined;
    const has6 = item.ipv6Prefix !== undefined;
    if (has4 === has6) {
      r.fail(path, has4 ? 'has both ipv4Prefix and ipv6Prefix' : 'needs an ipv4Prefix or ipv6Prefix');
    }
    const prefix = has4
      ? r.prefix(item.ipv4Prefix, () => [...path, 'ipv4Prefix'], 4)
      : r.prefix(item.ipv6Prefix, () => [...path, 'ipv6Prefix'], 6);
    const region = regionOrNull(r.str(item, 'scope', path, true));
    const service = r.str(item, 'service', path, false);
    set.add(service === undefined ? { prefix, provider: 'gcp', region } : { prefix, provider: 'gcp', region, service });
  }
  return r.nonEmpty(set.entries());
}
