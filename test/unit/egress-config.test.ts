import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_LIMITS, loadConfig } from '../../functions/src/config.js';

describe('the egress settings', () => {
  it('allow nothing by default, with the default per-turn caps', () => {
    expect(loadConfig({}).egress).toEqual({
      allow: [],
      testResolve: new Map(),
      maxConnectionsPerTurn: DEFAULT_LIMITS.CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN,
      maxBytesPerTurn: DEFAULT_LIMITS.CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN,
    });
    expect(DEFAULT_LIMITS.CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN).toBe(200);
    expect(DEFAULT_LIMITS.CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN).toBe(256 * 1024 * 1024);
  });

  it('parse the allowlist, presets and caps', () => {
    const egress = loadConfig({
      CLAUDERUN_EGRESS_ALLOW: 'npm, *.example.com:8443',
      CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN: '20',
      CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN: '1048576',
    }).egress;
    expect(egress.allow).toEqual([
      { name: 'registry.npmjs.org', wildcard: false, ports: [443] },
      { name: 'example.com', wildcard: true, ports: [8443] },
    ]);
    expect(egress).toMatchObject({ maxConnectionsPerTurn: 20, maxBytesPerTurn: 1048576 });
  });

  it.each([
    ['*.com', /CLAUDERUN_EGRESS_ALLOW: malformed pattern "\*\.com": a wildcard must leave at least two labels/],
    ['npm,10.0.0.1', /CLAUDERUN_EGRESS_ALLOW: malformed pattern "10\.0\.0\.1": it is an IP address/],
    ['github.com:99999', /CLAUDERUN_EGRESS_ALLOW: malformed pattern "github\.com:99999": the port/],
    ['pip', /CLAUDERUN_EGRESS_ALLOW: malformed pattern "pip": a name needs at least two labels/],
  ])('refuse a malformed CLAUDERUN_EGRESS_ALLOW %j at start-up, naming the pattern', (allow, message) => {
    expect(() => loadConfig({ CLAUDERUN_EGRESS_ALLOW: allow })).toThrow(ConfigError);
    expect(() => loadConfig({ CLAUDERUN_EGRESS_ALLOW: allow })).toThrow(message);
  });

  it.each([
    [{ CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN: '0' }, /CLAUDERUN_EGRESS_MAX_CONNECTIONS_PER_TURN must be positive/],
    [{ CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN: 'lots' }, /CLAUDERUN_EGRESS_MAX_BYTES_PER_TURN must be a number/],
  ])('refuse caps that are not positive whole numbers: %j', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('map allowed names to local servers for tests', () => {
    const egress = loadConfig({
      CLAUDERUN_EGRESS_ALLOW: 'npm,github',
      CLAUDERUN_EGRESS_TEST_RESOLVE: 'Registry.npmjs.org.=127.0.0.1:4873, github.com=[::1]:8080',
    }).egress;
    expect(egress.testResolve).toEqual(
      new Map([
        ['registry.npmjs.org', { address: '127.0.0.1', port: 4873 }],
        ['github.com', { address: '::1', port: 8080 }],
      ]),
    );
  });

  it.each([
    ['registry.npmjs.org=127.0.0.1', /CLAUDERUN_EGRESS_TEST_RESOLVE: "registry.npmjs.org=127.0.0.1" is not name=address:port/],
    ['registry.npmjs.org=localhost:4873', /is not name=address:port/],
    ['registry.npmjs.org=127.0.0.1:0', /is not name=address:port/],
    ['registry.npmjs.org=::1:4873', /is not name=address:port/],
    ['10.0.0.1=127.0.0.1:80', /the name is not one/],
    ['registry.npmjs.org=127.0.0.1:1,registry.npmjs.org=127.0.0.1:2', /registry.npmjs.org is mapped twice/],
    ['example.com=127.0.0.1:80', /CLAUDERUN_EGRESS_TEST_RESOLVE: maps names CLAUDERUN_EGRESS_ALLOW does not allow: example.com/],
  ])('refuse the test mapping %j', (mapping, message) => {
    expect(() => loadConfig({ CLAUDERUN_EGRESS_ALLOW: 'npm', CLAUDERUN_EGRESS_TEST_RESOLVE: mapping })).toThrow(message);
  });

  it('refuse the test mapping in the cloud, saying why', () => {
    const cloud = { K_SERVICE: 'clauderun', CLAUDERUN_AUTH: 'apikey', CLAUDERUN_EGRESS_ALLOW: 'npm' };
    expect(loadConfig(cloud).egress.allow).toHaveLength(1);
    expect(() => loadConfig({ ...cloud, CLAUDERUN_EGRESS_TEST_RESOLVE: 'registry.npmjs.org=127.0.0.1:4873' })).toThrow(
      /CLAUDERUN_EGRESS_TEST_RESOLVE: it sends allowed names to unchecked addresses and is for tests only; it refuses to run in the cloud \(K_SERVICE is set\)/,
    );
  });
});
