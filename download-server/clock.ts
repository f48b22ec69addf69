// Monotonic milliseconds for health timeouts (wall-clock jumps must not mark routers down).
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}
