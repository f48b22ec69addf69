// `tinyvine ranges lookup [--catalog DIR] [IP ...]`: print one JSON line per address:
//   {"ip": "198.51.100.7", "provider": "aws", "region": "us-east-1", "prefix": "198.51.100.0/25"}
//   {"ip": "192.0.2.9", "provider": "campus", "region": "gainesville", "prefix": "192.0.2.0/25", "site": "campus"}
//   {"ip": "8.8.8.8", "provider": null}
//   {"ip": "bogus", "provider": null, "error": "not an IP address"}
// Addresses come from the arguments, or from stdin (one per line, blank lines ignored) when
// there are none. Exit code 3 if any address was unrecognised or invalid, else 0. Catalog files
// that fail to load are reported on stderr and skipped; no usable file at all is a UserError.
import { parseIp } from '../../shared/cidr.js';
import { UserError } from '../../shared/user-error.js';
import { ProviderCatalog } from './catalog.js';
import { CATALOG_FILES } from './sources.js';

export const EXIT_UNRECOGNISED = 3;

export async function lookupCommand(
  dir: string,
  ips: string[] | null,
  out: (line: string) => void,
  readStdin: () => Promise<string[]>,
  err: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<number> {
  const { catalog, problems } = await ProviderCatalog.load(dir);
  for (const p of problems) err(p);
  if (catalog.loadedFiles.length === 0) {
    throw new UserError(`${dir}: no usable range files (looked for ${CATALOG_FILES.join(', ')}); run "tinyvine ranges update" first`);
  }
  const list = ips && ips.length > 0 ? ips : (await readStdin()).map((l) => l.trim()).filter((l) => l !== '');
  let code = 0;
  for (const ip of list) {
    if (!isAddress(ip)) {
      out(jsonLine({ ip, provider: null, error: 'not an IP address' }));
      code = EXIT_UNRECOGNISED;
      continue;
    }
    const m = catalog.lookup(ip);
    if (!m) {
      out(jsonLine({ ip, provider: null }));
      code = EXIT_UNRECOGNISED;
      continue;
    }
    const rec: Record<string, unknown> = { ip, provider: m.provider, region: m.region, prefix: m.prefix };
    if (m.site !== undefined) rec.site = m.site;
    out(jsonLine(rec));
  }
  return code;
}

/** Plain IP literal, or an IPv6 one with a zone index (which lookup ignores). */
function isAddress(s: string): boolean {
  const zone = s.indexOf('%');
  try {
    parseIp(zone > 0 && s.includes(':') ? s.slice(0, zone) : s);
    return true;
  } catch {
    return false;
  }
}

/** JSON object on one line in the documented style: `{"key": value, "key": value}`. */
export function jsonLine(obj: Record<string, unknown>): string {
  return `{${Object.entries(obj)
    .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(', ')}}`;
}
