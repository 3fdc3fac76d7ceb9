// Resident memory and CPU time of the processes under test, read from /proc.
import { readFileSync } from 'node:fs';
import { readStat, sleep } from './processes.ts';

/** VmRSS in MB (10^6 bytes, as the goals are stated), or undefined once the process is gone. */
export function rssMB(pid: number): number | undefined {
  try {
    // The kernel's "kB" here is KiB.
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? (Number(match[1]) * 1024) / 1e6 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples the summed VmRSS of a set of processes every 50 ms and keeps the peak, so a transfer's
 * buffering shows even if it lasts only a moment.
 */
export function sampleRss(pids: number[], intervalMs = 50): { stop(): { peakMB: number; startMB: number; samples: number } } {
  let peak = 0;
  let start: number | undefined;
  let samples = 0;
  const tick = () => {
    let total = 0;
    for (const pid of pids) total += rssMB(pid) ?? 0;
    peak = Math.max(peak, total);
    start ??= total;
    samples++;
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      return { peakMB: peak, startMB: start ?? 0, samples };
    },
  };
}

/** Linux reports CPU time in clock ticks of 1/100 s (USER_HZ). */
const TICKS_PER_S = 100;

/** CPU time (user + system) the processes have used so far, in µs. */
export function cpuMicros(pids: number[]): number {
  return (cpuTicks(pids) / TICKS_PER_S) * 1e6;
}

function cpuTicks(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    const stat = readStat(pid);
    if (stat) total += stat.utime + stat.stime;
  }
  return total;
}

/**
 * Waits until the processes use less than a tenth of a core (they may still be working off a
 * flood, e.g. queued bcrypt checks), so the next measurement starts on a quiet machine.
 * Returns how long it waited.
 */
export async function waitUntilQuiet(pids: number[], maxMs = 20_000): Promise<number> {
  const started = Date.now();
  const windowMs = 500;
  // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
  const quietTicks = (windowMs / 10) * 0.1;
  let before = cpuTicks(pids);
  while (Date.now() - started < maxMs) {
    await sleep(windowMs);
    const now = cpuTicks(pids);
    if (now - before <= quietTicks) break;
    before = now;
  }
  return Date.now() - started;
}
