// Fan-out of WatchSandboxes events to open streams. Each subscriber is registered before its snapshot is
// taken (so no change falls into the gap), gets the full snapshot, then live changes. Its queue is bounded:
// a consumer that falls behind by more than `limit` live events has its stream ended with ABORTED and
// reopens it to resynchronize (the gateway does so after 2 s), instead of the driver buffering without
// bound or silently dropping events.
import { status } from '@grpc/grpc-js';
import { constants as h2 } from 'node:http2';
import type { WatchSandboxesEvent } from '../gen/compute_driver.js';
import { logger } from '../common/log.js';

const log = logger('driver.watch');

/** What the hub needs from a server stream (a grpc-js ServerWritableStream satisfies it). */
export interface EventSink {
  write(ev: WatchSandboxesEvent): boolean;
  once(event: 'drain', fn: () => void): unknown;
  on(event: 'close' | 'cancelled' | 'error' | 'finish', fn: (...a: unknown[]) => void): unknown;
  emit(event: 'error', err: { code: number; details: string }): boolean;
  end(): unknown;
}

export class Subscriber {
  private queue: WatchSandboxesEvent[] = [];
  private pending: WatchSandboxesEvent[] | null = [];
  private blocked = false;
  closed = false;
  private readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    private readonly sink: EventSink,
    private readonly limit: number,
    private readonly onClose: (s: Subscriber) => void,
    private readonly onAbort: () => void,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
    const closed = () => this.finish();
    sink.on('close', closed);
    sink.on('cancelled', closed);
    sink.on('finish', closed);
  }

  /** Resolves once the stream is over. */
  get finished(): Promise<void> {
    return this.done;
  }

  /** A live event. Buffered until the snapshot has been sent. */
  push(ev: WatchSandboxesEvent): void {
    if (this.closed) return;
    if (this.pending) {
      this.pending.push(ev);
      if (this.pending.length > this.limit) this.abort();
      return;
    }
    this.queue.push(ev);
    if (this.backlog > this.limit) {
      this.abort();
      return;
    }
    this.pump();
  }

  /** Sends the snapshot (not counted against the limit), then the live events that arrived meanwhile. */
  bootstrap(snapshot: WatchSandboxesEvent[]): void {
    if (this.closed) return;
    const live = this.pending ?? [];
    this.pending = null;
    // The snapshot itself never counts as falling behind; the live tail does.
    this.queue.push(...snapshot);
    this.snapshotLeft = this.queue.length;
    this.queue.push(...live);
    this.pump();
  }

  /** Snapshot events still at the head of the queue. */
  private snapshotLeft = 0;

  private pump(): void {
    while (!this.closed && !this.blocked && this.queue.length > 0) {
      const ev = this.queue.shift()!;
      if (this.snapshotLeft > 0) this.snapshotLeft--;
      if (!this.sink.write(ev)) {
        this.blocked = true;
        this.sink.once('drain', () => {
          this.blocked = false;
          this.pump();
        });
      }
    }
  }

  /** Queue length beyond the snapshot that is still being sent. */
  get backlog(): number {
    return Math.max(0, this.queue.length - this.snapshotLeft);
  }

  abort(): void {
    if (this.closed) return;
    log.warn('watch consumer fell behind; ending its stream with ABORTED', { limit: this.limit });
    this.onAbort();
    this.queue = [];
    this.pending = null;
    this.closed = true;
    this.sink.emit('error', {
      code: status.ABORTED,
      details: `watch consumer fell behind by more than ${this.limit} events; reopen WatchSandboxes to resynchronize`,
    });
    // A consumer that reads nothing never lets the status through HTTP/2 flow control: reset the stream.
    const t = setTimeout(() => forceClose(this.sink), 5_000);
    t.unref();
    this.onClose(this);
  }

  /** Ends the stream with OK (driver shutdown). */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.pending = null;
    try {
      this.sink.end();
    } catch {
      /* already gone */
    }
    const t = setTimeout(() => forceClose(this.sink), 2_000);
    t.unref();
    this.onClose(this);
  }

  private finish(): void {
    this.closed = true;
    this.queue = [];
    this.pending = null;
    this.onClose(this);
    this.resolveDone();
  }
}

/** Best effort: reset the underlying HTTP/2 stream of a grpc-js server call. */
function forceClose(sink: EventSink): void {
  const call = (sink as unknown as { call?: { stream?: { close?: (c: number) => void; destroyed?: boolean }; nextCall?: unknown } }).call;
  const stream =
    call?.stream ?? (call?.nextCall as { stream?: { close?: (c: number) => void; destroyed?: boolean } } | undefined)?.stream;
  if (stream && !stream.destroyed && typeof stream.close === 'function') {
    try {
      stream.close(h2.NGHTTP2_CANCEL);
    } catch {
      /* gone */
    }
  }
}

export class WatchHub {
  private readonly subs = new Set<Subscriber>();
  aborted = 0;

  constructor(
    private readonly limit: number,
    private readonly onAbort?: () => void,
  ) {}

  subscribe(sink: EventSink): Subscriber {
    const s = new Subscriber(
      sink,
      this.limit,
      (x) => this.subs.delete(x),
      () => {
        this.aborted++;
        this.onAbort?.();
      },
    );
    this.subs.add(s);
    return s;
  }

  publish(ev: WatchSandboxesEvent): void {
    for (const s of [...this.subs]) s.push(ev);
  }

  get count(): number {
    return this.subs.size;
  }

  /** Ends every stream (shutdown). */
  closeAll(): void {
    for (const s of [...this.subs]) s.end();
  }
}
