import ipaddr from 'ipaddr.js';

/*
 * Whether an address a name resolved to is one a sandbox may reach: a public one. Every other
 * class is named, so that a refusal can say which. The ranges are listed here rather than taken
 * from ipaddr.js's range() alone so that each refusal names its class in words and the
 * Google-internal ones are covered; range() still refuses anything it does not call unicast.
 */

type Range = readonly [cidr: string, what: string];

const IPV4_RANGES: readonly Range[] = [
  ['0.0.0.0/8', 'an unspecified address'],
  ['127.0.0.0/8', 'a loopback address'],
  ['10.0.0.0/8', 'a private address'],
  ['172.16.0.0/12', 'a private address'],
  ['192.168.0.0/16', 'a private address'],
  ['100.64.0.0/10', 'a carrier-grade NAT address'],
  // The metadata server of Compute Engine, Cloud Run and Cloud Functions alike
  // (https://cloud.google.com/compute/docs/metadata/querying-metadata).
  ['169.254.169.254/32', 'the metadata server'],
  ['169.254.0.0/16', 'a link-local address'],
  ['224.0.0.0/4', 'a multicast address'],
  ['255.255.255.255/32', 'the broadcast address'],
  ['240.0.0.0/4', 'a reserved address'],
  ['192.0.0.0/24', 'a reserved address'],
  ['192.88.99.0/24', 'a reserved address'],
  ['192.0.2.0/24', 'a documentation address'],
  ['198.51.100.0/24', 'a documentation address'],
  ['203.0.113.0/24', 'a documentation address'],
  ['198.18.0.0/15', 'a benchmarking address'],
  // Private Google Access's VIPs, reached from inside a VPC only: private.googleapis.com
  // 199.36.153.8/30 (https://cloud.google.com/vpc/docs/configure-private-google-access#domain-options)
  // and restricted.googleapis.com 199.36.153.4/30
  // (https://cloud.google.com/vpc-service-controls/docs/private-connectivity).
  ['199.36.153.8/30', 'a Google-internal address (private.googleapis.com)'],
  ['199.36.153.4/30', 'a Google-internal address (restricted.googleapis.com)'],
  // Where Cloud DNS's forwarded queries come from, routed inside Google's network
  // (https://cloud.google.com/dns/docs/zones/zones-overview, "Forwarding zones").
  ['35.199.192.0/19', 'a Google-internal address (Cloud DNS forwarding)'],
];

const IPV6_RANGES: readonly Range[] = [
  ['::/128', 'an unspecified address'],
  ['::1/128', 'a loopback address'],
  ['fc00::/7', 'a unique local address'],
  ['fe80::/10', 'a link-local address'],
  ['fec0::/10', 'a site-local address'],
  ['ff00::/8', 'a multicast address'],
  ['2001:db8::/32', 'a documentation address'],
  ['3fff::/20', 'a documentation address'],
  ['100::/64', 'a discard address'],
  // Local-use NAT64 (RFC 8215): translated by whoever runs it, to whatever it chooses.
  ['64:ff9b:1::/48', 'a local NAT64 address'],
  // Both wrap an IPv4 address a relay chooses to reach.
  ['2002::/16', 'a 6to4 address'],
  ['2001::/32', 'a Teredo address'],
  ['2001::/23', 'a reserved address'],
  // The IPv6 ranges of the same VIPs (the pages cited above).
  ['2600:2d00:2:2000::/64', 'a Google-internal address (private.googleapis.com)'],
  ['2600:2d00:2:1000::/64', 'a Google-internal address (restricted.googleapis.com)'],
  // The rest of ::/8: IPv4-compatible (::a.b.c.d, deprecated) and SIIT (::ffff:0:a.b.c.d)
  // addresses; mapped ones (::ffff:a.b.c.d) are judged by the address they map, below.
  ['::/8', 'a reserved address'],
];

const parsed = (ranges: readonly Range[]) => ranges.map(([cidr, what]) => ({ range: ipaddr.parseCIDR(cidr), what }));
const V4 = parsed(IPV4_RANGES);
const V6 = parsed(IPV6_RANGES);
const NAT64 = ipaddr.parseCIDR('64:ff9b::/96');

export type AddressClass =
  /** `address` is the one to connect to: an IPv4-mapped IPv6 address as its IPv4 address. */
  | { public: true; address: string }
  /** `what` in words, e.g. "a private address". */
  | { public: false; what: string };

function classifyV4(address: ipaddr.IPv4): AddressClass {
  const hit = V4.find(({ range }) => address.match(range));
  if (hit !== undefined) return { public: false, what: hit.what };
  const range = address.range();
  if (range !== 'unicast') return { public: false, what: `a special-purpose address (${range})` };
  return { public: true, address: address.toString() };
}

/** The IPv4 address in an IPv6 address's last 32 bits. */
const embeddedV4 = (address: ipaddr.IPv6): ipaddr.IPv4 => {
  const [high = 0, low = 0] = address.parts.slice(6);
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
};

const wrapped = (inner: AddressClass, how: string): AddressClass => (inner.public ? inner : { public: false, what: `${how} of ${inner.what}` });

/** How `text`, an address a resolver returned, may be reached; anything that does not parse is not public. */
export function classifyAddress(text: string): AddressClass {
  if (!ipaddr.isValid(text)) return { public: false, what: 'not an IP address' };
  const address = ipaddr.parse(text);
  if (address.kind() === 'ipv4') return classifyV4(address as ipaddr.IPv4);
  const v6 = address as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return wrapped(classifyV4(v6.toIPv4Address()), 'an IPv4-mapped IPv6 address');
  if (v6.match(NAT64)) {
    const inner = wrapped(classifyV4(embeddedV4(v6)), 'a NAT64 address');
    return inner.public ? { public: true, address: v6.toString() } : inner;
  }
  const hit = V6.find(({ range }) => v6.match(range));
  if (hit !== undefined) return { public: false, what: hit.what };
  const range = v6.range();
  if (range !== 'unicast') return { public: false, what: `a special-purpose address (${range})` };
  return { public: true, address: v6.toString() };
}
