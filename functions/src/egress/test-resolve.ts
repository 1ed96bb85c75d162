import ipaddr from 'ipaddr.js';
import { settingSchema } from './setting-schema.js';
import { hostNameProblem, normalizeHostName } from './allowlist.js';

/*
 * CLAUDERUN_EGRESS_TEST_RESOLVE: `name=address:port,...`, for tests alone. An allowed name mapped
 * here is not looked up and its address is not checked: its connections go to the local server
 * the test runs in its stead (a registry, a git server), on that server's port.
 */

export interface TestTarget {
  address: string;
  port: number;
}

/** By normalized name. */
export type TestResolve = ReadonlyMap<string, TestTarget>;

export class TestResolveError extends Error {
  override name = 'TestResolveError';
}

function parseEntry(entry: string): [string, TestTarget] {
  const match = /^([^=]+)=(?:\[([^\]]+)\]|([^:\]]+)):([0-9]{1,5})$/.exec(entry);
  const [, rawName = '', v6 = '', v4 = '', rawPort = ''] = match ?? [];
  const address = v6 || v4;
  const port = Number(rawPort);
  if (match === null || !ipaddr.isValid(address) || !(port >= 1 && port <= 65535)) {
    throw new TestResolveError(`"${entry}" is not name=address:port (an IPv6 address in brackets, a port from 1 to 65535)`);
  }
  const name = normalizeHostName(rawName.trim());
  const problem = hostNameProblem(name);
  if (problem !== undefined) throw new TestResolveError(`"${entry}": the name is not one (${problem})`);
  return [name, { address: ipaddr.parse(address).toString(), port }];
}

export function parseTestResolve(text: string): TestResolve {
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
    .map(parseEntry);
  const names = entries.map(([name]) => name);
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) throw new TestResolveError(`${twice} is mapped twice`);
  return new Map(entries);
}

export const testResolveSchema = (name: string) => settingSchema(name, parseTestResolve, TestResolveError);
