// Errors raised while reading a provider's IP-range file. Like config errors they are shown to
// operators as ONE line naming the file and, where possible, the place in it:
//   azure.json: values[3].properties.addressPrefixes[7]: "10.0.0.0/33" is not a valid CIDR (...)
//   aws.json: invalid JSON at line 12 column 5 (truncated file?)
//   linode.csv: line 40: "garbage" is not a valid CIDR (missing "/prefix-length")

export class CatalogError extends Error {
  /** File name the problem is in, e.g. "aws.json". */
  readonly file: string;
  /** Every problem found (one line each, each starting with the file name); message = first. */
  readonly problems: string[];

  /** `detail` is the message without the file name: "line 3: ..." or "prefixes[2].region: ...". */
  constructor(file: string, detail: string) {
    const line = oneLine(`${file}: ${detail}`);
    super(line);
    this.name = 'CatalogError';
    this.file = file;
    this.problems = [line];
  }

  /** From complete lines (already "file: ..."): message = first line, "(and N more problems)". */
  static fromLines(file: string, lines: string[]): CatalogError {
    const all = lines.map(oneLine);
    const extra = all.length > 1 ? ` (and ${all.length - 1} more problem${all.length > 2 ? 's' : ''})` : '';
    const err = new CatalogError(file, '');
    err.message = `${all[0] ?? `${file}: invalid file`}${extra}`;
    (err as { problems: string[] }).problems = all;
    return err;
  }
}

export function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** Short description of a JSON value for a message: scalars shown, collections named. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? v.slice(0, 61) + '...' : v);
  if (typeof v === 'object') return 'an object';
  return String(v);
}
