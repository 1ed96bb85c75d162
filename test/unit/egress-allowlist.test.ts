import { describe, expect, it } from 'vitest';
import { allows, DEFAULT_PORTS, EGRESS_PRESETS, parseEgressAllow } from '../../functions/src/egress/allowlist.js';

const allowed = (text: string, host: string, port = 443) => allows(parseEgressAllow(text), host, port);

describe('CLAUDERUN_EGRESS_ALLOW, parsed', () => {
  it('allows nothing when blank', () => {
    expect(parseEgressAllow('')).toEqual([]);
    expect(parseEgressAllow(' , ')).toEqual([]);
  });

  it('reads names, wildcards and ports; a name without a port allows 443 and 80', () => {
    expect(parseEgressAllow('registry.npmjs.org, *.pythonhosted.org,github.com:443')).toEqual([
      { name: 'registry.npmjs.org', wildcard: false, ports: DEFAULT_PORTS },
      { name: 'pythonhosted.org', wildcard: true, ports: DEFAULT_PORTS },
      { name: 'github.com', wildcard: false, ports: [443] },
    ]);
    expect(DEFAULT_PORTS).toEqual([443, 80]);
  });

  it('expands the presets to the hosts their tools reach, HTTPS only', () => {
    expect(parseEgressAllow('npm,pypi,github').map((r) => `${r.name}:${r.ports.join('/')}`)).toEqual([
      'registry.npmjs.org:443',
      'pypi.org:443',
      'files.pythonhosted.org:443',
      'github.com:443',
    ]);
    expect(Object.keys(EGRESS_PRESETS)).toEqual(['npm', 'pypi', 'github']);
  });

  it('compares names case-insensitively and ignores a trailing dot, in patterns and hosts', () => {
    expect(parseEgressAllow('GitHub.COM.')).toEqual([{ name: 'github.com', wildcard: false, ports: DEFAULT_PORTS }]);
    expect(allowed('GitHub.COM.', 'github.com')).toBe(true);
  });

  it('takes punycode as the ASCII it is', () => {
    expect(allowed('xn--bcher-kva.example', 'xn--bcher-kva.example')).toBe(true);
  });

  it.each([
    ['bücher.example', /"bücher.example": it is not ASCII/],
    ['\u212Aernel.org', /it is not ASCII/],
    ['10.0.0.1', /"10.0.0.1": it is an IP address/],
    ['10.0.0.1:443', /it is an IP address/],
    ['[::1]:443', /it is an IP address/],
    ['::1', /it is an IP address/],
    ['fe80::1', /it is an IP address/],
    ['2130706433', /it is an IP address/],
    ['0177.0.0.1', /it is an IP address/],
    ['example.0x7f', /ends in a number/],
    ['a..example.com', /empty label/],
    ['.example.com', /empty label/],
    ['*', /a \* may only stand alone as the first label/],
    ['*.com', /a wildcard must leave at least two labels/],
    ['*.*.example.com', /a \* may only stand alone/],
    ['api.*.example.com', /a \* may only stand alone/],
    ['*example.com', /a \* may only stand alone/],
    ['localhost', /at least two labels/],
    ['example.com:0', /port must be a number from 1 to 65535/],
    ['example.com:65536', /port must be a number from 1 to 65535/],
    ['example.com:', /port must be/],
    ['example.com:https', /port must be/],
    ['exa_mple.com', /label "exa_mple"/],
    ['-example.com', /label "-example"/],
    ['https://example.com', /not letters, digits|port must be/],
  ])('refuses %j, naming it', (pattern, message) => {
    expect(() => parseEgressAllow(`registry.npmjs.org,${pattern}`)).toThrow(message);
  });
});

describe('matching a host against the allowlist', () => {
  it('matches an exact name only', () => {
    expect(allowed('registry.npmjs.org', 'registry.npmjs.org')).toBe(true);
    expect(allowed('registry.npmjs.org', 'registry.npmjs.org.evil.com')).toBe(false);
    expect(allowed('registry.npmjs.org', 'evil.com.registry.npmjs.org')).toBe(false);
    expect(allowed('registry.npmjs.org', 'evilregistry.npmjs.org')).toBe(false);
    expect(allowed('registry.npmjs.org', 'npmjs.org')).toBe(false);
  });

  it('matches a wildcard on subdomains, not on the name itself nor on a look-alike', () => {
    expect(allowed('*.pythonhosted.org', 'files.pythonhosted.org')).toBe(true);
    expect(allowed('*.pythonhosted.org', 'a.b.pythonhosted.org')).toBe(true);
    expect(allowed('*.pythonhosted.org', 'pythonhosted.org')).toBe(false);
    expect(allowed('*.pythonhosted.org', 'evilpythonhosted.org')).toBe(false);
    expect(allowed('*.pythonhosted.org', 'files.pythonhosted.org.evil.com')).toBe(false);
  });

  it('matches the port: 443 and 80 by default, else the one given', () => {
    expect(allowed('example.com', 'example.com', 80)).toBe(true);
    expect(allowed('example.com', 'example.com', 22)).toBe(false);
    expect(allowed('example.com:8443', 'example.com', 8443)).toBe(true);
    expect(allowed('example.com:8443', 'example.com', 443)).toBe(false);
    expect(allowed('github', 'github.com', 80)).toBe(false);
  });
});
