import { describe, expect, test } from 'vitest';
import {
  ADDRESSES_PER_SANDBOX,
  FRONTEND_SUBNET_RANGE,
  PROXY_ONLY_SUBNET_RANGE,
  RUNNER_ENDPOINT_ADDRESS,
  sandboxSubnetPrefix,
  sandboxSubnetRange,
  usableAddresses,
} from '../../infra/address-plan.js';
import { MAX_RUNNING_EXECUTIONS } from '../../infra/config.js';

const toInt = (ip: string) => ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
const bounds = (cidr: string): [number, number] => {
  const [ip, bits] = cidr.split('/') as [string, string];
  const size = 2 ** (32 - Number(bits));
  const first = toInt(ip);
  expect(first % size, `${cidr} is aligned`).toBe(0);
  return [first, first + size - 1];
};

describe('the sandbox subnet', () => {
  test.each([
    [1, 26],
    [14, 25],
    [50, 24],
    [61, 23],
    [250, 22],
    [1000, 20],
  ])('%i sandboxes at once get a /%i', (sandboxes, prefix) => {
    expect(sandboxSubnetPrefix(sandboxes)).toBe(prefix);
  });

  test('always has 4 usable addresses per sandbox, and is never more than twice the size it needs (above a /26)', () => {
    for (let sandboxes = 1; sandboxes <= MAX_RUNNING_EXECUTIONS; sandboxes++) {
      const prefix = sandboxSubnetPrefix(sandboxes);
      expect(usableAddresses(prefix), `${sandboxes}`).toBeGreaterThanOrEqual(ADDRESSES_PER_SANDBOX * sandboxes);
      if (prefix < 26) expect(usableAddresses(prefix + 1), `${sandboxes}`).toBeLessThan(ADDRESSES_PER_SANDBOX * sandboxes + 16);
    }
  });

  test('never overlaps the frontend or the proxy-only subnet, however large it grows', () => {
    const largest = bounds(sandboxSubnetRange(MAX_RUNNING_EXECUTIONS));
    const ranges = [largest, bounds(FRONTEND_SUBNET_RANGE), bounds(PROXY_ONLY_SUBNET_RANGE)];
    for (const [i, a] of ranges.entries()) {
      for (const b of ranges.slice(i + 1)) expect(a[1] < b[0] || b[1] < a[0], `${a} vs ${b}`).toBe(true);
    }
  });

  test('more sandboxes than a region runs executions is refused', () => {
    expect(() => sandboxSubnetPrefix(1100)).toThrow(/more than a \/20 holds/);
  });
});

test("the runner endpoint's address is a usable one of the frontend subnet (not among the 4 Google keeps)", () => {
  const [first, last] = bounds(FRONTEND_SUBNET_RANGE);
  const address = toInt(RUNNER_ENDPOINT_ADDRESS);
  expect(address).toBeGreaterThanOrEqual(first + 2);
  expect(address).toBeLessThanOrEqual(last - 2);
  expect(Number(PROXY_ONLY_SUBNET_RANGE.split('/')[1])).toBeLessThanOrEqual(26);
});
