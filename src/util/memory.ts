/** How much memory a new allocation may take on this machine. */
import { freemem, totalmem } from 'node:os';

/** What this process may still allocate: the memory available now (plus a little the OS can reclaim), at most 90% of all. */
export function availableMemoryBytes(): number {
  return Math.min(totalmem() * 0.9, freemem() + 512 * 2 ** 20);
}

export const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
