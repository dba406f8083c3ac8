/**
 * Models by name from the local Hugging Face cache, laid out as huggingface_hub and transformers
 * write it: `<hub>/models--<owner>--<name>/refs/main` holds a commit hash, and
 * `<hub>/models--<owner>--<name>/snapshots/<hash>/` the files. `<hub>` is `$HF_HUB_CACHE`, else
 * `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. Nothing is ever downloaded.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The hub cache folder, as huggingface_hub finds it. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, 'hub');
  return join(homedir(), '.cache', 'huggingface', 'hub');
}

/** `owner/name` as the hub spells repository ids (letters, digits, `-`, `_`, `.`). */
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

export function isRepoId(s: string): boolean {
  return REPO_ID.test(s) && !s.includes('..');
}

/**
 * A model argument as a folder: an existing folder is itself; an `owner/name` that is not a folder
 * is looked up in the cache. Otherwise throws, saying where it looked and how to fetch the model.
 */
export function resolveModelDir(model: string, env: NodeJS.ProcessEnv = process.env): string {
  if (existsSync(model)) {
    if (!statSync(model).isDirectory()) throw new Error(`${model}: not a folder (a model is a Hugging Face ImageGPT folder)`);
    return model;
  }
  if (!isRepoId(model)) throw new Error(`${model}: model folder does not exist`);
  const hub = hubCacheDir(env);
  const repo = join(hub, `models--${model.replace('/', '--')}`);
  const fetch = `huggingface-cli download ${model}`;
  if (!existsSync(repo)) {
    throw new Error(`${model}: no such folder, and not in the Hugging Face cache (${repo} does not exist). ` +
                    `Nothing is downloaded here; fetch it once with:\n  ${fetch}`);
  }
  const snapshots = join(repo, 'snapshots');
  const refFile = join(repo, 'refs', 'main');
  let revision: string;
  if (existsSync(refFile)) {
    revision = readFileSync(refFile, 'utf8').trim();
    if (!/^[\w.-]+$/.test(revision)) throw new Error(`${refFile}: not a revision (${JSON.stringify(revision.slice(0, 60))})`);
  } else {
    // No refs/main (e.g. a snapshot fetched by commit hash): take the one snapshot there is.
    const all = existsSync(snapshots) ? readdirSync(snapshots) : [];
    if (all.length !== 1) {
      throw new Error(`${repo}: no refs/main and ${all.length} snapshots, so the revision is ambiguous; fetch it with:\n  ${fetch}`);
    }
    revision = all[0];
  }
  const dir = join(snapshots, revision);
  if (!existsSync(dir)) {
    throw new Error(`${model}: the cache names revision ${revision}, but ${dir} is missing (an interrupted download?); fetch it again with:\n  ${fetch}`);
  }
  return dir;
}
