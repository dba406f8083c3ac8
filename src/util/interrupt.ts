/**
 * Ctrl-C (or SIGTERM, as from `kill` or a job scheduler) for long work: the first signal asks the
 * work to stop at its next safe point (it polls `requested()`), saying `message`; a second Ctrl-C
 * quits at once. `dispose()` removes the handlers.
 */
export function stopOnInterrupt(message: string): { requested(): boolean; dispose(): void } {
  let stop = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stop && signal === 'SIGINT') process.exit(130);
    if (stop) return;
    stop = true;
    process.stderr.write(`\nigpt: ${signal === 'SIGINT' ? '' : `${signal}: `}${message} (Ctrl-C again to quit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { requested: () => stop, dispose: () => { process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal); } };
}
