/*
 * The port between the egress tunnel (which carries a sandbox's connections out through the API)
 * and the policy that judges them. The tunnel asks before it opens anything; the policy never
 * touches a socket.
 */

/** Where a sandbox's tool asks to connect: a host name (or literal address) and a port. */
export interface EgressTarget {
  host: string;
  port: number;
}

export type EgressDecision =
  /**
   * Connect to one of these addresses (already checked to be public), and nowhere else; on `port`
   * when given, else on the target's. Only a name mapped by CLAUDERUN_EGRESS_TEST_RESOLVE (tests
   * alone) gives a port: its local server's, at an address that was not checked.
   */
  | { allowed: true; addresses: readonly string[]; port?: number }
  /** In words a tool's user understands, e.g. "this deployment does not allow example.com:443". */
  | { allowed: false; reason: string };

export interface EgressPolicy {
  /**
   * The host must match the allowlist before any lookup; then its addresses are resolved and
   * every one must be public (no loopback, private, link-local, metadata or Google-internal
   * address, whatever the name). Never rejects: a malformed target or a failed lookup is a
   * refusal with its reason. Made by createEgressPolicy (egress/policy.ts).
   */
  decide(target: EgressTarget): Promise<EgressDecision>;
}

/** What the first bytes of a tunnelled connection say, read without consuming them. */
export type ClientHelloPeek =
  /** Not enough bytes yet to tell. */
  | { kind: 'incomplete' }
  /** Not a TLS ClientHello. */
  | { kind: 'not_tls' }
  /** A ClientHello, with its server name (null when it names none). */
  | { kind: 'client_hello'; serverName: string | null };
