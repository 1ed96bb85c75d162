import net from 'node:net';
import type { WebSocket } from 'ws';
import type { ByteAllowance, EgressAdmission } from '../domain/egress-budget.js';
import { MAX_CLIENT_HELLO_BYTES, peekClientHello } from './client-hello.js';
import type { EgressDecision, EgressPolicy, EgressTarget } from './egress-policy.js';
import { TUNNEL_CLOSE, type TunnelMode } from './tunnel-protocol.js';
import { TunnelAbortedError, TunnelStream } from './tunnel-stream.js';

/** One attempt to connect out, as the turn's `egress` event records it. */
export interface EgressAttempt {
  host: string;
  port: number;
  allowed: boolean;
  reason?: string;
  bytesOut: number;
  bytesIn: number;
  durationMs: number;
}

export interface TunnelWaits {
  /** How long the first bytes may take to say what they are. */
  peekTimeoutMs: number;
  connectTimeoutMs: number;
}

const DEFAULT_WAITS: TunnelWaits = { peekTimeoutMs: 10_000, connectTimeoutMs: 10_000 };

/** The turn a tunnel belongs to, as its token proved it. */
export interface TunnelTurn {
  id: string;
  userId: string;
  /** When the turn's time is up (ISO): no connection of it outlives that. */
  deadlineAt: string;
}

export interface TunnelRequest extends EgressTarget {
  turn: TunnelTurn;
  mode: TunnelMode;
}

/** Where the caps are counted (the store, so that every instance sees every connection). */
export interface EgressMeter {
  /** Counts a new connection against the caps: how much it may carry, or why it may not open; undefined once the turn is over. */
  open(turn: TunnelTurn): Promise<EgressAdmission | undefined>;
  /** Records an attempt once it is over (refused, failed or ended), with its bytes. */
  record(turn: TunnelTurn, attempt: EgressAttempt): Promise<void>;
}

export interface TunnelDeps {
  policy: EgressPolicy;
  meter: EgressMeter;
  log: (message: string) => void;
  waits?: Partial<TunnelWaits>;
  /** Opens the connection out (tests point it elsewhere). */
  connect?: (address: string, port: number) => net.Socket;
}

/** Bytes one connection has carried, both ways. */
interface Counts {
  bytesOut: number;
  bytesIn: number;
}

/**
 * The connections of one turn, or of one user (whose turns share the day's budget), open on this
 * instance. The store knows the bytes of connections that are over; these carry bytes it does not
 * know of yet, so each byte any of them carries is taken from what the latest admission left.
 */
interface Flow {
  key: string;
  /** Bytes they may still carry on this instance before a connection is cut. */
  left: number;
  /** Why a connection is cut past it. */
  over: string;
  open: Set<Counts>;
}

const carried = (counts: Counts): number => counts.bytesOut + counts.bytesIn;

/** What became of an attempt: its record, and how the tunnel is closed once it is recorded. */
interface Outcome {
  allowed: boolean;
  reason?: string;
  close: number;
  /** Refused before the caps counted it (they were used up, or it could not be counted). */
  uncounted?: true;
}

/** A connection the caps counted and the policy allowed, on its way to being carried. */
export interface AdmittedConnection {
  request: TunnelRequest;
  started: number;
  counts: Counts;
  /** The flows (its turn's, its user's) whose bytes it shares. */
  joined: Flow[];
  /** Where it goes: the policy's addresses, and the port (a test mapping's own). */
  addresses: readonly string[];
  port: number;
}

export type Admission = { admitted: AdmittedConnection } | { refused: string };

/** setTimeout's longest wait; a turn's deadline is far sooner. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A connection refused, before any byte of it flowed or for its first bytes. */
const refused = (reason: string): Outcome => ({ allowed: false, reason, close: TUNNEL_CLOSE.refused });

/** Turns whose uncounted refusals this instance remembers, at most: the oldest are forgotten first. */
const REMEMBERED_TURNS = 10_000;

