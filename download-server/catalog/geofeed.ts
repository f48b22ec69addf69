// RFC 8805 self-published geofeeds, used by DigitalOcean (https://digitalocean.com/geo/google.csv)
// and Linode (https://geoip.linode.com/). CSV, one prefix per line:
//   prefix,country,region,city,postal       e.g. 203.0.113.0/24,US,US-NY,New York,10011
// "#" comment lines and blank lines are skipped; fields may be RFC 4180-quoted; trailing fields
// may be missing; a bare address counts as a /32 or /128 (RFC 8805 section 2.1.1.1).
//
// Region: the region column (an ISO 3166-2 code such as "US-NY") if non-empty, else the city
// ("Singapore"), else the country ("JP"), else null. The ISO code comes first because it is
// standard and comparable across providers, while city spellings vary; falling back keeps some
// location for the lines that give less. Only the prefix is validated strictly (a line whose
// first field is not an address or prefix rejects the file: an HTML error page or a truncated
// download looks exactly like that); the descriptive columns are taken as written.
import { type CatalogEntry, FileReader, PrefixSet } from './entry.js';
import { parseIp, show } from '../../shared/cidr.js';
import { CatalogError } from './errors.js';

export function parseGeofeed(text: string, file: string, provider: string): CatalogEntry[] {
  const r = new FileReader(file);
  const set = new PrefixSet();
  const s = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = s.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].trim(); // also drops the "\r" of CRLF files
    if (line === '' || line.startsWith('#')) continue;
    const where = `line ${n + 1}`;
    let fields: string[];
    try {
      fields = splitCsv(line);
    } catch (e) {
      throw new CatalogError(file, `${where}: ${(e as Error).message}`);
    }
    const [raw, country = '', region = '', city = ''] = fields;
    let prefix: string;
    if (raw.includes('/')) {
      prefix = r.prefix(raw, [where]);
    } else {
      let address = '';
      try {
        address = parseIp(raw).address;
      } catch {
        r.fail([where], `${show(raw)} is not an IP address or prefix`);
      }
      prefix = r.prefix(`${address}/${address.includes(':') ? 128 : 32}`, [where]);
    }
    const place = region || city || country;
    set.add({ prefix, provider, region: place === '' ? null : place });
  }
  return r.nonEmpty(set.entries());
}

export function parseDigitalOcean(text: string, file = 'digitalocean.csv'): CatalogEntry[] {
  return parseGeofeed(text, file, 'digitalocean');
}

export function parseLinode(text: string, file = 'linode.csv'): CatalogEntry[] {
  return parseGeofeed(text, file, 'linode');
}

/** Split one CSV line (RFC 4180 quoting, no embedded newlines); fields are trimmed. */
export function splitCsv(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    while (line[i] === ' ' || line[i] === '\t') i++;
    let field = '';
    if (line[i] === '"') {
      i++;
      for (;;) {
        if (i >= line.length) throw new Error('unterminated quoted field');
        if (line[i] === '"') {
          if (line[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += line[i++];
      }
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (i < line.length && line[i] !== ',') throw new Error(`unexpected text after a quoted field (column ${i + 1})`);
    } else {
      const end = line.indexOf(',', i);
      field = (end < 0 ? line.slice(i) : line.slice(i, end)).trim();
      i = end < 0 ? line.length : end;
    }
    out.push(field);
    if (i >= line.length) return out;
    i++; // the comma
  }
}
