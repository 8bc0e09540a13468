export interface StallLimits {
  /**
   * A frame whose first byte arrived gets this long to complete, plus 1 s for every
   * `frameMinBytesPerSecond` bytes of it that arrived (a large frame on a slow link makes
   * progress; a trickle does not). 0: no limit.
   */
  frameTimeoutMs: number;
  frameMinBytesPerSecond: number;
  /** Nothing received for this long closes the connection. 0: never. */
  idleTimeoutMs: number;
}

export type Stall = 'idle' | 'slow-frame';

/**
 * Decides, from samples one shared timer takes of a connection (never per frame or chunk),
 * whether its peer stalls: sends nothing for too long, or starts a frame and does not finish it.
 * The verdict comes up to one sampling period late, never early.
 */
export class StallWatch {
  private bytes = -1;
  private activeAt = 0;
  private frame = -1;
  private frameSince = -1;

  constructor(private readonly limits: StallLimits) {}

  /**
   * @param bytesIn bytes received so far
   * @param framesIn frames completed so far
   * @param partial bytes received of the unfinished frame, -1 between frames
   * @param held true while the peer cannot be blamed for silence: we paused reading, or our own
   *   event loop was blocked; the clocks start again afterwards
   */
  sample(now: number, bytesIn: number, framesIn: number, partial: number, held: boolean): Stall | undefined {
    const { idleTimeoutMs, frameTimeoutMs, frameMinBytesPerSecond } = this.limits;
    if (held || bytesIn !== this.bytes) {
      this.bytes = bytesIn;
      this.activeAt = now;
    } else if (idleTimeoutMs > 0 && now - this.activeAt >= idleTimeoutMs) {
      return 'idle';
    }
    if (held || partial < 0 || frameTimeoutMs === 0) {
      this.frameSince = -1;
      return undefined;
    }
    if (this.frameSince < 0 || framesIn !== this.frame) {
      // First seen now: it may have started up to one period ago, which only makes us lenient.
      this.frameSince = now;
      this.frame = framesIn;
      return undefined;
    }
    const allowed = frameTimeoutMs + (partial * 1000) / frameMinBytesPerSecond;
    return now - this.frameSince > allowed ? 'slow-frame' : undefined;
  }
}
