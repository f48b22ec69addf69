// Virtual addressing: two clouds that both use 172.31.0.0/24 (every AWS region's default
// VPC looks like this) still form one overlay, each VM with an overlay address on its TUN.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupport, type Lab } from './topology.js';
import { Overlay, TINYVR_CONTROL, waitFor } from './overlay-harness.js';

const support = await labSupport(['ip', 'nft', 'ping', 'curl']);
if (!support.ok) console.warn(`SKIP virtual-mode lab tests: ${support.reason}`);

describe.skipIf(!support.ok)('virtual mode with overlapping site subnets', () => {
  let lab: Lab;
  let ov: Overlay;

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '172.31.0.0/24', vms: ['a1', 'a2'] },
        { name: 'b', kind: 'cloud', publicPrefix: '203.0.113.0/25', subnet: '172.31.0.0/24', vms: ['b1'] },
      ],
    });
    ov = new Overlay(
      lab,
      [
        {
          id: 7,
          name: 'green',
          mode: 'virtual',
          overlay: '10.200.0.0/16',
          sites: [
            { site: 'a', subnet: '10.200.1.0/24' },
            { site: 'b', subnet: '10.200.2.0/24' },
          ],
          token: 'green-token-0123456789abcdef',
        },
      ],
      ['a', 'b'],
    );
    await ov.startAllFullvrs();
    await ov.waitPeersUp();
    await Promise.all([ov.startTinyvr('a1', 'a', 7), ov.startTinyvr('b1', 'b', 7), ov.startTinyvr('a2', 'a', 7)]);
  }, 60_000);

  afterAll(async () => {
    await ov?.stop();
    await lab?.cleanup();
  });

  it('both VMs really have the same private address', () => {
    expect(lab.addr('a1')).toBe('172.31.0.11');
    expect(lab.addr('b1')).toBe('172.31.0.11');
  });

  it('members get overlay addresses from their FullVR block and reach each other across clouds', async () => {
    const a1 = (await ov.status('a1', TINYVR_CONTROL)).join;
    const b1 = (await ov.status('b1', TINYVR_CONTROL)).join;
    expect(a1.mode).toBe('virtual');
    expect(a1.address).toMatch(/^10\.200\.1\.\d+$/);
    expect(b1.address).toMatch(/^10\.200\.2\.\d+$/);
    const p1 = await lab.ping('a1', b1.address, { count: 3 });
    if (!p1.ok) {
      console.log('PING', p1.output);
      for (const x of ['a', 'b']) { const st = await ov.fullvrStatus(x); console.log(x, JSON.stringify({ d: st.drops, e: st.engine, m: st.members, p: st.peers })); }
      for (const v of ['a1', 'b1']) { const st = await ov.status(v, TINYVR_CONTROL); console.log(v, JSON.stringify({ e: st.engine, c: st.counters, j: st.join, r: st.routes })); }
    }
    expect(p1.ok).toBe(true);
    expect((await lab.ping('b1', a1.address, { count: 3 })).ok).toBe(true);
    // The private subnet itself stays local: a1 -> 172.31.0.12 is its own cloud's a2, not the overlay.
    const before = (await ov.status('a1', TINYVR_CONTROL)).engine.tun_rx;
    expect((await lab.ping('a1', '172.31.0.12', { count: 3 })).ok).toBe(true);
    expect((await ov.status('a1', TINYVR_CONTROL)).engine.tun_rx).toBe(before);
  });

  it('a member that rejoins keeps its overlay address', async () => {
    const before = (await ov.status('a2', TINYVR_CONTROL)).join.address;
    await ov.tinyvrs.get('a2')!.kill('SIGTERM');
    await ov.startTinyvr('a2', 'a', 7);
    expect((await ov.status('a2', TINYVR_CONTROL)).join.address).toBe(before);
  });
});