/**
 * The API's end of the egress tunnel: judges each connection a sandbox asks for, checks its first
 * bytes, connects to an address the policy decided and carries bytes both ways. The caps are
 * counted by the meter, in the store: a turn's connections count wherever they arrive. Bytes are
 * recorded when a connection is over, so connections of one turn open at the same time on
 * different instances (each judged by what was recorded when it opened) may together pass the
 * byte caps by what each was left. On one instance the open ones share what is left; with an
 * asynchronous store (Firestore), a connection recorded while another's admission is being
 * read may be counted by neither.
 */
export class EgressTunnels {
  private readonly waits: TunnelWaits;
  private readonly flows = new Map<string, Flow>();
  private readonly open = new Set<TunnelStream>();
  /** Per turn, the reasons of uncounted refusals already recorded on this instance. */
  private readonly refusedUncounted = new Map<string, Set<string>>();

  constructor(private readonly deps: TunnelDeps) {
    this.waits = { ...DEFAULT_WAITS, ...deps.waits };
  }

  /**
   * Judges a connection before its WebSocket is accepted: the caps count it, the policy decides.
   * A refusal is recorded before it is answered (as a plain 403, so that a refused tunnel costs
   * the API no WebSocket); an admitted connection goes on to `carry` once upgraded, or to
   * `abandon` if its socket goes first.
   */
  async admit(request: TunnelRequest): Promise<Admission> {
    const started = Date.now();
    const admitted: AdmittedConnection = { request, started, counts: { bytesOut: 0, bytesIn: 0 }, joined: [], addresses: [], port: request.port };
    const outcome = await this.judge(admitted).catch((error: unknown) => refused(`could not judge the connection: ${(error as Error).message}`));
    if (outcome === undefined) return { admitted };
    await this.record(admitted, outcome);
    this.abandon(admitted);
    return { refused: outcome.reason ?? 'refused' };
  }

  /**
   * Carries an admitted connection; resolves once it is over and recorded. The tunnel is closed
   * only after the record: the runner waits for its tunnels' closes before it reports the turn's
   * result, so no attempt's event comes after the result (where it would be dropped).
   */
  async carry(ws: WebSocket, admitted: AdmittedConnection): Promise<void> {
    const tunnel = new TunnelStream(ws, 'api');
    this.open.add(tunnel);
    tunnel.on('error', () => {});
    try {
      const outcome = await this.attempt(tunnel, admitted).catch(
        (error: unknown): Outcome => ({ allowed: true, reason: `the tunnel broke: ${(error as Error).message}`, close: TUNNEL_CLOSE.broken }),
      );
      await this.record(admitted, outcome);
      tunnel.closeWith(outcome.close, outcome.reason ?? '');
    } finally {
      this.open.delete(tunnel);
      this.abandon(admitted);
    }
  }

  /** An admitted connection that will not be carried (its socket went before the upgrade): recorded, and out of the flows it joined. */
  async unused(admitted: AdmittedConnection): Promise<void> {
    await this.record(admitted, { allowed: true, reason: 'the connection closed before its WebSocket opened', close: TUNNEL_CLOSE.normal });
    this.abandon(admitted);
  }

  private abandon(admitted: AdmittedConnection): void {
    for (const flow of admitted.joined.splice(0)) this.leave(flow, admitted.counts);
  }

  private async record(admitted: AdmittedConnection, outcome: Outcome): Promise<void> {
    const { request, counts } = admitted;
    if (this.isRepeat(request.turn.id, outcome)) return;
    await this.deps.meter
      .record(request.turn, {
        host: request.host,
        port: request.port,
        allowed: outcome.allowed,
        ...(outcome.reason !== undefined ? { reason: outcome.reason } : {}),
        ...counts,
        durationMs: Date.now() - admitted.started,
      })
      .catch((error: unknown) => this.deps.log(`egress: could not record an attempt of turn ${request.turn.id}: ${String(error)}`));
  }

  /**
   * Whether this is an uncounted refusal this instance already recorded for the turn. Past its
   * caps a turn may try again and again: the first refusal for each reason is its record, and
   * the rest would fill the turn's events and cost a store write each.
   */
  private isRepeat(turnId: string, outcome: Outcome): boolean {
    if (outcome.uncounted !== true) return false;
    const reasons = this.refusedUncounted.get(turnId) ?? new Set<string>();
    // The same refusal with other figures in it (the bytes carried today) is the same refusal.
    const kind = (outcome.reason ?? '').replace(/\d+/g, '#');
    const repeat = reasons.has(kind);
    reasons.add(kind);
    this.refusedUncounted.delete(turnId);
    this.refusedUncounted.set(turnId, reasons);
    const oldest = this.refusedUncounted.keys().next().value;
    if (this.refusedUncounted.size > REMEMBERED_TURNS && oldest !== undefined) this.refusedUncounted.delete(oldest);
    return repeat;
  }

