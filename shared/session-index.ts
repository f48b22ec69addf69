// Session indices name a session on the wire (receiver index) and in the native engine's table.
// Indices are handed out round-robin so a just-freed index is not reused at once: a late
// datagram for a dead session then hits "unknown session" instead of a stranger's keys.
export const MAX_SESSION_INDEX = 65535;

export class SessionIndexAllocator {
  private used = new Uint8Array(MAX_SESSION_INDEX + 1);
  private next: number;
  private count = 0;

  constructor(start = 1) {
    this.next = start;
  }

  allocate(): number {
    if (this.count >= MAX_SESSION_INDEX) throw new Error('no free session index (65535 sessions in use)');
    for (;;) {
      const i = this.next;
      this.next = i >= MAX_SESSION_INDEX ? 1 : i + 1;
      if (!this.used[i]) {
        this.used[i] = 1;
        this.count++;
        return i;
      }
    }
  }

  release(i: number): void {
    if (i > 0 && i <= MAX_SESSION_INDEX && this.used[i]) {
      this.used[i] = 0;
      this.count--;
    }
  }

  get inUse(): number {
    return this.count;
  }
}
