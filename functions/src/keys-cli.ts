import { pathToFileURL } from 'node:url';
import { openApiKeyStore } from './adapters.js';
import { API_KEY_ID, hashApiKey, newApiKey, parseApiKey } from './auth/api-keys.js';
import { loadConfig, type Env } from './config.js';
import type { ApiKeyStore } from './store/api-key-store.js';

/*
 * Manages the API keys of the `apikey` auth mode, in the store the service is configured with
 * (the same environment: CLAUDERUN_DATA_DIR, CLAUDERUN_STORE, GOOGLE_CLOUD_PROJECT, ...).
 *   node dist/functions/src/keys-cli.js create <userId> [--label text] | list [userId] | revoke <keyId>
 * Exit codes: 0 done, 1 failed (including revoking a key that is unknown or revoked already), 2 usage.
 */

export const USAGE = `usage: keys-cli create <userId> [--label text]
       keys-cli list [userId]
       keys-cli revoke <keyId>`;

/** As header auth accepts user ids. */
const USER_ID = /^[A-Za-z0-9._@-]{1,128}$/;
const MAX_LABEL = 200;

export interface KeysOutput {
  log(line: string): void;
  error(line: string): void;
}

type Command =
  | { name: 'create'; userId: string; label: string | undefined }
  | { name: 'list'; userId: string | undefined }
  | { name: 'revoke'; id: string };

class UsageError extends Error {}

function parse(argv: readonly string[]): Command {
  const [name, ...rest] = argv;
  if (name === 'create') {
    let label: string | undefined;
    const positional: string[] = [];
    for (let i = 0; i < rest.length; i++) {
      const arg = rest[i]!;
      if (arg === '--label') {
        const value = rest[++i];
        if (value === undefined) throw new UsageError('--label needs a value');
        label = value;
      } else if (arg.startsWith('--label=')) {
        label = arg.slice('--label='.length);
      } else if (arg.startsWith('--')) {
        throw new UsageError(`unknown option ${arg}`);
      } else {
        positional.push(arg);
      }
    }
    if (positional.length !== 1) throw new UsageError('create takes one user id');
    const userId = positional[0]!;
    if (!USER_ID.test(userId)) throw new UsageError('a user id is 1-128 characters of letters, digits, ".", "_", "@" or "-"');
    if (label !== undefined && (label.length > MAX_LABEL || /[\r\n]/.test(label))) {
      throw new UsageError(`a label is one line of at most ${MAX_LABEL} characters`);
    }
    return { name, userId, label: label === '' ? undefined : label };
  }
  if (name === 'list') {
    if (rest.length > 1) throw new UsageError('list takes at most one user id');
    return { name, userId: rest[0] };
  }
  if (name === 'revoke') {
    if (rest.length !== 1) throw new UsageError('revoke takes one key id');
    // A whole key pasted by mistake still names its id (the key is not echoed).
    const id = parseApiKey(rest[0]!)?.id ?? rest[0]!;
    if (!API_KEY_ID.test(id)) throw new UsageError('a key id is 12 hex characters, as `list` prints it');
    return { name, id };
  }
  throw new UsageError(name === undefined ? 'no command' : `unknown command ${name}`);
}

async function run(command: Command, store: ApiKeyStore, out: KeysOutput): Promise<number> {
  switch (command.name) {
    case 'create': {
      const { key, id } = newApiKey();
      await store.create({
        id,
        userId: command.userId,
        hash: hashApiKey(key),
        createdAt: new Date().toISOString(),
        ...(command.label === undefined ? {} : { label: command.label }),
      });
      out.log(`created API key ${id} for user ${command.userId}`);
      out.log(key);
      out.log('This key will not be shown again: only its hash is stored. Keep it now.');
      out.log(`Its id ${id} lists and revokes it.`);
      return 0;
    }
    case 'list': {
      const keys = await store.list(command.userId);
      if (keys.length === 0) {
        out.log(command.userId === undefined ? 'no API keys' : `no API keys for user ${command.userId}`);
        return 0;
      }
      out.log(['id', 'user', 'created', 'status', 'label'].join('\t'));
      for (const k of keys) {
        out.log([k.id, k.userId, k.createdAt, k.revokedAt === null ? 'valid' : `revoked ${k.revokedAt}`, k.label ?? ''].join('\t'));
      }
      return 0;
    }
    case 'revoke': {
      if (await store.revoke(command.id)) {
        out.log(`revoked API key ${command.id}`);
        return 0;
      }
      out.error(`nothing revoked: no valid API key has the id ${command.id} (unknown or revoked already)`);
      return 1;
    }
  }
}

/** The whole command, minus the process: returns the exit code. */
export async function runKeysCommand(argv: readonly string[], env: Env, out: KeysOutput): Promise<number> {
  let command: Command;
  try {
    command = parse(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    out.error(`keys-cli: ${error.message}`);
    out.error(USAGE);
    return 2;
  }
  let store: ApiKeyStore | undefined;
  try {
    store = await openApiKeyStore(loadConfig(env));
    return await run(command, store, out);
  } catch (error) {
    out.error(`keys-cli: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await store?.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runKeysCommand(process.argv.slice(2), process.env, console);
}
