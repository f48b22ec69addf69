// The catalog's files: name, parser and (for providers) the official download URL. Order
// matters: it is the order entries are inserted into the catalog's trie, and for an identical
// prefix the later insert wins, so operator sites come last and win ties with providers.
import { parseAws } from './aws.js';
import { parseAzure } from './azure.js';
import type { CatalogEntry } from './entry.js';
import { parseGcp } from './gcp.js';
import { parseDigitalOcean, parseLinode } from './geofeed.js';
import { parseOracle } from './oracle.js';
import { parseSites } from './sites.js';

export type SourceKey = 'aws' | 'gcp' | 'azure' | 'oracle' | 'digitalocean' | 'linode' | 'sites';

export interface CatalogSource {
  key: SourceKey;
  file: string;
  parse: (text: string, file?: string) => CatalogEntry[];
  /** Official download URL; null for Azure (changes weekly) and for operator sites (local). */
  url: string | null;
}

export const CATALOG_SOURCES: readonly CatalogSource[] = [
  { key: 'aws', file: 'aws.json', parse: parseAws, url: 'https://ip-ranges.amazonaws.com/ip-ranges.json' },
  { key: 'gcp', file: 'gcp.json', parse: parseGcp, url: 'https://www.gstatic.com/ipranges/cloud.json' },
  { key: 'azure', file: 'azure.json', parse: parseAzure, url: null },
  { key: 'oracle', file: 'oracle.json', parse: parseOracle, url: 'https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json' },
  { key: 'digitalocean', file: 'digitalocean.csv', parse: parseDigitalOcean, url: 'https://digitalocean.com/geo/google.csv' },
  { key: 'linode', file: 'linode.csv', parse: parseLinode, url: 'https://geoip.linode.com/' },
  { key: 'sites', file: 'sites.json', parse: parseSites, url: null },
];

/** File names in catalog order. */
export const CATALOG_FILES: readonly string[] = CATALOG_SOURCES.map((s) => s.file);
