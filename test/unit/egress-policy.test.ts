import { afterEach, describe, expect, it, vi } from 'vitest';
import { classifyAddress } from '../../functions/src/egress/address-class.js';
import { parseEgressAllow } from '../../functions/src/egress/allowlist.js';
import type { EgressDecision } from '../../functions/src/egress/egress-policy.js';
import { createEgressPolicy, type EgressResolver, LOOKUP_TIMEOUT_MS, systemResolver } from '../../functions/src/egress/policy.js';
import { parseTestResolve } from '../../functions/src/egress/test-resolve.js';

/** A resolver that answers from a table and records every name it was asked for. */
function recordingResolver(table: Record<string, readonly string[] | Error>) {
  const asked: string[] = [];
  const resolve: EgressResolver = async (host) => {
    asked.push(host);
    const answer = table[host];
    if (answer === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { asked, resolve };
}

const policy = (allow: string, table: Record<string, readonly string[] | Error>, testResolve = '') => {
  const resolver = recordingResolver(table);
  return {
    ...resolver,
    policy: createEgressPolicy({ allow: parseEgressAllow(allow), testResolve: parseTestResolve(testResolve) }, resolver.resolve),
  };
};

const reasonOf = (decision: EgressDecision): string => (decision.allowed ? 'allowed' : decision.reason);

describe('the egress decision', () => {
  it('allows an allowed name whose addresses are all public, giving those addresses', async () => {
    const { policy: p } = policy('npm', { 'registry.npmjs.org': ['104.16.1.34', '2606:4700::6810:122', '104.16.1.34'] });
    expect(await p.decide({ host: 'registry.npmjs.org', port: 443 })).toEqual({ allowed: true, addresses: ['104.16.1.34', '2606:4700::6810:122'] });
    expect(await p.decide({ host: 'REGISTRY.npmjs.org.', port: 443 })).toMatchObject({ allowed: true });
  });

  it('refuses everything when nothing is allowed, looking nothing up', async () => {
    const { policy: p, asked } = policy('', { 'example.com': ['93.184.215.14'] });
    expect(reasonOf(await p.decide({ host: 'example.com', port: 443 }))).toBe(
      'this deployment does not allow example.com:443: it allows no connections out (CLAUDERUN_EGRESS_ALLOW is empty)',
    );
    expect(asked).toEqual([]);
  });

  it('never looks up a name the allowlist refuses', async () => {
    const { policy: p, asked } = policy('registry.npmjs.org,*.pythonhosted.org', {});
    for (const host of ['registry.npmjs.org.evil.com', 'evil.com.registry.npmjs.org', 'pythonhosted.org', 'example.com']) {
      expect(reasonOf(await p.decide({ host, port: 443 }))).toBe(
        `this deployment does not allow ${host}:443: ${host} on port 443 is not in CLAUDERUN_EGRESS_ALLOW`,
      );
    }
    expect(reasonOf(await p.decide({ host: 'registry.npmjs.org', port: 22 }))).toMatch(/does not allow registry.npmjs.org:22/);
    expect(asked).toEqual([]);
  });

  it.each(['127.0.0.1', '2130706433', '0177.0.0.1', '0x7f.1', '127.1', '[::1]', '::1', '[::]', '0.0.0.0', '::ffff:10.0.0.1', '169.254.169.254'])(
    'refuses the literal address %s: the allowlist is by name',
    async (host) => {
      const { policy: p, asked } = policy('npm', {});
      expect(reasonOf(await p.decide({ host, port: 443 }))).toMatch(
        /^this deployment does not allow .*:443: the host (is an IP address|ends in a number, as an IP address does) \(the allowlist is by name\)$/,
      );
      expect(asked).toEqual([]);
    },
  );

  it.each([
    '',
    'bücher.example',
    'a..b.example',
    'exa mple.com',
    'example.com/x',
    'x.example.com\0.evil.com',
    '\u212A.example.com',
    'x.example.com:443',
  ])('refuses the malformed host %j', async (host) => {
    const { policy: p, asked } = policy('*.example.com,*.b.example', {});
    expect(reasonOf(await p.decide({ host, port: 443 }))).toMatch(/^this deployment does not allow .*:443: (the host( is|'s| has)|no host given)/);
    expect(asked).toEqual([]);
  });

  it.each([0, 65536, 1.5, Number.NaN])('refuses port %s', async (port) => {
    const { policy: p } = policy('example.com', { 'example.com': ['93.184.215.14'] });
    expect(reasonOf(await p.decide({ host: 'example.com', port }))).toMatch(/the port must be from 1 to 65535/);
  });

  it('says in words why a host is not a name', async () => {
    const { policy: p } = policy('*.example.com', {});
    expect(reasonOf(await p.decide({ host: 'a_b.example.com', port: 443 }))).toBe(
      'this deployment does not allow a_b.example.com:443: the host\'s label "a_b" is not letters, digits and inner hyphens',
    );
    expect(reasonOf(await p.decide({ host: '0x7f.1', port: 443 }))).toBe(
      'this deployment does not allow 0x7f.1:443: the host is an IP address (the allowlist is by name)',
    );
  });

  it('quotes a hostile host harmlessly: control characters escaped, length bounded', async () => {
    const { policy: p } = policy('*.example.com', {});
    const reason = reasonOf(await p.decide({ host: 'a.example.com\r\nX-Injected: 1', port: 443 }));
    expect(reason).toMatch(/^this deployment does not allow a\.example\.com\\u000d\\u000aX-Injected: 1:443: /);
    expect(reason).not.toMatch(/[\r\n]/);
    expect(reasonOf(await p.decide({ host: `${'a'.repeat(5000)}.example.com`, port: 443 })).length).toBeLessThan(400);
  });

  it('refuses a name resolving to one public and one private address, naming the private one', async () => {
    const { policy: p } = policy('registry.example.com', { 'registry.example.com': ['93.184.215.14', '10.0.0.5'] });
    expect(reasonOf(await p.decide({ host: 'registry.example.com', port: 443 }))).toBe(
      'this deployment does not allow registry.example.com:443: registry.example.com resolves to a private address (10.0.0.5)',
    );
  });

  it('refuses, with a reason rather than a throw, when the lookup fails or finds nothing', async () => {
    const { policy: p } = policy('*.example.com', { 'empty.example.com': [], 'broken.example.com': new Error('boom') });
    expect(reasonOf(await p.decide({ host: 'gone.example.com', port: 443 }))).toBe(
      'this deployment does not allow gone.example.com:443: gone.example.com could not be resolved (ENOTFOUND)',
    );
    expect(reasonOf(await p.decide({ host: 'empty.example.com', port: 443 }))).toMatch(/empty.example.com resolves to no address/);
    expect(reasonOf(await p.decide({ host: 'broken.example.com', port: 443 }))).toMatch(/broken.example.com could not be resolved \(Error: boom\)/);
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('refuses, rather than waits on, a lookup that does not answer', async () => {
    vi.useFakeTimers();
    const p = createEgressPolicy({ allow: parseEgressAllow('slow.example.com'), testResolve: new Map() }, () => new Promise(() => {}));
    const decision = p.decide({ host: 'slow.example.com', port: 443 });
    await vi.advanceTimersByTimeAsync(LOOKUP_TIMEOUT_MS);
    expect(reasonOf(await decision)).toBe(
      'this deployment does not allow slow.example.com:443: slow.example.com could not be resolved (no answer in 10 s)',
    );
  });

  it('looks names up with the system resolver by default, every address of them', async () => {
    const addresses = await systemResolver('localhost');
    expect(addresses.length).toBeGreaterThan(0);
    expect(addresses.every((a) => a === '127.0.0.1' || a === '::1')).toBe(true);
  });

  it('refuses an answer that is not an address', async () => {
    const { policy: p } = policy('odd.example.com', { 'odd.example.com': ['not-an-address'] });
    expect(reasonOf(await p.decide({ host: 'odd.example.com', port: 443 }))).toMatch(/resolves to not an IP address \(not-an-address\)/);
  });

  it('gives an IPv4-mapped address as the IPv4 address it maps', async () => {
    const { policy: p } = policy('example.com', { 'example.com': ['::ffff:93.184.215.14'] });
    expect(await p.decide({ host: 'example.com', port: 443 })).toEqual({ allowed: true, addresses: ['93.184.215.14'] });
  });

  it('sends a name mapped for tests to its local server, unchecked and unresolved, and only that name', async () => {
    const { policy: p, asked } = policy('npm,github', { 'github.com': ['127.0.0.1'] }, 'registry.npmjs.org=127.0.0.1:4873');
    expect(await p.decide({ host: 'registry.npmjs.org', port: 443 })).toEqual({ allowed: true, addresses: ['127.0.0.1'], port: 4873 });
    expect(asked).toEqual([]);
    expect(reasonOf(await p.decide({ host: 'github.com', port: 443 }))).toMatch(/github.com resolves to a loopback address \(127.0.0.1\)/);
    // The allowlist still comes first: a mapped name on a port it does not allow is refused.
    expect(reasonOf(await p.decide({ host: 'registry.npmjs.org', port: 80 }))).toMatch(/not in CLAUDERUN_EGRESS_ALLOW/);
  });
});

describe('which addresses are public', () => {
  it.each([
    ['127.0.0.1', 'a loopback address'],
    ['127.255.255.254', 'a loopback address'],
    ['10.0.0.1', 'a private address'],
    ['172.16.0.1', 'a private address'],
    ['172.31.255.255', 'a private address'],
    ['192.168.1.1', 'a private address'],
    ['100.64.0.1', 'a carrier-grade NAT address'],
    ['100.127.255.255', 'a carrier-grade NAT address'],
    ['169.254.169.254', 'the metadata server'],
    ['169.254.1.1', 'a link-local address'],
    ['224.0.0.1', 'a multicast address'],
    ['239.255.255.250', 'a multicast address'],
    ['255.255.255.255', 'the broadcast address'],
    ['0.0.0.0', 'an unspecified address'],
    ['0.1.2.3', 'an unspecified address'],
    ['240.0.0.1', 'a reserved address'],
    ['192.0.0.8', 'a reserved address'],
    ['192.0.2.1', 'a documentation address'],
    ['198.51.100.1', 'a documentation address'],
    ['203.0.113.1', 'a documentation address'],
    ['198.18.0.1', 'a benchmarking address'],
    ['199.36.153.8', 'a Google-internal address (private.googleapis.com)'],
    ['199.36.153.11', 'a Google-internal address (private.googleapis.com)'],
    ['199.36.153.4', 'a Google-internal address (restricted.googleapis.com)'],
    ['35.199.192.1', 'a Google-internal address (Cloud DNS forwarding)'],
    ['35.199.223.254', 'a Google-internal address (Cloud DNS forwarding)'],
    ['::', 'an unspecified address'],
    ['::1', 'a loopback address'],
    ['fc00::1', 'a unique local address'],
    ['fd20:ce::254', 'a unique local address'],
    ['fe80::1', 'a link-local address'],
    ['fe80::1%eth0', 'a link-local address'],
    ['febf::1', 'a link-local address'],
    ['fec0::1', 'a site-local address'],
    ['ff02::1', 'a multicast address'],
    ['2001:db8::1', 'a documentation address'],
    ['100::1', 'a discard address'],
    ['2002:a00:1::', 'a 6to4 address'],
    ['2001::1', 'a Teredo address'],
    ['2001:2::1', 'a reserved address'],
    ['2600:2d00:2:2000::1', 'a Google-internal address (private.googleapis.com)'],
    ['2600:2d00:2:1000::1', 'a Google-internal address (restricted.googleapis.com)'],
    ['::ffff:10.0.0.1', 'an IPv4-mapped IPv6 address of a private address'],
    ['::ffff:7f00:1', 'an IPv4-mapped IPv6 address of a loopback address'],
    ['::ffff:169.254.169.254', 'an IPv4-mapped IPv6 address of the metadata server'],
    ['::ffff:0.0.0.0', 'an IPv4-mapped IPv6 address of an unspecified address'],
    // ipaddr.js reads the IPv4-compatible form (::a.b.c.d, deprecated) as the mapped one.
    ['::10.0.0.1', 'an IPv4-mapped IPv6 address of a private address'],
    ['::127.0.0.1', 'an IPv4-mapped IPv6 address of a loopback address'],
    ['::a00:1', 'a reserved address'],
    ['::ffff:0:10.0.0.1', 'a reserved address'],
    ['64:ff9b::10.0.0.1', 'a NAT64 address of a private address'],
    ['64:ff9b::a9fe:a9fe', 'a NAT64 address of the metadata server'],
    ['64:ff9b:1::1', 'a local NAT64 address'],
    // Classes the table leaves to ipaddr.js's own ranges.
    ['192.175.48.1', 'a special-purpose address (as112)'],
    ['2620:4f:8000::1', 'a special-purpose address (as112v6)'],
  ])('%s is %s', (address, what) => {
    expect(classifyAddress(address)).toEqual({ public: false, what });
  });

  it.each([
    ['8.8.8.8', '8.8.8.8'],
    ['104.16.1.34', '104.16.1.34'],
    ['172.32.0.1', '172.32.0.1'],
    ['100.128.0.1', '100.128.0.1'],
    ['199.36.153.12', '199.36.153.12'],
    ['35.199.224.1', '35.199.224.1'],
    ['2606:4700::6810:122', '2606:4700::6810:122'],
    ['2001:4860:4860::8888', '2001:4860:4860::8888'],
    ['::ffff:8.8.8.8', '8.8.8.8'],
    ['64:ff9b::808:808', '64:ff9b::808:808'],
  ])('%s is public', (text, address) => {
    expect(classifyAddress(text)).toEqual({ public: true, address });
  });
});
