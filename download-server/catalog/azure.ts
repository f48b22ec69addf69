// Azure Service Tags (ServiceTags_Public_YYYYMMDD.json; the download URL changes weekly):
//   { "changeNumber": 1, "cloud": "Public",
//     "values": [{ "name": "AzureCloud.eastus", "id": "AzureCloud.eastus",
//                  "properties": { "region": "eastus", "regionId": 32, "platform": "Azure",
//                                  "systemService": "", "addressPrefixes": ["20.42.0.0/17", ...] } }] }
// A prefix appears in broad tags ("AzureCloud", region "") and in regional/service tags
// ("AzureCloud.eastus", "Storage.EastUS"). One entry per prefix: the first listing that has a
// region, else the first listing. Longer prefixes from other tags still win at lookup time.
// service = the tag name.
import { type CatalogEntry, FileReader, PrefixSet, regionOrNull } from './entry.js';
import { parseJsonText } from './json-text.js';

export function parseAzure(text: string, file = 'azure.json'): CatalogEntry[] {
  const r = new FileReader(file);
  const root = r.obj(parseJsonText(text, file), []);
  const values = r.list(root, 'values', []);
  const set = new PrefixSet((cand, kept) => cand.region !== null && kept.region === null);
  for (let i = 0; i < values.length; i++) {
    const path = ['values', i];
    const v = r.obj(values[i], path);
    const name = r.str(v, 'name', path, true);
    if (v.properties === undefined) r.fail([...path, 'properties'], 'is required');
    const ppath = [...path, 'properties'];
    const props = r.obj(v.properties, ppath);
    const region = regionOrNull(r.str(props, 'region', ppath, false));
    const prefixes = r.list(props, 'addressPrefixes', ppath);
    for (let j = 0; j < prefixes.length; j++) {
      const prefix = r.prefix(prefixes[j], () => [...ppath, 'addressPrefixes', j]);
      const kept = set.get(prefix); // most prefixes are listed several times: skip cheaply
      if (kept !== undefined && (region === null || kept.region !== null)) continue;
      set.add({ prefix, provider: 'azure', region, service: name });
    }
  }
  return r.nonEmpty(set.entries());
}