  /** The caps and the policy on a connection: why it is refused, or undefined when it may open. */
  private async judge(admitted: AdmittedConnection): Promise<Outcome | undefined> {
    const { request } = admitted;
    const uncounted = (reason: string): Outcome => ({ ...refused(reason), uncounted: true });
    const admission = await this.deps.meter.open(request.turn).catch((error: unknown) => {
      this.deps.log(`egress: could not count a connection of turn ${request.turn.id}: ${String(error)}`);
      return null;
    });
    // Uncounted, it is not opened: the caps never fail open.
    if (admission === null) return uncounted('the connection could not be counted against the caps; try again');
    if (admission === undefined) return uncounted('the turn is over');
    if (!admission.admitted) return uncounted(admission.reason);
    admitted.joined.push(
      this.join(`turn ${request.turn.id}`, admission.turn, admitted.counts),
      this.join(`user ${request.turn.userId}`, admission.day, admitted.counts),
    );
    const spent = admitted.joined.find((flow) => flow.left <= 0);
    if (spent !== undefined) return refused(spent.over.replace(/^cut: /, ''));
    const decision = await this.decide(request);
    if (!decision.allowed) return refused(decision.reason);
    admitted.addresses = decision.addresses;
    // A name mapped by CLAUDERUN_EGRESS_TEST_RESOLVE goes to its test server's port.
    admitted.port = decision.port ?? request.port;
    return undefined;
  }

  /** Checks the first bytes of an admitted connection and carries it to its end: what became of it. */
  private async attempt(tunnel: TunnelStream, admitted: AdmittedConnection): Promise<Outcome> {
    const { request, counts, joined } = admitted;
    tunnel.sendControl({ t: 'allowed' });
    const first = await this.firstBytes(tunnel, request);
    if (typeof first === 'string') return refused(first);
    const target = await this.connectOut(admitted.addresses, admitted.port);
    if (target === undefined)
      return { allowed: true, reason: `could not connect to ${request.host}:${request.port}`, close: TUNNEL_CLOSE.unreachable };
    const cut = await this.pipe(
      tunnel,
      target,
      first,
      joined,
      counts,
      Date.parse(request.turn.deadlineAt),
      request.mode === 'http' ? requestBytes(first) : undefined,
    );
    // Cut by a cap, the connection is refused the rest: the tool's side learns why.
    return cut === undefined ? { allowed: true, close: TUNNEL_CLOSE.normal } : { allowed: true, reason: cut, close: TUNNEL_CLOSE.refused };
  }

  /** Ends every open tunnel (the service is stopping). */
  closeAll(): void {
    for (const tunnel of this.open) {
      tunnel.ws.terminate();
      tunnel.destroy();
    }
  }

  /**
   * A new connection joins the flow of its turn or its user here. The admission counted every
   * connection recorded; the ones still open on this instance are not recorded yet, so what they
   * carried is taken from it.
   */
  private join(key: string, allowance: ByteAllowance, counts: Counts): Flow {
    const flow = this.flows.get(key) ?? { key, left: 0, over: allowance.over, open: new Set<Counts>() };
    const unrecorded = [...flow.open].reduce((sum, other) => sum + carried(other), 0);
    flow.left = allowance.bytes - unrecorded;
    flow.over = allowance.over;
    flow.open.add(counts);
    this.flows.set(key, flow);
    return flow;
  }

  private leave(flow: Flow, counts: Counts): void {
    flow.open.delete(counts);
    if (flow.open.size === 0) this.flows.delete(flow.key);
  }

