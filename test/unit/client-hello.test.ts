import net from 'node:net';
import tls from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_CLIENT_HELLO_BYTES, peekClientHello } from '../../functions/src/egress/client-hello.js';

/** The first bytes Node's own TLS client sends for `servername` (none for an IP literal). */
async function realHello(servername: string): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const first = new Promise<Buffer>((resolve) => server.once('connection', (socket) => socket.once('data', resolve)));
  const client = tls.connect({ host: '127.0.0.1', port, ...(servername === '' ? {} : { servername }) });
  client.on('error', () => {});
  const bytes = await first;
  client.destroy();
  server.close();
  return bytes;
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const vec16 = (b: Buffer) => Buffer.concat([u16(b.length), b]);

/** A ClientHello made by hand, with the extensions given. */
function hello(extensions: Buffer[]): Buffer {
  const body = Buffer.concat([
    u16(0x0303),
    Buffer.alloc(32, 7),
    Buffer.from([0]),
    vec16(u16(0x1301)),
    Buffer.from([1, 0]),
    vec16(Buffer.concat(extensions)),
  ]);
  const handshake = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  return records(handshake, handshake.length);
}
const sni = (...names: string[]) =>
  Buffer.concat([u16(0), vec16(vec16(Buffer.concat(names.map((name) => Buffer.concat([Buffer.from([0]), vec16(Buffer.from(name, 'latin1'))])))))]);

/** The handshake bytes cut into records of at most `size` bytes each. */
function records(handshake: Buffer, size: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < handshake.length; at += size) {
    const fragment = handshake.subarray(at, at + size);
    parts.push(Buffer.from([22, 3, 1, fragment.length >> 8, fragment.length & 0xff]), fragment);
  }
  return Buffer.concat(parts);
}
const handshakeOf = (record: Buffer) => record.subarray(5);

describe('peekClientHello', () => {
  let named: Buffer;
  let anonymous: Buffer;
  beforeAll(async () => {
    named = await realHello('Registry.NPMjs.org');
    anonymous = await realHello('');
  });

  it('reads the server name of a real ClientHello, and none when it sends none', () => {
    expect(peekClientHello(named)).toEqual({ kind: 'client_hello', serverName: 'Registry.NPMjs.org' });
    expect(peekClientHello(anonymous)).toEqual({ kind: 'client_hello', serverName: null });
  });

  it('asks for more at every cut of it short of the whole, and never decides early', () => {
    for (let length = 0; length < named.length; length++) expect(peekClientHello(named.subarray(0, length))).toEqual({ kind: 'incomplete' });
  });

  it('joins a ClientHello fragmented over many records, at every cut', () => {
    const fragmented = records(handshakeOf(named), Math.ceil(handshakeOf(named).length / 32));
    expect(peekClientHello(fragmented)).toEqual({ kind: 'client_hello', serverName: 'Registry.NPMjs.org' });
    for (let length = 0; length < fragmented.length; length += 3) expect(peekClientHello(fragmented.subarray(0, length)).kind).toBe('incomplete');
  });

  it('refuses a ClientHello cut into more records than a client sends, at once rather than re-reading them all', () => {
    // 1-byte records: joined and read again on every read, they cost the API's event loop seconds.
    const tiny = records(handshakeOf(named), 1);
    expect(peekClientHello(tiny)).toEqual({ kind: 'not_tls' });
    // Past the 32nd record it is refused whatever follows.
    expect(peekClientHello(tiny.subarray(0, 6 * 33))).toEqual({ kind: 'not_tls' });
  });

  it('refuses an Encrypted Client Hello: the server would route by a name this check cannot read', () => {
    const ech = Buffer.concat([u16(0xfe0d), vec16(Buffer.alloc(40, 1))]);
    expect(peekClientHello(hello([sni('tls.test'), ech]))).toEqual({ kind: 'not_tls' });
    expect(peekClientHello(hello([sni('tls.test')]))).toEqual({ kind: 'client_hello', serverName: 'tls.test' });
  });

  it('leaves what follows a whole ClientHello alone', () => {
    expect(peekClientHello(Buffer.concat([named, Buffer.from('GET / HTTP/1.1\r\n\r\n')]))).toMatchObject({ serverName: 'Registry.NPMjs.org' });
  });

  it.each([
    ['a plain HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n')],
    ['an SSH banner', Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')],
    ['an alert record', Buffer.from([21, 3, 3, 0, 2, 2, 40])],
    ['an empty record', Buffer.from([22, 3, 1, 0, 0])],
    ['a record over 2^14 bytes', Buffer.from([22, 3, 1, 0x40, 0x01])],
    ['another version', Buffer.from([22, 2, 0])],
    ['a ServerHello', records(Buffer.from([2, 0, 0, 1, 0]), 5)],
    ['a ClientHello longer than the bound', records(Buffer.from([1, 0x01, 0x00, 0x00]), 4)],
    ['two server_name extensions', hello([sni('a.example'), sni('b.example')])],
    ['two host names in one', hello([sni('a.example', 'b.example')])],
    ['a host name with a NUL in it', hello([sni('a.example\0.b.example')])],
    ['extensions that overrun', hello([Buffer.from([0, 0, 0, 99, 0])])],
  ])('calls %s not TLS', (_what, bytes) => {
    expect(peekClientHello(bytes)).toEqual({ kind: 'not_tls' });
  });

  it('reads a hand-made ClientHello as it reads a real one', () => {
    expect(peekClientHello(hello([sni('a.example')]))).toEqual({ kind: 'client_hello', serverName: 'a.example' });
    expect(peekClientHello(hello([]))).toEqual({ kind: 'client_hello', serverName: null });
  });

  it('stops waiting at the bound: records that never complete a ClientHello are refused', () => {
    const endless = records(Buffer.concat([Buffer.from([1, 0x00, 0x80, 0x00]), Buffer.alloc(MAX_CLIENT_HELLO_BYTES)]), 16_000);
    expect(peekClientHello(endless.subarray(0, MAX_CLIENT_HELLO_BYTES + 100))).toEqual({ kind: 'not_tls' });
  });

  it('never throws on random or mutated bytes, and answers one of its three kinds', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 5000; round++) {
      const bytes = Buffer.from(named);
      for (let flips = 1 + (random() % 4); flips > 0; flips--) bytes[random() % bytes.length] = random() & 0xff;
      const cut = bytes.subarray(0, random() % (bytes.length + 1));
      expect(['incomplete', 'not_tls', 'client_hello']).toContain(peekClientHello(cut).kind);
      const junk = Buffer.from(Array.from({ length: random() % 64 }, () => random() & 0xff));
      junk[0] = 22;
      expect(['incomplete', 'not_tls', 'client_hello']).toContain(peekClientHello(junk).kind);
    }
  });
});
