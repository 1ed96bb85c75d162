import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Firestore } from '@google-cloud/firestore';
import { PassThroughClient } from 'google-auth-library';

/** The official emulator (Debian package google-cloud-cli-firestore-emulator). */
export const FIRESTORE_EMULATOR_JAR = '/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar';
const MAIN_CLASS = 'com.google.cloud.datastore.emulator.firestore.CloudFirestore';
const PROJECT_ID = 'clauderun-test';
const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 3_000;

export interface FirestoreEmulator {
  /** host:port of the emulator. */
  host: string;
  projectId: string;
  /** Stops an emulator this module started; a no-op for one named by FIRESTORE_EMULATOR_HOST. */
  stop(): Promise<void>;
}

const onPath = (command: string): boolean =>
  (process.env.PATH ?? '').split(path.delimiter).some((dir) => {
    try {
      accessSync(path.join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

/** Why no emulator can be had on this machine, or undefined when one can. */
export function firestoreEmulatorUnavailable(): string | undefined {
  if (process.env.FIRESTORE_EMULATOR_HOST) return undefined;
  if (!existsSync(FIRESTORE_EMULATOR_JAR)) return `FIRESTORE_EMULATOR_HOST is unset and ${FIRESTORE_EMULATOR_JAR} is missing`;
  if (!onPath('java')) return 'FIRESTORE_EMULATOR_HOST is unset and java is not on PATH';
  return undefined;
}

/**
 * The emulator named by FIRESTORE_EMULATOR_HOST, or the official one started on a free loopback
 * port (java runs directly, not through the gcloud wrapper script, so stop() signals reach it);
 * undefined when neither is available.
 */
export async function startFirestoreEmulator(): Promise<FirestoreEmulator | undefined> {
  const named = process.env.FIRESTORE_EMULATOR_HOST;
  if (named) return { host: named, projectId: process.env.GCLOUD_PROJECT ?? PROJECT_ID, stop: async () => {} };
  if (firestoreEmulatorUnavailable() !== undefined) return undefined;

  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const child = spawn('java', ['-cp', FIRESTORE_EMULATOR_JAR, MAIN_CLASS, 'start', '--host=127.0.0.1', `--port=${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Keep the tail of its output for the error message, and keep the pipes drained.
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // If the test process ends without stop() (a crash, a timeout), the emulator must not outlive it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    await kill(child, exited);
  };
  try {
    await waitUntilReady(host, child);
  } catch (error) {
    await stop();
    throw new Error(`the Firestore emulator did not start: ${(error as Error).message}\n${output}`);
  }
  return { host, projectId: PROJECT_ID, stop };
}

/**
 * A client for the emulator, with no change to process.env: with settings `host` + `ssl: false`
 * @google-cloud/firestore 9 uses an insecure channel and sends `Authorization: Bearer owner`.
 * The PassThroughClient stops google-gax looking for Application Default Credentials (it asks
 * them for a universe domain, which off Google Cloud means a metadata-server probe and a warning).
 */
export function emulatorClient(emulator: FirestoreEmulator): Firestore {
  return new Firestore({ projectId: emulator.projectId, host: emulator.host, ssl: false, authClient: new PassThroughClient() });
}

async function waitUntilReady(host: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`java exited (${child.exitCode ?? child.signalCode})`);
    try {
      const response = await fetch(`http://${host}/`, { signal: AbortSignal.timeout(1000) });
      if ((await response.text()).trim() === 'Ok') return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no "Ok" from http://${host}/ within ${READY_TIMEOUT_MS / 1000} s`);
}

async function kill(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * The emulator as a contract suite uses it: said LOUDLY to be missing when it is (the suite then
 * skips by name), started once, and a client per store under test.
 */
export function emulatorForSuite(what: string) {
  const unavailable = firestoreEmulatorUnavailable();
  if (unavailable !== undefined) console.warn(`Firestore emulator not found: the Firestore ${what} contract tests are SKIPPED (${unavailable})`);
  let emulator: FirestoreEmulator | undefined;
  return {
    unavailable,
    setUp: async () => {
      const started = performance.now();
      emulator = await startFirestoreEmulator();
      if (emulator === undefined) throw new Error('no Firestore emulator, although one was found at collection time');
      const which = process.env.FIRESTORE_EMULATOR_HOST ? 'the emulator at FIRESTORE_EMULATOR_HOST' : 'the official emulator (java)';
      console.info(`Firestore: ${which} on ${emulator.host}, ready in ${Math.round(performance.now() - started)} ms`);
    },
    tearDown: async () => emulator?.stop(),
    client: () => {
      if (emulator === undefined) throw new Error('the Firestore emulator is not running');
      return emulatorClient(emulator);
    },
  };
}
