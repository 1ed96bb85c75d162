import { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { closeReason, MAX_FRAME_BYTES, parseControl, TUNNEL_CLOSE, type TunnelControl } from './tunnel-protocol.js';

/** The WebSocket closed otherwise than after both ends: `code` is one of TUNNEL_CLOSE's, or the peer's. */
export class TunnelClosedError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(reason === '' ? `the tunnel closed (${code})` : reason);
  }
}

/** The runner's side went away before both sides ended (its `abort`). */
export class TunnelAbortedError extends Error {
  constructor() {
    super('the sandbox ended the connection before its end');
  }
}

/** How long an aborting side waits for the API's close before it drops the WebSocket. */
const ABORT_CLOSE_WAIT_MS = 10_000;

function bytesOf(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.isBuffer(data) ? data : Buffer.from(data);
}

/**
 * A tunnel's WebSocket as a byte stream, the same on both sides. Backpressure: a write completes
 * once ws has handed its frame to the socket, and a reader that stops reading pauses the socket.
 * Ending the write side sends `end`. Once both sides have ended, the WebSocket is left for the
 * API to close, which it does after it has recorded the connection (with `refused` and the
 * reason when a cap cut it); the runner waits for those closes before it reports the turn.
 */
export class TunnelStream extends Duplex {
  private sentEnd = false;
  private gotEnd = false;
  /** The refusal the API explained before closing, kept for the error the close becomes. */
  private refusal: { reason: string; code: number } | undefined;

  /**
   * `side`: the API's stream never closes its WebSocket (the tunnel closes it after the record).
   * The runner's, destroyed before both sides ended (the tool went away), sends `abort` and leaves
   * the close to the API for a while; destroyed by an error, it drops the WebSocket.
   */
  constructor(
    readonly ws: WebSocket,
    private readonly side: 'api' | 'runner',
  ) {
    super({ allowHalfOpen: true });
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        if (this.gotEnd) return;
        if (!this.push(bytesOf(data))) ws.pause();
        return;
      }
      const control = parseControl(bytesOf(data).toString('utf8'));
      if (control === undefined) return;
      if (control.t === 'end') {
        this.gotEnd = true;
        this.push(null);
      } else if (control.t === 'abort') {
        this.destroy(new TunnelAbortedError());
      } else if (control.t === 'refused') {
        this.refusal = { reason: control.reason, code: control.code };
      } else {
        this.emit('control', control);
      }
    });
    ws.on('close', (code, reason) => {
      if (code === TUNNEL_CLOSE.normal && this.gotEnd) return;
      const refusal = this.refusal;
      this.destroy(new TunnelClosedError(refusal?.code ?? code, refusal?.reason ?? reason.toString('utf8')));
    });
    ws.on('error', (error) => this.destroy(error));
  }

  sendControl(control: TunnelControl): void {
    this.ws.send(JSON.stringify(control));
  }

  /** Closes the tunnel with a code and the full reason (the close frame's own is cut to fit). */
  closeWith(code: number, reason: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (code === TUNNEL_CLOSE.refused) this.sendControl({ t: 'refused', reason, code });
    this.ws.close(code, closeReason(reason));
  }

  override _read(): void {
    if (this.ws.isPaused) this.ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      callback(new TunnelClosedError(1006, 'the tunnel is closed'));
      return;
    }
    if (chunk.length === 0) {
      callback();
      return;
    }
    // A chunk over the frame limit goes as several frames; the last one's callback is the write's.
    for (let at = 0; at < chunk.length; at += MAX_FRAME_BYTES) {
      const last = at + MAX_FRAME_BYTES >= chunk.length;
      this.ws.send(chunk.subarray(at, at + MAX_FRAME_BYTES), { binary: true }, last ? callback : undefined);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      callback();
      return;
    }
    this.ws.send(JSON.stringify({ t: 'end' } satisfies TunnelControl), (error) => {
      this.sentEnd = true;
      callback(error);
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.side === 'runner' && (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING)) {
      if (error !== null || this.ws.readyState === this.ws.CONNECTING) this.ws.terminate();
      else if (!(this.sentEnd && this.gotEnd)) {
        this.sendControl({ t: 'abort' });
        setTimeout(() => this.ws.terminate(), ABORT_CLOSE_WAIT_MS).unref();
      }
    }
    callback(error);
  }
}