  private async decide(target: EgressTarget): Promise<EgressDecision> {
    try {
      const decision = await this.deps.policy.decide({ host: target.host, port: target.port });
      if (decision.allowed && decision.addresses.length === 0) return { allowed: false, reason: `${target.host} has no address` };
      return decision;
    } catch (error) {
      this.deps.log(`egress: the policy failed on ${target.host}:${target.port}: ${String(error)}`);
      return { allowed: false, reason: `could not decide whether ${target.host}:${target.port} is allowed` };
    }
  }

  /**
   * The connection's first bytes, once they say what they are: a Buffer when they fit the mode,
   * the refusal's reason otherwise. They are read before anything is opened, so that nothing
   * reaches an address shared by many hosts in another host's name.
   */
  private firstBytes(tunnel: TunnelStream, request: TunnelRequest): Promise<Buffer | string> {
    return new Promise((resolve) => {
      let bytes = Buffer.alloc(0);
      const done = (result: Buffer | string) => {
        clearTimeout(timer);
        tunnel.off('data', onData).off('end', onEnd).off('close', onEnd);
        tunnel.pause();
        resolve(result);
      };
      const timer = setTimeout(
        () => done(`no ${request.mode === 'tls' ? 'TLS ClientHello' : 'HTTP request'} within ${this.waits.peekTimeoutMs} ms`),
        this.waits.peekTimeoutMs,
      );
      const onEnd = () => done('the connection ended before it said what it is');
      const onData = (chunk: Buffer) => {
        bytes = Buffer.concat([bytes, chunk]);
        const verdict = request.mode === 'tls' ? tlsVerdict(bytes, request.host) : httpVerdict(bytes, request);
        if (verdict !== 'incomplete') done(verdict === 'ok' ? bytes : verdict);
      };
      tunnel.on('data', onData).once('end', onEnd).once('close', onEnd);
    });
  }

  private async connectOut(addresses: readonly string[], port: number): Promise<net.Socket | undefined> {
    for (const address of addresses) {
      const socket = this.deps.connect?.(address, port) ?? net.connect({ host: address, port, allowHalfOpen: true });
      const connected = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), this.waits.connectTimeoutMs);
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve(true);
        });
        socket.once('error', () => {
          clearTimeout(timer);
          resolve(false);
        });
      });
      if (connected) return socket;
      socket.destroy();
    }
    return undefined;
  }

  /** Carries bytes both ways until both sides have ended or either fails; resolves with why it was cut, if it was. */
  private pipe(
    tunnel: TunnelStream,
    target: net.Socket,
    first: Buffer,
    flows: Flow[],
    counts: Counts,
    /**
     * When the turn's time is up: its sandbox is stopped then, but its token may have left it,
     * and a connection opened with it elsewhere must not go on carrying bytes for a final turn.
     */
    deadlineMs: number,
    /** The most the sandbox may send (a plain-HTTP connection carries its one checked request). */
    maxOut?: number,
  ): Promise<string | undefined> {
    return new Promise((resolve) => {
      let cut: string | undefined;
      let closed = 0;
      const deadline = setTimeout(() => fail("cut: the turn's time is up"), Math.min(MAX_TIMER_MS, Math.max(0, deadlineMs - Date.now())));
      const onClose = () => {
        closed += 1;
        if (closed === 2) {
          clearTimeout(deadline);
          resolve(cut);
        }
      };
      const stop = () => {
        target.destroy();
        tunnel.destroy();
      };
      const fail = (reason: string) => {
        cut ??= reason;
        stop();
      };
      const count = (bytes: number, way: 'bytesOut' | 'bytesIn') => {
        counts[way] += bytes;
        for (const flow of flows) {
          flow.left -= bytes;
          if (flow.left < 0) fail(flow.over);
        }
        if (maxOut !== undefined && counts.bytesOut > maxOut) fail('cut: a plain-HTTP connection carries one request, whose Host was checked');
      };
      target.once('close', onClose).on('error', (error) => fail(`the connection out failed: ${error.message}`));
      // The tool hanging up is how many connections end: nothing went wrong.
      tunnel
        .once('close', onClose)
        .on('error', (error) => (error instanceof TunnelAbortedError ? stop() : fail(`the tunnel broke: ${error.message}`)));
      count(first.length, 'bytesOut');
      target.write(first);
      forward(tunnel, target, (n) => count(n, 'bytesOut'));
      forward(target, tunnel, (n) => count(n, 'bytesIn'));
    });
  }
}

