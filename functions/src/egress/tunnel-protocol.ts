/*
 * The egress tunnel's wire protocol, shared by the runner (inside the sandbox) and the API. One
 * WebSocket per connection: GET <API_URL>/internal/turns/:turnId/egress?host=H&port=P&mode=M with
 * the turn token as `Authorization: Bearer`. A connection the caps or the policy refuse is
 * answered 403 with the API's error body (its message the reason) and never upgraded. Binary
 * frames carry the connection's bytes; text frames are the controls below. Imports nothing: the
 * runner's bundle takes it as it is.
 */

/**
 * What the tunnel carries: `tls` for a proxy's CONNECT (the first bytes must be a ClientHello
 * naming the host), `http` for a plain request the proxy forwards (its Host must be the host).
 */
export type TunnelMode = 'tls' | 'http';

/**
 * The largest binary frame either side sends; the API refuses larger ones. A frame is buffered
 * whole before it is seen, so this bounds what each tunnel holds in flight.
 */
export const MAX_FRAME_BYTES = 64 * 1024;

export const TUNNEL_CLOSE = {
  /** Both sides ended their bytes. */
  normal: 1000,
  /** The request was malformed (no host, a bad port or mode). */
  badRequest: 4400,
  /** The deployment does not allow it (policy, caps, a server name or Host that is not the host). */
  refused: 4403,
  /** Allowed, but no address of the host could be reached. */
  unreachable: 4502,
  /** The API failed while carrying it (RFC 6455 7.4.1: an unexpected condition). */
  broken: 1011,
} as const;

/** The controls, as text frames. */
export type TunnelControl =
  /** The API's word that the policy allowed the target: bytes may flow. */
  | { t: 'allowed' }
  /** The API's word that it will not connect, with the policy's reason, before it closes with `refused`. */
  | { t: 'refused'; reason: string; code: number }
  /** The sender has no more bytes (a half-close): the other side ends its write side. */
  | { t: 'end' }
  /**
   * The runner's word that its side went away before both ended (the tool hung up): the API
   * records the connection, then closes, as it does for every connection.
   */
  | { t: 'abort' };

export function parseControl(text: string): TunnelControl | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null) return undefined;
    const control = value as Record<string, unknown>;
    if (control.t === 'allowed' || control.t === 'end' || control.t === 'abort') return { t: control.t };
    if (control.t === 'refused' && typeof control.reason === 'string' && typeof control.code === 'number') {
      return { t: 'refused', reason: control.reason, code: control.code };
    }
    return undefined;
  } catch {
    return undefined;
  }
}

/** A WebSocket close reason is at most 123 bytes (RFC 6455 5.5): the whole reason goes in the `refused` control. */
export function closeReason(reason: string): string {
  let cut = reason;
  while (Buffer.byteLength(cut) > 123) cut = cut.slice(0, -1);
  return cut;
}
