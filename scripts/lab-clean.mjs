#!/usr/bin/env node
// Removes leftovers of TinyViNe test labs (network namespaces `tvXXXX-...`, their
// processes, /tmp/tinyvine-lab/<prefix>.json and logs) whose owner process is dead.
// Same logic as reapStaleLabs() in test/lab/netns.ts, in plain JS for operators:
//
//   npm run lab:clean                 # stale labs + orphan lab namespaces
//   node scripts/lab-clean.mjs --force    # also labs whose owner is still running
//   node scripts/lab-clean.mjs --dry-run  # only print what would be removed
//
// It only ever touches namespaces named like a lab (tv + 4 hex digits + '-'), and only
// kills processes that live inside those namespaces.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const STATE_DIR = '/tmp/tinyvine-lab';
const PREFIX_RE = /^tv[0-9a-f]{4}$/;
const NS_RE = /^(tv[0-9a-f]{4})-[a-z0-9-]+$/;

const args = new Set(process.argv.slice(2));
if (args.has('-h') || args.has('--help')) {
  console.log('usage: lab-clean.mjs [--force] [--dry-run] [--keep-logs]');
  process.exit(0);
}
const force = args.has('--force');
const dryRun = args.has('--dry-run');
const keepLogs = args.has('--keep-logs');

function sh(cmd, input) {
  return execFileSync(cmd[0], cmd.slice(1), {
    input,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 15_000,
  });
}

function startTime(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function ownerAlive(pid, start) {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (e.code !== 'EPERM') return false;
  }
  if (!start) return true;
  const now = startTime(pid);
  return now === null || now === start;
}

function listNamespaces() {
  let out = '';
  try {
    out = sh(['ip', 'netns', 'list']);
  } catch (e) {
    console.error(`lab-clean: ip netns list failed: ${e.message}`);
    process.exit(1);
  }
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

function readStates() {
  let names = [];
  try {
    names = fs.readdirSync(STATE_DIR);
  } catch {
    return [];
  }
  const out = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    const prefix = n.slice(0, -5);
    if (!PREFIX_RE.test(prefix)) continue;
    let s = {};
    try {
      s = JSON.parse(fs.readFileSync(path.join(STATE_DIR, n), 'utf8'));
    } catch {
      /* unreadable: owned by nobody */
    }
    out.push({ ...s, prefix });
  }
  return out;
}

function destroy(prefix, all) {
  const mine = all.filter((n) => NS_RE.exec(n)?.[1] === prefix);
  for (const ns of mine) {
    let pids = [];
    try {
      pids = sh(['ip', 'netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number);
    } catch {
      /* namespace vanished */
    }
    for (const pid of pids) {
      if (pid <= 1 || pid === process.pid) continue;
      if (dryRun) {
        console.log(`  would kill pid ${pid} (in ${ns})`);
        continue;
      }
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  if (mine.length > 0) {
    console.log(`  ${dryRun ? 'would delete' : 'deleting'} namespaces: ${mine.join(' ')}`);
    if (!dryRun) {
      try {
        sh(['ip', '-force', '-batch', '-'], mine.map((n) => `netns del ${n}\n`).join(''));
      } catch (e) {
        console.error(`  ip netns del: ${e.stderr || e.message}`);
      }
    }
  }
  return mine.length;
}

function removeFiles(prefix, logsDir) {
  if (dryRun) return;
  fs.rmSync(path.join(STATE_DIR, `${prefix}.json`), { force: true });
  const dir = logsDir || path.join(STATE_DIR, 'logs', prefix);
  if (!keepLogs && path.resolve(dir).startsWith(STATE_DIR + path.sep)) fs.rmSync(dir, { recursive: true, force: true });
}

const all = listNamespaces();
const states = readStates();
const known = new Set(states.map((s) => s.prefix));
let reaped = 0;
for (const s of states) {
  if (!force && ownerAlive(s.ownerPid, s.ownerStart ?? null)) {
    console.log(`lab ${s.prefix}: owner pid ${s.ownerPid} is alive, kept (use --force to remove it anyway)`);
    continue;
  }
  console.log(`lab ${s.prefix}: owner pid ${s.ownerPid ?? '?'} ${force ? '(forced)' : 'is gone'}`);
  destroy(s.prefix, all);
  removeFiles(s.prefix, s.logsDir);
  reaped++;
}
const orphans = new Set();
for (const n of all) {
  const m = NS_RE.exec(n);
  if (m && !known.has(m[1])) orphans.add(m[1]);
}
for (const p of orphans) {
  if (fs.existsSync(path.join(STATE_DIR, `${p}.json`))) continue; // claimed meanwhile
  console.log(`lab ${p}: orphan namespaces (no state file)`);
  destroy(p, all);
  reaped++;
}
if (!dryRun) {
  const left = listNamespaces().filter((n) => {
    const m = NS_RE.exec(n);
    return m && (force || !known.has(m[1]) || states.some((s) => s.prefix === m[1] && !ownerAlive(s.ownerPid, s.ownerStart ?? null)));
  });
  if (left.length > 0) {
    console.error(`lab-clean: could not remove: ${left.join(' ')}`);
    process.exit(1);
  }
}
console.log(`lab-clean: ${reaped === 0 ? 'nothing to clean' : `${dryRun ? 'would reap' : 'reaped'} ${reaped} lab(s)`}`);
