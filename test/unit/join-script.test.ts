// The join script: syntax (dash -n, shellcheck when installed), quoting of hostile values, the
// "partial download does nothing" property, and (as root with /dev/net/tun) whole runs against a
// local HTTP server that serves a fake TinyVR: join, join again (one process), failures with
// their exit codes, the node runtime download, uninstall.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { renderJoinScript, shQuote, type JoinScriptOptions } from '../../bundle/join-script.js';

const SHA = 'a'.repeat(64);
const base: JoinScriptOptions = {
  serverUrl: 'http://127.0.0.1:9',
  fullvr: { id: 2, endpoint: '198.51.100.7:4790', why: 'same provider and region (aws eu-west-1), lowest load' },
  network: 1,
  version: '0.1.0',
  bundleSha256: SHA,
  arch: process.arch,
  os: process.platform,
  bundleUrl: '/tinyvr/AbCd.mjs',
};

const HOSTILE = [
  '',
  "'",
  "''",
  `a'b"c`,
  '$(touch PWNED)',
  '`touch PWNED`',
  '$HOME ${HOME} $((1+1))',
  '\\',
  'a\\',
  'line1\nline2\n',
  '\r\n',
  '*',
  '~root',
  '-n',
  ' leading and trailing ',
  '!event',
  ';rm -rf / #',
  '${IFS}',
  '\t\v\f',
  'ünïcödé ✓',
  "'; touch PWNED; echo '",
  '"; touch PWNED; echo "',
  '%s%n',
];

