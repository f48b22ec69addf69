#!/usr/bin/env node
// Builds what `npm start` and `npm test` need, so a fresh clone needs no other step:
// installs dependencies if missing, compiles the native packet engine if its sources
// changed, and bundles the CLI into one file (dist/tinyvine.mjs) with esbuild.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);

if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
  console.error('build: installing dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

const addon = join(root, 'build', 'Release', 'tinyvine_native.node');
const nativeDir = join(root, 'shared', 'native');
const newestSource = Math.max(mtime(join(root, 'binding.gyp')), ...readdirSync(nativeDir).map((f) => mtime(join(nativeDir, f))));
if (mtime(addon) < newestSource) {
  console.error('build: compiling native packet engine (node-gyp)');
  run('npx', ['--no-install', 'node-gyp', 'rebuild', '--silent']);
}

const esbuild = await import('esbuild');
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  // esbuild finds its native binary relative to its own package: load it from node_modules.
  external: ['esbuild'],
  // Bundled CommonJS dependencies (express) call require(); give ESM output one.
  banner: { js: "import { createRequire as __tvCreateRequire } from 'node:module'; const require = __tvCreateRequire(import.meta.url);" },
};
await esbuild.build({ ...common, entryPoints: { tinyvine: join(root, 'bin', 'tinyvine.ts') }, outdir: join(root, 'dist'), outExtension: { '.js': '.mjs' } });
if (existsSync(join(root, 'test', 'bench', 'bench.ts'))) {
  await esbuild.build({ ...common, entryPoints: { bench: join(root, 'test', 'bench', 'bench.ts') }, outdir: join(root, 'dist'), outExtension: { '.js': '.mjs' } });
}
console.error('build: ok');
