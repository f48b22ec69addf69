// JSON.parse with an operator-friendly error: "invalid JSON at line L column C (truncated
// file?)". V8's messages differ between Node versions and give a character offset at best, so
// on failure the text is re-scanned by a small JSON grammar checker that finds the first bad
// character itself. The scanner only runs after JSON.parse failed: the good path costs nothing.
import { CatalogError } from './errors.js';

/** Parse `text` (a leading UTF-8 BOM is ignored) or throw a one-line CatalogError. */
export function parseJsonText(text: string, file: string): unknown {
  const s = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (s.trim() === '') throw new CatalogError(file, 'file is empty');
  try {
    return JSON.parse(s);
  } catch (e) {
    const bad = findJsonError(s);
    if (!bad) throw new CatalogError(file, `invalid JSON (${(e as Error).message})`);
    const { line, column } = lineColumn(s, bad.pos);
    const where = `invalid JSON at line ${line} column ${column}`;
    throw new CatalogError(file, bad.eof ? `${where} (truncated file?)` : `${where}: ${bad.what}`);
  }
}

/** 1-based line and column of offset `pos` (columns count UTF-16 units, like editors mostly do). */
export function lineColumn(s: string, pos: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < pos && i < s.length; i++) {
    if (s.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: pos - lineStart + 1 };
}

interface JsonFault {
  pos: number;
  /** The text ended where more was required. */
  eof: boolean;
  what: string;
}

const MAX_DEPTH = 512;

/** Offset and reason of the first JSON syntax error in `s`, or null if `s` is valid JSON. */
export function findJsonError(s: string): JsonFault | null {
  let i = 0;
  const n = s.length;

  class Fault extends Error {
    constructor(readonly fault: JsonFault) {
      super(fault.what);
    }
  }
  const fail = (what: string): never => {
    throw new Fault({ pos: i, eof: i >= n, what: i >= n ? 'unexpected end of file' : what });
  };
  const unexpected = (expected: string): never =>
    fail(`expected ${expected}, found ${JSON.stringify(s[i])}`);

  const ws = () => {
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };

  const str = () => {
    i++; // opening quote
    for (;;) {
      if (i >= n) fail('unterminated string');
      const c = s.charCodeAt(i);
      if (c === 34) {
        i++;
        return;
      }
      if (c < 0x20) fail('control character in string (unescaped newline?)');
      if (c === 92) {
        i++;
        if (i >= n) fail('unterminated string');
        const e = s[i];
        if (e === 'u') {
          for (let k = 1; k <= 4; k++) {
            if (i + k >= n) {
              i += k;
              fail('unterminated string');
            }
            if (!/[0-9a-fA-F]/.test(s[i + k])) {
              i += k;
              fail('bad \\u escape in string');
            }
          }
          i += 5;
        } else if ('"\\/bfnrt'.includes(e)) {
          i++;
        } else {
          fail(`bad escape "\\${e}" in string`);
        }
      } else {
        i++;
      }
    }
  };

  const digits = (): number => {
    const start = i;
    while (i < n && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
    return i - start;
  };

  const num = () => {
    if (s[i] === '-') i++;
    if (s[i] === '0') i++;
    else if (digits() === 0) unexpected('a digit');
    if (s[i] === '.') {
      i++;
      if (digits() === 0) unexpected('a digit after "."');
    }
    if (s[i] === 'e' || s[i] === 'E') {
      i++;
      if (s[i] === '+' || s[i] === '-') i++;
      if (digits() === 0) unexpected('a digit in the exponent');
    }
  };

  const word = (w: string) => {
    for (let k = 0; k < w.length; k++, i++) {
      if (i >= n) fail('');
      if (s[i] !== w[k]) fail(`unexpected character ${JSON.stringify(s[i])}`);
    }
  };

  const value = (depth: number): void => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH} levels`);
    ws();
    if (i >= n) fail('');
    const c = s[i];
    if (c === '{') {
      i++;
      ws();
      if (s[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (i >= n) fail('');
        if (s[i] !== '"') unexpected('a property name in double quotes');
        str();
        ws();
        if (s[i] !== ':') unexpected('":"');
        i++;
        value(depth + 1);
        ws();
        if (s[i] === ',') {
          i++;
          continue;
        }
        if (s[i] === '}') {
          i++;
          return;
        }
        unexpected('"," or "}"');
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (s[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value(depth + 1);
        ws();
        if (s[i] === ',') {
          i++;
          continue;
        }
        if (s[i] === ']') {
          i++;
          return;
        }
        unexpected('"," or "]"');
      }
    }
    if (c === '"') return str();
    if (c === '-' || (c >= '0' && c <= '9')) return num();
    if (c === 't') return word('true');
    if (c === 'f') return word('false');
    if (c === 'n') return word('null');
    unexpected('a value');
  };

  try {
    value(0);
    ws();
    if (i < n) unexpected('end of file after the top-level value');
    return null;
  } catch (e) {
    if (e instanceof Fault) return e.fault;
    throw e;
  }
}
