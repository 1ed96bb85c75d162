import type { ClientHelloPeek } from './egress-policy.js';

/**
 * The most a tunnel waits for before it must know: a ClientHello is a few hundred bytes (a few
 * KiB with post-quantum key shares); bytes past this without a whole one are refused, so that a
 * sandbox cannot make the API buffer without end.
 */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

const RECORD_HEADER = 5;
const HANDSHAKE_RECORD = 22;
const CLIENT_HELLO = 1;
const SERVER_NAME_EXTENSION = 0;
const HOST_NAME = 0;
/** RFC 8446 section 5.1: a record's plaintext is at most 2^14 bytes. */
const MAX_RECORD = 1 << 14;
/**
 * Records a ClientHello may be split over before it is whole. Real clients send one (two with
 * large post-quantum key shares); a hello cut into more of tiny records is refused, since
 * joining and re-reading them on every read would cost the API's event loop for every user.
 */
const MAX_HANDSHAKE_RECORDS = 32;
/**
 * encrypted_client_hello (RFC 9849 / draft-ietf-tls-esni): the server behind a shared front end
 * would route by the inner, encrypted name, which this check cannot see.
 */
const ENCRYPTED_CLIENT_HELLO_EXTENSION = 0xfe0d;

/**
 * Reads a connection's first bytes as TLS (RFC 8446 sections 4.1.2 and 5.1, RFC 6066 section
 * 3): the ClientHello may be split over several handshake records and those over several reads,
 * so `incomplete` asks for more. Bytes that cannot start a ClientHello are `not_tls` as soon as
 * that is certain; a malformed one is `not_tls` too, never an exception.
 */
export function peekClientHello(bytes: Buffer, maxBytes = MAX_CLIENT_HELLO_BYTES): ClientHelloPeek {
  const handshake = handshakeBytes(bytes.subarray(0, maxBytes));
  if (handshake === 'not_tls') return { kind: 'not_tls' };
  if (handshake.length >= 4) {
    if (handshake[0] !== CLIENT_HELLO) return { kind: 'not_tls' };
    const length = handshake.readUIntBE(1, 3);
    if (length + 4 > maxBytes) return { kind: 'not_tls' };
    if (handshake.length >= length + 4) {
      const serverName = serverNameOf(handshake.subarray(4, 4 + length));
      return serverName === 'malformed' ? { kind: 'not_tls' } : { kind: 'client_hello', serverName };
    }
  }
  return bytes.length >= maxBytes ? { kind: 'not_tls' } : { kind: 'incomplete' };
}

/** The handshake messages' bytes, joined from the records read so far (the last may be partial). */
function handshakeBytes(bytes: Buffer): Buffer | 'not_tls' {
  const fragments: Buffer[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const header = bytes.subarray(offset, offset + RECORD_HEADER);
    if (header[0] !== HANDSHAKE_RECORD) return 'not_tls';
    // The record's version is 3.x (0x0301 in ClientHellos that offer TLS 1.3, per RFC 8446 5.1).
    if (header.length >= 2 && header[1] !== 3) return 'not_tls';
    if (header.length < RECORD_HEADER) break;
    const length = header.readUInt16BE(3);
    if (length === 0 || length > MAX_RECORD) return 'not_tls';
    const fragment = bytes.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + length);
    if (fragments.length === MAX_HANDSHAKE_RECORDS) return 'not_tls';
    fragments.push(fragment);
    if (fragment.length < length) break;
    offset += RECORD_HEADER + length;
    // What follows a whole ClientHello (early data, say) is not for this peek to judge.
    const joined = Buffer.concat(fragments);
    if (joined.length >= 4 && joined.length >= joined.readUIntBE(1, 3) + 4) return joined;
  }
  return Buffer.concat(fragments);
}

/** The host_name of a ClientHello's body; null when it sends no server_name extension. */
function serverNameOf(body: Buffer): string | null | 'malformed' {
  const reader = new Reader(body);
  // legacy_version, random
  if (!reader.skip(2 + 32)) return 'malformed';
  // legacy_session_id, cipher_suites, legacy_compression_methods
  if (!reader.skipVector(1) || !reader.skipVector(2) || !reader.skipVector(1)) return 'malformed';
  if (reader.remaining === 0) return null;
  const extensions = reader.vector(2);
  if (extensions === undefined || reader.remaining !== 0) return 'malformed';
  const list = new Reader(extensions);
  let name: string | null = null;
  let seen = false;
  while (list.remaining > 0) {
    const type = list.uint16();
    const data = list.vector(2);
    if (type === undefined || data === undefined) return 'malformed';
    if (type === ENCRYPTED_CLIENT_HELLO_EXTENSION) return 'malformed';
    if (type !== SERVER_NAME_EXTENSION) continue;
    // RFC 8446 4.2: an extension appears at most once; two names would leave which one counts to the server.
    if (seen) return 'malformed';
    seen = true;
    const found = hostNameOf(data);
    if (found === 'malformed') return found;
    name = found;
  }
  return name;
}

function hostNameOf(data: Buffer): string | 'malformed' {
  const reader = new Reader(data);
  const names = reader.vector(2);
  if (names === undefined || reader.remaining !== 0) return 'malformed';
  const list = new Reader(names);
  let hostName: string | undefined;
  while (list.remaining > 0) {
    const type = list.uint8();
    const name = list.vector(2);
    if (type === undefined || name === undefined) return 'malformed';
    if (type !== HOST_NAME) continue;
    if (hostName !== undefined) return 'malformed';
    // RFC 6066 3: an ASCII DNS name, no trailing dot; anything else cannot equal a requested host.
    if (name.length === 0 || !name.every((byte) => byte > 0x20 && byte < 0x7f)) return 'malformed';
    hostName = name.toString('latin1');
  }
  return hostName ?? 'malformed';
}

class Reader {
  private offset = 0;
  constructor(private readonly bytes: Buffer) {}

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  skip(count: number): boolean {
    if (this.remaining < count) return false;
    this.offset += count;
    return true;
  }

  uint8(): number | undefined {
    if (this.remaining < 1) return undefined;
    return this.bytes[this.offset++];
  }

  uint16(): number | undefined {
    if (this.remaining < 2) return undefined;
    const value = this.bytes.readUInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  /** A vector with a length prefix of `prefixBytes` (1 or 2). */
  vector(prefixBytes: 1 | 2): Buffer | undefined {
    const length = prefixBytes === 1 ? this.uint8() : this.uint16();
    if (length === undefined || this.remaining < length) return undefined;
    const value = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  skipVector(prefixBytes: 1 | 2): boolean {
    return this.vector(prefixBytes) !== undefined;
  }
}
