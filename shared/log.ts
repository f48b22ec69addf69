// One-line, greppable log records on stderr: `2026-11-22T10:00:00.000Z INFO fullvr joined member=10.1.0.11 network=1`.
// Journald and `docker logs` both keep stderr, and lab tests read these lines.

type Fields = Record<string, string | number | boolean | null | undefined>;

let component = 'tinyvine';
let debugEnabled = process.env.TINYVINE_DEBUG === '1';

export function setLogComponent(name: string): void {
  component = name;
}

export function setDebug(on: boolean): void {
  debugEnabled = on;
}

function fmt(level: string, msg: string, fields?: Fields): string {
  let line = `${new Date().toISOString()} ${level} ${component} ${msg}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      const s = String(v);
      line += ` ${k}=${/[\s"=]/.test(s) ? JSON.stringify(s) : s}`;
    }
  }
  return line + '\n';
}

export const log = {
  info(msg: string, fields?: Fields): void {
    process.stderr.write(fmt('INFO', msg, fields));
  },
  warn(msg: string, fields?: Fields): void {
    process.stderr.write(fmt('WARN', msg, fields));
  },
  error(msg: string, fields?: Fields): void {
    process.stderr.write(fmt('ERROR', msg, fields));
  },
  debug(msg: string, fields?: Fields): void {
    if (debugEnabled) process.stderr.write(fmt('DEBUG', msg, fields));
  },
};