const tmp = mkdtempSync(path.join(tmpdir(), 'tv-join-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function shSyntax(script: string, shell = 'dash'): { status: number | null; stderr: string } {
  const r = spawnSync(shell, ['-n'], { input: script, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

describe('shQuote', () => {
  it('round-trips hostile strings through sh', () => {
    const dir = mkdtempSync(path.join(tmp, 'q-'));
    for (const s of HOSTILE) {
      const r = spawnSync('sh', ['-c', `printf '%s' ${shQuote(s)}`], { cwd: dir, encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(s);
      // and as an assignment, then used quoted
      const r2 = spawnSync('sh', ['-c', `X=${shQuote(s)}; printf '%s' "$X"`], { cwd: dir, encoding: 'utf8' });
      expect(r2.stdout).toBe(s);
    }
    expect(readdirSync(dir)).toEqual([]); // nothing was executed
  });

  it('leaves plain words bare and refuses NUL', () => {
    expect(shQuote('http://h:8080/x-y_z.mjs')).toBe('http://h:8080/x-y_z.mjs');
    expect(shQuote('a b')).toBe("'a b'");
    expect(shQuote("it's")).toBe(`'it'\\''s'`);
    expect(() => shQuote('a\0b')).toThrow(/NUL/);
  });
});

describe('renderJoinScript', () => {
  const normal = renderJoinScript(base);
  const uninstall = renderJoinScript({ ...base, bundleUrl: '', fullvr: { id: 0, endpoint: '', why: '' }, network: 0, uninstall: true });

  it('is valid POSIX sh (dash -n), normal and uninstall', () => {
    for (const s of [normal, uninstall]) {
      const r = shSyntax(s);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    }
  });

  it('is one function called on the last line, with set -eu and the exit codes documented', () => {
    const lines = normal.trimEnd().split('\n');
    expect(lines[lines.length - 1]).toBe('main "$@"');
    expect(normal).toMatch(/^main\(\) \{\n  set -eu$/m);
    // nothing but comments before main()
    const before = normal.slice(0, normal.indexOf('main() {'));
    for (const l of before.split('\n')) expect(l === '' || l.startsWith('#')).toBe(true);
    for (const code of ['2', '10', '11', '12', '13', '14', '15', '16']) expect(before).toMatch(new RegExp(`^#\\s+${code}  `, 'm'));
    expect(uninstall).toContain("MODE=uninstall");
  });

  it('passes shellcheck -s sh (when shellcheck is installed)', (ctx) => {
    if (spawnSync('shellcheck', ['--version']).status !== 0) {
      console.log('SKIP "passes shellcheck": shellcheck is not installed (.ci/run installs it)');
      return ctx.skip();
    }
    for (const s of [normal, uninstall]) {
      const r = spawnSync('shellcheck', ['-s', 'sh', '-'], { input: s, encoding: 'utf8' });
      expect(r.stdout).toBe('');
      expect(r.status).toBe(0);
    }
  });

  it('quotes hostile values: syntax stays valid and --help prints them verbatim', () => {
    const dir = mkdtempSync(path.join(tmp, 'h-'));
    for (const s of HOSTILE) {
      const script = renderJoinScript({ ...base, version: s, fullvr: { id: 7, endpoint: s, why: s } });
      expect(shSyntax(script).status).toBe(0);
      const r = spawnSync('sh', ['-s', '--', '--help'], { input: script, cwd: dir, encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`TinyViNe ${s} join script`);
      expect(r.stdout).toContain(`FullVR 7 ${s} (${s})`);
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('rejects bad options', () => {
    expect(() => renderJoinScript({ ...base, serverUrl: 'ftp://x' })).toThrow(/http/);
    expect(() => renderJoinScript({ ...base, bundleUrl: undefined })).toThrow(/bundleUrl/);
    expect(() => renderJoinScript({ ...base, bundleSha256: 'xyz' })).toThrow(/bundleSha256/);
    expect(() => renderJoinScript({ ...base, network: 1.5 })).toThrow(/network/);
    expect(() => renderJoinScript({ ...base, nodeMinMajor: 0 })).toThrow(/nodeMinMajor/);
    expect(renderJoinScript({ ...base, serverUrl: 'http://h:1/' })).toContain('BUNDLE_URL=http://h:1/tinyvr/AbCd.mjs');
    expect(renderJoinScript({ ...base, serverUrl: 'http://h:1/', bundleUrl: 'https://cdn/x.mjs?t=1' })).toContain("BUNDLE_URL='https://cdn/x.mjs?t=1'");
  });

  it('a truncated download does nothing (cut at every 50th byte, run with sh)', () => {
    const prefix = path.join(tmp, 'trunc-prefix');
    const buf = Buffer.from(normal);
    let runs = 0;
    for (let n = 50; n < buf.length; n += 50) {
      const part = buf.subarray(0, n).toString('latin1');
      // A cut right after the final "main" still holds the whole function: not a partial script.
      if (/\nmain( "\$@")?\s*$/.test(part)) continue;
      const r = spawnSync('sh', [], {
        input: buf.subarray(0, n),
        cwd: tmp,
        env: { PATH: process.env.PATH, TINYVINE_PREFIX: prefix, TINYVINE_JOIN_WAIT: '1' },
        encoding: 'utf8',
        timeout: 10_000,
      });
      runs++;
      expect(r.stdout).toBe('');
      expect(r.stderr).not.toMatch(/tinyvine: /);
      expect(existsSync(prefix)).toBe(false);
    }
    expect(runs).toBeGreaterThan(100);
  });
});

// ---------------------------------------------------------------------------------------------
// Whole runs. The fake TinyVR behaves by its injected config: joins (writes status.json), fails
// like a refused join, or never joins.
const FAKE_BODY = `import { writeFileSync } from 'node:fs';
const cfg = globalThis.__TINYVINE_CONFIG;
const a = process.argv;
const status = a[a.indexOf('--status-file') + 1];
if (!a.includes('--ticket-file')) { console.error('tinyvine: no --ticket-file'); process.exit(2); }
if (cfg.fail) { console.error('tinyvine: join refused by FullVR 198.51.100.7:4790: token already used'); process.exit(4); }
process.on('SIGTERM', () => { console.error('fake tinyvr: SIGTERM'); process.exit(0); });
console.error('fake tinyvr: started with ' + JSON.stringify(cfg) + ' node ' + process.version + ' state ' + process.env.TINYVINE_STATE_DIR);
if (!cfg.hang) writeFileSync(status, JSON.stringify({ state: 'joined', pid: process.pid, fullvr: '198.51.100.7:4790', network: 1, address: '10.9.0.7' }) + '\\n');
setInterval(() => {}, 1000);
`;
const FAKE_SHA = createHash('sha256').update(FAKE_BODY).digest('hex');
const NODE = process.execPath;

const canRun = process.getuid?.() === 0 && existsSync('/dev/net/tun') && process.platform === 'linux' && ['x64', 'arm64'].includes(process.arch);

describe.skipIf(!canRun)('join script, whole runs (root, fake TinyVR on a local server)', () => {
  let server: Server;
  let serverUrl = '';
  const requests: string[] = [];
  let runtimeAvailable = true;
  const runtimeWrapper = `#!/bin/sh\nif [ "$1" = --version ]; then echo v22.99.0; exit 0; fi\nexec ${NODE} "$@"\n`;
  const prefixes: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = req.url ?? '';
      requests.push(url);
      const m = /^\/tinyvr\/(\w+)\.mjs$/.exec(url);
      if (m) {
        const cfgs: Record<string, unknown> = {
          ok: { fullvr: '198.51.100.7:4790', token: 'tok-ok' },
          fail: { fail: true, token: 'tok-fail' },
          hang: { hang: true, token: 'tok-hang' },
        };
        if (m[1] === 'unconfigured') return res.end(`globalThis.__TINYVINE_CONFIG=null;\n${FAKE_BODY}`);
        if (m[1] === 'garbage') return res.end('<html>captive portal</html>\n');
        if (m[1] === 'tampered') return res.end(`globalThis.__TINYVINE_CONFIG={};\n${FAKE_BODY}// evil\n`);
        if (!cfgs[m[1]]) {
          res.statusCode = 404;
          return res.end('tinyvine: unknown or expired download\n');
        }
        return res.end(`globalThis.__TINYVINE_CONFIG=${JSON.stringify(cfgs[m[1]])};\n${FAKE_BODY}`);
      }
      if (url === `/runtime/linux-${process.arch}/node` && runtimeAvailable) return res.end(runtimeWrapper);
      res.statusCode = 404;
      res.end('not found\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const p of prefixes) await run(script('ok'), p, ['--uninstall']).catch(() => {});
    for (const pid of tinyvineProcs(tmp)) process.kill(pid, 'SIGKILL');
    await new Promise<void>((r) => server.close(() => r()));
  });

  function script(kind: string, extra: Partial<JoinScriptOptions> = {}): string {
    return renderJoinScript({ ...base, serverUrl, bundleUrl: `/tinyvr/${kind}.mjs`, bundleSha256: FAKE_SHA, ...extra });
  }

  function newPrefix(name: string): string {
    const p = path.join(tmp, name, 'opt-tinyvine');
    prefixes.push(p);
    return p;
  }

  /** Like `curl ... | sh -s -- ARGS`: the script on stdin. */
  function run(text: string, prefix: string, args: string[] = [], env: Record<string, string> = {}) {
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn('sh', ['-s', '--', ...args], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TINYVINE_PREFIX: prefix, TINYVINE_NO_SYSTEMD: '1', TINYVINE_JOIN_WAIT: '10', ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`join script timed out; stderr so far:\n${stderr}`));
      }, 50_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
      child.stdin.end(text);
    });
  }

  /** Pids of processes whose command line mentions `dir` (supervisors and fake TinyVRs). */
  function tinyvineProcs(dir: string, what?: 'supervise.sh' | 'tinyvr.mjs'): number[] {
    const out: number[] = [];
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
      let cmd: string;
      try {
        cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ');
      } catch {
        continue;
      }
      if (!cmd.includes(dir)) continue;
      if (what === 'supervise.sh' && !/^\/bin\/sh \S+\/supervise\.sh /.test(cmd)) continue;
      if (what === 'tinyvr.mjs' && !/^\S*node \S+\/tinyvr\.mjs /.test(cmd)) continue;
      out.push(Number(d));
    }
    return out;
  }

  /** Running (not gone, not a zombie nobody reaped yet). */
  function alive(pid: number): boolean {
    try {
      return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  }

  /** Every stderr line is the script's own (no stray shell or tool errors). */
  function onlyOwnLines(stderr: string): string[] {
    return stderr.split('\n').filter((l) => l !== '' && !l.startsWith('tinyvine: '));
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('joins, prints the address, and running it again replaces the TinyVR (never two)', async () => {
    const prefix = newPrefix('ok');
    const r1 = await run(script('ok'), prefix);
    expect(r1.stderr).toContain('tinyvine: checking root…');
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stdout).toBe('tinyvine: joined network 1 as 10.9.0.7 via FullVR 198.51.100.7:4790 (same provider and region (aws eu-west-1), lowest load)\n');
    const sup1 = Number(readFileSync(path.join(prefix, 'tinyvine.pid'), 'utf8'));
    expect(tinyvineProcs(prefix, 'supervise.sh')).toEqual([sup1]);
    const tv1 = tinyvineProcs(prefix, 'tinyvr.mjs');
    expect(tv1).toHaveLength(1);
    expect(readFileSync(path.join(prefix, 'tinyvr.log'), 'utf8')).toContain(`state ${prefix}`); // TINYVINE_STATE_DIR
    for (const f of ['tinyvr.mjs', 'supervise.sh', 'status.json', 'tinyvr.log', '.tinyvine-prefix']) expect(existsSync(path.join(prefix, f))).toBe(true);
    expect(readFileSync(path.join(prefix, 'tinyvr.mjs'), 'utf8')).toContain('"token":"tok-ok"');

    const r2 = await run(script('ok'), prefix);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).toContain('stopped the previous TinyVR');
    const sup2 = tinyvineProcs(prefix, 'supervise.sh');
    const tv2 = tinyvineProcs(prefix, 'tinyvr.mjs');
    expect(sup2).toHaveLength(1);
    expect(tv2).toHaveLength(1);
    expect(sup2[0]).not.toBe(sup1);
    expect(tv2[0]).not.toBe(tv1[0]);
    expect(alive(sup1)).toBe(false);
    expect(readFileSync(path.join(prefix, 'tinyvr.log.1'), 'utf8')).toContain('fake tinyvr: SIGTERM'); // old one was stopped cleanly

    // SIGTERM to the supervisor stops the TinyVR and the supervisor
    process.kill(sup2[0], 'SIGTERM');
    for (let i = 0; i < 50 && tinyvineProcs(prefix).length; i++) await sleep(100);
    expect(tinyvineProcs(prefix)).toEqual([]);
    const log = readFileSync(path.join(prefix, 'tinyvr.log'), 'utf8');
    expect(log).toContain('fake tinyvr: SIGTERM');
    expect(log).toContain('tinyvine-supervise: stopped');
    expect(existsSync(path.join(prefix, 'tinyvine.pid'))).toBe(false);

    const u1 = await run(script('ok'), prefix, ['--uninstall']);
    expect(u1.code, u1.stderr).toBe(0);
    expect(u1.stderr).toContain(`removed ${prefix}`);
    expect(existsSync(prefix)).toBe(false);
    const u2 = await run(script('ok'), prefix, ['--uninstall']);
    expect(u2.code).toBe(0);
    expect(u2.stderr).toContain('nothing to remove');
    for (const r of [r1, r2, u1, u2]) expect(onlyOwnLines(r.stderr)).toEqual([]);
  });

  it('uninstall script stops a running TinyVR and removes everything', async () => {
    const prefix = newPrefix('uninstall');
    expect((await run(script('ok'), prefix)).code).toBe(0);
    expect(tinyvineProcs(prefix)).toHaveLength(2);
    const u = await run(renderJoinScript({ ...base, serverUrl, bundleUrl: '', uninstall: true }), prefix);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stderr).toContain('stopped the TinyVR');
    expect(tinyvineProcs(prefix)).toEqual([]);
    expect(existsSync(prefix)).toBe(false);
  });

  it('exit 16 with the last log line when the TinyVR exits; it is restarted with backoff', async () => {
    const prefix = newPrefix('fail');
    const r = await run(script('fail'), prefix);
    expect(r.code, r.stderr).toBe(16);
    expect(r.stderr).toContain('tinyvine: the TinyVR exited: join refused by FullVR 198.51.100.7:4790: token already used');
    const logFile = path.join(prefix, 'tinyvr.log');
    for (let i = 0; i < 60 && !readFileSync(logFile, 'utf8').includes('restarting in 2 s'); i++) await sleep(100);
    expect(readFileSync(logFile, 'utf8')).toContain('tinyvine-supervise: tinyvr exited with code 4; restarting in 2 s');
    expect((await run(script('ok'), prefix, ['--uninstall'])).code).toBe(0);
    expect(tinyvineProcs(prefix)).toEqual([]);
  });

  it('exit 15 with the log tail when the join does not happen in time', async () => {
    const prefix = newPrefix('hang');
    const t0 = Date.now();
    const r = await run(script('hang'), prefix, [], { TINYVINE_JOIN_WAIT: '2' });
    expect(r.code, r.stderr).toBe(15);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.stderr).toContain('not joined after 2 s');
    expect(r.stderr).toContain('fake tinyvr: started');
    expect(tinyvineProcs(prefix, 'tinyvr.mjs')).toHaveLength(1); // keeps trying
    expect((await run(script('ok'), prefix, ['--uninstall'])).code).toBe(0);
  });

  it('exit 14 on a failed, foreign, unconfigured or damaged download, leaving a running TinyVR alone', async () => {
    const prefix = newPrefix('dl');
    expect((await run(script('ok'), prefix)).code).toBe(0);
    const before = tinyvineProcs(prefix).sort();
    const cases: Array<[string, RegExp]> = [
      ['expired', /cannot download the TinyVR from http:\/\/127\.0\.0\.1:\d+\/tinyvr\/expired\.mjs/],
      ['garbage', /not a TinyVR/],
      ['unconfigured', /unconfigured/],
      ['tampered', /damaged \(sha256/],
    ];
    for (const [kind, msg] of cases) {
      const r = await run(script(kind), prefix);
      expect(r.code, `${kind}: ${r.stderr}`).toBe(14);
      expect(r.stderr).toMatch(msg);
    }
    expect(tinyvineProcs(prefix).sort()).toEqual(before);
    expect(readdirSync(prefix).filter((f) => f.includes('.tmp') || f.startsWith('.tinyvr.mjs.'))).toEqual([]);
    expect((await run(script('ok'), prefix, ['--uninstall'])).code).toBe(0);
  });

  it('exit 12 for an architecture the server does not serve; exit 2 for a bad argument', async () => {
    const prefix = newPrefix('arch');
    const r = await run(script('ok', { arch: 'mips' }), prefix);
    expect(r.code).toBe(12);
    expect(r.stderr).toMatch(/architecture \S+ not supported by this download server \(it serves mips\)/);
    expect(existsSync(prefix)).toBe(false);
    const u = await run(script('ok'), prefix, ['--bogus']);
    expect(u.code).toBe(2);
    expect(u.stderr).toContain('unknown argument: --bogus');
  });

  it('downloads a node runtime when there is no node on PATH (exit 13 when it cannot)', async () => {
    // a PATH with everything from /usr/bin except node
    const bin = path.join(tmp, 'no-node-bin');
    mkdirSync(bin, { recursive: true });
    for (const f of readdirSync('/usr/bin')) if (f !== 'node' && f !== 'nodejs') symlinkSync(path.join('/usr/bin', f), path.join(bin, f));
    expect(spawnSync('sh', ['-c', 'command -v node'], { env: { PATH: bin } }).status).not.toBe(0);

    const prefix = newPrefix('runtime');
    runtimeAvailable = false;
    const r1 = await run(script('ok'), prefix, [], { PATH: bin });
    expect(r1.code, r1.stderr).toBe(13);
    expect(r1.stderr).toContain('no usable node');

    runtimeAvailable = true;
    const r2 = await run(script('ok'), prefix, [], { PATH: bin });
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).toContain(`using ${prefix}/node (v22.99.0)`);
    expect(requests).toContain(`/runtime/linux-${process.arch}/node`);
    expect(tinyvineProcs(prefix, 'tinyvr.mjs')).toHaveLength(1); // the wrapper execs the real node
    expect((await run(script('ok'), prefix, ['--uninstall'], { PATH: bin })).code).toBe(0);
    expect(tinyvineProcs(prefix)).toEqual([]);
  });

  it('refuses to run as non-root (exit 10)', (ctx) => {
    if (spawnSync('setpriv', ['--version']).status !== 0) {
      console.log('SKIP: setpriv (util-linux) is not installed');
      return ctx.skip();
    }
    const prefix = newPrefix('nonroot');
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-s'], {
      input: script('ok'),
      env: { PATH: process.env.PATH, TINYVINE_PREFIX: prefix },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(10);
    expect(r.stderr).toContain('must run as root');
    expect(existsSync(prefix)).toBe(false);
  });
});
