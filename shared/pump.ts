// Drives one readable fd of the packet engine: read a batch, decide, forward, repeat.
// A bounded number of batches per wake-up keeps one busy direction from starving the
// other (the TUN and UDP polls share one event loop).
import type { PacketBatch } from './packet-engine.js';

export interface PumpHooks {
  read(batch: PacketBatch): number;
  /** Fill meta ACTION/OUTNET for batch[0..n). Must not allocate per packet. */
  decide(batch: PacketBatch, n: number): void;
  forward(batch: PacketBatch, n: number): void;
  /** Called after forward() for slots the decision step set aside (control messages). */
  after?(batch: PacketBatch, n: number): void;
}

export function makePump(batch: PacketBatch, hooks: PumpHooks, maxBatches = 16): () => void {
  return () => {
    for (let k = 0; k < maxBatches; k++) {
      const n = hooks.read(batch);
      if (n <= 0) return;
      hooks.decide(batch, n);
      hooks.forward(batch, n);
      hooks.after?.(batch, n);
      if (n < batch.capacity) return;
    }
  };
}
