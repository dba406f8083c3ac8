/**
 * One process per run folder. A command that writes a run folder (pretrain, experiment, finetune)
 * holds `<dir>/.igpt-lock` while it works: a JSON note of who holds it (pid, host, since when,
 * command). A second process on the same folder is refused at once, naming the first; a lock
 * whose process is gone (same host, pid no longer running) is taken over.
 *
 * The lock is written in full to a temporary file and then hard-linked to its name: link(2) fails
 * with EEXIST when the name exists, exactly like open(O_CREAT | O_EXCL), and a reader never sees a
 * half-written note.
 */
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

export const LOCK_FILE = '.igpt-lock';

/** Who holds a run folder. */
export interface LockOwner {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  since: string;
  command: string;
}

export interface RunLock {
  readonly file: string;
  /** The owner of a stale lock this one replaced (its process had ended), else null. */
  readonly tookOverFrom: LockOwner | null;
  /** Removes the lock (only if it is still ours); also done on exit, SIGINT and SIGTERM. */
  release(): void;
}

/** A run folder another live process holds. */
export class RunFolderLockedError extends Error {
  constructor(readonly dir: string, readonly owner: LockOwner | null, readonly file: string) {
    super(owner
      ? `${dir} is in use by another igpt process: pid ${owner.pid} on ${owner.host}, since ${owner.since} ` +
        `(${owner.command}). Wait for it to finish or stop it ` +
        `(if no igpt process uses the folder any more, delete ${file})`
      : `${dir} is locked by ${file}, which cannot be read; if no igpt process is using the folder, delete it`);
    this.name = 'RunFolderLockedError';
  }
}

export const describeOwner = (o: LockOwner): string => `pid ${o.pid} on ${o.host}, since ${o.since} (${o.command})`;

/** The command line of this process, as a user typed it. */
function commandLine(): string {
  return ['igpt', ...process.argv.slice(2)].join(' ');
}

function readOwner(file: string): LockOwner | null {
  try {
    const o = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockOwner>;
    if (typeof o.pid !== 'number' || typeof o.host !== 'string') return null;
    return { pid: o.pid, host: o.host, since: String(o.since ?? '?'), command: String(o.command ?? '?') };
  } catch {
    return null;
  }
}

/** Whether a process of this host with this pid is running (EPERM: it exists, someone else's). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const isStale = (o: LockOwner): boolean => o.host === hostname() && o.pid !== process.pid && !processAlive(o.pid);
const sameOwner = (a: LockOwner, b: LockOwner): boolean => a.pid === b.pid && a.host === b.host && a.since === b.since;

/** How long a process waits for another one's takeover of a stale lock before giving up. */
const TAKEOVER_WAIT_MS = 5000;

const sleepSync = (ms: number): void => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); };

/**
 * Takes the lock of run folder `dir` (created if missing) for this process, or throws
 * RunFolderLockedError naming the process that holds it.
 */
export function acquireRunLock(dir: string): RunLock {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, LOCK_FILE);
  const me: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString(), command: commandLine() };
  const text = JSON.stringify(me) + '\n';
  const note = `${file}.${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  writeFileSync(note, text);
  let tookOverFrom: LockOwner | null = null;
  try {
    const deadline = Date.now() + TAKEOVER_WAIT_MS;
    while (!tryLink(note, file)) {
      const owner = readOwner(file);
      if (owner === null && !existsSync(file)) continue; // released between the two calls: try again
      if (owner === null || !isStale(owner) || Date.now() > deadline) throw new RunFolderLockedError(dir, owner, file);
      tookOverFrom = owner;
      if (!removeStaleLock(note, file, owner)) sleepSync(10);
    }
  } finally {
    unlinkSync(note);
  }
  return holdLock(file, text, tookOverFrom);
}

/** link(2) `from` to `to`: true when created, false when `to` exists. */
function tryLink(from: string, to: string): boolean {
  try {
    linkSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new Error(`${to}: cannot create the run folder's lock (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * Removes a stale lock. Several processes may find the same stale lock at once, so the removal
 * happens under a takeover guard (`.igpt-lock.takeover`, itself taken by link): only its holder
 * deletes the lock, and only if the lock is still the stale one, never a lock that another process
 * has just taken. False when another process holds the guard (the caller waits and looks again).
 */
function removeStaleLock(note: string, file: string, stale: LockOwner): boolean {
  const guard = `${file}.takeover`;
  if (!tryLink(note, guard)) {
    // A guard whose process died mid-takeover would block every later one.
    const holder = readOwner(guard);
    if (holder !== null && isStale(holder)) rmSync(guard, { force: true });
    return false;
  }
  try {
    const current = readOwner(file);
    if (current !== null && sameOwner(current, stale)) rmSync(file, { force: true });
  } finally {
    unlinkSync(guard);
  }
  return true;
}

/**
 * The releases of the locks this process holds (a command may hold several: igpt experiment holds
 * its study's and its pretraining run's), behind one listener for exit and one for each signal.
 */
const heldLocks = new Set<() => void>();

const releaseAll = (): void => { for (const release of [...heldLocks]) release(); };

/**
 * A command that stops gracefully on a signal (pretraining saves a checkpoint first) listens
 * itself and exits normally, which releases the locks on 'exit'. Otherwise the signal would kill
 * the process without an 'exit' event: release them, then die of the same signal.
 */
const onSignal = (signal: NodeJS.Signals): void => {
  if (process.listenerCount(signal) > 1) return;
  releaseAll(); // the last release removes this listener: the signal below then kills
  process.kill(process.pid, signal);
};

/** Registers the release on exit and on SIGINT/SIGTERM (unless the command handles them itself). */
function holdLock(file: string, text: string, tookOverFrom: LockOwner | null): RunLock {
  const release = (): void => {
    if (!heldLocks.delete(release)) return;
    if (heldLocks.size === 0) {
      process.off('exit', releaseAll);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    try {
      if (readFileSync(file, 'utf8') === text) unlinkSync(file);
    } catch { /* already gone */ }
  };
  if (heldLocks.size === 0) {
    process.on('exit', releaseAll);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  heldLocks.add(release);
  return { file, tookOverFrom, release };
}