/** Bytes one way, pausing the source while the sink is full, and ending the sink when the source ends (a half-close). */
function forward(from: NodeJS.ReadableStream & { destroyed?: boolean }, to: NodeJS.WritableStream, count: (bytes: number) => void): void {
  from.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
  from.resume();
}

/** CONNECT carries TLS alone: a ClientHello whose server name is the host asked for. */
function tlsVerdict(bytes: Buffer, host: string): 'ok' | 'incomplete' | string {
  const peek = peekClientHello(bytes);
  if (peek.kind === 'incomplete') return 'incomplete';
  if (peek.kind === 'not_tls') return `only TLS is carried to ${host} through CONNECT; the connection did not start with a TLS ClientHello`;
  if (peek.serverName === null) return `the TLS ClientHello names no server; it must name ${host}`;
  if (peek.serverName.toLowerCase() !== host.toLowerCase()) return `the TLS ClientHello names ${peek.serverName}, not ${host}`;
  return 'ok';
}

const MAX_REQUEST_HEAD_BYTES = MAX_CLIENT_HELLO_BYTES;
/** `token ":" value` (RFC 9110 5.1, 5.5): no folding, no space before the colon, no control characters. */
const HEADER_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/;

/** A plain request's head: its Host must name the host (and port) the tunnel was opened for. */
function httpVerdict(bytes: Buffer, target: EgressTarget): 'ok' | 'incomplete' | string {
  const end = bytes.indexOf('\r\n\r\n');
  if (end === -1 || end > MAX_REQUEST_HEAD_BYTES) return bytes.length > MAX_REQUEST_HEAD_BYTES ? 'the HTTP request head is too large' : 'incomplete';
  const head = bytes.subarray(0, end).toString('latin1');
  // Servers differ on a bare LF, a lone CR or a folded line: one reading another request (or
  // another Host) into what this check read as one would pass it by. RFC 9112 2.2 and 5.
  if (/\r(?!\n)|(?<!\r)\n/.test(head)) return 'a plain-HTTP request head must end its lines with CRLF alone';
  const [requestLine = '', ...lines] = head.split('\r\n');
  if (lines.some((line) => !HEADER_LINE.test(line))) return 'a plain-HTTP request head has a line that is not a header field';
  if (!/^[A-Z]+ \/\S* HTTP\/1\.[01]$/.test(requestLine)) return 'only HTTP/1.x requests in origin form are carried as plain HTTP';
  const hosts = lines
    .filter((line) => /^host\s*:/i.test(line))
    .map((line) =>
      line
        .slice(line.indexOf(':') + 1)
        .trim()
        .toLowerCase(),
    );
  const expected =
    target.port === 80 ? [target.host.toLowerCase(), `${target.host.toLowerCase()}:80`] : [`${target.host.toLowerCase()}:${target.port}`];
  if (hosts.length !== 1 || !expected.includes(hosts[0] ?? '')) return `the request's Host must be ${expected[0]}`;
  // A second request on the connection would go unchecked: its end must be known, so no chunked bodies.
  if (lines.some((line) => /^transfer-encoding\s*:/i.test(line)))
    return 'a plain-HTTP request must give its Content-Length (chunked bodies go over HTTPS)';
  const lengths = lines.filter((line) => /^content-length\s*:/i.test(line)).map((line) => line.slice(line.indexOf(':') + 1).trim());
  if (lengths.length > 1 || (lengths[0] !== undefined && !/^\d{1,15}$/.test(lengths[0]))) return 'the request has no single, valid Content-Length';
  return 'ok';
}

/** The bytes of the one request a plain-HTTP connection's first bytes begin (its head checked by httpVerdict). */
function requestBytes(first: Buffer): number {
  const end = first.indexOf('\r\n\r\n');
  // The same lines httpVerdict judged: CRLF-separated header fields, one Content-Length at most.
  const field = first
    .subarray(0, end)
    .toString('latin1')
    .split('\r\n')
    .slice(1)
    .find((line) => /^content-length:/i.test(line));
  return end + 4 + Number(field?.slice(field.indexOf(':') + 1).trim() ?? 0);
}
