/** Raw tar bytes, written by hand: archives no well-behaved tar would write, as a hostile sandbox may. */

/** A ustar header for one entry of `size` bytes; `type` is tar's type flag ('0' a file, 'x' a pax header, '5' a directory...). */
export function tarHeader(name: string, size: number, type = '0', linkName = ''): Buffer {
  const header = Buffer.alloc(512);
  // latin1: each character one byte, so that a test can write a name that is not UTF-8.
  const field = (offset: number, length: number, value: string) => header.write(value.padEnd(length, '\0').slice(0, length), offset, 'latin1');
  field(0, 100, name);
  field(100, 8, '0000644');
  field(108, 8, '0001750');
  field(116, 8, '0001750');
  field(124, 12, size.toString(8).padStart(11, '0'));
  field(136, 12, '00000000000');
  field(156, 1, type);
  field(157, 100, linkName);
  field(257, 6, 'ustar');
  field(263, 2, '00');
  header.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return header;
}

/** A ustar header given a `prefix` (prepended to the name by readers that honour it) and a version, its checksum made again. */
export function withPrefix(header: Buffer, prefix: string, version: string): Buffer {
  const changed = Buffer.from(header);
  changed.write(prefix.padEnd(155, '\0'), 345, 'latin1');
  changed.write(version, 263, 'latin1');
  changed.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of changed) sum += byte;
  changed.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return changed;
}

/** An entry's data, padded to tar's 512-byte blocks. */
export const padded = (data: Buffer): Buffer => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);

/** A whole entry: its header and its data. */
export const tarEntry = (name: string, data: Buffer = Buffer.alloc(0), type = '0', linkName = ''): Buffer =>
  Buffer.concat([tarHeader(name, data.length, type, linkName), padded(data)]);

/** A pax extended header setting `key` (e.g. path, linkpath) for the entry after it. */
export function paxEntry(key: string, value: string, type = 'x'): Buffer {
  const body = ` ${key}=${value}\n`;
  // A record's length counts its own digits.
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return tarEntry('PaxHeader/x', Buffer.from(`${length}${body}`), type);
}

/** The two zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(1024);
